//! Matching alerts to injected hangs, for the demo's self-check and the
//! soak's figures: every injected hang found in the right process and
//! component, at the right level, lasting what was injected (±20 %), with
//! its function in the stack; no alert for work that did not hang; and how
//! late each hang was reported.
//!
//! The hub feeds a [`Check`] as things happen: each child process and its
//! plan ([`Check::process`]), when the child's plan clock started
//! ([`Check::started`]), each alert with the time it reached the hub
//! ([`Check::alert`]), and each kill ([`Check::killed`]); [`Check::finish`]
//! then judges.
//!
//! - **Which hang an alert is about.** The activity an alert is about began
//!   at `time - duration` on the child's wall clock, the clock its start line
//!   is on too. The alert belongs to the hang of its process, component and
//!   annotation planned to start last before then (with [`EARLY`] of slack).
//!   The hangs of one loop are far apart (`plan.rs`), so a loop running
//!   late still finds its own hang. An alert that belongs to none is false.
//! - **Kills.** A killed process's hang that was planned to end
//!   [`IN_FLIGHT`] before the kill must have all its alerts; one planned to
//!   start after the kill never began; one in between is judged like any
//!   other if its `ended` alert reached the hub, and otherwise was cut
//!   short: whatever alerts reached the hub are its own, and it is neither
//!   detected nor missed.
//! - **Latency.** A detected hang's detection latency is the time its
//!   transient alert reached the hub minus its transient deadline (the start
//!   of its activity plus the transient timeout), both on the wall clock.

use std::fmt;
use std::time::{Duration, SystemTime};

use hangwatch::{AlertKind, HangLevel, NoStack};
use hangwatch_hub::ChildAlert;

use crate::child::SYMBOLICATE_DEADLINE;
use crate::plan::InjectedHang;
use hangwatch::Timeouts;

/// How much earlier than planned a hang may seem to start: the child's
/// start line and its alerts' times are read from the same clock, a few
/// microseconds apart at most; this is ample.
pub const EARLY: Duration = Duration::from_millis(250);

/// How long before a kill a hang must have ended for all its alerts to be
/// due at the hub: an alert waits up to the symbolication deadline for its
/// stack, plus time for a loop running late, the capture and the trip.
pub const IN_FLIGHT: Duration = SYMBOLICATE_DEADLINE.saturating_add(Duration::from_secs(2));

/// The counts of the demo's last line, and the soak's.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Hangs that had to be reported in full.
    pub injected: usize,
    /// Of those, the ones reported in full: right process, component, alerts and length.
    pub detected: usize,
    /// Hangs of killed processes that the kill interrupted.
    pub cut_short: usize,
    /// Alerts that belong to no injected hang.
    pub false_alerts: usize,
    /// Detected hangs with an alert whose stack does not name the hang's function.
    pub missing_stacks: usize,
    /// How late each detected hang was reported.
    pub detections: Vec<Detection>,
    /// What went wrong, one line each.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether every hang was detected, with no false alert and no missing
    /// stack.
    pub fn ok(&self) -> bool {
        self.injected == self.detected && self.false_alerts == 0 && self.missing_stacks == 0
    }

    /// Hangs that had to be reported in full and were not.
    pub fn missed(&self) -> usize {
        self.injected - self.detected
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "demo: {} injected, {} detected, {} false alerts, {} missing stacks",
            self.injected, self.detected, self.false_alerts, self.missing_stacks
        )
    }
}

/// How late a detected hang was reported.
#[derive(Debug, PartialEq)]
pub struct Detection {
    /// Its process, and its child's role.
    pub pid: u32,
    /// Its child's role.
    pub index: u32,
    /// The event loop that hung.
    pub component: &'static str,
    /// When it was planned to start, on its process's plan clock.
    pub at: Duration,
    /// From its transient deadline until its transient alert reached the
    /// hub.
    pub latency: Duration,
}

/// A child process as the check knows it.
struct Process {
    pid: u32,
    index: u32,
    hangs: Vec<InjectedHang>,
    /// When its plan's clock started, once it said so.
    started: Option<SystemTime>,
    killed: Option<SystemTime>,
}

/// What became of a planned hang.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// It ran its course: all its alerts are due.
    Due,
    /// A kill interrupted it.
    CutShort,
    /// It was planned after its process was killed.
    NeverBegan,
}

impl Process {
    /// When `hang` was planned to start, on the wall clock (none for a clock
    /// that never started, or a time past the clock's range).
    fn begins(&self, hang: &InjectedHang) -> Option<SystemTime> {
        self.started?.checked_add(hang.at)
    }

