//! A flood of notifications: 10^8 from 8 threads. No queue grows, so the
//! process's memory does not; a hang that starts during the flood is still
//! caught on time. (Its own test binary, so that nothing else moves RSS.)

mod common;

use std::sync::{Arc, Barrier};
use std::time::Instant;

use common::{ms, Puppet, Step};
use hangwatch::{AlertKind, ComponentId, Monitor, Timeouts};

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
                    .register_component(
                        ComponentId::new("flood", n),
                        Timeouts::new(ms(100), ms(1000)),
                        None,
                    )
                    .unwrap();
                start.wait();
                // The longest activity, timed by the thread itself: a loaded
                // machine may deschedule it in the middle of one.
                let mut longest = std::time::Duration::ZERO;
                for i in 0..NOTIFICATIONS / THREADS / 2 {
                    let began = Instant::now();
                    handle.notify_activity(labels[i as usize % labels.len()]);
                    handle.notify_wait();
                    longest = longest.max(began.elapsed());
                }
                longest
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
    puppet.step(Step::Activity("hang in a flood"));
    let mut others = Vec::new();
    let transient = expect_alert_of(&alerts, &hung, &mut others);
    assert_eq!(transient.kind, AlertKind::Transient, "{transient}");
    puppet.step(Step::Wait);

    let longest: Vec<_> = flooders.into_iter().map(|f| f.join().unwrap()).collect();
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 1024,
        "RSS grew by {grown} KiB over 10^8 notifications"
    );
    // Caught on time by the monitor's own promise: at its deadline, or,
    // when its look came late on a loaded machine, marked so.
    let detected = ms((transient.raised_ns - transient.started_ns.unwrap()) / 1_000_000);
    assert!(
        detected >= ms(99) && (transient.late || detected < ms(100) + ms(150)),
        "the hang was detected after {detected:?}: {transient:?}"
    );
    // The hung component's end, and nothing about the flooders but what
    // their own clocks say really hung.
    let ended = expect_alert_of(&alerts, &hung, &mut others);
    assert!(matches!(ended.kind, AlertKind::Ended { .. }), "{ended}");
    others.extend(std::iter::from_fn(|| alerts.recv_timeout(ms(200)).ok()));
    for alert in others {
        let n = alert.component.number as usize;
        assert!(
            alert.component.name == "flood" && longest[n] >= ms(90),
            "a false alert: {alert} (the flooders' longest activities: {longest:?})"
        );
    }
    let stats = control.stats().unwrap();
    assert_eq!(stats.alerts_dropped, 0);
}

/// The next alert about `id`; the others' go into `others`, to be checked
/// once the flooders have said how long their activities took.
fn expect_alert_of(
    alerts: &crossbeam_channel::Receiver<hangwatch::Alert>,
    id: &ComponentId,
    others: &mut Vec<hangwatch::Alert>,
) -> hangwatch::Alert {
    loop {
        let alert = common::next_alert(alerts, &format!("an alert for {id}"));
        if &alert.component == id {
            return alert;
        }
        others.push(alert);
    }
}
