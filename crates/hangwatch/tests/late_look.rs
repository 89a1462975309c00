//! A late look still raises every level that was due.
//!
//! The monitor's thread is held (by an exit signal that sleeps: `Control::exit`
//! calls the signals on the monitor's thread) across a hang's deadline and
//! its end. When it looks again the hang is over; it saw the activity under
//! way before it was held, so the component timed the end (cell.rs, watch
//! marks), and the look raises the levels the hang's own length reached,
//! late and without a stack (`NoStack::HangEnded`), then `Ended` with the
//! highest of them.
//!
//! - The reported case: transient 100 ms, permanent 500 ms, a 520 ms hang,
//!   an exit signal that sleeps 110 ms from 420 ms into the hang (to 530 ms).
//!   The look after it is ~30 ms past the permanent deadline, within the
//!   pause threshold. It should give Transient, Permanent, Ended{Permanent}:
//!   20 rounds of 20.
//! - A 150 ms hang (transient only) across which the monitor is held, from
//!   just after it saw the activity under way: held to 160 ms into the hang
//!   (the look is within the pause threshold of the transient deadline) and
//!   held 300 ms (the look is 200 ms late: past the threshold, so the pause
//!   rule decides). Each should give Transient (late), then
//!   Ended{Transient} of at least 150 ms.
//!
//! The hangs are blocked threads (they sleep): the process uses next to no
//! CPU while the monitor is held. Rounds run one at a time (a test running
//! beside them would change what the process's CPU time says).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{is_follow_up, ms, Puppet, GENEROUS};
use hangwatch::{
    monotonic_ns, Alert, AlertKind, ComponentId, ComponentState, Control, HangLevel, Monitor,
    NoStack, Register, Timeouts,
};
use hangwatch_test_support::eventually;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const TRANSIENT: Duration = Duration::from_millis(100);
const PERMANENT: Duration = Duration::from_millis(500);
const PAUSE_THRESHOLD: Duration = Duration::from_millis(100);

fn ns(duration: Duration) -> u64 {
    duration.as_nanos() as u64
}

fn sleep_until_ns(at: u64) {
    loop {
        let now = monotonic_ns();
        if now >= at {
            return;
        }
        std::thread::sleep(Duration::from_nanos(at - now));
    }
}

/// What the exit signal and the hung component share in one round.
#[derive(Default)]
struct Hold {
    /// When the hang began, on `monotonic_ns`'s clock, just after
    /// `notify_activity` returned (the activity's own start is no later).
    hang_started_ns: AtomicU64,
    /// Hold the monitor at least until then.
    until_ns: AtomicU64,
    /// When the exit signal began, and returned, holding the monitor.
    since_ns: AtomicU64,
    released_ns: AtomicU64,
    /// The component has gone back to waiting.
    over: Mutex<bool>,
    over_changed: Condvar,
}

impl Hold {
    /// The exit signal: hold the monitor's thread until `until_ns`, and
    /// until the hang is over.
    fn hold_monitor(&self) {
        self.since_ns.store(monotonic_ns(), Ordering::SeqCst);
        sleep_until_ns(self.until_ns.load(Ordering::SeqCst));
        let over = self.over.lock().unwrap();
        let (over, _) = self
            .over_changed
            .wait_timeout_while(over, GENEROUS, |over| !*over)
            .unwrap();
        assert!(*over, "the hang did not end while the monitor was held");
        self.released_ns.store(monotonic_ns(), Ordering::SeqCst);
    }

    fn hang_over(&self) {
        *self.over.lock().unwrap() = true;
        self.over_changed.notify_all();
    }
}

/// The component's own measure of its hang.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// From just after `notify_activity` to just before `notify_wait`: the
    /// activity was at least this long.
    inner: Duration,
    /// From just before `notify_activity` to just after `notify_wait`: it
    /// was at most this long.
    outer: Duration,
}

/// A component thread that, on command, hangs (blocked, sleeping) for a
/// given length by its own clock inside one activity.
struct HungComponent {
    commands: Option<mpsc::Sender<(Duration, Arc<Hold>)>>,
    measured: mpsc::Receiver<Measured>,
    thread: Option<JoinHandle<()>>,
}

