//! Randomised interleavings of register, notify, unregister, exit and drop
//! across threads: no missed exit signal, none where none was due, never
//! two, no deadlock, no panic.
//!
//! Every operation is stamped from one global counter, so that after the
//! fact each registration can be placed before, after, or across the exit.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangwatch::{ComponentId, Monitor, Timeouts};
use hangwatch_test_support::eventually;

const INTERLEAVINGS: u64 = 10_000;
const COMPONENTS: usize = 3;

/// When each step of one component's life happened, by the global counter.
#[derive(Default, Clone, Copy, Debug)]
struct Life {
    registered: u64,
    dropping: Option<u64>,
    dropped: Option<u64>,
}

fn tick(clock: &AtomicU64) -> u64 {
    clock.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn ten_thousand_random_interleavings() {
    let seed: u64 = std::env::var("HANGWATCH_RACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_127);
    for round in 0..INTERLEAVINGS {
        one_interleaving(seed.wrapping_add(round));
    }
}

fn one_interleaving(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let Monitor {
        register,
        control,
        thread,
        ..
    } = Monitor::builder()
        .enabled(rng.bool())
        .stacks(false)
        .start()
        .unwrap();
    // Starts at 1: a stamp of 0 means "not yet".
    let clock = Arc::new(AtomicU64::new(1));
    let signals: Arc<Vec<AtomicUsize>> =
        Arc::new((0..COMPONENTS).map(|_| AtomicUsize::new(0)).collect());
    let lives = Arc::new(Mutex::new(vec![Life::default(); COMPONENTS]));
    let (release, released) = crossbeam_channel::bounded::<()>(0);

    let workers: Vec<_> = (0..COMPONENTS)
        .map(|n| {
            let (register, clock, signals, lives, released) = (
                register.clone(),
                clock.clone(),
                signals.clone(),
                lives.clone(),
                released.clone(),
            );
            let mut rng = fastrand::Rng::with_seed(seed ^ (n as u64 + 1) << 32);
            std::thread::spawn(move || {
                spin(&mut rng);
                let handle = register
                    .register_component(
                        ComponentId::new("racer", n as u64),
                        Timeouts::new(Duration::from_millis(50), Duration::from_millis(500)),
                        Some(Box::new(move || {
                            signals[n].fetch_add(1, Ordering::SeqCst);
                        })),
                    )
                    .expect("registers");
                lives.lock().unwrap()[n].registered = tick(&clock);
                for _ in 0..rng.usize(0..20) {
                    handle.notify_activity("race");
                    if rng.bool() {
                        handle.notify_wait();
                    }
                }
                if rng.bool() {
                    spin(&mut rng);
                    lives.lock().unwrap()[n].dropping = Some(tick(&clock));
                    drop(handle);
                    lives.lock().unwrap()[n].dropped = Some(tick(&clock));
                } else {
                    // Kept until the test is done checking.
                    let _ = released.recv();
                    drop(handle);
                }
            })
        })
        .collect();

    spin(&mut rng);
    let exit_began = tick(&clock);
    control.exit().expect("monitor running");
    let exit_ended = tick(&clock);

    // Let every component finish registering or dropping, then have the
    // monitor take in everything sent so far (registrations are drained
    // before control requests).
    eventually(
        common::GENEROUS,
        &format!("seed {seed}: every component to register or drop (count of those pending)"),
        || {
            let lives = lives.lock().unwrap();
            let pending = lives
                .iter()
                .filter(|l| l.registered == 0 && l.dropped.is_none());
            pending.count()
        },
        |&pending| pending == 0,
    );
    control.stats().expect("monitor running");

    let lives = lives.lock().unwrap().clone();
    for (n, life) in lives.iter().enumerate() {
        let calls = signals[n].load(Ordering::SeqCst);
        assert!(
            calls <= 1,
            "seed {seed}: component {n} signalled {calls} times: {life:?}"
        );
        let dropped_before_exit = life.dropped.is_some_and(|d| d < exit_began);
        let alive_after_exit = life.dropping.is_none_or(|d| d > exit_ended);
        if dropped_before_exit {
            assert_eq!(
                calls, 0,
                "seed {seed}: component {n} unregistered before exit, yet signalled: {life:?}"
            );
        } else if alive_after_exit {
            assert_eq!(calls, 1, "seed {seed}: component {n} alive across exit, not signalled: {life:?} exit {exit_began}..{exit_ended}");
        }
    }

    drop(release);
    for worker in workers {
        worker.join().expect("no panic in a component");
    }
    drop(register);
    thread.join().expect("the monitor ends, without deadlock");
}

/// A short random delay, to shift the interleaving.
fn spin(rng: &mut fastrand::Rng) {
    for _ in 0..rng.usize(0..2_000) {
        std::hint::spin_loop();
    }
    if rng.u8(..) < 16 {
        std::thread::yield_now();
    }
}
