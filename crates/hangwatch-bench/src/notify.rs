//! The cost of a notification pair on the component's thread.
//!
//! - *dense*: `notify_activity` + `notify_wait` back to back, the average over
//!   many pairs; the monitor is awake and busy, as under load;
//! - *sparse*: each 50 µs event is followed by 200 µs of sleep, so the monitor
//!   has gone back to sleep when the component becomes active; the average
//!   cost of the two calls, each timed on its own.
//!
//! The physical limit of a dense pair is two plain atomic stores; the cost
//! of the one clock read our pair makes (`quanta::Clock::raw`, the
//! time-stamp counter), alone in the same loop, is a lower bound of ours.
//!
//! Beside the Servo-style reference ([`crate::servo`]), two watchdogs from
//! crates.io, each called the way its documentation says a worker should,
//! with timeouts like ours where it has them. Neither does what our pair
//! does, so their figures are what a program would pay for them, not for
//! the same guarantees:
//!
//! - **vigil** 0.2.1: one `Vigil` per component, each with its own watcher
//!   thread. Its one call, `notify()` ("I am alive"), is a relaxed store of
//!   a constant to a state word; it reads no clock and has no wait state (a
//!   waiting component must go on notifying, or is counted stalled). The
//!   watcher sleeps its interval (here 50 ms, our transient timeout), then
//!   moves the word from alive to "tested" and, at each later interval
//!   without a notification, one step further (missed test, at risk, stall),
//!   so a stall is seen between one and two intervals after the last
//!   notification, not at a deadline, and nothing says how long it lasted.
//!   `set_interval` pre-declares a long pause, but the watcher reads it only
//!   when its current sleep ends, so it cannot stand for "waiting" without
//!   missing a hang that follows it. Activity is `notify()`, wait is
//!   nothing.
//! - **nano-watchdog** 0.1.0: one `TaskTracker` (a sharded `DashMap`) and
//!   one watchdog thread per process (`start_watchdog` works once and its
//!   thread never ends, so it is measured in a child process, see
//!   [`crate::children`]). `track(description)` copies the description and
//!   a phase into two new `String`s, reads `Instant::now()` and inserts the
//!   task into the map; dropping the returned guard removes it. The thread
//!   wakes every check interval (here 50 ms) and lists the tasks older than
//!   the stuck threshold (here 50 ms), warning again at every check while
//!   they stay (and once no task has ended for five checks, a "no progress"
//!   warning), so a stuck task is seen up to one interval late and no alert
//!   says when it ended; a task is not tied to a thread and has no stack.
//!   Activity is `track`, wait is dropping its guard.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hangwatch::{ComponentId, Monitor, Timeouts};
use nano_watchdog::{TaskGuard, TaskTracker, WatchdogConfig};
use vigil::Vigil;

use crate::servo::ServoMonitor;

/// Timeouts long enough that no measured event raises an alert.
const TRANSIENT: Duration = Duration::from_millis(50);
const PERMANENT: Duration = Duration::from_millis(500);

/// The things a pair can be made of.
trait Notifier {
    fn activity(&self);
    fn wait(&self);
}

impl Notifier for hangwatch::Handle {
    #[inline(always)]
    fn activity(&self) {
        self.notify_activity("bench event");
    }
    #[inline(always)]
    fn wait(&self) {
        self.notify_wait();
    }
}

impl Notifier for crate::servo::ServoHandle {
    #[inline(always)]
    fn activity(&self) {
        self.notify_activity("bench event");
    }
    #[inline(always)]
    fn wait(&self) {
        self.notify_wait();
    }
}

// `black_box` keeps the compiler from merging the notifications of a loop.
impl Notifier for Vigil {
    #[inline(always)]
    fn activity(&self) {
        black_box(self).notify();
    }
    #[inline(always)]
    fn wait(&self) {}
}

/// A component's side of nano-watchdog: the guard of its current task.
pub(crate) struct NanoWatchdogTask {
    tracker: &'static TaskTracker,
    current: RefCell<Option<TaskGuard<'static>>>,
}

