//! Bad input and faults: typed errors, never panics, never a blocked monitor.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{expect_alert, ms, Puppet, Step, GENEROUS};
use hangwatch::{
    AlertKind, ComponentId, HangLevel, Monitor, MonitorGone, RegisterError, StartError, Timeouts,
};
use hangwatch_test_support::eventually;

#[test]
fn bad_timeouts_are_refused() {
    let Monitor { register, .. } = Monitor::builder().start().unwrap();
    let id = || ComponentId::new("script", 1);
    assert_eq!(
        register
            .register_component(id(), Timeouts::new(ms(0), ms(10)), None)
            .err(),
        Some(RegisterError::ZeroTimeout)
    );
    assert_eq!(
        register
            .register_component(id(), Timeouts::new(ms(100), ms(100)), None)
            .err(),
        Some(RegisterError::PermanentNotLonger {
            transient: ms(100),
            permanent: ms(100)
        })
    );
    let error = register
        .register_component(id(), Timeouts::new(ms(200), ms(100)), None)
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("must be longer than the transient"),
        "{error}"
    );
}

#[test]
fn a_zero_alert_capacity_is_refused() {
    let error = Monitor::builder().alert_capacity(0).start().err().unwrap();
    assert!(matches!(error, StartError::ZeroAlertCapacity));
    assert!(error.to_string().contains("alert_capacity"));
}

#[test]
fn a_duplicate_id_is_refused_until_the_first_is_gone() {
    let Monitor { register, .. } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("compositor", 1);
    let first = register
        .register_component(id.clone(), Timeouts::new(ms(10), ms(20)), None)
        .unwrap();
    let error = register
        .register_component(id.clone(), Timeouts::new(ms(10), ms(20)), None)
        .err()
        .unwrap();
    assert_eq!(error, RegisterError::Duplicate(id.clone()));
    assert!(error.to_string().contains("compositor#1"));
    // Another number of the same kind is fine.
    let _second = register
        .register_component(
            ComponentId::new("compositor", 2),
            Timeouts::new(ms(10), ms(20)),
            None,
        )
        .unwrap();
    first.unregister();
    assert!(register
        .register_component(id, Timeouts::new(ms(10), ms(20)), None)
        .is_ok());
}

#[test]
fn a_panicking_exit_signal_is_caught_and_the_others_still_run() {
    let Monitor {
        register, control, ..
    } = Monitor::builder().start().unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let mut puppets = Vec::new();
    for number in 0..3 {
        let called = called.clone();
        let signal: hangwatch::ExitSignal = if number == 1 {
            Box::new(|| panic!("exit signal failed on purpose"))
        } else {
            Box::new(move || {
                called.fetch_add(1, Ordering::SeqCst);
            })
        };
        let id = ComponentId::new("worker", number);
        puppets.push(Puppet::spawn(&register, id, ms(10), ms(20), Some(signal)).unwrap());
    }
    let report = control.exit().unwrap();
    assert_eq!(report.signalled, 3);
    assert_eq!(report.panicked, vec![ComponentId::new("worker", 1)]);
    assert_eq!(called.load(Ordering::SeqCst), 2);
    let stats = control.stats().unwrap();
    assert!(stats.exited);
    assert_eq!(
        stats.exit_signal_panics,
        vec![ComponentId::new("worker", 1)]
    );
    // A second exit signals nobody again.
    assert_eq!(control.exit().unwrap().signalled, 0);
}

#[test]
fn an_unread_alert_channel_drops_the_oldest_and_counts() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().alert_capacity(4).start().unwrap();
    let id = ComponentId::new("chatty", 1);
    let puppet = Puppet::spawn(&register, id.clone(), ms(5), ms(10_000), None).unwrap();
    // Ten hangs, two alerts each (transient, ended), nobody reading.
    for _ in 0..10 {
        let before = control.stats().unwrap().alerts_sent;
        puppet.step(Step::Activity("hang"));
        eventually(
            GENEROUS,
            "the hang's first alert to be sent",
            || control.stats().unwrap().alerts_sent,
            |&sent| sent != before,
        );
        puppet.step(Step::Wait);
    }
    eventually(
        GENEROUS,
        "all 20 alerts to be sent",
        || control.stats().unwrap().alerts_sent,
        |&sent| sent >= 20,
    );
    let stats = control.stats().unwrap();
    assert_eq!((stats.alerts_sent, stats.alerts_dropped), (20, 16));
    // What is left are the newest four, in order.
    let kept: Vec<_> = alerts.try_iter().map(|a| a.kind).collect();
    let ended = AlertKind::Ended {
        worst: HangLevel::Transient,
    };
    assert_eq!(
        kept,
        vec![AlertKind::Transient, ended, AlertKind::Transient, ended]
    );
}

