//! A text report of alerts: which components hung, where, how often and
//! for how long.
//!
//! [`Report::from_alerts`] rebuilds the hangs from the alerts (see
//! [`hangs`](crate::hangs)), groups them by component and, within a
//! component, by *stack signature*; its [`Display`](fmt::Display) is the
//! text `hangwatch report` prints:
//!
//! ```text
//! 3 hangs in 2 components, 1 ongoing; alerts: 3 transient, 2 permanent, 2 ended, 1 thread exited
//!
//! layout#1 [thread layout]: 2 hangs, 1 ongoing; alerts: 2 transient, 2 permanent, 1 ended, 0 thread exited
//!   2 hangs (1 ongoing) in "reflow": p50 1.6s, p99 2.0s, max 2.0s
//!       myapp::layout::reflow
//!       myapp::layout::run
//! script#1 [thread script]: 1 hang; alerts: 1 transient, 0 permanent, 1 ended, 0 thread exited
//!   1 hang in "eval": p50 230.0ms, p99 230.0ms, max 230.0ms
//!       (no stack)
//! network#1: no hangs; alerts: 0 transient, 0 permanent, 0 ended, 1 thread exited
//! ```
//!
//! # Stack signatures
//!
//! A hang's signature is the innermost [`SIGNATURE_FRAMES`] frames of its
//! stack that are the program's own, innermost first: frames of the standard
//! library, of channel, lock and runtime crates, and of the C runtime and
//! system calls are skipped (the rule is hangwatch's
//! [`is_program_frame_name`], which the `tracing` integration's `top_frame`
//! follows too). Two hangs stuck in the same function, called from
//! the same place, share a signature, whichever lock or system call they sat
//! in. If no frame is the program's, the signature is the innermost
//! [`SIGNATURE_FRAMES`] frames as they are. A hang without a stack has the
//! empty signature, shown as `(no stack)`.
//!
//! # Durations
//!
//! Each group gives the p50, p99 and maximum of its hangs' durations
//! (nearest rank: the smallest duration that at least that share of hangs
//! does not exceed). An ended hang counts with the duration of its `ended`
//! alert; an *ongoing* one (no `ended` alert seen) with the last duration an
//! alert gave it, its permanent one if it got that far.
//!
//! # Order
//!
//! Components with the most hangs come first, then by name and number;
//! within a component, the signatures with the most hangs, then by frames,
//! with `(no stack)` after the others. The same alerts always give the same
//! text.
//!
//! # Example
//!
//! ```
//! use hangwatch_export::report::{signature, SIGNATURE_FRAMES};
//!
//! // Innermost first, as stacks are recorded.
//! let frames = [
//!     "syscall",
//!     "std::sys::sync::mutex::futex::Mutex::lock_contended",
//!     "myapp::layout::reflow",
//!     "myapp::layout::run",
//!     "myapp::main",
//!     "std::rt::lang_start_internal",
//! ];
//! assert_eq!(SIGNATURE_FRAMES, 3);
//! assert_eq!(
//!     signature(&frames),
//!     ["myapp::layout::reflow", "myapp::layout::run", "myapp::main"]
//! );
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use hangwatch::{Alert, AlertKind, ComponentId};

use crate::hangs::{hangs, Hang};
use hangwatch::is_program_frame_name;

/// How many of the program's frames make a stack signature.
pub const SIGNATURE_FRAMES: usize = 3;

/// The signature of a stack given by its frame names, innermost first (see
/// the [module docs](self)).
pub fn signature<S: AsRef<str>>(innermost_first: &[S]) -> Vec<String> {
    signature_of(innermost_first.iter().map(|name| {
        let name = name.as_ref();
        (name.to_owned(), is_program_frame_name(name))
    }))
}

/// The signature of a stack given as each frame's name and whether it is
/// the program's own, innermost first: for frames, which say that by their
/// module too ([`Frame::is_programs`](hangwatch::Frame::is_programs)).
fn signature_of(innermost_first: impl Iterator<Item = (String, bool)>) -> Vec<String> {
    let frames: Vec<(String, bool)> = innermost_first.collect();
    let program: Vec<String> = frames
        .iter()
        .filter(|(_, programs)| *programs)
        .take(SIGNATURE_FRAMES)
        .map(|(name, _)| name.clone())
        .collect();
    if !program.is_empty() {
        return program;
    }
    frames
        .into_iter()
        .take(SIGNATURE_FRAMES)
        .map(|(name, _)| name)
        .collect()
}

