//! Detection latency: when a transient alert is delivered, minus the deadline
//! it was due at, over many hangs with random timeouts of 10–50 ms.
//!
//! Several component threads hang in turn. For each hang a thread registers a
//! fresh component with a random transient timeout, idles for a random short
//! while, notes the time, becomes active and stays so past the timeout. A
//! receiver thread timestamps each alert as it is delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hangwatch::{AlertKind, ComponentId, Monitor, Timeouts};

use crate::servo::ServoMonitor;

const THREADS: u64 = 8;

/// When each hang's transient alert was due, by component number.
type Deadlines = Arc<Mutex<HashMap<u64, Instant>>>;

/// One hang's plan: its transient timeout and the idle time before it.
fn plan(rng: &mut fastrand::Rng) -> (Duration, Duration) {
    (
        Duration::from_millis(rng.u64(10..=50)),
        Duration::from_millis(rng.u64(0..=20)),
    )
}

/// Runs the hangs on `THREADS` threads; `hang` does one hang of component
/// `number` with the given transient timeout and returns once it is over.
fn run_hangs(
    hangs: u64,
    seed: u64,
    deadlines: &Deadlines,
    hang: impl Fn(u64, Duration, &Deadlines) + Send + Sync,
) {
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let hang = &hang;
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed + thread);
                for i in 0..hangs / THREADS {
                    let (timeout, idle) = plan(&mut rng);
                    std::thread::sleep(idle);
                    hang(thread * 1_000_000 + i, timeout, deadlines);
                }
            });
        }
    });
}

/// Collects `(component number, delivered at)` until the channel closes.
fn collect<T: Send + 'static>(
    alerts: Receiver<T>,
    component: impl Fn(&T) -> Option<u64> + Send + 'static,
) -> std::thread::JoinHandle<Vec<(u64, Instant)>> {
    std::thread::spawn(move || {
        let mut delivered = Vec::new();
        for alert in alerts {
            let at = Instant::now();
            if let Some(number) = component(&alert) {
                delivered.push((number, at));
            }
        }
        delivered
    })
}

/// Latencies in ms, sorted.
fn latencies(delivered: Vec<(u64, Instant)>, deadlines: &Deadlines) -> Vec<f64> {
    let deadlines = deadlines.lock().unwrap();
    let mut ms: Vec<f64> = delivered
        .into_iter()
        .filter_map(|(number, at)| {
            let due = deadlines.get(&number)?;
            Some(at.saturating_duration_since(*due).as_secs_f64() * 1e3)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// Sorted detection latencies of hangwatch, in ms.
pub fn hangwatch_latencies(hangs: u64, seed: u64) -> Vec<f64> {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .thread_name("hw-bench-detect")
        .alert_capacity(4096)
        .start()
        .expect("start the monitor");
    let receiver = collect(alerts, |alert: &hangwatch::Alert| {
        (alert.kind == AlertKind::Transient).then_some(alert.component.number)
    });
    let deadlines = Deadlines::default();
    run_hangs(hangs, seed, &deadlines, |number, timeout, deadlines| {
        let handle = register
            .register_component(
                ComponentId::new("detect", number),
                Timeouts::new(timeout, timeout * 10),
                None,
            )
            .expect("register");
        let start = Instant::now();
        handle.notify_activity("hang");
        deadlines.lock().unwrap().insert(number, start + timeout);
        std::thread::sleep(timeout + Duration::from_millis(30));
        handle.notify_wait();
    });
    drop(register);
    latencies(receiver.join().expect("receiver"), &deadlines)
}

/// Sorted detection latencies of the Servo-style reference, in ms.
pub fn servo_latencies(hangs: u64, seed: u64) -> Vec<f64> {
    let servo = ServoMonitor::start("servo-detect");
    let alerts = servo.alerts.clone();
    let receiver = collect(alerts, |alert: &crate::servo::ServoAlert| {
        (!alert.permanent).then_some(alert.component)
    });
    let deadlines = Deadlines::default();
    run_hangs(hangs, seed, &deadlines, |number, timeout, deadlines| {
        let handle = servo.register.register(number, timeout, timeout * 10);
        let start = Instant::now();
        handle.notify_activity("hang");
        deadlines.lock().unwrap().insert(number, start + timeout);
        // Servo's tick is 100 ms: stay hung long enough to be seen.
        std::thread::sleep(timeout + Duration::from_millis(130));
        handle.notify_wait();
    });
    servo.stop();
    latencies(receiver.join().expect("receiver"), &deadlines)
}

/// The value below which `p` of the sorted values lie.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
