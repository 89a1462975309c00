//! The demo's script: which hangs each child injects, where and for how long.
//!
//! The parent and every child compute the same plan from the same seed, so
//! the parent knows what to expect without being told. Each child runs four
//! event loops shaped like a browser's; three of them hang once, each in a
//! function whose name says what went wrong, each ending on its own.

use std::time::Duration;

use hangwatch::HangLevel;

/// A hang is transient past this...
pub const TRANSIENT: Duration = Duration::from_millis(250);
/// ...and permanent past this.
pub const PERMANENT: Duration = Duration::from_millis(1000);

/// The event loops of each child.
pub const LOOPS: [&str; 4] = ["script", "layout", "network", "compositor"];

/// One hang a child will inject.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectedHang {
    /// Which event loop hangs.
    pub component: &'static str,
    /// When, from the child's start.
    pub at: Duration,
    /// For how long.
    pub length: Duration,
    /// What it is doing: its annotation.
    pub annotation: &'static str,
    /// The function it hangs in, as its stack will name it.
    pub function: &'static str,
}

impl InjectedHang {
    /// The highest alert level it should reach.
    pub fn level(&self) -> HangLevel {
        if self.length >= PERMANENT {
            HangLevel::Permanent
        } else {
            HangLevel::Transient
        }
    }
}

/// The hangs child `index` injects over a run of `seconds`.
pub fn hangs(index: u32, seed: u64, seconds: f64) -> Vec<InjectedHang> {
    let mut rng = fastrand::Rng::with_seed(seed ^ (u64::from(index) + 1).wrapping_mul(0x9e37_79b9));
    let mut at = |fraction: f64| {
        let jitter = rng.f64() * 0.05 * seconds;
        Duration::from_secs_f64(fraction * seconds + jitter + 0.15 * f64::from(index))
    };
    vec![
        InjectedHang {
            component: "script",
            at: at(0.15),
            length: Duration::from_millis(450),
            annotation: "run script",
            function: "run_long_script_task",
        },
        InjectedHang {
            component: "layout",
            at: at(0.32),
            length: Duration::from_millis(1600),
            annotation: "reflow",
            function: "reflow_stuck_on_lock",
        },
        InjectedHang {
            component: "network",
            at: at(0.52),
            length: Duration::from_millis(1300),
            annotation: "read response",
            function: "read_from_slow_socket",
        },
    ]
}

/// The shortest run the demo accepts.
pub const MIN_SECONDS: f64 = 6.0;

/// When the last of `plans`' hangs ends.
pub fn last_end(plans: &[Vec<InjectedHang>]) -> Duration {
    plans
        .iter()
        .flatten()
        .map(|h| h.at + h.length)
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_child_computes_the_same_plan() {
        for index in 0..8 {
            let plan = hangs(index, 42, MIN_SECONDS);
            assert_eq!(plan, hangs(index, 42, MIN_SECONDS));
            assert_eq!(
                plan.iter()
                    .filter(|h| h.level() == HangLevel::Permanent)
                    .count(),
                2
            );
            assert!(plan
                .iter()
                .all(|h| h.length != PERMANENT && h.length > TRANSIENT));
        }
    }
}