#[test]
fn a_dropped_alert_receiver_does_not_stop_the_monitor() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().alert_capacity(2).start().unwrap();
    drop(alerts);
    let puppet = Puppet::spawn(
        &register,
        ComponentId::new("orphan", 1),
        ms(5),
        ms(20),
        None,
    )
    .unwrap();
    puppet.step(Step::Activity("hang"));
    eventually(
        GENEROUS,
        "the transient and permanent alerts to be sent",
        || control.stats().unwrap().alerts_sent,
        |&sent| sent >= 2,
    );
    puppet.step(Step::Wait);
    eventually(
        GENEROUS,
        "the ended alert to be sent",
        || control.stats().unwrap().alerts_sent,
        |&sent| sent >= 3,
    );
    assert_eq!(control.stats().unwrap().alerts_dropped, 1);
}

#[test]
fn after_shutdown_handles_are_silent_no_ops() {
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("survivor", 1);
    let handle = register
        .register_component(id.clone(), Timeouts::new(ms(5), ms(10)), None)
        .unwrap();
    control.shutdown().unwrap();
    thread.join().unwrap();
    // The handle outlives its monitor: notifying does nothing, and says nothing.
    for _ in 0..1000 {
        handle.notify_activity("after the end");
        handle.notify_wait();
    }
    handle.notify_activity("after the end");
    std::thread::sleep(ms(50));
    drop(handle);
    assert!(alerts.try_recv().is_err());
    assert_eq!(control.stats().err(), Some(MonitorGone));
    assert_eq!(control.exit().err(), Some(MonitorGone));
    assert_eq!(
        register
            .register_component(
                ComponentId::new("late", 1),
                Timeouts::new(ms(5), ms(10)),
                None
            )
            .err(),
        Some(RegisterError::MonitorGone)
    );
}

#[test]
fn control_outlives_the_monitor_with_a_clear_error() {
    let Monitor {
        register,
        control,
        thread,
        ..
    } = Monitor::builder().start().unwrap();
    drop(register);
    thread.join().unwrap();
    let error = control.stats().err().unwrap();
    assert!(error.to_string().contains("no longer running"));
    assert_eq!(control.set_enabled(true).err(), Some(MonitorGone));
}

#[test]
fn disabled_monitoring_still_registers_and_signals() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().enabled(false).start().unwrap();
    let signalled = Arc::new(AtomicUsize::new(0));
    let counter = signalled.clone();
    let id = ComponentId::new("quiet", 1);
    let puppet = Puppet::spawn(
        &register,
        id.clone(),
        ms(5),
        ms(10),
        Some(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })),
    )
    .unwrap();
    puppet.step(Step::Activity("unwatched"));
    common::expect_silence(&alerts, ms(100));

    // Turned on mid-activity: that activity is never reported...
    control.set_enabled(true).unwrap();
    common::expect_silence(&alerts, ms(100));
    // ...but the next one is.
    puppet.step(Step::Activity("watched"));
    let alert = expect_alert(&alerts, &id, AlertKind::Transient);
    assert_eq!(alert.annotation.as_deref(), Some("watched"));

    assert_eq!(control.exit().unwrap().signalled, 1);
    assert_eq!(signalled.load(Ordering::SeqCst), 1);
}

#[test]
fn a_component_taken_over_by_another_thread_is_no_longer_watched() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("moving role", 1);
    let (held, release) = (
        Arc::new(std::sync::Barrier::new(2)),
        Arc::new(std::sync::Barrier::new(2)),
    );
    let first = std::thread::spawn({
        let (register, id, held, release) =
            (register.clone(), id.clone(), held.clone(), release.clone());
        move || {
            let handle = register
                .register_component(id, Timeouts::new(ms(400), ms(800)), None)
                .unwrap();
            // Busy for good: only the take-over ends its watch.
            handle.notify_activity("left behind");
            held.wait();
            release.wait();
            handle.is_taken_over()
        }
    });
    held.wait();
    // A plain registration of a held id is refused; a take-over is not.
    assert_eq!(
        register
            .register_component(id.clone(), Timeouts::new(ms(100), ms(1_000)), None)
            .err(),
        Some(RegisterError::Duplicate(id.clone()))
    );
    let second = register
        .take_over_component(id.clone(), Timeouts::new(ms(100), ms(1_000)), None)
        .unwrap();
    assert!(!second.is_taken_over());
    common::expect_silence(&alerts, ms(1_000));
    release.wait();
    assert!(first.join().unwrap(), "the first handle was told");
    let stats = control.stats().unwrap();
    assert_eq!(
        stats.components.iter().filter(|c| c.id == id).count(),
        1,
        "{stats:?}"
    );
    drop(second);
}
