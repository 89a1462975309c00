//! Looks at one component with time stepped by hand: a test clock of one
//! millisecond per stamp, every `now` passed in, the component's side played
//! by the very calls `Handle` makes on its cell. No thread, no sleep, no wall
//! clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::*;
use crate::annotation::{Annotation, LabelCache, LabelId};
use crate::component::Timeouts;
use crate::monitor::pauses::Verdict;
use crate::monitor::AlertSink;
use crate::schedule::Schedule;

/// Nanoseconds per stamp: one stamp is a millisecond.
const MS: f64 = 1_000_000.0;
const TRANSIENT: u64 = 100;
const PERMANENT: u64 = 300;
/// How far past its deadline an alert may be raised and not be late.
const LATE_AFTER: u64 = 20;
const KEY: u64 = 7;

/// One registered component, the monitor's state around it, and the alerts
/// that left.
struct Rig {
    clock: Clock,
    pauses: Pauses,
    components: Components,
    outbox: Outbox,
    alerts: Receiver<Alert>,
    cell: Arc<ActivityCell>,
    label: LabelId,
    /// The component's previous word, as `Handle` keeps it.
    last: u64,
}

/// The registration of component `key` ("render", on "render-thread")
/// with a transient timeout of 100 ms and a permanent one of 300 ms.
pub(crate) fn registration(
    key: u64,
    cell: Arc<ActivityCell>,
    stack_target: Option<Result<Arc<SampleTarget>, NoStack>>,
) -> Registration {
    Registration {
        key,
        id: ComponentId::new("render", key),
        cell,
        timeouts: Timeouts::new(
            Duration::from_millis(TRANSIENT),
            Duration::from_millis(PERMANENT),
        )
        .checked()
        .expect("valid timeouts"),
        exit_signal: None,
        thread: Some("render-thread".to_owned()),
        stack_target,
    }
}

impl Rig {
    fn new() -> Rig {
        let clock = Clock::with_ns_per_stamp(MS);
        let (sender, alerts) = crossbeam_channel::bounded(64);
        let mut outbox = Outbox::new(AlertSink::new(sender, alerts.clone()), None);
        outbox.add(KEY);
        let cell = Arc::new(ActivityCell::default());
        let mut components = Components::default();
        components.add(registration(KEY, cell.clone(), None), &clock, false);
        Rig {
            clock,
            pauses: Pauses::new(LATE_AFTER),
            components,
            outbox,
            alerts,
            cell,
            label: LabelCache::default().id_of(Annotation::from("paint")),
            last: 0,
        }
    }

    /// The component starts an activity at `now`, as `notify_activity`
    /// does; returns whether it would ring for the end of a hang.
    fn notify_activity(&mut self, now: u64) -> bool {
        let word = cell::active_word(now, self.label);
        let last = std::mem::replace(&mut self.last, word);
        // A monitor that promised to look at once is never woken for a
        // deadline: what this returns is whether a hang's end wakes it.
        let schedule = Schedule::new(true);
        schedule.promise(0);
        schedule.publish_activity(&self.cell, last, word, now, TRANSIENT)
    }

    /// The component goes back to waiting at `now`, as `notify_wait` does.
    fn notify_wait(&mut self, now: u64) -> bool {
        let last = self.last;
        self.last = cell::waiting_word(last);
        self.cell.publish_wait(last, || now)
    }

    /// The monitor looks at `now`.
    fn look(&mut self, now: u64) -> Look {
        let at = LookAt {
            now,
            pauses: &self.pauses,
            clock: &self.clock,
            late_after: LATE_AFTER,
        };
        let component = self.components.iter_mut().next().expect("registered");
        component.look(&at, &mut self.outbox)
    }

    /// The alerts that left since the previous call.
    fn sent(&self) -> Vec<Alert> {
        self.alerts.try_iter().collect()
    }

    fn stats(&self, now: u64) -> ComponentStats {
        let component = self.components.iter().next().expect("registered");
        component.stats(now, &self.pauses, &self.clock)
    }
}

fn ms(stamps: u64) -> Duration {
    Duration::from_millis(stamps)
}

/// The kind, length and lateness of each alert.
fn summary(alerts: &[Alert]) -> Vec<(AlertKind, Duration, bool)> {
    alerts
        .iter()
        .map(|alert| (alert.kind, alert.duration, alert.late))
        .collect()
}

