//! The demo's self-check: every injected hang found in the right process
//! and component, at the right level, lasting what was injected (±20 %), with
//! its function in the stack; and no alert for work that did not hang.

use std::fmt;

use hangwatch::stack::NoStack;
use hangwatch::{AlertKind, HangLevel};
use hangwatch_hub::ChildAlert;

use super::plan::InjectedHang;

/// The counts of the demo's last line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub injected: usize,
    pub detected: usize,
    pub false_alerts: usize,
    pub missing_stacks: usize,
    /// What went wrong, one line each.
    pub problems: Vec<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.injected == self.detected && self.false_alerts == 0 && self.missing_stacks == 0
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

/// Checks `alerts` against the hangs each child (`(pid, index, plan)`) injected.
pub fn check(children: &[(u32, u32, Vec<InjectedHang>)], alerts: &[ChildAlert]) -> Outcome {
    let mut outcome = Outcome::default();
    let mut explained = vec![false; alerts.len()];
    for (pid, index, plan) in children {
        for hang in plan {
            outcome.injected += 1;
            let ours: Vec<usize> = (0..alerts.len())
                .filter(|&i| {
                    let alert = &alerts[i];
                    alert.child.pid == *pid
                        && alert.alert.component.name == hang.component
                        && alert.alert.component.number == u64::from(*index)
                        && alert.alert.annotation.as_deref() == Some(hang.annotation)
                })
                .collect();
            for &i in &ours {
                explained[i] = true;
            }
            let kinds: Vec<AlertKind> = ours.iter().map(|&i| alerts[i].alert.kind).collect();
            let expected: Vec<AlertKind> = match hang.level() {
                HangLevel::Transient => vec![
                    AlertKind::Transient,
                    AlertKind::Ended {
                        worst: HangLevel::Transient,
                    },
                ],
                HangLevel::Permanent => vec![
                    AlertKind::Transient,
                    AlertKind::Permanent,
                    AlertKind::Ended {
                        worst: HangLevel::Permanent,
                    },
                ],
            };
            let name = format!(
                "child {index} (pid {pid}) {} in {}",
                hang.component, hang.function
            );
            if kinds != expected {
                outcome
                    .problems
                    .push(format!("{name}: alerts {kinds:?}, expected {expected:?}"));
                continue;
            }
            let lasted = ours
                .iter()
                .find(|&&i| matches!(alerts[i].alert.kind, AlertKind::Ended { .. }))
                .map(|&i| alerts[i].alert.duration)
                .unwrap_or_default();
            let (low, high) = (hang.length.mul_f64(0.8), hang.length.mul_f64(1.2));
            if lasted < low || lasted > high {
                outcome.problems.push(format!(
                    "{name}: lasted {lasted:?}, injected {:?}",
                    hang.length
                ));
                continue;
            }
            outcome.detected += 1;
            let named = ours
                .iter()
                .filter(|&&i| {
                    alerts[i].alert.kind
                        != AlertKind::Ended {
                            worst: hang.level(),
                        }
                })
                .all(|&i| {
                    let alert = &alerts[i].alert;
                    // Where no stack can be taken at all, none is missing.
                    let unsupported = matches!(alert.no_stack, Some(NoStack::Unsupported(_)));
                    unsupported
                        || alert.stack.as_ref().is_some_and(|stack| {
                            stack.frames.iter().any(|f| {
                                f.function
                                    .as_deref()
                                    .is_some_and(|n| n.ends_with(hang.function))
                            })
                        })
                });
            if !named {
                outcome.missing_stacks += 1;
                outcome.problems.push(format!(
                    "{name}: a hang alert's stack does not name {}",
                    hang.function
                ));
            }
        }
    }
    for (alert, explained) in alerts.iter().zip(explained) {
        if !explained {
            outcome.false_alerts += 1;
            outcome.problems.push(format!("false alert: {alert}"));
        }
    }
    outcome
}