impl NanoWatchdogTask {
    pub(crate) fn new(tracker: &'static TaskTracker) -> NanoWatchdogTask {
        NanoWatchdogTask {
            tracker,
            current: RefCell::new(None),
        }
    }
}

impl Notifier for NanoWatchdogTask {
    #[inline(always)]
    fn activity(&self) {
        // Like ours, a new activity ends the one before.
        let previous = self
            .current
            .replace(Some(self.tracker.track("bench event")));
        drop(previous);
    }
    #[inline(always)]
    fn wait(&self) {
        drop(self.current.take());
    }
}

/// The nano-watchdog configuration of the bench: a task is stuck after our
/// transient timeout, checked that often.
pub(crate) fn nano_watchdog_config() -> WatchdogConfig {
    WatchdogConfig {
        stuck_threshold: TRANSIENT,
        check_interval: TRANSIENT,
        ..WatchdogConfig::default()
    }
}

/// vigil's interval in the bench: our transient timeout.
pub(crate) const VIGIL_INTERVAL_MS: usize = TRANSIENT.as_millis() as usize;

// `black_box` keeps the compiler from merging the stores of a loop into one.
impl Notifier for AtomicU64 {
    #[inline(always)]
    fn activity(&self) {
        black_box(self).store(1, Ordering::Relaxed);
    }
    #[inline(always)]
    fn wait(&self) {
        black_box(self).store(0, Ordering::Relaxed);
    }
}

/// Nanoseconds per pair, back to back.
fn dense(notifier: &impl Notifier, pairs: u64) -> f64 {
    // Warm up the caches and the monitor's schedule.
    for _ in 0..pairs / 10 {
        notifier.activity();
        notifier.wait();
    }
    let start = Instant::now();
    for _ in 0..pairs {
        notifier.activity();
        notifier.wait();
    }
    start.elapsed().as_nanos() as f64 / pairs as f64
}

/// Nanoseconds per clock read, as our pair reads it.
fn clock_reads(reads: u64) -> f64 {
    let clock = quanta::Clock::new();
    for _ in 0..reads / 10 {
        black_box(clock.raw());
    }
    let start = Instant::now();
    for _ in 0..reads {
        black_box(clock.raw());
    }
    start.elapsed().as_nanos() as f64 / reads as f64
}

/// Nanoseconds per pair, each call timed, with 50 µs events and 200 µs
/// waits: the mean over the events of (the activity call + the wait call),
/// each timed with the time-stamp counter, less twice the mean of an empty
/// span timed the same way just before (so that the timer's own cost, warm,
/// is not counted, while the notifier's cold caches are). Both means leave
/// out the slowest 1 %: an interrupt or a preemption inside one timed call
/// would otherwise weigh more than the thousands of calls around it. (Not
/// medians: the counter's reads come in steps of several nanoseconds here.)
fn sparse(notifier: &impl Notifier, events: u32) -> f64 {
    let clock = quanta::Clock::new();
    let span = |from: u64, to: u64| clock.delta_as_nanos(from, to) as f64;
    let mut costs = Vec::with_capacity(events as usize);
    let mut empties = Vec::with_capacity(events as usize);
    for _ in 0..events {
        let before = clock.raw();
        let after = black_box(clock.raw());
        empties.push(span(before, after));
        let before = clock.raw();
        notifier.activity();
        let after = clock.raw();
        let activity = span(before, after);
        spin_for(Duration::from_micros(50));
        let before = clock.raw();
        notifier.wait();
        let after = clock.raw();
        costs.push(activity + span(before, after));
        std::thread::sleep(Duration::from_micros(200));
    }
    (trimmed_mean(&mut costs) - 2.0 * trimmed_mean(&mut empties)).max(0.0)
}

/// The mean of the fastest 99 % of `values`.
fn trimmed_mean(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let kept = &values[..values.len() - values.len() / 100];
    kept.iter().sum::<f64>() / kept.len() as f64
}

fn spin_for(span: Duration) {
    let start = Instant::now();
    while start.elapsed() < span {
        std::hint::spin_loop();
    }
}

