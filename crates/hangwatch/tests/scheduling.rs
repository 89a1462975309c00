//! When the monitor wakes: at deadlines, not on a tick; never while idle; not
//! once per notification. Wake-ups are counted as the context switches of the
//! monitor's thread, from /proc.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{expect_alert, ms, Puppet, GENEROUS};
use hangwatch::{AlertKind, ComponentId, Monitor, Timeouts};

/// Context switches so far of this process's thread named `name`.
fn context_switches(name: &str) -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let status = std::fs::read_to_string(path.join("status")).unwrap();
            return status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
                .sum();
        }
    }
    panic!("no thread named {name}");
}

#[test]
fn an_idle_monitor_does_not_wake_up() {
    idle_monitor_wakeups("hw-test-idle", true);
}

#[test]
fn an_idle_monitor_without_stacks_does_not_wake_up_either() {
    // Without stack workers, the monitor must not keep selecting on their
    // closed channel.
    idle_monitor_wakeups("hw-test-nostack", false);
}

fn idle_monitor_wakeups(name: &str, stacks: bool) {
    let Monitor { register, .. } = Monitor::builder()
        .thread_name(name)
        .stacks(stacks)
        .start()
        .unwrap();
    let puppets: Vec<_> = (0..100)
        .map(|n| {
            Puppet::spawn(
                &register,
                ComponentId::new("idle", n),
                ms(10),
                ms(100),
                None,
            )
            .unwrap()
        })
        .collect();
    std::thread::sleep(ms(300));
    let before = context_switches(name);
    std::thread::sleep(ms(1500));
    let wakeups = context_switches(name) - before;
    assert!(
        wakeups <= 2,
        "an idle monitor woke {wakeups} times in 1.5 s"
    );
    drop(puppets);
}

#[test]
fn busy_components_do_not_wake_the_monitor_per_notification() {
    let name = "hw-test-busy";
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().thread_name(name).start().unwrap();
    // A round trip: the monitor's thread is up and has named itself.
    control.stats().unwrap();
    let before = context_switches(name);
    let keep_monitor_running = register.clone();
    let worker = std::thread::spawn(move || {
        let handle = register
            .register_component(
                ComponentId::new("busy", 1),
                Timeouts::new(ms(100), ms(1000)),
                None,
            )
            .unwrap();
        let mut events = 0u64;
        let mut longest = Duration::ZERO;
        let until = Instant::now() + ms(1000);
        while Instant::now() < until {
            let started = Instant::now();
            handle.notify_activity("short task");
            while started.elapsed() < Duration::from_micros(2) {
                std::hint::spin_loop();
            }
            handle.notify_wait();
            longest = longest.max(started.elapsed());
            events += 1;
        }
        (events, longest)
    });
    let (events, longest) = worker.join().unwrap();
    let wakeups = context_switches(name) - before;
    assert!(events > 10_000, "only {events} events");
    // It looks about once per transient timeout while the component is busy.
    assert!(
        wakeups < 100,
        "{wakeups} monitor wake-ups for {events} events"
    );
    // No alert, unless the machine really held one task up past the
    // transient timeout (the thread was descheduled in the middle of it).
    if let Ok(alert) = alerts.try_recv() {
        assert!(longest >= ms(90), "an alert for short tasks: {alert:?}");
    }
    drop(keep_monitor_running);
}

#[test]
fn a_transient_alert_comes_at_the_deadline() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("punctual", 1);
    let puppet = Puppet::spawn(&register, id.clone(), ms(250), ms(5000), None).unwrap();
    // After a quiet period: the component wakes the monitor for this one.
    std::thread::sleep(ms(100));
    let started = Instant::now();
    puppet.step(common::Step::Activity("deadline"));
    let alert = expect_alert(&alerts, &id, AlertKind::Transient);
    let delay = started.elapsed();
    assert!(delay >= ms(250), "alert came early, after {delay:?}");
    assert!(
        delay < ms(250) + GENEROUS / 20,
        "alert came late, after {delay:?}"
    );
    assert!(alert.duration >= ms(250));
}
