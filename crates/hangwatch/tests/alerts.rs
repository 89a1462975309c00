//! What the monitor says, beyond Servo's scenarios: ended hangs with their
//! durations, silent components, exited threads, figures.

mod common;

use std::time::{Duration, Instant};

use common::{
    expect_alert, expect_silence, expect_transient_hang, ms, next_alert, Puppet, Step, GENEROUS,
};
use hangwatch::{AlertKind, ComponentId, ComponentState, HangLevel, Monitor, Timeouts};

#[test]
fn an_ended_hang_reports_its_whole_duration() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("layout", 1);
    let puppet = Puppet::spawn(&register, id.clone(), ms(50), ms(5000), None).unwrap();

    let started = Instant::now();
    puppet.step(Step::Activity("reflow"));
    expect_alert(&alerts, &id, AlertKind::Transient);
    std::thread::sleep(ms(300));
    puppet.step(Step::Wait);
    let held = started.elapsed();

    let ended = expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Transient,
        },
    );
    assert_eq!(ended.annotation.as_deref(), Some("reflow"));
    // Timed by the component itself: within the span the test held it
    // active, give or take the TSC's calibration against the OS clock.
    assert!(ended.duration >= ms(300), "{:?}", ended.duration);
    assert!(
        ended.duration <= held + held / 100,
        "{:?} > {held:?}",
        ended.duration
    );
}

#[test]
fn only_the_component_that_hangs_raises_alerts() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start().unwrap();
    let busy = ComponentId::new("busy", 1);
    let hung = ComponentId::new("hung", 1);
    let idle = ComponentId::new("idle", 1);

    let busy_thread = {
        let register = register.clone();
        let id = busy.clone();
        std::thread::spawn(move || {
            let handle = register
                .register_component(id, Timeouts::new(ms(200), ms(2000)), None)
                .unwrap();
            let until = Instant::now() + ms(600);
            while Instant::now() < until {
                let _task = handle.activity("short task");
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let _idle = Puppet::spawn(&register, idle, ms(200), ms(2000), None).unwrap();
    let hung_puppet = Puppet::spawn(&register, hung.clone(), ms(200), ms(2000), None).unwrap();
    hung_puppet.step(Step::Activity("stuck"));

    let alert = expect_alert(&alerts, &hung, AlertKind::Transient);
    assert_eq!(alert.thread.as_deref(), Some("hung-1"));
    busy_thread.join().unwrap();
    hung_puppet.step(Step::Wait);
    expect_alert(
        &alerts,
        &hung,
        AlertKind::Ended {
            worst: HangLevel::Transient,
        },
    );
    expect_silence(&alerts, ms(300));
}

#[test]
fn the_activity_guard_waits_when_dropped() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("guarded", 1);
    let handle = register
        .register_component(id.clone(), Timeouts::new(ms(50), ms(500)), None)
        .unwrap();
    {
        let _task = handle.activity("slow task");
        std::thread::sleep(ms(120));
    }
    expect_transient_hang(&alerts, &id);
    expect_silence(&alerts, ms(600));
}

#[test]
fn a_thread_that_exits_without_unregistering_is_not_a_hang() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("leaky", 1);
    let puppet = Puppet::spawn(&register, id.clone(), ms(100), ms(300), None).unwrap();
    puppet.step(Step::Activity("last task"));
    puppet.step(Step::ForgetAndExit);
    puppet.join();

    let alert = next_alert(&alerts, "a thread-exited notice");
    assert_eq!(
        (&alert.component, alert.kind),
        (&id, AlertKind::ThreadExited)
    );
    // Said once, and no hang follows, however long we wait.
    expect_silence(&alerts, ms(600));
    let stats = control.stats().unwrap();
    assert_eq!(stats.threads_exited, 1);
    assert!(stats.components.is_empty());
    // The id is free again.
    let again = Puppet::spawn(&register, id, ms(100), ms(300), None);
    assert!(again.is_ok());
}

#[test]
fn stats_report_alerts_longest_hang_and_state() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("net", 3);
    let puppet = Puppet::spawn(&register, id.clone(), ms(30), ms(150), None).unwrap();

    let stats = control.stats().unwrap();
    assert_eq!(stats.components.len(), 1);
    assert_eq!(stats.components[0].state, ComponentState::Waiting);

    puppet.step(Step::Activity("read socket"));
    expect_alert(&alerts, &id, AlertKind::Transient);
    expect_alert(&alerts, &id, AlertKind::Permanent);
    let stats = control.stats().unwrap();
    let component = &stats.components[0];
    assert_eq!(component.id, id);
    assert_eq!(component.thread.as_deref(), Some("net-3"));
    assert_eq!(
        (component.transient_alerts, component.permanent_alerts),
        (1, 1)
    );
    match &component.state {
        ComponentState::Hung {
            level,
            annotation,
            busy,
        } => {
            assert_eq!(*level, HangLevel::Permanent);
            assert_eq!(annotation, "read socket");
            assert!(*busy >= ms(150));
        }
        other => panic!("expected a hung state, got {other:?}"),
    }

    puppet.step(Step::Wait);
    let ended = expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
    let stats = control.stats().unwrap();
    let component = &stats.components[0];
    assert_eq!(component.state, ComponentState::Waiting);
    assert_eq!(component.ended_hangs, 1);
    assert_eq!(component.longest_hang, ended.duration);
    assert_eq!(stats.alerts_sent, 3);
    assert_eq!(stats.alerts_dropped, 0);
    assert!(stats.enabled && !stats.exited);
}

#[test]
fn an_activity_begun_before_the_registration_reached_the_monitor_is_watched() {
    // Registration does not wait for the monitor; a component may start work
    // at once.
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("eager", 1);
    let handle = register
        .register_component(id.clone(), Timeouts::new(ms(50), ms(500)), None)
        .unwrap();
    handle.notify_activity("first task");
    std::thread::sleep(ms(100));
    handle.notify_wait();
    expect_alert(&alerts, &id, AlertKind::Transient);
    let ended = next_alert(&alerts, "the end of the first task");
    assert!(matches!(ended.kind, AlertKind::Ended { .. }), "{ended}");
    assert!(alerts.recv_timeout(GENEROUS / 20).is_err());
}