/// What a set of alerts says, component by component.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Every component that raised an alert, in report order.
    pub components: Vec<ComponentReport>,
}

/// One component's part of a [`Report`].
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentReport {
    /// The component.
    pub component: ComponentId,
    /// Its thread's name, from its latest alert that had one.
    pub thread: Option<String>,
    /// How many alerts of each kind it raised.
    pub alerts: AlertCounts,
    /// How many hangs it had.
    pub hangs: usize,
    /// How many of those had no `ended` alert.
    pub ongoing: usize,
    /// Its hangs grouped by stack signature, in report order.
    pub groups: Vec<HangGroup>,
}

/// Alerts counted by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertCounts {
    /// `transient` alerts.
    pub transient: usize,
    /// `permanent` alerts.
    pub permanent: usize,
    /// `ended` alerts.
    pub ended: usize,
    /// `thread_exited` notices.
    pub thread_exited: usize,
    /// `stack` alerts: stacks that followed their alerts.
    pub stacks: usize,
}

/// Hangs of one component that share a stack signature.
#[derive(Clone, Debug, PartialEq)]
pub struct HangGroup {
    /// The signature, innermost frame first; empty for hangs without a stack.
    pub signature: Vec<String>,
    /// How many hangs.
    pub hangs: usize,
    /// How many of them had no `ended` alert.
    pub ongoing: usize,
    /// The distinct annotations of those hangs, sorted.
    pub annotations: Vec<String>,
    /// Their durations.
    pub durations: Durations,
}

/// Percentiles of hang durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durations {
    /// The median (nearest rank).
    pub p50: Duration,
    /// The 99th percentile (nearest rank).
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
}

