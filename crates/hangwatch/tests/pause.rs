//! A stopped process is not a hung one. This test stops its own process with
//! SIGSTOP (so it lives in a test binary of its own) and has a child process
//! continue it.
#![cfg(unix)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{expect_alert, expect_silence, ms, Puppet, Step, GENEROUS};
use hangwatch::{AlertKind, ComponentId, HangLevel, Monitor};

/// Stops this whole process for `pause`.
fn stop_this_process_for(pause: Duration) {
    let pid = std::process::id().to_string();
    let mut waker = Command::new("sh")
        .arg("-c")
        .arg(format!("sleep {}; kill -CONT {pid}", pause.as_secs_f64()))
        .spawn()
        .expect("spawn sh");
    let stopped = Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("run kill");
    assert!(stopped.success());
    waker.wait().expect("the waker ends");
}

#[test]
fn a_stopped_process_raises_no_alert_for_the_stop_and_still_catches_real_hangs() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("paused", 1);
    let (transient, permanent) = (ms(400), ms(1200));
    let puppet = Puppet::spawn(&register, id.clone(), transient, permanent, None).unwrap();

    // A short task is under way when everything stops for three times the
    // permanent timeout.
    puppet.step(Step::Activity("short task"));
    stop_this_process_for(permanent * 3);
    puppet.step(Step::Wait);
    expect_silence(&alerts, ms(300));
    let stats = control.stats().unwrap();
    assert!(
        stats.pauses >= 1,
        "the stop was not seen as a pause: {stats:?}"
    );
    assert!(stats.paused >= permanent * 2, "{:?}", stats.paused);

    // A real hang afterwards is still caught, and on time.
    let started = Instant::now();
    puppet.step(Step::Activity("real hang"));
    let alert = expect_alert(&alerts, &id, AlertKind::Transient);
    assert!(
        started.elapsed() < transient + GENEROUS / 20,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(alert.annotation.as_deref(), Some("real hang"));
    expect_alert(&alerts, &id, AlertKind::Permanent);
    puppet.step(Step::Wait);
    expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
}
