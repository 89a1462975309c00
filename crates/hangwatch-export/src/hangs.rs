//! From a stream of alerts back to the hangs they describe.
//!
//! The monitor raises up to three alerts per hang, in order, per component:
//! `transient`, then `permanent`, then `ended` with the hang's total
//! duration. [`hangs`] walks the alerts of each component in that order and
//! rebuilds one [`Hang`] per activity that raised an alert:
//!
//! - a `transient` alert starts a hang;
//! - a `permanent` alert raises the open hang to permanent (or starts one, if
//!   its transient alert is missing);
//! - an `ended` alert closes the open hang with its final duration and level
//!   (or stands for a whole hang, if the alerts before it are missing);
//! - a `thread_exited` notice, or an alert that can only belong to a new
//!   activity (a `transient`, or a second `permanent`), closes the open hang
//!   without an `ended` alert.
//!
//! A hang that never got its `ended` alert is *ongoing*: it is counted with
//! the last duration an alert gave it (its permanent one, if it got that
//! far). Its stack is the one of its latest alert that carries a stack: the
//! permanent alert's, normally.
//!
//! [`weighted_stacks`] shares each hang's duration among the stacks its
//! alerts carry (each from its alert until the next, the first from the
//! hang's start): what collapsed stacks of alerts weigh their stacks by.
//!
//! [`profile_from_alerts`] puts the same hangs, and the stacks the alerts
//! carry ([`stacks_of`]: a stack that followed its alert counts instead of
//! the alert's own), on a [`Profile`] timeline, so that alerts without a profile can be
//! exported wherever a profile can.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use hangwatch::{Alert, AlertKind, ComponentId, HangLevel};
//! use hangwatch_export::hangs::hangs;
//!
//! let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let alert = |kind, ms| {
//!     let (duration, time) = (Duration::from_millis(ms), at + Duration::from_millis(ms));
//!     let mut alert = Alert::new(ComponentId::new("layout", 1), kind, duration, time);
//!     alert.annotation = Some("reflow".into());
//!     alert
//! };
//! let alerts = [
//!     alert(AlertKind::Transient, 150),
//!     alert(AlertKind::Permanent, 1000),
//!     alert(AlertKind::Ended { worst: HangLevel::Permanent }, 1600),
//! ];
//! let hangs = hangs(&alerts);
//! assert_eq!(hangs.len(), 1);
//! assert_eq!(hangs[0].duration, Duration::from_millis(1600));
//! assert_eq!(hangs[0].start, at);
//! assert!(hangs[0].ended);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hangwatch::{
    Alert, AlertKind, ComponentId, HangLevel, HangMarker, Profile, ProfiledThread, Stack,
};

/// One hang, rebuilt from its alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct Hang {
    /// The component that hung.
    pub component: ComponentId,
    /// What it said it was doing.
    pub annotation: Option<String>,
    /// The highest level the hang reached.
    pub level: HangLevel,
    /// When the hang's activity started: an alert's time less its duration.
    pub start: SystemTime,
    /// How long it lasted (for an ongoing hang, how long it had lasted at its
    /// latest alert).
    pub duration: Duration,
    /// Whether its `ended` alert was seen.
    pub ended: bool,
    /// Where the thread was, from the latest of its alerts that carried a
    /// stack (or the `stack` alert that completed one).
    pub stack: Option<Stack>,
    /// The activity's start on the monitor's clock, when the alerts say:
    /// what ties a `stack` alert to its hang.
    pub started_ns: Option<u64>,
}

impl Hang {
    fn new(alert: &Alert, level: HangLevel) -> Hang {
        Hang {
            component: alert.component.clone(),
            annotation: alert.annotation.as_deref().map(str::to_owned),
            level,
            start: activity_start(alert),
            duration: alert.duration,
            ended: false,
            stack: alert.stack.clone(),
            started_ns: alert.started_ns,
        }
    }