impl HungComponent {
    fn spawn(register: &Register, id: ComponentId) -> HungComponent {
        let register = register.clone();
        let (commands, inbox) = mpsc::channel::<(Duration, Arc<Hold>)>();
        let (measured_out, measured) = mpsc::channel();
        let (registered, is_registered) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hw-late-hung".into())
            .spawn(move || {
                let handle = register
                    .register_component(id, Timeouts::new(TRANSIENT, PERMANENT), None)
                    .unwrap();
                drop(register);
                registered.send(()).unwrap();
                for (length, hold) in inbox {
                    let before = Instant::now();
                    handle.notify_activity("hang across a held monitor");
                    let started = Instant::now();
                    hold.hang_started_ns.store(monotonic_ns(), Ordering::SeqCst);
                    while let Some(left) = length.checked_sub(started.elapsed()) {
                        std::thread::sleep(left);
                    }
                    let stopped = Instant::now();
                    handle.notify_wait();
                    let after = Instant::now();
                    hold.hang_over();
                    let _ = measured_out.send(Measured {
                        inner: stopped - started,
                        outer: after - before,
                    });
                }
            })
            .unwrap();
        is_registered.recv().unwrap();
        HungComponent {
            commands: Some(commands),
            measured,
            thread: Some(thread),
        }
    }

    fn hang(&self, length: Duration, hold: &Arc<Hold>) {
        let command = (length, hold.clone());
        self.commands.as_ref().unwrap().send(command).unwrap();
    }

    fn measured(&self) -> Measured {
        self.measured.recv_timeout(GENEROUS * 2).unwrap()
    }
}

