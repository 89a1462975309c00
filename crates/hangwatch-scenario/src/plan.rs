//! The children's script: which hangs each child injects, where and for how
//! long, under which timeouts, and how much work surrounds them.
//!
//! The hub and every child compute the same plan from the same [`Script`]
//! (the hub passes it on the child's command line), so the hub knows what to
//! expect without being told. Each child runs four event loops shaped like a
//! browser's; three of them hang, each in a function whose name says what
//! went wrong, each hang ending on its own; the compositor never hangs.
//!
//! - [`Mode::Demo`]: each of the three hangs once, at set fractions of the
//!   run, under the demo's timeouts.
//! - [`Mode::Soak`]: each hangs again and again until the end of the
//!   script, under timeouts twice the demo's, with bursts of tiny tasks
//!   between the ordinary work (see [`Mode::burst`]).
//!
//! Invariants: a hang's length is 1.3 to 1.8 times the timeout it must
//! pass and below the next one, so no scheduling noise moves it across a
//! timeout; the hangs of one loop never overlap and are at least
//! [`MIN_GAP`] apart; a soak child's hangs all end [`END_MARGIN`] before its
//! script does.

use std::ops::RangeInclusive;
use std::time::Duration;

use hangwatch::{HangLevel, Timeouts};

/// The event loops of each child.
pub const LOOPS: [&str; 4] = ["script", "layout", "network", "compositor"];

/// Which plan a child follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `hangwatch demo`: three hangs per child, light work.
    Demo,
    /// `hangwatch soak`: hangs over and over, heavy work.
    Soak,
}

impl Mode {
    /// The timeouts of every loop of a child of this plan.
    pub fn timeouts(self) -> Timeouts {
        match self {
            Mode::Demo => Timeouts::new(Duration::from_millis(250), Duration::from_millis(1000)),
            Mode::Soak => Timeouts::new(Duration::from_millis(500), Duration::from_millis(2000)),
        }
    }

    /// How late the monitor may look before it judges the process paused
    /// and charges no hang for the gap, if not the library's default. The
    /// soak runs on loaded machines, where a starved monitor thread can
    /// oversleep the default by a little; a pause as long as the transient
    /// timeout is still a pause.
    pub fn pause_threshold(self) -> Option<Duration> {
        match self {
            Mode::Demo => None,
            Mode::Soak => Some(self.timeouts().transient()),
        }
    }

    /// How many tiny tasks each loop gets per round of work on top of its
    /// ordinary task (when its inbox is nearly empty), if any.
    pub fn burst(self) -> Option<RangeInclusive<u64>> {
        match self {
            Mode::Demo => None,
            Mode::Soak => Some(200..=2_000),
        }
    }
}

/// What a child is to do: everything its plan follows from.
#[derive(clap::Args, Clone, Copy, Debug, PartialEq)]
pub struct Script {
    /// Which plan.
    #[arg(long, value_enum, default_value_t = Mode::Demo)]
    pub mode: Mode,
    /// Which child this is: its role, kept across restarts.
    #[arg(long)]
    pub index: u32,
    /// How many times this role's process has been restarted.
    #[arg(long, default_value_t = 0)]
    pub generation: u32,
    /// The run's seed.
    #[arg(long)]
    pub seed: u64,
    /// How long the plan lasts from the child's start, in seconds.
    #[arg(long)]
    pub seconds: f64,
}

impl Script {
    /// The command-line arguments that give a child this script.
    pub fn args(&self) -> Vec<String> {
        let mode = match self.mode {
            Mode::Demo => "demo",
            Mode::Soak => "soak",
        };
        vec![
            "--mode".into(),
            mode.into(),
            "--index".into(),
            self.index.to_string(),
            "--generation".into(),
            self.generation.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--seconds".into(),
            self.seconds.to_string(),
        ]
    }

    /// The timeouts of every loop of this child.
    pub fn timeouts(&self) -> Timeouts {
        self.mode.timeouts()
    }

    /// The hangs this child injects, in the order they start.
    pub fn hangs(&self) -> Vec<InjectedHang> {
        let mut rng = fastrand::Rng::with_seed(
            self.seed
                ^ (u64::from(self.index) + 1).wrapping_mul(0x9e37_79b9)
                ^ u64::from(self.generation).wrapping_mul(0x85eb_ca6b_c2b2_ae35),
        );
        match self.mode {
            Mode::Demo => self.once_each(&mut rng),
            Mode::Soak => self.over_and_over(&mut rng),
        }
    }

    /// How long the plan lasts (nothing, for a length that is not one).
    fn span(&self) -> Duration {
        Duration::try_from_secs_f64(self.seconds).unwrap_or_default()
    }

    /// The demo: each kind once, at 15 %, 32 % and 52 % of the run (plus
    /// jitter, and later for later children).
    fn once_each(&self, rng: &mut fastrand::Rng) -> Vec<InjectedHang> {
        let stagger = Duration::from_millis(150 * u64::from(self.index));
        [0.15, 0.32, 0.52]
            .into_iter()
            .zip(&KINDS)
            .map(|(fraction, kind)| {
                let jitter = rng.f64() * 0.05;
                let at = self.span().mul_f64(fraction + jitter) + stagger;
                kind.at(at, self.timeouts())
            })
            .collect()
    }

