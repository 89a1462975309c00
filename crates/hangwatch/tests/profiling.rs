//! Profiling mode: every component's thread sampled at a rate, while hang
//! checks go on.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{expect_alert, ms, Puppet, Step};
use hangwatch::{
    AlertKind, ComponentId, HangLevel, Monitor, ProfilingError, ProfilingOptions, Register,
    Timeouts,
};

/// A millisecond of computing, then two of sleeping: busy, yet leaving
/// room on a two-core machine for four such threads to answer samples.
#[inline(never)]
fn busy_profiled_work() -> u64 {
    let mut spins = 0u64;
    let until = Instant::now() + ms(1);
    while Instant::now() < until {
        spins = std::hint::black_box(spins + 1);
    }
    std::thread::sleep(ms(2));
    spins
}

/// A component that is busy in short activities until `running` is cleared.
fn busy_component(
    register: &Register,
    n: u64,
    running: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let register = register.clone();
    std::thread::spawn(move || {
        let handle = register
            .register_component(
                ComponentId::new("busy", n),
                Timeouts::new(ms(500), ms(5000)),
                None,
            )
            .unwrap();
        while running.load(Ordering::Relaxed) {
            let _task = handle.activity("work");
            busy_profiled_work();
        }
    })
}

/// Profiles `register`'s components for a moment, so that the stack workers
/// have read the modules' unwind tables before a window that is measured.
fn warm_up(control: &hangwatch::Control) {
    control
        .start_profiling(ProfilingOptions::default())
        .unwrap();
    std::thread::sleep(ms(50));
    control.stop_profiling().unwrap();
}

#[test]
fn a_second_at_100_hz_over_four_busy_threads() {
    let Monitor {
        register, control, ..
    } = Monitor::builder().start().unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..4)
        .map(|n| busy_component(&register, n, running.clone()))
        .collect();
    std::thread::sleep(ms(50));
    warm_up(&control);

    control
        .start_profiling(ProfilingOptions::default())
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(ms(1000));
    let profile = control.stop_profiling().unwrap();
    let window = started.elapsed();
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }

    assert_eq!(profile.threads.len(), 4);
    assert!(profile.duration <= window);
    let expected = profile.duration.as_secs_f64() * 100.0;
    for thread in &profile.threads {
        let samples = thread.samples.len() as f64;
        // Generous: a loaded two-core machine delays ticks.
        assert!(
            samples >= expected * 0.3 && samples <= expected * 1.3,
            "{} samples of {}, expected about {expected} ({} dropped in all)",
            samples,
            thread.component,
            profile.dropped_samples
        );
        let named = thread
            .samples
            .iter()
            .filter(|s| {
                profile.frames_of(s).any(|f| {
                    f.function
                        .as_deref()
                        .is_some_and(|n| n.ends_with("busy_profiled_work"))
                })
            })
            .count();
        assert!(
            named as f64 >= samples * 0.5,
            "only {named} of {samples} samples name the busy function"
        );
        assert!(thread.samples.windows(2).all(|w| w[0].time <= w[1].time));
    }
}

/// A profiling tick samples and sleeps again: it does not look at the
/// components (their promise still stands), and the samples come back
/// without waking the monitor. So the monitor's looks stay what the
/// components' activities and the requests ask for, however many ticks.
#[test]
fn profiling_ticks_do_not_look_at_the_components() {
    let Monitor {
        register, control, ..
    } = Monitor::builder().start().unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let worker = busy_component(&register, 0, running.clone());
    std::thread::sleep(ms(50));
    warm_up(&control);

    let before = control.stats().unwrap();
    control
        .start_profiling(ProfilingOptions {
            rate_hz: 1000,
            ..ProfilingOptions::default()
        })
        .unwrap();
    let started = Instant::now();
    let mut requests = 2; // starting profiling, and each figures request below
    let after = loop {
        std::thread::sleep(ms(250));
        requests += 1;
        let stats = control.stats().unwrap();
        if stats.samples - before.samples >= 200 || started.elapsed() > ms(30_000) {
            break stats;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    control.stop_profiling().unwrap();
    running.store(false, Ordering::Relaxed);
    worker.join().unwrap();

    let samples = after.samples - before.samples;
    let looks = after.looks - before.looks;
    assert!(samples >= 100, "{samples} samples in {seconds:.1} s");
    // One look per request, and while the component keeps changing, one per
    // its 500 ms transient timeout; a look per tick would be one per sample.
    let allowed = requests as f64 + 2.0 * seconds + 4.0;
    assert!(
        (looks as f64) <= allowed,
        "{looks} looks for {samples} samples in {seconds:.1} s ({requests} requests)"
    );
}

#[test]
fn a_hang_while_profiling_is_alerted_with_its_stack_and_marked() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder()
        .symbolicate_deadline(common::GENEROUS)
        .start()
        .unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..4)
        .map(|n| busy_component(&register, n, running.clone()))
        .collect();
    let hung = ComponentId::new("hung", 1);
    let puppet = Puppet::spawn(&register, hung.clone(), ms(100), ms(400), None).unwrap();
    std::thread::sleep(ms(50));

    control
        .start_profiling(ProfilingOptions::default())
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(ms(200));
    let hang_began = started.elapsed();
    puppet.step(Step::Activity("stuck while profiling"));
    expect_alert(&alerts, &hung, AlertKind::Transient);
    let permanent = expect_alert(&alerts, &hung, AlertKind::Permanent);
    // Profiling's own request to that thread does not stand in the way.
    assert!(permanent.stack.is_some(), "{permanent}");
    puppet.step(Step::Wait);
    expect_alert(
        &alerts,
        &hung,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
    std::thread::sleep(ms(100));
    let profile = control.stop_profiling().unwrap();
    let window = started.elapsed();
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }

    assert_eq!(profile.threads.len(), 5);
    let hung_thread = profile
        .threads
        .iter()
        .find(|t| t.component == hung)
        .unwrap();
    let marker = hung_thread.hangs.first().expect("a marker for the hang");
    assert_eq!(marker.level, HangLevel::Permanent);
    assert!(marker.ended);
    assert_eq!(marker.annotation.as_deref(), Some("stuck while profiling"));
    assert!(marker.duration >= ms(400));
    assert!(
        marker.start >= hang_began.saturating_sub(ms(50))
            && marker.start + marker.duration <= window + ms(50),
        "{marker:?}"
    );
    // The hung thread waited most of the window: its samples are mostly
    // repeats, but there.
    assert!(!hung_thread.samples.is_empty());
}