#[test]
fn a_busy_component_raises_transient_then_permanent_once_each_then_ended_with_its_length() {
    let mut rig = Rig::new();
    rig.notify_activity(1_000);
    let first = rig.look(1_000);
    assert!(first.changed);
    assert_eq!(first.deadline, Some(1_000 + TRANSIENT));
    assert_eq!(first.active_since, Some(1_000));
    assert!(rig.sent().is_empty());

    let at_transient = rig.look(1_100);
    let alerts = rig.sent();
    assert_eq!(summary(&alerts), [(AlertKind::Transient, ms(100), false)]);
    assert_eq!(alerts[0].started_ns, Some(1_000_000_000));
    assert_eq!(alerts[0].raised_ns, 1_100_000_000);
    assert_eq!(alerts[0].annotation.as_deref(), Some("paint"));
    assert_eq!(alerts[0].no_stack, None, "transient alerts carry no stack");
    assert_eq!(at_transient.deadline, Some(1_000 + PERMANENT));

    rig.look(1_200);
    assert!(rig.sent().is_empty(), "the transient level is raised once");

    let at_permanent = rig.look(1_300);
    let alerts = rig.sent();
    assert_eq!(summary(&alerts), [(AlertKind::Permanent, ms(300), false)]);
    assert!(matches!(alerts[0].no_stack, Some(NoStack::Disabled(_))));
    assert_eq!(
        at_permanent.deadline,
        Some(1_300 + TRANSIENT),
        "nothing more to raise, but the end is still looked for"
    );

    rig.look(1_350);
    assert!(rig.sent().is_empty(), "the permanent level is raised once");

    assert!(
        rig.notify_wait(1_400),
        "the end of an alerted hang wakes the monitor"
    );
    let after = rig.look(1_450);
    assert_eq!(after.deadline, None);
    let ended = AlertKind::Ended {
        worst: HangLevel::Permanent,
    };
    let alerts = rig.sent();
    assert_eq!(summary(&alerts), [(ended, ms(400), false)]);
    assert_eq!(alerts[0].started_ns, Some(1_000_000_000));

    let stats = rig.stats(1_450);
    assert_eq!(
        (
            stats.transient_alerts,
            stats.permanent_alerts,
            stats.ended_hangs
        ),
        (1, 1, 1)
    );
    assert_eq!(stats.longest_hang, ms(400));
    assert!(matches!(stats.state, ComponentState::Waiting));
}

#[test]
fn a_new_activity_ends_the_hang_and_starts_afresh() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.look(0);
    rig.look(100);
    assert_eq!(
        summary(&rig.sent()),
        [(AlertKind::Transient, ms(100), false)]
    );

    assert!(rig.notify_activity(150));
    let look = rig.look(160);
    let ended = AlertKind::Ended {
        worst: HangLevel::Transient,
    };
    assert_eq!(summary(&rig.sent()), [(ended, ms(150), false)]);
    assert_eq!(look.active_since, Some(150));
    assert_eq!(look.deadline, Some(150 + TRANSIENT));

    rig.look(250);
    assert_eq!(
        summary(&rig.sent()),
        [(AlertKind::Transient, ms(100), false)],
        "the new activity is timed from its own start"
    );
}

#[test]
fn a_short_activity_raises_nothing_and_its_end_wakes_nobody() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.look(0);
    assert!(
        !rig.notify_wait(60),
        "a watched activity's end is recorded quietly"
    );
    let look = rig.look(100);
    assert!(look.changed);
    assert_eq!((look.deadline, look.active_since), (None, None));
    assert!(rig.sent().is_empty());
    assert!(matches!(rig.stats(100).state, ComponentState::Waiting));
}

#[test]
fn a_late_look_marks_its_alerts_late_and_raises_every_level_due() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.look(0);
    // Due at 100; the monitor's thread waited for a CPU until 400.
    let look = rig.look(400);
    assert_eq!(
        summary(&rig.sent()),
        [
            (AlertKind::Transient, ms(400), true),
            (AlertKind::Permanent, ms(400), true),
        ]
    );
    assert_eq!(look.deadline, Some(400 + TRANSIENT));
}

#[test]
fn the_end_of_a_hang_past_its_last_level_is_found_by_a_look_if_its_ring_was_lost() {
    // The wake rule's one gap (found by the loom model in schedule.rs): the
    // component reads the monitor's older watch mark, the monitor's late
    // look then stores the alert mark and raises both levels at once, and
    // only after that does the component publish its wait, without a ring.
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.look(50);
    let last = rig.last;
    assert!(
        !rig.cell.record_end(last, || 380),
        "a watch mark times the end but does not ring"
    );
    let look = rig.look(400);
    assert_eq!(rig.sent().len(), 2, "transient and permanent, late");
    rig.cell
        .state
        .store(cell::waiting_word(last), Ordering::Release);
    let next = look
        .deadline
        .expect("a hang past its last level is still looked at");
    assert!(next <= 400 + TRANSIENT);
    rig.look(next);
    assert_eq!(
        summary(&rig.sent()),
        [(
            AlertKind::Ended {
                worst: HangLevel::Permanent
            },
            ms(380),
            false
        )],
        "the end the component timed, found without a ring"
    );
}

#[test]
fn a_look_within_the_lateness_allowance_is_on_time() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.look(0);
    rig.look(TRANSIENT + LATE_AFTER);
    assert_eq!(
        summary(&rig.sent()),
        [(AlertKind::Transient, ms(TRANSIENT + LATE_AFTER), false)]
    );
}