    /// Takes in a later alert of the same hang.
    fn update(&mut self, alert: &Alert, level: HangLevel) {
        self.level = self.level.max(level);
        self.duration = self.duration.max(alert.duration);
        if self.annotation.is_none() {
            self.annotation = alert.annotation.as_deref().map(str::to_owned);
        }
        if alert.stack.is_some() {
            self.stack = alert.stack.clone();
        }
    }
}

/// When the activity an alert is about started.
fn activity_start(alert: &Alert) -> SystemTime {
    alert.time.checked_sub(alert.duration).unwrap_or(alert.time)
}

/// The hangs `alerts` describe (see the [module docs](self)), ordered by
/// start time, then component.
pub fn hangs(alerts: &[Alert]) -> Vec<Hang> {
    walk(alerts).into_iter().map(|(hang, _)| hang).collect()
}

/// The hangs `alerts` describe, each with the positions in `alerts` of the
/// alerts that are about it (in file order), ordered as [`hangs`] orders
/// them.
fn walk(alerts: &[Alert]) -> Vec<(Hang, Vec<usize>)> {
    let mut open: BTreeMap<&ComponentId, (Hang, Vec<usize>)> = BTreeMap::new();
    let mut done = Vec::new();
    for (n, alert) in alerts.iter().enumerate() {
        let component = &alert.component;
        match alert.kind {
            AlertKind::Transient => {
                done.extend(open.remove(component));
                open.insert(component, (Hang::new(alert, HangLevel::Transient), vec![n]));
            }
            AlertKind::Permanent => match open.get_mut(component) {
                Some((hang, members)) if hang.level == HangLevel::Transient => {
                    hang.update(alert, HangLevel::Permanent);
                    members.push(n);
                }
                _ => {
                    done.extend(open.remove(component));
                    open.insert(component, (Hang::new(alert, HangLevel::Permanent), vec![n]));
                }
            },
            AlertKind::Ended { worst } => {
                let (mut hang, mut members) = open
                    .remove(component)
                    .unwrap_or_else(|| (Hang::new(alert, worst), Vec::new()));
                hang.update(alert, worst);
                hang.duration = alert.duration;
                hang.start = activity_start(alert);
                hang.ended = true;
                members.push(n);
                done.push((hang, members));
            }
            AlertKind::ThreadExited => done.extend(open.remove(component)),
            // The stack of an alert that left without it: onto its hang, open
            // or ended, found by its start.
            AlertKind::Stack { .. } => {
                let Some(stack) = &alert.stack else {
                    continue;
                };
                let same = |(hang, _): &&mut (Hang, Vec<usize>)| {
                    &hang.component == component && hang.started_ns == alert.started_ns
                };
                let found = open
                    .get_mut(component)
                    .filter(|(hang, _)| hang.started_ns == alert.started_ns)
                    .or_else(|| done.iter_mut().rev().find(same));
                if let Some((hang, members)) = found {
                    hang.stack = Some(stack.clone());
                    members.push(n);
                }
            }
            // A kind newer than this walk is about no hang it knows of.
            _ => {}
        }
    }
    done.extend(open.into_values());
    done.sort_by(|(a, _), (b, _)| (a.start, &a.component).cmp(&(b.start, &b.component)));
    done
}

/// Each stack the alerts carry, with its alert, once per hang and level: a
/// `stack` alert completes an earlier alert of the same hang (the same
/// component and start) and level, which then counts with the later stack
/// only; of several, the last one counts.
pub fn stacks_of(alerts: &[Alert]) -> impl Iterator<Item = (&Alert, &Stack)> {
    counted(alerts).map(move |(n, stack)| (&alerts[n], stack))
}

