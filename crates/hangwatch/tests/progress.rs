//! A component that reports its progress (`Handle::watch_progress`) is hung
//! only for a stretch without progress: busy is not blocked.
//!
//! Each test's component stamps its own work with `hangwatch::monotonic_ns`
//! (the alerts' clock), and the alerts are judged against those stamps, not
//! against wall-clock expectations, so a loaded machine cannot fail them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expect_silence, expect_transient_hang, ms, GENEROUS};
use hangwatch::{monotonic_ns, ComponentId, Monitor, Timeouts};

/// Work for `length`, one piece per millisecond, counting each in `done`;
/// returns the stamp of the last piece.
fn work(done: &AtomicU64, length: Duration) -> u64 {
    let until = Instant::now() + length;
    let mut last = monotonic_ns();
    while Instant::now() < until {
        std::thread::sleep(ms(1));
        done.fetch_add(1, Ordering::Relaxed);
        last = monotonic_ns();
    }
    last
}

#[test]
fn an_activity_that_keeps_making_progress_is_not_a_hang() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("busy", 1);
    let done = Arc::new(AtomicU64::new(0));
    let probe = done.clone();
    let component = std::thread::spawn(move || {
        let handle = register
            .register_component(id, Timeouts::new(ms(150), ms(1_000)), None)
            .unwrap();
        handle.watch_progress(move || probe.load(Ordering::Relaxed));
        // Twice the permanent timeout in one activity, never idle.
        let _busy = handle.activity("many small jobs");
        work(&done, ms(2_000));
    });
    component.join().unwrap();
    expect_silence(&alerts, ms(300));
}

#[test]
fn a_stretch_without_progress_is_a_hang_timed_from_the_progress_around_it() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("stalls", 1);
    let done = Arc::new(AtomicU64::new(0));
    let probe = done.clone();
    let component = std::thread::spawn({
        let id = id.clone();
        move || {
            let handle = register
                .register_component(id, Timeouts::new(ms(150), ms(5_000)), None)
                .unwrap();
            handle.watch_progress(move || probe.load(Ordering::Relaxed));
            let _busy = handle.activity("jobs, then one that sticks");
            work(&done, ms(400));
            // One job that does not finish for 500 ms, then more jobs.
            let stuck_from = monotonic_ns();
            std::thread::sleep(ms(500));
            let resumed = monotonic_ns();
            done.fetch_add(1, Ordering::Relaxed);
            work(&done, ms(300));
            (stuck_from, resumed)
        }
    });
    let (transient, ended) = expect_transient_hang(&alerts, &id);
    let (stuck_from, resumed) = component.join().unwrap();
    let started = transient.started_ns.unwrap();
    assert_eq!(ended.started_ns, Some(started));
    // The hang begins at a look that saw the last progress before the stuck
    // job (not at the activity's start, 400 ms earlier), and ends at a look
    // that saw progress again.
    assert!(
        started + 2_000_000 >= stuck_from,
        "the hang began {} ms before the stuck job",
        (stuck_from - started) as f64 / 1e6
    );
    let end = started + ended.duration.as_nanos() as u64;
    assert!(end >= resumed, "the hang ended before progress resumed");
    assert!(
        ended.duration <= Duration::from_nanos(resumed - stuck_from) + GENEROUS,
        "{ended}"
    );
    expect_silence(&alerts, ms(200));
}

#[test]
fn without_progress_from_its_start_an_activity_is_timed_from_its_start() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("stuck at once", 1);
    let component = std::thread::spawn({
        let id = id.clone();
        move || {
            let handle = register
                .register_component(id, Timeouts::new(ms(100), ms(5_000)), None)
                .unwrap();
            handle.watch_progress(|| 0);
            let began = monotonic_ns();
            let busy = handle.activity("stuck");
            std::thread::sleep(ms(300));
            drop(busy);
            (began, monotonic_ns())
        }
    });
    let (transient, ended) = expect_transient_hang(&alerts, &id);
    let (began, finished) = component.join().unwrap();
    let started = transient.started_ns.unwrap();
    assert!((began..=finished).contains(&started));
    // The end was timed by the component itself: exact.
    assert!(ended.duration <= Duration::from_nanos(finished - began));
    assert!(ended.duration >= ms(300));
}