#[test]
fn a_hang_over_before_a_late_look_raises_every_level_its_length_earned_then_ended() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.look(0);
    // Over at 350, seen only at 500: its length is the end it recorded.
    assert!(!rig.notify_wait(350));
    rig.look(500);
    let alerts = rig.sent();
    let ended = AlertKind::Ended {
        worst: HangLevel::Permanent,
    };
    assert_eq!(
        summary(&alerts),
        [
            (AlertKind::Transient, ms(350), true),
            (AlertKind::Permanent, ms(350), true),
            (ended, ms(350), false),
        ]
    );
    assert_eq!(alerts[0].no_stack, None);
    assert_eq!(alerts[1].no_stack, Some(NoStack::HangEnded));
}

#[test]
fn an_activity_no_look_saw_leaves_no_trace() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.notify_wait(500);
    rig.look(600);
    assert!(rig.sent().is_empty());
}

#[test]
fn time_the_process_was_paused_is_not_hang_time() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.look(0);
    // The look planned for 100 came at 1000, and the monitor could not run.
    assert_eq!(
        rig.pauses.observe(0, Some(100), 1_000, None),
        Verdict::Paused
    );
    let look = rig.look(1_000);
    assert!(rig.sent().is_empty());
    assert_eq!(
        look.deadline,
        Some(1_000 + TRANSIENT),
        "deadlines move back"
    );
    rig.look(1_100);
    assert_eq!(
        summary(&rig.sent()),
        [(AlertKind::Transient, ms(100), false)]
    );
}

#[test]
fn an_activity_under_way_when_checks_resume_is_never_reported() {
    let mut rig = Rig::new();
    rig.notify_activity(0);
    rig.components.iter_mut().for_each(Component::resume_checks);
    let look = rig.look(1_000);
    assert_eq!(look.deadline, None);
    assert!(rig.sent().is_empty());
    rig.notify_activity(1_000);
    assert_eq!(rig.look(1_000).deadline, Some(1_000 + TRANSIENT));
}

/// Progress reads ten times per transient timeout.
const PROGRESS_LOOK: u64 = TRANSIENT / PROGRESS_LOOKS_PER_TRANSIENT;

/// A rig whose component reports the work it has done in the returned count.
fn rig_with_progress() -> (Rig, Arc<AtomicU64>) {
    let mut rig = Rig::new();
    let done = Arc::new(AtomicU64::new(0));
    let probe = done.clone();
    rig.components
        .watch_progress(KEY, Box::new(move || probe.load(Ordering::Relaxed)));
    (rig, done)
}

#[test]
fn a_moving_progress_count_keeps_a_busy_component_silent() {
    let (mut rig, done) = rig_with_progress();
    rig.notify_activity(0);
    for now in (0..=2_000).step_by(PROGRESS_LOOK as usize) {
        done.fetch_add(1, Ordering::Relaxed);
        let look = rig.look(now);
        assert_eq!(look.deadline, Some(now + PROGRESS_LOOK));
        assert_eq!(look.active_since, Some(now), "each look saw it move");
    }
    assert!(rig.sent().is_empty());
    assert!(matches!(
        rig.stats(2_000).state,
        ComponentState::Active { .. }
    ));
}

#[test]
fn a_stall_inside_a_busy_activity_is_timed_from_the_looks_around_it() {
    let (mut rig, done) = rig_with_progress();
    rig.notify_activity(0);
    // Work moves at every look up to 200, then stops.
    for now in (0..=200).step_by(PROGRESS_LOOK as usize) {
        done.fetch_add(1, Ordering::Relaxed);
        rig.look(now);
    }
    for now in (210..300).step_by(PROGRESS_LOOK as usize) {
        rig.look(now);
    }
    assert!(rig.sent().is_empty());
    rig.look(300);
    let alerts = rig.sent();
    assert_eq!(summary(&alerts), [(AlertKind::Transient, ms(100), false)]);
    assert_eq!(
        alerts[0].started_ns,
        Some(200_000_000),
        "the stall began at the last look that saw the count move"
    );
    assert_eq!(rig.cell.alerted.load(Ordering::Relaxed), rig.last);

    rig.look(340);
    done.fetch_add(1, Ordering::Relaxed);
    let look = rig.look(350);
    let ended = AlertKind::Ended {
        worst: HangLevel::Transient,
    };
    assert_eq!(
        summary(&rig.sent()),
        [(ended, ms(150), false)],
        "the stall ended at the look that saw the count move again"
    );
    assert_eq!(look.active_since, Some(350));
    assert_eq!(
        rig.cell.alerted.load(Ordering::Relaxed),
        cell::watch_mark(rig.last),
        "busy again: its end need not wake the monitor"
    );
    assert!(!rig.notify_wait(360));
    rig.look(370);
    assert!(rig.sent().is_empty());
}

#[test]
fn work_done_before_the_first_look_starts_the_stretch_at_that_look() {
    let (mut rig, done) = rig_with_progress();
    rig.notify_activity(0);
    done.store(5, Ordering::Relaxed);
    let look = rig.look(500);
    assert!(rig.sent().is_empty());
    assert_eq!(look.active_since, Some(500));
    rig.look(600);
    assert_eq!(
        summary(&rig.sent()),
        [(AlertKind::Transient, ms(100), false)]
    );
}