/// [`stacks_of`], with each alert's position in `alerts`.
fn counted(alerts: &[Alert]) -> impl Iterator<Item = (usize, &Stack)> {
    fn key(alert: &Alert) -> Option<(&ComponentId, u64, HangLevel)> {
        let level = match alert.kind {
            AlertKind::Transient => HangLevel::Transient,
            AlertKind::Permanent => HangLevel::Permanent,
            AlertKind::Stack { of } => of,
            // `Ended`, `ThreadExited` and kinds newer than this have no
            // stack of their own to count.
            _ => return None,
        };
        Some((&alert.component, alert.started_ns?, level))
    }
    let mut last = BTreeMap::new();
    for (n, alert) in alerts.iter().enumerate() {
        if let (Some(key), Some(_)) = (key(alert), &alert.stack) {
            last.insert(key, n);
        }
    }
    alerts.iter().enumerate().filter_map(move |(n, alert)| {
        let stack = alert.stack.as_ref()?;
        match key(alert) {
            Some(key) if last.get(&key) != Some(&n) => None,
            _ => Some((n, stack)),
        }
    })
}

/// Each of [`stacks_of`] the alerts, with its alert and the hang time it
/// stands for: a hang's duration is shared among the stacks its alerts
/// carry, in the order they were taken (by the alert's `duration`). A stack
/// stands from its alert until the next stack of the same hang, the first
/// one also from the hang's start, the last one until the hang's end (its
/// `ended` alert, or its latest alert if it never ended); so the times of a
/// hang's stacks add up to its duration. A stack that belongs to no hang
/// the alerts describe stands for its alert's own `duration`. In file order.
pub fn weighted_stacks(alerts: &[Alert]) -> Vec<(&Alert, &Stack, Duration)> {
    let counted: BTreeMap<usize, &Stack> = counted(alerts).collect();
    let mut weights: BTreeMap<usize, Duration> = BTreeMap::new();
    for (hang, members) in walk(alerts) {
        let mut taken: Vec<(Duration, usize)> = members
            .into_iter()
            .filter(|n| counted.contains_key(n))
            .map(|n| (alerts[n].duration, n))
            .collect();
        taken.sort();
        for (i, &(at, n)) in taken.iter().enumerate() {
            let from = if i == 0 { Duration::ZERO } else { at };
            let until = taken.get(i + 1).map_or(hang.duration, |&(next, _)| next);
            weights.insert(n, until.saturating_sub(from));
        }
    }
    counted
        .into_iter()
        .map(|(n, stack)| {
            let alert = &alerts[n];
            (
                alert,
                stack,
                weights.get(&n).copied().unwrap_or(alert.duration),
            )
        })
        .collect()
}