    fn fate(&self, hang: &InjectedHang) -> Fate {
        let Some(killed) = self.killed else {
            return Fate::Due;
        };
        let Some(begins) = self.begins(hang) else {
            return Fate::NeverBegan;
        };
        let settled = begins
            .checked_add(hang.length.saturating_add(IN_FLIGHT))
            .is_some_and(|settled| settled <= killed);
        if settled {
            Fate::Due
        } else if begins < killed {
            Fate::CutShort
        } else {
            Fate::NeverBegan
        }
    }

    /// The hang `alert` is about, by its position in `hangs`.
    fn hang_of(&self, alert: &ChildAlert) -> Option<usize> {
        let began = alert
            .alert
            .time
            .checked_sub(alert.alert.duration)?
            .checked_add(EARLY)?;
        let id = &alert.alert.component;
        self.hangs
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                id.name == h.component
                    && id.number == u64::from(self.index)
                    && alert.alert.annotation.as_deref() == Some(h.annotation)
                    && self.begins(h).is_some_and(|begins| begins <= began)
            })
            .max_by_key(|(_, h)| h.at)
            .map(|(i, _)| i)
    }
}

/// The check under way. See the module docs.
pub struct Check {
    timeouts: Timeouts,
    processes: Vec<Process>,
    /// Every alert, with the time it reached the hub.
    alerts: Vec<(ChildAlert, SystemTime)>,
}

