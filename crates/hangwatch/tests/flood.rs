//! A flood of notifications: 10^8 from 8 threads. No queue grows, so the
//! process's memory does not; a hang that starts during the flood is still
//! caught on time. (Its own test binary, so that nothing else moves RSS.)

mod common;

use std::sync::{Arc, Barrier};
use std::time::Instant;

use common::{expect_alert, ms, Puppet, Step, GENEROUS};
use hangwatch::{AlertKind, ComponentId, Monitor};

const THREADS: u64 = 8;
const NOTIFICATIONS: u64 = 100_000_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[test]
#[cfg(target_os = "linux")]
fn a_hundred_million_notifications_grow_nothing_and_hide_no_hang() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().start().unwrap();
    let labels = ["parse", "style", "layout", "paint"];
    let start = Arc::new(Barrier::new(THREADS as usize + 1));
    let flooders: Vec<_> = (0..THREADS)
        .map(|n| {
            let (register, start) = (register.clone(), start.clone());
            std::thread::spawn(move || {
                let handle = register
                    .register_component(ComponentId::new("flood", n), ms(100), ms(1000), None)
                    .unwrap();
                start.wait();
                for i in 0..NOTIFICATIONS / THREADS / 2 {
                    handle.notify_activity(labels[i as usize % labels.len()]);
                    handle.notify_wait();
                }
            })
        })
        .collect();
    let hung = ComponentId::new("hung", 1);
    let puppet = Puppet::spawn(&register, hung.clone(), ms(100), ms(10_000), None).unwrap();
    // Everything is set up and has run once: measure from here.
    control.stats().unwrap();
    let before = rss_kib();
    start.wait();

    std::thread::sleep(ms(50));
    let hang_started = Instant::now();
    puppet.step(Step::Activity("hang in a flood"));
    expect_alert(&alerts, &hung, AlertKind::Transient);
    let detected = hang_started.elapsed();
    puppet.step(Step::Wait);

    for flooder in flooders {
        flooder.join().unwrap();
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 1024,
        "RSS grew by {grown} KiB over 10^8 notifications"
    );
    assert!(
        detected >= ms(100) && detected < ms(100) + GENEROUS / 20,
        "the hang was detected after {detected:?}"
    );
    // Only the hung component said anything: its transient alert and its end.
    let stats = control.stats().unwrap();
    assert_eq!((stats.alerts_sent, stats.alerts_dropped), (2, 0));
}