/// A profile of what `alerts` say: one thread per component that raised an
/// alert (in component order, with tid 0, since alerts carry none), a sample
/// at each of [`stacks_of`] the alerts, and a hang marker for each of
/// [`hangs`]. The profile starts at the earliest hang start (the Unix epoch
/// if there are no alerts), and its sampling interval is zero: nobody asked
/// for one.
pub fn profile_from_alerts(alerts: &[Alert]) -> Profile {
    let start = alerts
        .iter()
        .map(activity_start)
        .min()
        .unwrap_or(UNIX_EPOCH);
    let end = alerts.iter().map(|a| a.time).max().unwrap_or(start);
    let since_start = |time: SystemTime| time.duration_since(start).unwrap_or_default();

    let mut profile = Profile::new(start, Duration::ZERO);
    profile.duration = since_start(end);
    let mut threads: BTreeMap<&ComponentId, ProfiledThread> = BTreeMap::new();
    let mut stacks = stacks_of(alerts).peekable();
    for (n, alert) in alerts.iter().enumerate() {
        let thread = threads
            .entry(&alert.component)
            .or_insert_with(|| ProfiledThread {
                component: alert.component.clone(),
                thread: None,
                tid: 0,
                samples: Vec::new(),
                hangs: Vec::new(),
            });
        if alert.thread.is_some() {
            thread.thread = alert.thread.as_deref().map(str::to_owned);
        }
        if let Some(stack) = stacks
            .next_if(|(counted, _)| std::ptr::eq(*counted, &alerts[n]))
            .map(|(_, stack)| stack)
        {
            thread
                .samples
                .push(profile.sample(since_start(alert.time), stack));
        }
    }
    for hang in hangs(alerts) {
        if let Some(thread) = threads.get_mut(&hang.component) {
            thread.hangs.push(HangMarker {
                start: since_start(hang.start),
                duration: hang.duration,
                level: hang.level,
                annotation: hang.annotation,
                ended: hang.ended,
            });
        }
    }
    profile.threads = threads.into_values().collect();
    for thread in &mut profile.threads {
        thread.samples.sort_by_key(|sample| sample.time);
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of one frame, in function `name`.
    fn stack(name: &str) -> Stack {
        Stack {
            frames: vec![hangwatch::Frame {
                function: Some(name.into()),
                ..Default::default()
            }],
            ..Stack::default()
        }
    }

    fn alert(component: u64, kind: AlertKind, at_ms: u64, duration_ms: u64) -> Alert {
        Alert::new(
            ComponentId::new("c", component),
            kind,
            Duration::from_millis(duration_ms),
            UNIX_EPOCH + Duration::from_millis(at_ms),
        )
    }

    const ENDED_P: AlertKind = AlertKind::Ended {
        worst: HangLevel::Permanent,
    };

    #[test]
    fn a_stack_that_followed_its_alert_counts_once_instead_of_the_alerts() {
        let hang = |kind, ms, name: Option<&str>| {
            let mut alert = alert(1, kind, ms, ms);
            alert.started_ns = Some(7);
            alert.stack = name.map(stack);
            alert
        };
        let followed = AlertKind::Stack {
            of: HangLevel::Permanent,
        };
        let alerts = [
            hang(AlertKind::Transient, 100, Some("transient")),
            hang(AlertKind::Permanent, 1000, Some("raw")),
            hang(followed, 1000, Some("named")),
            hang(ENDED_P, 1500, None),
            // Another hang of the same component: its own stacks count.
            {
                let mut alert = hang(AlertKind::Permanent, 3000, Some("next"));
                alert.started_ns = Some(9);
                alert
            },
        ];
        let counted: Vec<&str> = stacks_of(&alerts)
            .map(|(_, stack)| stack.frames[0].function.as_deref().unwrap())
            .collect();
        assert_eq!(counted, ["transient", "named", "next"]);
        let profile = profile_from_alerts(&alerts);
        assert_eq!(profile.threads[0].samples.len(), 3);
        let lines =
            crate::collapsed::from_alerts(&alerts, crate::collapsed::Prefix::None).to_string();
        assert!(!lines.contains("raw"), "{lines}");
        assert!(lines.contains("named 500"), "{lines}");
    }

    #[test]
    fn interleaved_components_are_told_apart() {
        let alerts = [
            alert(1, AlertKind::Transient, 1150, 150),
            alert(2, AlertKind::Transient, 1200, 150),
            alert(1, AlertKind::Permanent, 2000, 1000),
            alert(
                2,
                AlertKind::Ended {
                    worst: HangLevel::Transient,
                },
                1300,
                250,
            ),
            alert(1, ENDED_P, 2600, 1600),
        ];
        let hangs = hangs(&alerts);
        assert_eq!(hangs.len(), 2);
        assert_eq!(hangs[0].component.number, 1);
        assert_eq!(hangs[0].level, HangLevel::Permanent);
        assert_eq!(hangs[0].duration, Duration::from_millis(1600));
        assert_eq!(hangs[1].component.number, 2);
        assert_eq!(hangs[1].level, HangLevel::Transient);
        assert!(hangs.iter().all(|h| h.ended));
    }

    #[test]
    fn missing_alerts_leave_ongoing_or_partial_hangs() {
        let alerts = [
            // Ended without the alerts before it.
            alert(1, ENDED_P, 5000, 1500),
            // Permanent with no ended, then a new activity's transient.
            alert(1, AlertKind::Permanent, 7000, 1000),
            alert(1, AlertKind::Transient, 9000, 150),
            // Closed by the thread's exit.
            alert(1, AlertKind::ThreadExited, 9500, 0),
            // Still open at the end.
            alert(2, AlertKind::Permanent, 9900, 1000),
        ];
        let hangs = hangs(&alerts);
        let summary: Vec<_> = hangs
            .iter()
            .map(|h| (h.component.number, h.level, h.duration.as_millis(), h.ended))
            .collect();
        assert_eq!(
            summary,
            [
                (1, HangLevel::Permanent, 1500, true),
                (1, HangLevel::Permanent, 1000, false),
                (1, HangLevel::Transient, 150, false),
                (2, HangLevel::Permanent, 1000, false),
            ]
        );
    }

    #[test]
    fn the_profile_starts_at_the_earliest_hang() {
        let mut stacked = alert(1, AlertKind::Permanent, 2000, 1000);
        stacked.stack = Some(Stack::default());
        let alerts = [
            alert(1, AlertKind::Transient, 1150, 150),
            stacked,
            alert(1, ENDED_P, 2600, 1600),
        ];
        let profile = profile_from_alerts(&alerts);
        assert_eq!(profile.start, UNIX_EPOCH + Duration::from_millis(1000));
        assert_eq!(profile.duration, Duration::from_millis(1600));
        assert_eq!(profile.threads.len(), 1);
        let thread = &profile.threads[0];
        assert_eq!(thread.samples.len(), 1);
        assert_eq!(thread.samples[0].time, Duration::from_millis(1000));
        assert_eq!(thread.hangs.len(), 1);
        assert_eq!(thread.hangs[0].start, Duration::ZERO);
        assert_eq!(thread.hangs[0].duration, Duration::from_millis(1600));
    }

    #[test]
    fn a_hangs_duration_is_shared_among_its_stacks() {
        let hang = |component, kind, ms, name: Option<&str>| {
            let mut alert = alert(component, kind, 1000 + ms, ms);
            alert.started_ns = Some(7);
            alert.stack = name.map(stack);
            alert
        };
        let followed = AlertKind::Stack {
            of: HangLevel::Permanent,
        };
        let alerts = [
            hang(1, AlertKind::Transient, 150, Some("first")),
            hang(1, AlertKind::Permanent, 1000, Some("raw")),
            hang(2, AlertKind::Permanent, 1000, Some("ongoing")),
            hang(1, followed, 1000, Some("named")),
            hang(1, ENDED_P, 1600, None),
            // A stack whose hang the alerts do not describe: its own time.
            {
                let mut alert = alert(3, AlertKind::ThreadExited, 5000, 40);
                alert.stack = Some(stack("alone"));
                alert
            },
        ];
        let weights: Vec<(&str, u128)> = weighted_stacks(&alerts)
            .into_iter()
            .map(|(_, stack, weight)| {
                let name = stack.frames[0].function.as_deref().unwrap();
                (name, weight.as_millis())
            })
            .collect();
        assert_eq!(
            weights,
            [
                // From the hang's start to the next stack; then to its end.
                ("first", 1000),
                ("ongoing", 1000),
                ("named", 600),
                ("alone", 40),
            ]
        );
    }
}

/// One process of an export of several (the Firefox Profiler profile, the
/// trace): its name, its pid (0 if not known) and its profile, given or made
/// from its alerts ([`profile_from_alerts`]).
#[derive(Clone, Debug)]
pub(crate) struct Process<'a> {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) profile: Cow<'a, Profile>,
}

impl<'a> Process<'a> {
    pub(crate) fn of_profile(name: impl Into<String>, pid: u32, profile: &'a Profile) -> Self {
        Process {
            name: name.into(),
            pid,
            profile: Cow::Borrowed(profile),
        }
    }

    pub(crate) fn of_alerts(name: impl Into<String>, pid: u32, alerts: &[Alert]) -> Self {
        Process {
            name: name.into(),
            pid,
            profile: Cow::Owned(profile_from_alerts(alerts)),
        }
    }
}