impl Durations {
    /// The percentiles of `durations` (all zero if there are none).
    pub fn of(mut durations: Vec<Duration>) -> Durations {
        durations.sort_unstable();
        let rank = |percent: usize| {
            let rank = (percent * durations.len()).div_ceil(100);
            durations
                .get(rank.saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        Durations {
            p50: rank(50),
            p99: rank(99),
            max: durations.last().copied().unwrap_or_default(),
        }
    }
}

impl AlertCounts {
    fn count(&mut self, kind: AlertKind) {
        match kind {
            AlertKind::Transient => self.transient += 1,
            AlertKind::Permanent => self.permanent += 1,
            AlertKind::Ended { .. } => self.ended += 1,
            AlertKind::ThreadExited => self.thread_exited += 1,
            AlertKind::Stack { .. } => self.stacks += 1,
            // A kind newer than this report has no column here.
            _ => {}
        }
    }

    fn add(&mut self, other: AlertCounts) {
        self.transient += other.transient;
        self.permanent += other.permanent;
        self.ended += other.ended;
        self.thread_exited += other.thread_exited;
        self.stacks += other.stacks;
    }
}

impl Report {
    /// The report of `alerts` (see the [module docs](self)).
    pub fn from_alerts(alerts: &[Alert]) -> Report {
        let mut components: BTreeMap<&ComponentId, (AlertCounts, Option<String>, Vec<Hang>)> =
            BTreeMap::new();
        for alert in alerts {
            let (counts, thread, _) = components.entry(&alert.component).or_default();
            counts.count(alert.kind);
            if alert.thread.is_some() {
                *thread = alert.thread.as_deref().map(str::to_owned);
            }
        }
        for hang in hangs(alerts) {
            if let Some((_, _, component_hangs)) = components.get_mut(&hang.component) {
                component_hangs.push(hang);
            }
        }
        let mut components: Vec<ComponentReport> = components
            .into_iter()
            .map(|(component, (alerts, thread, hangs))| ComponentReport {
                component: component.clone(),
                thread,
                alerts,
                hangs: hangs.len(),
                ongoing: hangs.iter().filter(|hang| !hang.ended).count(),
                groups: group(&hangs),
            })
            .collect();
        // Stable: equal hang counts keep component order.
        components.sort_by_key(|component| std::cmp::Reverse(component.hangs));
        Report { components }
    }

    /// How many hangs, over all components.
    pub fn hangs(&self) -> usize {
        self.components.iter().map(|c| c.hangs).sum()
    }

    /// How many alerts of each kind, over all components.
    pub fn alerts(&self) -> AlertCounts {
        let mut total = AlertCounts::default();
        for component in &self.components {
            total.add(component.alerts);
        }
        total
    }
}

/// Groups one component's hangs by stack signature, in report order.
fn group(hangs: &[Hang]) -> Vec<HangGroup> {
    let mut by_signature: BTreeMap<Vec<String>, Vec<&Hang>> = BTreeMap::new();
    for hang in hangs {
        let frames = hang.stack.iter().flat_map(|stack| {
            stack
                .frames
                .iter()
                .map(|frame| (frame.name().into_owned(), frame.is_programs()))
        });
        by_signature
            .entry(signature_of(frames))
            .or_default()
            .push(hang);
    }
    let mut groups: Vec<HangGroup> = by_signature
        .into_iter()
        .map(|(signature, hangs)| HangGroup {
            signature,
            hangs: hangs.len(),
            ongoing: hangs.iter().filter(|hang| !hang.ended).count(),
            annotations: hangs
                .iter()
                .filter_map(|hang| hang.annotation.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            durations: Durations::of(hangs.iter().map(|hang| hang.duration).collect()),
        })
        .collect();
    // Stable: equal counts keep signature order; no stack after the others.
    groups.sort_by_key(|group| (std::cmp::Reverse(group.hangs), group.signature.is_empty()));
    groups
}

/// `n` and `word`, plural when `n` is not 1.
fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl fmt::Display for AlertCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "alerts: {} transient, {} permanent, {} ended, {} thread exited",
            self.transient, self.permanent, self.ended, self.thread_exited
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.components.is_empty() {
            return writeln!(f, "no alerts");
        }
        let hung = self.components.iter().filter(|c| c.hangs > 0).count();
        let ongoing: usize = self.components.iter().map(|c| c.ongoing).sum();
        write!(
            f,
            "{} in {}",
            count(self.hangs(), "hang"),
            count(hung, "component")
        )?;
        if ongoing > 0 {
            write!(f, ", {ongoing} ongoing")?;
        }
        writeln!(f, "; {}", self.alerts())?;
        writeln!(f)?;
        for component in &self.components {
            write!(f, "{component}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ComponentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.component)?;
        if let Some(thread) = &self.thread {
            write!(f, " [thread {thread}]")?;
        }
        match (self.hangs, self.ongoing) {
            (0, _) => write!(f, ": no hangs")?,
            (hangs, 0) => write!(f, ": {}", count(hangs, "hang"))?,
            (hangs, ongoing) => write!(f, ": {}, {ongoing} ongoing", count(hangs, "hang"))?,
        }
        writeln!(f, "; {}", self.alerts)?;
        for group in &self.groups {
            write!(f, "{group}")?;
        }
        Ok(())
    }
}

impl fmt::Display for HangGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  {}", count(self.hangs, "hang"))?;
        if self.ongoing > 0 {
            write!(f, " ({} ongoing)", self.ongoing)?;
        }
        if !self.annotations.is_empty() {
            let annotations: Vec<String> =
                self.annotations.iter().map(|a| format!("{a:?}")).collect();
            write!(f, " in {}", annotations.join(", "))?;
        }
        let Durations { p50, p99, max } = self.durations;
        writeln!(f, ": p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}")?;
        if self.signature.is_empty() {
            writeln!(f, "      (no stack)")?;
        }
        for frame in &self.signature {
            writeln!(f, "      {frame}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = Duration::from_millis;
        let durations = Durations::of((1..=200).rev().map(ms).collect());
        assert_eq!(durations.p50, ms(100));
        assert_eq!(durations.p99, ms(198));
        assert_eq!(durations.max, ms(200));
        let one = Durations::of(vec![ms(7)]);
        assert_eq!((one.p50, one.p99, one.max), (ms(7), ms(7), ms(7)));
        assert_eq!(Durations::of(Vec::new()), Durations::default());
    }

    #[test]
    fn a_stack_with_no_program_frame_keeps_its_innermost_frames() {
        let frames = [
            "syscall",
            "std::thread::sleep",
            "std::rt::lang_start",
            "_start",
        ];
        assert_eq!(
            signature(&frames),
            ["syscall", "std::thread::sleep", "std::rt::lang_start"]
        );
        assert!(signature::<&str>(&[]).is_empty());
    }
}