    /// The soak: each kind starting early (so that a child has shown every
    /// kind within its first seconds), then again a random gap after the
    /// previous one ends, while it can still end `END_MARGIN` before the
    /// script does.
    fn over_and_over(&self, rng: &mut fastrand::Rng) -> Vec<InjectedHang> {
        let end = self.span().saturating_sub(END_MARGIN);
        let mut hangs = Vec::new();
        for (k, kind) in KINDS.iter().enumerate() {
            let length = kind.length(self.timeouts());
            let mut at = Duration::from_millis(500 + 500 * k as u64 + rng.u64(0..=500));
            while at + length <= end {
                hangs.push(kind.at(at, self.timeouts()));
                at += length + MIN_GAP + Duration::from_millis(rng.u64(0..=2_000));
            }
        }
        hangs.sort_by_key(|h| h.at);
        hangs
    }
}

/// The least time between two hangs of one loop.
pub const MIN_GAP: Duration = Duration::from_millis(1500);

/// In a soak, every hang ends at least this long before the script does.
pub const END_MARGIN: Duration = Duration::from_secs(2);

/// One way a loop hangs.
struct Kind {
    component: &'static str,
    annotation: &'static str,
    function: &'static str,
    /// The timeout it passes, and by how much.
    level: HangLevel,
    factor: f64,
}

/// The three ways the loops hang: a long script task (transient), a reflow
/// stuck on a lock and a network read that waits for a slow peer (both
/// permanent).
const KINDS: [Kind; 3] = [
    Kind {
        component: "script",
        annotation: "run script",
        function: "run_long_script_task",
        level: HangLevel::Transient,
        factor: 1.8,
    },
    Kind {
        component: "layout",
        annotation: "reflow",
        function: "reflow_stuck_on_lock",
        level: HangLevel::Permanent,
        factor: 1.6,
    },
    Kind {
        component: "network",
        annotation: "read response",
        function: "read_from_slow_socket",
        level: HangLevel::Permanent,
        factor: 1.3,
    },
];

impl Kind {
    fn length(&self, timeouts: Timeouts) -> Duration {
        let passed = match self.level {
            HangLevel::Transient => timeouts.transient(),
            HangLevel::Permanent => timeouts.permanent(),
        };
        passed.mul_f64(self.factor)
    }

    fn at(&self, at: Duration, timeouts: Timeouts) -> InjectedHang {
        InjectedHang {
            component: self.component,
            at,
            length: self.length(timeouts),
            level: self.level,
            annotation: self.annotation,
            function: self.function,
        }
    }
}

/// One hang a child will inject.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectedHang {
    /// Which event loop hangs.
    pub component: &'static str,
    /// When, from the child's start.
    pub at: Duration,
    /// For how long.
    pub length: Duration,
    /// The highest alert level it should reach.
    pub level: HangLevel,
    /// What it is doing: its annotation.
    pub annotation: &'static str,
    /// The function it hangs in, as its stack will name it.
    pub function: &'static str,
}

/// The shortest run the demo accepts.
pub const MIN_SECONDS: f64 = 6.0;

/// The longest demo: a day.
pub const MAX_SECONDS: f64 = 86_400.0;

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

    fn script(mode: Mode, index: u32, generation: u32, seconds: f64) -> Script {
        Script {
            mode,
            index,
            generation,
            seed: 42,
            seconds,
        }
    }

    /// Each hang is clear of both timeouts, at the level it should reach.
    fn clear_of_timeouts(hang: &InjectedHang, timeouts: Timeouts) -> bool {
        let expected = if hang.length >= timeouts.permanent() {
            HangLevel::Permanent
        } else {
            HangLevel::Transient
        };
        hang.level == expected
            && hang.length >= timeouts.transient().mul_f64(1.3)
            && (hang.length <= timeouts.permanent().mul_f64(0.9)
                || hang.length >= timeouts.permanent().mul_f64(1.3))
    }

    #[test]
    fn every_child_computes_the_same_demo_plan() {
        for index in 0..8 {
            let script = script(Mode::Demo, index, 0, MIN_SECONDS);
            let plan = script.hangs();
            assert_eq!(plan, script.hangs());
            assert_eq!(plan.len(), 3);
            assert_eq!(
                plan.iter()
                    .filter(|h| h.level == HangLevel::Permanent)
                    .count(),
                2
            );
            assert!(plan.iter().all(|h| clear_of_timeouts(h, script.timeouts())));
        }
    }

    #[test]
    fn a_soak_plan_repeats_every_kind_without_overlap_and_ends_in_time() {
        for (index, generation) in [(0, 0), (1, 0), (1, 3), (2, 7)] {
            let script = script(Mode::Soak, index, generation, 60.0);
            let plan = script.hangs();
            assert_eq!(plan, script.hangs());
            assert_ne!(
                plan,
                self::script(Mode::Soak, index, generation + 1, 60.0).hangs()
            );
            for name in ["script", "layout", "network"] {
                let ours: Vec<&InjectedHang> =
                    plan.iter().filter(|h| h.component == name).collect();
                assert!(ours.len() >= 5, "{name}: {ours:?}");
                for pair in ours.windows(2) {
                    assert!(pair[0].at + pair[0].length + MIN_GAP <= pair[1].at);
                }
            }
            assert!(plan.iter().all(|h| h.component != "compositor"));
            assert!(plan.iter().all(|h| clear_of_timeouts(h, script.timeouts())));
            assert!(last_end(&[plan]) + END_MARGIN <= Duration::from_secs(60));
        }
        // Too short for a soak hang, or no length at all: none, and no panic.
        for seconds in [2.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(script(Mode::Soak, 0, 1, seconds).hangs().is_empty());
            assert_eq!(script(Mode::Demo, 0, 1, seconds).hangs().len(), 3);
        }
    }
}