impl Drop for HungComponent {
    fn drop(&mut self) {
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One round's monitor: the hung component and a staller, whose exit signal
/// holds the monitor's thread as `hold` says.
struct Round {
    alerts: crossbeam_channel::Receiver<Alert>,
    control: Control,
    id: ComponentId,
    hung: HungComponent,
    _staller: Puppet,
    hold: Arc<Hold>,
}

impl Round {
    fn new(round: u32) -> Round {
        let Monitor {
            register,
            alerts,
            control,
            ..
        } = Monitor::builder().start().unwrap();
        let id = ComponentId::new("late-look", round.into());
        let hold = Arc::new(Hold::default());
        let hung = HungComponent::spawn(&register, id.clone());
        let signal_hold = hold.clone();
        let staller = Puppet::spawn(
            &register,
            ComponentId::new("staller", round.into()),
            ms(1000),
            ms(5000),
            Some(Box::new(move || signal_hold.hold_monitor())),
        )
        .unwrap();
        // Both registrations are taken in.
        assert_eq!(control.stats().unwrap().components.len(), 2);
        Round {
            alerts,
            control,
            id,
            hung,
            _staller: staller,
            hold,
        }
    }

    /// The next alert, which must be of `kind` about the hung component; the
    /// panic says what the monitor's figures say.
    fn expect(&self, kind: AlertKind, wait: Duration) -> Alert {
        let figures = || {
            self.control
                .stats()
                .map(|s| {
                    format!(
                        "pauses {} ({:?}), starved looks {} ({:?}), components {:?}",
                        s.pauses, s.paused, s.starved_looks, s.starved, s.components
                    )
                })
                .unwrap_or_default()
        };
        let hold = format!(
            "hang started at {} ns, monitor held from {} to {} ns",
            self.hold.hang_started_ns.load(Ordering::SeqCst),
            self.hold.since_ns.load(Ordering::SeqCst),
            self.hold.released_ns.load(Ordering::SeqCst)
        );
        let until = Instant::now() + wait;
        let next = || loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.alerts.recv_timeout(left) {
                Ok(alert) if is_follow_up(&alert) => continue,
                other => return other,
            }
        };
        match next() {
            Ok(alert) if alert.component == self.id && alert.kind == kind => alert,
            Ok(alert) => panic!(
                "expected {kind:?}, got: {alert} (raised_ns {}, started_ns {:?}); {hold}; {}",
                alert.raised_ns,
                alert.started_ns,
                figures()
            ),
            Err(_) => panic!("no {kind:?} alert within {wait:?}; {hold}; {}", figures()),
        }
    }

    /// Asks until the monitor's figures show the hung component active:
    /// a figures request is answered right after a look, so that look saw
    /// the activity under way (and marked it). `false` if it was already
    /// past a timeout or over (the round does not count).
    fn seen_active(&self) -> bool {
        let state = eventually(
            GENEROUS,
            "the activity to show as active",
            || {
                let stats = self.control.stats().unwrap();
                let component = stats.components.iter().find(|c| c.id == self.id);
                component.unwrap().state.clone()
            },
            |state| !matches!(state, ComponentState::Waiting),
        );
        matches!(state, ComponentState::Active { .. })
    }

    fn hang_started_ns(&self) -> u64 {
        eventually(
            GENEROUS,
            "the hung component to mark its hang's start",
            || self.hold.hang_started_ns.load(Ordering::SeqCst),
            |&started| started != 0,
        )
    }

    fn exit(&self) {
        let report = self.control.exit().unwrap();
        assert_eq!(report.signalled, 1, "{report:?}");
        assert!(
            report.panicked.is_empty(),
            "the exit signal panicked: {report:?}"
        );
    }
}

/// What a round found, for the summary line.
struct Found {
    reproduced: bool,
    summary: String,
}

fn millis(ns: i128) -> String {
    format!("{:.1}", ns as f64 / 1e6)
}

/// Checks the hang's alerts against the component's own measure.
fn check_ended(ended: &Alert, start_ns: u64, measured: Measured, at_least: Duration) {
    assert_eq!(ended.started_ns, Some(start_ns), "{ended}");
    assert!(
        ended.duration >= at_least,
        "the hang reached {at_least:?} by the component's clock ({measured:?}): {ended}"
    );
    let slack = ms(2) + measured.outer / 100;
    assert!(
        ended.duration + slack >= measured.inner && ended.duration <= measured.outer + slack,
        "the component measured {measured:?}, the monitor says {:?}",
        ended.duration
    );
}

/// The reported case: a 520 ms hang, the monitor held from 420 ms to 530 ms
/// into it.
fn permanent_round(round: u32) -> Found {
    let r = Round::new(round);
    r.hung.hang(ms(520), &r.hold);
    let transient = r.expect(AlertKind::Transient, GENEROUS);
    let start_ns = transient.started_ns.expect("a hang alert has a start");
    r.hold
        .until_ns
        .store(start_ns + ns(ms(530)), Ordering::SeqCst);
    sleep_until_ns(start_ns + ns(ms(420)));
    r.exit();
    let measured = r.hung.measured();
    let permanent = r.expect(AlertKind::Permanent, GENEROUS);
    let ended = r.expect(
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
        GENEROUS,
    );

    let since = r.hold.since_ns.load(Ordering::SeqCst);
    let released = r.hold.released_ns.load(Ordering::SeqCst);
    // Held across the permanent deadline (else the monitor may have looked
    // on time, and the round does not count).
    let reproduced = since < start_ns + ns(PERMANENT);
    assert_eq!(permanent.started_ns, Some(start_ns), "{permanent}");
    check_ended(&ended, start_ns, measured, PERMANENT);
    let end_ns = start_ns + ns(ended.duration);
    if permanent.raised_ns >= end_ns {
        assert!(permanent.late, "raised after the hang's end: {permanent}");
        assert_eq!(permanent.no_stack, Some(NoStack::HangEnded), "{permanent}");
    }
    if permanent.raised_ns > start_ns + ns(PERMANENT + PAUSE_THRESHOLD) {
        assert!(permanent.late, "{permanent}");
    }
    let stats = r.control.stats().unwrap();
    let rel = |t: u64| millis(t as i128 - start_ns as i128);
    Found {
        reproduced,
        summary: format!(
            "held {}..{} ms, ended at {} ms; permanent raised at {} ms (late {}, no_stack {:?}), \
             ended {:?}; pauses {}, starved looks {}",
            rel(since),
            rel(released),
            rel(end_ns),
            rel(permanent.raised_ns),
            permanent.late,
            permanent.no_stack,
            ended.duration,
            stats.pauses,
            stats.starved_looks
        ),
    }
}

/// A 150 ms hang across which the monitor is held, from just after it saw
/// the activity under way until `held_to` into the hang.
fn transient_round(round: u32, held_to: Duration) -> Found {
    let r = Round::new(round);
    r.hung.hang(ms(150), &r.hold);
    let started = r.hang_started_ns();
    if !r.seen_active() {
        let _ = r.hung.measured();
        return Found {
            reproduced: false,
            summary: "the monitor saw it past its timeout before it was held".into(),
        };
    }
    r.hold
        .until_ns
        .store(started + ns(held_to), Ordering::SeqCst);
    r.exit();
    let measured = r.hung.measured();
    let transient = r.expect(AlertKind::Transient, GENEROUS);
    let ended = r.expect(
        AlertKind::Ended {
            worst: HangLevel::Transient,
        },
        GENEROUS,
    );
    let start_ns = ended.started_ns.expect("a hang alert has a start");
    let since = r.hold.since_ns.load(Ordering::SeqCst);
    let released = r.hold.released_ns.load(Ordering::SeqCst);
    let reproduced = since < start_ns + ns(TRANSIENT);
    assert_eq!(transient.started_ns, Some(start_ns), "{transient}");
    check_ended(&ended, start_ns, measured, ms(150));
    let end_ns = start_ns + ns(ended.duration);
    if reproduced {
        assert!(transient.late, "raised after the hang's end: {transient}");
        assert!(transient.raised_ns >= end_ns, "{transient}");
    }
    let stats = r.control.stats().unwrap();
    let rel = |t: u64| millis(t as i128 - start_ns as i128);
    Found {
        reproduced,
        summary: format!(
            "held {}..{} ms, ended at {} ms; transient raised at {} ms (late {}), ended {:?}; \
             pauses {}, starved looks {}",
            rel(since),
            rel(released),
            rel(end_ns),
            rel(transient.raised_ns),
            transient.late,
            ended.duration,
            stats.pauses,
            stats.starved_looks
        ),
    }
}

/// Runs rounds until `wanted` of them reproduced the case (at most three
/// times as many rounds).
fn rounds(name: &str, wanted: u32, mut round: impl FnMut(u32) -> Found) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut reproduced = 0;
    let mut ran = 0;
    while reproduced < wanted && ran < wanted * 3 {
        ran += 1;
        let found = round(ran);
        reproduced += u32::from(found.reproduced);
        println!(
            "{name} round {ran}{}: {}",
            if found.reproduced {
                ""
            } else {
                " (did not count)"
            },
            found.summary
        );
    }
    println!("{name}: {reproduced}/{wanted} reproduced in {ran} rounds");
    assert_eq!(
        reproduced, wanted,
        "only {reproduced} of {ran} rounds held the monitor across the deadline"
    );
}

#[test]
fn a_late_look_raises_the_permanent_alert_of_a_hang_that_ended_meanwhile() {
    rounds("permanent", 20, permanent_round);
}

#[test]
fn a_monitor_held_within_the_pause_threshold_across_a_transient_hang_reports_it() {
    rounds("transient, held to 160 ms", 10, |n| {
        transient_round(n, ms(160))
    });
}

/// The look after the hold is ~210 ms past the transient deadline, past
/// the pause threshold, while the process used next to no CPU (the hang
/// sleeps): the pause rule tells this hold from a stopped process because
/// the monitor times the exit signals it runs (`monitor_stall.rs` holds it
/// the same way, for 3 s).
#[test]
fn a_monitor_held_300_ms_across_a_whole_transient_hang_reports_it() {
    rounds("transient, held 300 ms", 10, |n| {
        transient_round(n, ms(310))
    });
}