impl Check {
    /// A check of children whose loops run under `timeouts`.
    pub fn new(timeouts: Timeouts) -> Check {
        Check {
            timeouts,
            processes: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// Child `index`, process `pid`, will inject `hangs`.
    pub fn process(&mut self, pid: u32, index: u32, hangs: Vec<InjectedHang>) {
        self.processes.push(Process {
            pid,
            index,
            hangs,
            started: None,
            killed: None,
        });
    }

    /// Process `pid`'s plan clock started at `at`.
    pub fn started(&mut self, pid: u32, at: SystemTime) {
        if let Some(process) = self.find(pid) {
            process.started = Some(at);
        }
    }

    /// `alert` reached the hub at `received`.
    pub fn alert(&mut self, alert: ChildAlert, received: SystemTime) {
        self.alerts.push((alert, received));
    }

    /// Process `pid` was killed at `at`.
    pub fn killed(&mut self, pid: u32, at: SystemTime) {
        if let Some(process) = self.find(pid) {
            process.killed = Some(at);
        }
    }

    fn find(&mut self, pid: u32) -> Option<&mut Process> {
        self.processes.iter_mut().find(|p| p.pid == pid)
    }

    /// Judges every planned hang and every alert.
    pub fn finish(&self) -> Outcome {
        let mut outcome = Outcome::default();
        // The alerts of each process's each hang, in the order they came.
        let mut theirs: Vec<Vec<Vec<usize>>> = self
            .processes
            .iter()
            .map(|p| vec![Vec::new(); p.hangs.len()])
            .collect();
        for (i, (alert, _)) in self.alerts.iter().enumerate() {
            let owner = self.processes.iter().enumerate().find_map(|(p, process)| {
                (process.pid == alert.child.pid)
                    .then(|| process.hang_of(alert))
                    .flatten()
                    .filter(|&h| process.fate(&process.hangs[h]) != Fate::NeverBegan)
                    .map(|h| (p, h))
            });
            match owner {
                Some((p, h)) => theirs[p][h].push(i),
                None => {
                    outcome.false_alerts += 1;
                    outcome.problems.push(format!("false alert: {alert}"));
                }
            }
        }
        for (process, theirs) in self.processes.iter().zip(&theirs) {
            if process.started.is_none() && process.killed.is_none() {
                outcome.problems.push(format!(
                    "child {} (pid {}) never said when it started",
                    process.index, process.pid
                ));
            }
            for (hang, ours) in process.hangs.iter().zip(theirs) {
                let ended = ours
                    .iter()
                    .any(|&i| matches!(self.alerts[i].0.alert.kind, AlertKind::Ended { .. }));
                match process.fate(hang) {
                    Fate::Due => self.judge(process, hang, ours, &mut outcome),
                    Fate::CutShort if ended => self.judge(process, hang, ours, &mut outcome),
                    Fate::CutShort => outcome.cut_short += 1,
                    Fate::NeverBegan => {}
                }
            }
        }
        outcome
    }

    /// Judges one hang that ran its course, given its alerts.
    fn judge(&self, process: &Process, hang: &InjectedHang, ours: &[usize], outcome: &mut Outcome) {
        outcome.injected += 1;
        let alerts: Vec<&ChildAlert> = ours.iter().map(|&i| &self.alerts[i].0).collect();
        let name = format!(
            "child {} (pid {}) {} in {} at {:.3} s",
            process.index,
            process.pid,
            hang.component,
            hang.function,
            hang.at.as_secs_f64()
        );
        // `stack` alerts complete the alerts before them: judged with them.
        let (stacks, alerts): (Vec<&ChildAlert>, Vec<&ChildAlert>) = alerts
            .into_iter()
            .partition(|a| matches!(a.alert.kind, AlertKind::Stack { .. }));
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.alert.kind).collect();
        let ended = AlertKind::Ended { worst: hang.level };
        let expected: Vec<AlertKind> = match hang.level {
            HangLevel::Transient => vec![AlertKind::Transient, ended],
            HangLevel::Permanent => vec![AlertKind::Transient, AlertKind::Permanent, ended],
        };
        if kinds != expected {
            outcome
                .problems
                .push(format!("{name}: alerts {kinds:?}, expected {expected:?}"));
            return;
        }
        let lasted = alerts
            .iter()
            .find(|a| a.alert.kind == ended)
            .map(|a| a.alert.duration)
            .unwrap_or_default();
        let (low, high) = (hang.length.mul_f64(0.8), hang.length.mul_f64(1.2));
        if lasted < low || lasted > high {
            outcome.problems.push(format!(
                "{name}: lasted {lasted:?}, injected {:?}",
                hang.length
            ));
            return;
        }
        outcome.detected += 1;
        if let Some(&first) = ours.first() {
            let (alert, received) = &self.alerts[first];
            let deadline = alert
                .alert
                .time
                .checked_sub(alert.alert.duration)
                .and_then(|began| began.checked_add(self.timeouts.transient()));
            if let Some(latency) = deadline.and_then(|d| received.duration_since(d).ok()) {
                outcome.detections.push(Detection {
                    pid: process.pid,
                    index: process.index,
                    component: hang.component,
                    at: hang.at,
                    latency,
                });
            }
        }
        let names = |alert: &ChildAlert| {
            alert.alert.stack.as_ref().is_some_and(|stack| {
                stack.frames.iter().any(|f| {
                    f.function
                        .as_deref()
                        .is_some_and(|n| n.ends_with(hang.function))
                })
            })
        };
        let unnamed = alerts.iter().filter(|a| a.alert.kind != ended).find(|a| {
            // Where no stack can be taken at all, none is missing.
            let unsupported = matches!(a.alert.no_stack, Some(NoStack::Unsupported(_)));
            // The stack may have followed the alert in its own.
            let followed = stacks.iter().any(|s| {
                matches!(
                    (s.alert.kind, a.alert.kind),
                    (
                        AlertKind::Stack {
                            of: HangLevel::Transient
                        },
                        AlertKind::Transient
                    ) | (
                        AlertKind::Stack {
                            of: HangLevel::Permanent
                        },
                        AlertKind::Permanent
                    )
                ) && names(s)
            });
            !unsupported && !names(a) && !followed
        });
        if let Some(alert) = unnamed {
            outcome.missing_stacks += 1;
            let why = alert
                .alert
                .no_stack
                .as_ref()
                .map_or_else(|| "a stack without it".to_owned(), |n| format!("{n:?}"));
            outcome.problems.push(format!(
                "{name}: a {:?} alert's stack does not name {} ({why})",
                alert.alert.kind, hang.function
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use hangwatch::{Alert, ComponentId};
    use hangwatch_hub::ChildInfo;

    use super::*;
    use crate::plan::{Mode, Script};

    const PID: u32 = 4242;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// The alerts `hang` raises when it runs `lag` late and lasts `length`,
    /// each stamped as received `delivery` after it was raised.
    fn alerts_of(hang: &InjectedHang, lag: Duration, length: Duration) -> Vec<ChildAlert> {
        let timeouts = Mode::Soak.timeouts();
        let began = t0() + hang.at + lag;
        let mut raised = vec![(AlertKind::Transient, timeouts.transient())];
        if hang.level == HangLevel::Permanent {
            raised.push((AlertKind::Permanent, timeouts.permanent()));
        }
        raised.push((AlertKind::Ended { worst: hang.level }, length));
        raised
            .into_iter()
            .map(|(kind, busy)| ChildAlert {
                child: ChildInfo {
                    pid: PID,
                    name: "child-1".into(),
                    program: "hangwatch".into(),
                },
                alert: {
                    let mut alert = Alert::new(
                        ComponentId::new(hang.component, 1),
                        kind,
                        busy,
                        began + busy,
                    );
                    alert.annotation = Some(Cow::Borrowed(hang.annotation));
                    alert.thread = Some(hang.component.into());
                    alert.no_stack = Some(NoStack::Unsupported("test".into()));
                    alert
                },
            })
            .collect()
    }

    fn soak_plan() -> Vec<InjectedHang> {
        Script {
            mode: Mode::Soak,
            index: 1,
            generation: 0,
            seed: 9,
            seconds: 40.0,
        }
        .hangs()
    }

    fn check_with(plan: &[InjectedHang]) -> Check {
        let mut check = Check::new(Mode::Soak.timeouts());
        check.process(PID, 1, plan.to_vec());
        check.started(PID, t0());
        check
    }

    fn feed(check: &mut Check, alerts: Vec<ChildAlert>, delivery: Duration) {
        for alert in alerts {
            let received = alert.alert.time + delivery;
            check.alert(alert, received);
        }
    }

    #[test]
    fn each_alert_finds_its_own_repeat_of_a_hang_even_when_late() {
        let plan = soak_plan();
        let mut check = check_with(&plan);
        for hang in &plan {
            // Late by up to a second: still its own hang, not the next.
            feed(
                &mut check,
                alerts_of(hang, Duration::from_millis(900), hang.length),
                Duration::from_millis(7),
            );
        }
        let outcome = check.finish();
        assert_eq!(outcome.injected, plan.len(), "{:?}", outcome.problems);
        assert_eq!(outcome.detected, plan.len(), "{:?}", outcome.problems);
        assert_eq!(outcome.false_alerts, 0);
        assert_eq!(outcome.detections.len(), plan.len());
        assert!(outcome
            .detections
            .iter()
            .zip(&plan)
            .all(|(d, h)| d.pid == PID && d.at == h.at && d.latency == Duration::from_millis(7)));
    }

    #[test]
    fn a_missing_hang_is_missed_and_an_unplanned_one_is_false() {
        let plan = soak_plan();
        let mut check = check_with(&plan);
        for hang in &plan[1..] {
            feed(
                &mut check,
                alerts_of(hang, Duration::ZERO, hang.length),
                Duration::ZERO,
            );
        }
        // The compositor never hangs; nor does anything before the plan.
        let mut stray = plan[0].clone();
        stray.component = "compositor";
        feed(
            &mut check,
            alerts_of(&stray, Duration::ZERO, stray.length),
            Duration::ZERO,
        );
        let mut early = plan[0].clone();
        early.at = Duration::ZERO;
        feed(
            &mut check,
            alerts_of(&early, Duration::ZERO, Duration::from_millis(100))[..1].to_vec(),
            Duration::ZERO,
        );
        let outcome = check.finish();
        assert_eq!(outcome.missed(), 1, "{:?}", outcome.problems);
        assert_eq!(
            outcome.false_alerts,
            alerts_of(&stray, Duration::ZERO, stray.length).len() + 1
        );
        // And a hang that lasts too long is not a detection either.
        let mut check = check_with(&plan[..1]);
        feed(
            &mut check,
            alerts_of(&plan[0], Duration::ZERO, plan[0].length * 2),
            Duration::ZERO,
        );
        assert_eq!(check.finish().missed(), 1);
    }

    #[test]
    fn a_kill_leaves_earlier_hangs_due_cuts_short_those_in_flight_and_voids_the_rest() {
        let plan = soak_plan();
        let victim = &plan[plan.len() / 2];
        // Killed halfway through `victim`, which had sent its transient alert.
        let killed = t0() + victim.at + victim.length / 2;
        let mut check = check_with(&plan);
        let (mut complete, mut withheld) = (0, false);
        for hang in &plan {
            let ends = t0() + hang.at + hang.length;
            if ends > killed {
                continue;
            }
            // One that ended shortly before the kill has its alerts still in
            // flight; the others near the kill got theirs through.
            if ends + IN_FLIGHT > killed && !withheld {
                withheld = true;
                continue;
            }
            complete += 1;
            feed(
                &mut check,
                alerts_of(hang, Duration::ZERO, hang.length),
                Duration::ZERO,
            );
        }
        feed(
            &mut check,
            alerts_of(victim, Duration::ZERO, victim.length)[..1].to_vec(),
            Duration::ZERO,
        );
        check.killed(PID, killed);
        let outcome = check.finish();
        assert!(withheld && complete > 0, "{outcome:?}");
        assert!(outcome.cut_short >= 2, "{:?}", outcome.problems);
        assert_eq!(outcome.injected, complete, "{:?}", outcome.problems);
        assert_eq!(outcome.detected, complete, "{:?}", outcome.problems);
        assert_eq!(outcome.false_alerts, 0, "{:?}", outcome.problems);
        assert!(outcome.injected + outcome.cut_short < plan.len());
    }
}
