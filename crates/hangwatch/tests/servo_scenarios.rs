//! Servo's background hang monitor test suite, ported: the same scenarios,
//! with hangwatch's `Ended` alerts where Servo says nothing, and generous
//! waits instead of fixed sleeps.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::{expect_alert, expect_silence, ms, Puppet, Step, GENEROUS};
use hangwatch::{AlertKind, ComponentId, HangLevel, Monitor, Timeouts};
use hangwatch_test_support::eventually;

fn script() -> ComponentId {
    ComponentId::new("script", 1)
}

#[test]
fn hang_monitoring() {
    let Monitor {
        register,
        alerts,
        thread,
        ..
    } = Monitor::builder().start().unwrap();
    let id = script();
    let puppet = Puppet::spawn(&register, id.clone(), ms(10), ms(1000), None).unwrap();

    // An activity that outlives both timeouts raises both alerts, in order.
    puppet.step(Step::Activity("spawn pipeline"));
    let transient = expect_alert(&alerts, &id, AlertKind::Transient);
    assert_eq!(transient.annotation.as_deref(), Some("spawn pipeline"));
    assert!(transient.duration >= ms(10));
    let permanent = expect_alert(&alerts, &id, AlertKind::Permanent);
    assert!(permanent.duration >= ms(1000));

    // A new activity ends the hang (Servo says nothing here) and starts afresh.
    puppet.step(Step::Activity("spawn pipeline"));
    let ended = expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
    assert!(ended.duration >= ms(1000));
    expect_alert(&alerts, &id, AlertKind::Transient);

    // Waiting ends that hang too, and a waiting component never alerts.
    puppet.step(Step::Wait);
    expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Transient,
        },
    );
    expect_silence(&alerts, ms(100));

    // A new task hangs again.
    puppet.step(Step::Activity("spawn pipeline"));
    expect_alert(&alerts, &id, AlertKind::Transient);
    // The permanent alert is a second away, so nothing yet.
    assert!(alerts.try_recv().is_err());

    // Shut down: with every register and handle gone the monitor ends,
    // saying nothing about the hang that was under way.
    drop(register);
    drop(puppet);
    thread.join().expect("monitor thread ends cleanly");
    assert!(
        alerts.recv_timeout(GENEROUS).is_err(),
        "no alert after the monitor ended"
    );
}

#[test]
fn hang_monitoring_unregister() {
    let Monitor {
        register,
        alerts,
        thread,
        ..
    } = Monitor::builder().start().unwrap();
    let id = script();
    let puppet = Puppet::spawn(&register, id, ms(10), ms(1000), None).unwrap();
    puppet.step(Step::Activity("spawn pipeline"));
    puppet.step(Step::Unregister);
    // Well past both timeouts: nothing is said about an unregistered component.
    expect_silence(&alerts, ms(1500));
    puppet.join();
    drop(register);
    thread.join().expect("monitor thread ends cleanly");
}

#[test]
fn hang_monitoring_teardown() {
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder().start().unwrap();
    let puppet = Puppet::spawn(&register, script(), ms(10), ms(30), None).unwrap();
    puppet.step(Step::Activity("spawn pipeline"));
    // The program drops its alert receiver and exits mid-hang.
    drop(alerts);
    std::thread::sleep(ms(50));
    control.exit().expect("monitor still running");
    drop(puppet);
    drop(register);
    thread.join().expect("monitor thread ends cleanly");
}

/// The race between a registration and an exit request, which Servo tests in
/// four orderings (servo#28270, servo#27191). Each ordering runs 1,000 times
/// and must deliver the exit signal exactly once.
fn exit_signal_race(ordering: fn(register: &(dyn Fn() + Sync), exit: &(dyn Fn() + Sync))) {
    for _ in 0..1000 {
        let Monitor {
            register,
            control,
            thread,
            ..
        } = Monitor::builder().enabled(false).start().unwrap();
        let signals = Arc::new(AtomicUsize::new(0));
        let component = Mutex::new(None);
        let register_component = || {
            let signals = signals.clone();
            let register = register.clone();
            let (registered, done) = std::sync::mpsc::channel();
            let (release, released) = std::sync::mpsc::channel::<()>();
            // The handle is not Send, so a thread registers and keeps it
            // until the test releases it.
            let thread = std::thread::spawn(move || {
                let handle = register
                    .register_component(
                        script(),
                        Timeouts::new(ms(10), ms(1000)),
                        Some(Box::new(move || {
                            signals.fetch_add(1, Ordering::SeqCst);
                        })),
                    )
                    .expect("registers");
                registered.send(()).unwrap();
                let _ = released.recv();
                drop(handle);
            });
            done.recv().unwrap();
            *component.lock().unwrap() = Some((release, thread));
        };
        let exit = || {
            control.exit().expect("monitor running");
        };
        ordering(&register_component, &exit);

        eventually(
            GENEROUS,
            "the exit signal",
            || signals.load(Ordering::SeqCst),
            |&signalled| signalled != 0,
        );
        // One more round trip through the monitor, then check it was not
        // called twice.
        control.stats().expect("monitor running");
        assert_eq!(
            signals.load(Ordering::SeqCst),
            1,
            "exit signal called twice"
        );

        let (release, component_thread) = component.into_inner().unwrap().unwrap();
        drop(release);
        component_thread.join().unwrap();
        drop(register);
        thread.join().expect("monitor thread ends cleanly");
    }
}

#[test]
fn exit_signal_register_then_exit_far_apart() {
    exit_signal_race(|register, exit| {
        register();
        std::thread::sleep(Duration::from_micros(200));
        exit();
    });
}

#[test]
fn exit_signal_register_then_exit() {
    exit_signal_race(|register, exit| {
        register();
        exit();
    });
}

#[test]
fn exit_signal_exit_then_register() {
    exit_signal_race(|register, exit| {
        exit();
        register();
    });
}

#[test]
fn exit_signal_exit_then_register_far_apart() {
    exit_signal_race(|register, exit| {
        exit();
        std::thread::sleep(Duration::from_micros(200));
        register();
    });
}

#[test]
fn exit_signal_register_and_exit_concurrently() {
    exit_signal_race(|register, exit| {
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                exit();
            });
            start.wait();
            register();
        });
    });
}
