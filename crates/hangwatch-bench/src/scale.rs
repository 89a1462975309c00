//! Scale: 10,000 registered components, of which 1,000 notify continuously
//! (a 20 µs event, then 5 ms of sleep, over and over). Measures the monitor
//! thread's CPU use and the process's resident memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangwatch::{ComponentId, Monitor, Timeouts};

use crate::idle::Parked;
use crate::procfs::{rss_mib, Thread};

const COMPONENTS: u64 = 10_000;
const BUSY: u64 = 1_000;

/// What the scale run measured.
pub struct Scale {
    /// Monitor thread CPU, percent of one core.
    pub monitor_cpu_pct: f64,
    /// Process RSS during the run, MiB.
    pub rss_mib: f64,
    /// Process RSS before any component was registered, MiB.
    pub rss_before_mib: f64,
    /// Notification pairs per second during the window, over all busy components.
    pub events_per_s: f64,
}

pub fn run(window: Duration) -> Scale {
    let rss_before_mib = rss_mib();
    let Monitor { register, .. } = Monitor::builder()
        .thread_name("hw-bench-scale")
        .start()
        .expect("start the monitor");
    let running = Arc::new(AtomicBool::new(true));
    let events = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (transient, permanent) = (Duration::from_millis(100), Duration::from_secs(1));

    let idle = Parked::start(COMPONENTS - BUSY, {
        let register = register.clone();
        Arc::new(move |n| {
            let handle = register
                .register_component(
                    ComponentId::new("idle", n),
                    Timeouts::new(transient, permanent),
                    None,
                )
                .expect("register");
            Box::new(handle)
        })
    });
    let busy: Vec<_> = (0..BUSY)
        .map(|n| {
            let register = register.clone();
            let running = running.clone();
            let events = events.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let handle = register
                        .register_component(
                            ComponentId::new("busy", n),
                            Timeouts::new(transient, permanent),
                            None,
                        )
                        .expect("register");
                    while running.load(Ordering::Relaxed) {
                        {
                            let _event = handle.activity("event");
                            let start = Instant::now();
                            while start.elapsed() < Duration::from_micros(20) {
                                std::hint::spin_loop();
                            }
                        }
                        events.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .expect("spawn a busy component")
        })
        .collect();

    // Let registration settle, then measure.
    std::thread::sleep(Duration::from_millis(500));
    let monitor = Thread::named("hw-bench-scale").expect("the monitor thread");
    let cpu_before = monitor.cpu_time();
    let events_before = events.load(Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(window);
    let cpu = monitor.cpu_time() - cpu_before;
    let events_during = events.load(Ordering::Relaxed) - events_before;
    let wall = started.elapsed();
    let rss_during = rss_mib();

    running.store(false, Ordering::Relaxed);
    for thread in busy {
        let _ = thread.join();
    }
    drop(idle);
    Scale {
        monitor_cpu_pct: cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        rss_mib: rss_during,
        rss_before_mib,
        events_per_s: events_during as f64 / wall.as_secs_f64(),
    }
}
