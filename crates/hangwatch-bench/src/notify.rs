//! The cost of a notification pair on the component's thread.
//!
//! - *dense*: `notify_activity` + `notify_wait` back to back, the average over
//!   many pairs; the monitor is awake and busy, as under load;
//! - *sparse*: each 50 µs event is followed by 200 µs of sleep, so the monitor
//!   has gone back to sleep when the component becomes active; the average
//!   cost of the two calls, each timed on its own.
//!
//! The physical limit of a dense pair is two plain atomic stores.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hangwatch::{ComponentId, Monitor};

use crate::servo::ServoMonitor;

/// Timeouts long enough that no measured event raises an alert.
const TRANSIENT: Duration = Duration::from_millis(50);
const PERMANENT: Duration = Duration::from_millis(500);

/// The three things a pair can be made of.
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

/// Nanoseconds per pair, each call timed, with 50 µs events and 200 µs waits.
fn sparse(notifier: &impl Notifier, events: u32) -> f64 {
    let overhead = timing_overhead();
    let mut total = Duration::ZERO;
    for _ in 0..events {
        let before = Instant::now();
        notifier.activity();
        let after = Instant::now();
        total += after - before;
        spin_for(Duration::from_micros(50));
        let before = Instant::now();
        notifier.wait();
        let after = Instant::now();
        total += after - before;
        std::thread::sleep(Duration::from_micros(200));
    }
    (total.as_nanos() as f64 / events as f64 - 2.0 * overhead).max(0.0)
}

/// The cost of timing an empty span, to subtract.
fn timing_overhead() -> f64 {
    let rounds = 100_000u32;
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let before = Instant::now();
        let after = black_box(Instant::now());
        total += after - before;
    }
    total.as_nanos() as f64 / rounds as f64
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
            .register_component(ComponentId::new("bench", 0), TRANSIENT, PERMANENT, None)
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

/// Dense pairs: (ours, servo, limit) in ns per pair.
pub fn dense_pairs(quick: bool) -> (f64, f64, f64) {
    let pairs = if quick { 5_000_000 } else { 50_000_000 };
    let ours = with_hangwatch(move |handle| dense(handle, pairs));
    let servo = with_servo(move |handle| dense(handle, pairs / 10));
    let limit = dense(&AtomicU64::new(0), pairs);
    (ours, servo, limit)
}

/// Sparse pairs: (ours, servo) in ns per pair.
pub fn sparse_pairs(quick: bool) -> (f64, f64) {
    let events = if quick { 2_000 } else { 10_000 };
    let ours = with_hangwatch(move |handle| sparse(handle, events));
    let servo = with_servo(move |handle| sparse(handle, events));
    (ours, servo)
}
