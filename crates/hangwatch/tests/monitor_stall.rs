//! The monitor's thread alone held up for long, by an exit signal that blocks:
//! the program held it, the process was not stopped, so a task under way
//! across the stall is a hang of its whole length, reported (late) when the
//! monitor runs again; it is no pause, and a later hang is caught on time.

mod common;

use std::time::{Duration, Instant};

use common::{expect_alert, expect_hang_alert, ms, Puppet, Step, GENEROUS};
use hangwatch::{AlertKind, ComponentId, ComponentState, HangLevel, Monitor};
use hangwatch_test_support::eventually;

#[test]
fn a_monitor_held_by_an_exit_signal_reports_the_task_across_the_hold() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("worker", 1);
    let worker = Puppet::spawn(&register, id.clone(), ms(300), ms(1000), None).unwrap();
    // Its exit signal holds the monitor's thread for three permanent timeouts.
    let _staller = Puppet::spawn(
        &register,
        ComponentId::new("staller", 1),
        ms(300),
        ms(1000),
        Some(Box::new(|| std::thread::sleep(Duration::from_secs(3)))),
    )
    .unwrap();

    // The worker's task is under way and the monitor has seen it.
    worker.step(Step::Activity("task across the stall"));
    eventually(
        GENEROUS,
        "the monitor to see the task under way",
        || control.stats().unwrap().components[0].state.clone(),
        |state| matches!(state, ComponentState::Active { .. }),
    );
    // The stall; the task ends as soon as the exit returns, and lasted at
    // least the 3 s the monitor was held.
    let task_began = Instant::now();
    let exit = {
        let control = control.clone();
        std::thread::spawn(move || control.exit().unwrap())
    };
    exit.join().unwrap();
    worker.step(Step::Wait);
    let transient = expect_hang_alert(&alerts, &id, AlertKind::Transient);
    assert!(transient.late, "{transient:?}");
    let permanent = expect_hang_alert(&alerts, &id, AlertKind::Permanent);
    assert!(permanent.late, "{permanent:?}");
    let ended = expect_hang_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
    assert!(ended.duration >= ms(3000), "{ended:?}");
    assert!(
        ended.duration <= task_began.elapsed() + ms(100),
        "{ended:?}"
    );
    let stats = control.stats().unwrap();
    assert_eq!(stats.pauses, 0, "the hold was taken for a pause: {stats:?}");

    // A real hang afterwards is still caught, on time.
    let started = Instant::now();
    worker.step(Step::Activity("real hang"));
    expect_alert(&alerts, &id, AlertKind::Transient);
    assert!(
        started.elapsed() < ms(300) + GENEROUS / 20,
        "{:?}",
        started.elapsed()
    );
    worker.step(Step::Wait);
}