#[test]
fn the_ring_keeps_only_the_latest_samples() {
    let Monitor {
        register, control, ..
    } = Monitor::builder().start().unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let worker = busy_component(&register, 0, running.clone());
    std::thread::sleep(ms(20));
    let options = ProfilingOptions {
        rate_hz: 100,
        max_duration: ms(200),
        ..ProfilingOptions::default()
    };
    control.start_profiling(options).unwrap();
    std::thread::sleep(ms(800));
    let profile = control.stop_profiling().unwrap();
    running.store(false, Ordering::Relaxed);
    worker.join().unwrap();
    let samples = &profile.threads[0].samples;
    // 200 ms at 100 Hz, both ends included.
    assert!(samples.len() <= 21, "{} samples kept", samples.len());
    assert!(profile.dropped_samples > 0);
    // The ones kept are the newest.
    assert!(samples[0].time >= ms(400), "{:?}", samples[0].time);
}

#[test]
fn profiling_requests_are_checked() {
    let Monitor {
        control, register, ..
    } = Monitor::builder().start().unwrap();
    assert_eq!(
        control.stop_profiling().err(),
        Some(ProfilingError::NotProfiling)
    );
    let bad = ProfilingOptions {
        rate_hz: 0,
        ..ProfilingOptions::default()
    };
    assert_eq!(
        control.start_profiling(bad).err(),
        Some(ProfilingError::InvalidOptions)
    );
    control
        .start_profiling(ProfilingOptions::default())
        .unwrap();
    assert_eq!(
        control.start_profiling(ProfilingOptions::default()).err(),
        Some(ProfilingError::AlreadyProfiling)
    );
    // Nothing registered: an empty profile, at once.
    let profile = control.stop_profiling().unwrap();
    assert!(profile.threads.is_empty());
    drop(register);

    let Monitor {
        control,
        register: _keep_running,
        ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let error = control
        .start_profiling(ProfilingOptions::default())
        .err()
        .unwrap();
    assert_eq!(error, ProfilingError::StacksOff);
    assert!(error.to_string().contains("Builder::stacks(true)"));
}

#[test]
fn a_profile_of_waiting_threads_interrupts_nobody() {
    let Monitor {
        register, control, ..
    } = Monitor::builder().start().unwrap();
    let idle: Vec<_> = (0..4)
        .map(|n| {
            Puppet::spawn(
                &register,
                ComponentId::new("idle", n),
                ms(100),
                ms(1000),
                None,
            )
            .unwrap()
        })
        .collect();
    for puppet in &idle {
        puppet.step(Step::Activity("once"));
        puppet.step(Step::Wait);
    }
    control
        .start_profiling(ProfilingOptions::default())
        .unwrap();
    std::thread::sleep(ms(500));
    let profile = control.stop_profiling().unwrap();
    for thread in &profile.threads {
        // About 50 samples each, all the same stack: the first one, repeated.
        assert!(thread.samples.len() >= 10, "{}", thread.samples.len());
        assert!(thread
            .samples
            .windows(2)
            .all(|w| w[0].frames == w[1].frames));
    }
}
