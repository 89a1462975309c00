//! The monitor's thread alone held up for long (here by an exit signal that
//! blocks, as a stand-in for a descheduled thread): components kept working,
//! so the stall raises no alert, and a real hang afterwards is caught.

mod common;

use std::time::{Duration, Instant};

use common::{expect_alert, expect_silence, ms, Puppet, Step, GENEROUS};
use hangwatch::{AlertKind, ComponentId, ComponentState, Monitor};

#[test]
fn a_stalled_monitor_raises_no_alert_for_the_stall() {
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
    let seen = Instant::now() + GENEROUS;
    while !matches!(
        control.stats().unwrap().components[0].state,
        ComponentState::Active { .. }
    ) {
        assert!(Instant::now() < seen);
        std::thread::sleep(ms(5));
    }
    // The stall; the task ends as soon as the monitor runs again.
    let exit = {
        let control = control.clone();
        std::thread::spawn(move || control.exit().unwrap())
    };
    exit.join().unwrap();
    worker.step(Step::Wait);
    expect_silence(&alerts, ms(500));
    let stats = control.stats().unwrap();
    assert!(
        stats.pauses >= 1,
        "the stall was not seen as a pause: {stats:?}"
    );

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