/// Runs `measure` on a fresh thread registered with a fresh hangwatch monitor.
fn with_hangwatch<T: Send + 'static>(
    measure: impl FnOnce(&hangwatch::Handle) -> T + Send + 'static,
) -> T {
    let Monitor { register, .. } = Monitor::builder()
        .thread_name("hw-bench-notify")
        .start()
        .expect("start the monitor");
    std::thread::spawn(move || {
        let handle = register
            .register_component(
                ComponentId::new("bench", 0),
                Timeouts::new(TRANSIENT, PERMANENT),
                None,
            )
            .expect("register");
        measure(&handle)
    })
    .join()
    .expect("the measuring thread")
}

/// Runs `measure` on a fresh thread registered with a fresh reference monitor.
fn with_servo<T: Send + 'static>(
    measure: impl FnOnce(&crate::servo::ServoHandle) -> T + Send + 'static,
) -> T {
    let servo = ServoMonitor::start("servo-notify");
    let register = servo.register.clone();
    let result = std::thread::spawn(move || {
        let handle = register.register(0, TRANSIENT, PERMANENT);
        measure(&handle)
    })
    .join()
    .expect("the measuring thread");
    servo.stop();
    result
}

/// Runs `measure` on a fresh thread with a fresh vigil (and its watcher).
fn with_vigil<T: Send + 'static>(measure: impl FnOnce(&Vigil) -> T + Send + 'static) -> T {
    let (vigil, watcher) = Vigil::create(VIGIL_INTERVAL_MS, None, None, None);
    let result = std::thread::spawn(move || measure(&vigil))
        .join()
        .expect("the measuring thread");
    // The vigil was dropped with the thread's closure: its watcher ends
    // after its current sleep.
    let _ = watcher.join();
    result
}

/// Dense pairs in ns per pair; see [`crate::Report`] for each.
pub struct Dense {
    pub ours: f64,
    pub servo: f64,
    pub limit: f64,
    pub clock: f64,
    pub vigil: f64,
}

/// Sparse pairs in ns per pair.
pub struct Sparse {
    pub ours: f64,
    pub servo: f64,
    pub vigil: f64,
}

fn dense_count(quick: bool) -> u64 {
    if quick {
        5_000_000
    } else {
        50_000_000
    }
}

fn sparse_count(quick: bool) -> u32 {
    if quick {
        2_000
    } else {
        10_000
    }
}

/// Dense pairs of everything measured in this process.
pub fn dense_pairs(quick: bool) -> Dense {
    let pairs = dense_count(quick);
    let ours = with_hangwatch(move |handle| dense(handle, pairs));
    let servo = with_servo(move |handle| dense(handle, pairs / 10));
    let limit = dense(&AtomicU64::new(0), pairs);
    let clock = clock_reads(pairs);
    let vigil = with_vigil(move |vigil| dense(vigil, pairs));
    Dense {
        ours,
        servo,
        limit,
        clock,
        vigil,
    }
}

/// Sparse pairs of everything measured in this process.
pub fn sparse_pairs(quick: bool) -> Sparse {
    let events = sparse_count(quick);
    let ours = with_hangwatch(move |handle| sparse(handle, events));
    let servo = with_servo(move |handle| sparse(handle, events));
    let vigil = with_vigil(move |vigil| sparse(vigil, events));
    Sparse { ours, servo, vigil }
}

/// nano-watchdog's dense and sparse pairs, ns per pair, measured with its
/// one watchdog thread running. Starts that thread, which never ends: call
/// it in a child process of its own (`crate::children`).
pub fn nano_watchdog_pairs(quick: bool) -> (f64, f64) {
    let tracker: &'static TaskTracker = Box::leak(Box::new(TaskTracker::new()));
    nano_watchdog::start_watchdog(tracker, nano_watchdog_config(), None);
    let (pairs, events) = (dense_count(quick) / 10, sparse_count(quick));
    std::thread::spawn(move || {
        let task = NanoWatchdogTask::new(tracker);
        (dense(&task, pairs), sparse(&task, events))
    })
    .join()
    .expect("the measuring thread")
}
