//! The signal sampler against real threads: busy, blocked in system calls,
//! blocking the signal, exited; many at once; copies checked byte for byte.
//!
//! Timing bounds are generous (a loaded two-core machine); the figures that
//! matter are measured by `hangwatch bench`, not here.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hangwatch::test_util::{
    block_sample_signal_on_this_thread, install_foreign_handler_for_tests,
    unblock_sample_signal_on_this_thread, RawSample, SampleTarget, Sampler,
};
use hangwatch::{CaptureMethod, NoStack, SampleSignal, SamplerError};
use hangwatch_test_support::eventually;

/// The timeout of a sample that should succeed: far more than it takes.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits for something that should happen.
const GENEROUS: Duration = Duration::from_secs(10);
/// The copy limit the monitor uses.
const LIMIT: usize = 256 * 1024;
/// A value the sampled threads keep on their stacks.
const MARKER: u64 = 0x5eed_cafe_f00d_d00d;

fn sampler() -> Sampler {
    Sampler::install(SampleSignal::default()).expect("the default signal is free")
}

/// Spawns a thread that makes itself a target with `copy_limit`, hands it
/// over, then runs `body`.
fn spawn_sampled<T: Send + 'static>(
    copy_limit: usize,
    body: impl FnOnce() -> T + Send + 'static,
) -> (SampleTarget, JoinHandle<T>) {
    let (sender, receiver) = mpsc::channel();
    let thread = thread::spawn(move || {
        sender
            .send(SampleTarget::current_thread(copy_limit).expect("a target"))
            .unwrap();
        body()
    });
    (receiver.recv().unwrap(), thread)
}

/// Samples `target` `times` times; every sample must succeed.
fn sample_many(sampler: &Sampler, target: &SampleTarget, times: usize) -> Vec<RawSample> {
    (0..times)
        .map(|_| {
            let sample = sampler.sample(target, TIMEOUT).expect("a sample");
            assert_eq!(sample.tid, target.tid());
            sample
        })
        .collect()
}

/// Whether `sample`'s stack holds `value` at `address`.
fn holds_at(sample: &RawSample, address: u64, value: u64) -> bool {
    let Some(offset) = address.checked_sub(sample.stack_start) else {
        return false;
    };
    let offset = offset as usize;
    sample
        .stack
        .get(offset..offset + 8)
        .is_some_and(|bytes| bytes == value.to_ne_bytes())
}

#[test]
fn a_thread_that_allocates_keeps_working_through_10_000_samples() {
    let sampler = sampler();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let (target, thread) = spawn_sampled(LIMIT, {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                let numbers: Vec<u64> = (0..64).collect();
                let text = black_box(format!("{numbers:?}"));
                drop(black_box(numbers));
                drop(text);
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let samples = sample_many(&sampler, &target, 10_000);
    assert!(samples.iter().all(|sample| !sample.stack.is_empty()));
    assert!(samples.iter().all(|sample| sample.pause_ns < 1_000_000_000));

    let before = rounds.load(Ordering::Relaxed);
    eventually(
        GENEROUS,
        "the sampled thread to go on working (100 more rounds)",
        || rounds.load(Ordering::Relaxed),
        |&done| done >= before + 100,
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

#[test]
fn a_sleeping_thread_sleeps_its_full_time_through_10_000_samples() {
    let sampler = sampler();
    let stop = Arc::new(AtomicBool::new(false));
    let (target, thread) = spawn_sampled(LIMIT, {
        let stop = stop.clone();
        move || {
            let mut naps = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                thread::sleep(Duration::from_millis(20));
                naps.push(started.elapsed());
            }
            naps
        }
    });

    sample_many(&sampler, &target, 10_000);
    stop.store(true, Ordering::Relaxed);
    let naps = thread.join().unwrap();
    assert!(!naps.is_empty());
    assert!(naps.iter().all(|nap| *nap >= Duration::from_millis(20)));
}

#[test]
fn a_thread_reading_a_socket_gets_its_bytes_after_10_000_samples() {
    let sampler = sampler();
    let (mut writer, mut reader) = UnixStream::pair().unwrap();
    let (target, thread) = spawn_sampled(LIMIT, move || {
        let mut bytes = [0; 5];
        // One plain `read`, which reports EINTR: with SA_RESTART the kernel
        // restarts it after each handler instead.
        let first = reader.read(&mut bytes)?;
        reader.read_exact(&mut bytes[first..])?;
        Ok::<_, std::io::Error>(bytes)
    });

    sample_many(&sampler, &target, 10_000);
    assert!(!thread.is_finished());
    writer.write_all(b"hello").unwrap();
    assert_eq!(&thread.join().unwrap().unwrap(), b"hello");
}

#[test]
fn a_thread_waiting_on_a_condvar_wakes_when_notified_after_10_000_samples() {
    let sampler = sampler();
    let ready = Arc::new((Mutex::new(false), Condvar::new()));
    let (target, thread) = spawn_sampled(LIMIT, {
        let ready = ready.clone();
        move || {
            let (flag, condvar) = &*ready;
            let mut flag = flag.lock().unwrap();
            while !*flag {
                flag = condvar.wait(flag).unwrap();
            }
        }
    });

    sample_many(&sampler, &target, 10_000);
    assert!(!thread.is_finished());
    *ready.0.lock().unwrap() = true;
    ready.1.notify_one();
    eventually(
        GENEROUS,
        "the waiter to wake and finish",
        || thread.is_finished(),
        |&finished| finished,
    );
    thread.join().unwrap();
}

#[test]
fn thirty_two_threads_are_sampled_concurrently_from_four_samplers() {
    let sampler = sampler();
    let stop = Arc::new(AtomicBool::new(false));
    let (targets, threads): (Vec<_>, Vec<_>) = (0..32)
        .map(|index| {
            let stop = stop.clone();
            spawn_sampled(LIMIT, move || {
                let marker = black_box([MARKER; 4]);
                while !stop.load(Ordering::Relaxed) {
                    if index % 8 == 0 {
                        black_box((0..1000u64).sum::<u64>());
                        thread::yield_now();
                    } else {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                black_box(marker);
            })
        })
        .unzip();

    thread::scope(|scope| {
        for first in 0..4 {
            let targets = &targets;
            scope.spawn(move || {
                for round in 0..40 {
                    for offset in 0..targets.len() {
                        let target = &targets[(first * 8 + round + offset) % targets.len()];
                        let sample = sampler.sample(target, TIMEOUT).expect("a sample");
                        assert_eq!(sample.tid, target.tid());
                    }
                }
            });
        }
    });

    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn one_target_sampled_from_two_threads_at_once_takes_turns() {
    let sampler = sampler();
    let (marker_sender, marker_address) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    let (target, thread) = spawn_sampled(LIMIT, move || {
        let marker = black_box([MARKER; 4]);
        marker_sender.send(marker.as_ptr() as u64).unwrap();
        stopped.recv().unwrap();
        black_box(marker);
    });
    let address = marker_address.recv().unwrap();

    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for sample in sample_many(&sampler, &target, 2_000) {
                    assert!(holds_at(&sample, address, MARKER));
                }
            });
        }
    });

    stop.send(()).unwrap();
    thread.join().unwrap();
}

#[test]
fn a_thread_that_blocks_the_signal_times_out_without_harm() {
    // The signal path, forced: a thread that waits (here, for commands) is
    // otherwise read from outside, and its signal mask does not matter.
    let reader = sampler();
    let sampler = reader.signal_only();
    let signal = sampler.signal();
    let (commands, inbox) = mpsc::channel::<&str>();
    let (replies, answers) = mpsc::channel::<&str>();
    let (blocked, blocked_thread) = spawn_sampled(LIMIT, move || {
        block_sample_signal_on_this_thread(&signal).unwrap();
        replies.send("blocked").unwrap();
        for command in inbox {
            match command {
                "unblock" => unblock_sample_signal_on_this_thread(&signal).unwrap(),
                "stop" => break,
                _ => {}
            }
            replies.send(command).unwrap();
        }
    });
    assert_eq!(answers.recv().unwrap(), "blocked");
    let (other, other_thread) = spawn_sampled(LIMIT, || thread::sleep(Duration::from_secs(1)));

    // The first signal times out; the next requests see it still pending
    // and blocked, and say so at once, queueing nothing more; the other
    // thread samples fine meanwhile, and the blocked one is read fine.
    let started = Instant::now();
    let first = sampler.sample(&blocked, Duration::from_millis(50));
    assert_eq!(first.unwrap_err(), NoStack::Timeout);
    for _ in 0..8 {
        let result = sampler.sample(&blocked, Duration::from_millis(50));
        assert_eq!(result.unwrap_err(), NoStack::SignalBlocked);
        sample_many(&sampler, &other, 10);
        let read = reader
            .sample(&blocked, TIMEOUT)
            .expect("read while blocked");
        assert_eq!(read.method, CaptureMethod::Blocked);
    }
    assert!(started.elapsed() < GENEROUS);

    // Unblocked, it takes the late signals, which do nothing, and goes on.
    commands.send("unblock").unwrap();
    assert_eq!(answers.recv_timeout(GENEROUS).unwrap(), "unblock");
    commands.send("ping").unwrap();
    assert_eq!(answers.recv_timeout(GENEROUS).unwrap(), "ping");
    sample_many(&sampler, &blocked, 100);

    commands.send("stop").unwrap();
    blocked_thread.join().unwrap();
    other_thread.join().unwrap();
}

#[test]
fn a_thread_that_exited_is_gone() {
    let sampler = sampler();
    let (target, thread) = spawn_sampled(LIMIT, || ());
    thread.join().unwrap();
    assert_eq!(
        sampler.sample(&target, TIMEOUT).unwrap_err(),
        NoStack::ThreadGone
    );
}

#[test]
fn a_thread_that_exits_while_waited_for_is_gone_at_once() {
    // A signal the thread blocks is waited for (a waiting thread is
    // otherwise read at once).
    let sampler = sampler().signal_only();
    let signal = sampler.signal();
    let (exit, exiting) = mpsc::channel::<()>();
    let (blocking, blocked) = mpsc::channel();
    let (target, thread) = spawn_sampled(LIMIT, move || {
        block_sample_signal_on_this_thread(&signal).unwrap();
        blocking.send(()).unwrap();
        exiting.recv().unwrap();
    });
    blocked.recv().unwrap();

    let started = Instant::now();
    thread::scope(|scope| {
        let waiting = scope.spawn(|| sampler.sample(&target, Duration::from_secs(60)));
        thread::sleep(Duration::from_millis(50));
        exit.send(()).unwrap();
        assert_eq!(waiting.join().unwrap().unwrap_err(), NoStack::ThreadGone);
    });
    assert!(started.elapsed() < GENEROUS);
    thread.join().unwrap();
}

/// Recurses `depth` frames, each with 4 KiB on the stack, then blocks.
#[inline(never)]
fn deep(depth: usize, stop: &mpsc::Receiver<()>) {
    let frame = black_box([depth as u8; 4096]);
    if depth == 0 {
        stop.recv().unwrap();
    } else {
        deep(depth - 1, stop);
    }
    black_box(frame);
}

#[test]
fn a_stack_deeper_than_the_limit_is_truncated_and_a_shallow_one_is_not() {
    let sampler = sampler();
    let (stop_deep, deep_stopped) = mpsc::channel();
    let (deep_target, deep_thread) = spawn_sampled(16 * 1024, move || deep(32, &deep_stopped));
    let (stop_shallow, shallow_stopped) = mpsc::channel::<()>();
    let (shallow_target, shallow_thread) =
        spawn_sampled(1024 * 1024, move || shallow_stopped.recv().unwrap());

    // Until the deep thread reaches the bottom (and blocks there), its
    // stack may still be short, or still growing.
    let deep_sample = eventually(
        GENEROUS,
        "the deep thread to block with a stack past the copy's limit",
        || sampler.sample(&deep_target, TIMEOUT).unwrap(),
        |sample| sample.truncated && sample.method == CaptureMethod::Blocked,
    );
    assert_eq!(deep_sample.stack.len(), 16 * 1024);

    let shallow_sample = sampler.sample(&shallow_target, TIMEOUT).unwrap();
    assert!(!shallow_sample.truncated);
    assert!(!shallow_sample.stack.is_empty());
    assert!(shallow_sample.stack.len() < 1024 * 1024);

    // A smaller copy asked for per sample: cut there, and said so.
    let small = sampler.sample_at_most(&deep_target, 4096, TIMEOUT).unwrap();
    assert_eq!(small.stack.len(), 4096);
    assert!(small.truncated);
    assert_eq!(small.stack[..], deep_sample.stack[..4096]);
    // The full copy still works afterwards.
    assert_eq!(
        sampler.sample(&deep_target, TIMEOUT).unwrap().stack.len(),
        16 * 1024
    );

    stop_deep.send(()).unwrap();
    stop_shallow.send(()).unwrap();
    deep_thread.join().unwrap();
    shallow_thread.join().unwrap();
}

#[test]
fn the_copy_is_the_real_stack_of_the_thread() {
    let sampler = sampler();
    let (marker_sender, marker_address) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    let (target, thread) = spawn_sampled(LIMIT, move || {
        let marker = black_box([MARKER, !MARKER, MARKER, !MARKER]);
        marker_sender.send(marker.as_ptr() as u64).unwrap();
        stopped.recv().unwrap();
        black_box(marker);
    });
    let address = marker_address.recv().unwrap();

    // Signalled (as if running), the thread copies itself; read while
    // blocked, the same bytes are copied from outside.
    let signalled = sampler.signal_only().sample(&target, TIMEOUT).unwrap();
    assert_eq!(signalled.method, CaptureMethod::Signal);
    assert!(signalled.pause_ns > 0);
    let read = eventually(
        GENEROUS,
        "a sample of the thread read while blocked",
        || sampler.sample(&target, TIMEOUT).unwrap(),
        |sample| sample.method == CaptureMethod::Blocked,
    );
    assert_eq!(read.pause_ns, 0);
    assert!(read.syscall.is_some());
    for sample in [signalled, read] {
        assert_eq!(sample.registers.sp, sample.stack_start);
        assert_ne!(sample.registers.ip, 0);
        assert!(sample.stack_start <= address);
        assert!(address < sample.stack_start + sample.stack.len() as u64);
        assert!(holds_at(&sample, address, MARKER));
        assert!(holds_at(&sample, address + 8, !MARKER));
    }

    stop.send(()).unwrap();
    thread.join().unwrap();
}

#[test]
fn a_thread_can_sample_itself() {
    let sampler = sampler();
    let target = SampleTarget::current_thread(LIMIT).unwrap();
    let marker = black_box([MARKER; 2]);
    let sample = sampler.sample(&target, TIMEOUT).unwrap();
    assert!(holds_at(&sample, marker.as_ptr() as u64, MARKER));
    black_box(marker);
}

#[test]
fn install_refuses_signals_it_cannot_own() {
    // Idempotent for the same signal.
    sampler();
    sampler();

    let error = Sampler::install(SampleSignal::new(libc::SIGPROF)).unwrap_err();
    assert!(matches!(error, SamplerError::ProfilingSignal), "{error}");

    let error = Sampler::install(SampleSignal::new(libc::SIGUSR1)).unwrap_err();
    assert!(matches!(error, SamplerError::NotRealTime { .. }), "{error}");
    assert!(error.to_string().contains("SampleSignal::default()"));

    let taken = SampleSignal::new(libc::SIGRTMIN() + 9);
    install_foreign_handler_for_tests(taken).unwrap();
    let error = Sampler::install(taken).unwrap_err();
    assert!(
        matches!(error, SamplerError::ForeignHandler { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("SampleSignal::new"), "{error}");
    assert!(error.to_string().contains("SIGRTMIN+9"), "{error}");
}

#[test]
fn requests_to_many_threads_are_answered_in_parallel() {
    let sampler = sampler();
    let (stop, stopped) = mpsc::channel::<()>();
    let stopped = Arc::new(Mutex::new(stopped));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let stopped = stopped.clone();
            let (target, thread) = spawn_sampled(LIMIT, move || {
                let _ = stopped.lock().map(|r| r.recv_timeout(GENEROUS));
            });
            (Arc::new(target), thread)
        })
        .collect();
    for _ in 0..200 {
        // Ask every thread first, then take the answers.
        let pending: Vec<_> = threads
            .iter()
            .map(|(target, _)| sampler.request(target, 8 * 1024).expect("a request"))
            .collect();
        for (request, (target, _)) in pending.into_iter().zip(&threads) {
            let sample = request.wait(TIMEOUT).expect("an answer");
            assert_eq!(sample.tid, target.tid());
            assert!(sample.stack.len() <= 8 * 1024);
        }
    }
    // A request given up (dropped) leaves the target usable.
    let (target, _) = &threads[0];
    drop(sampler.request(target, 1024).expect("a request"));
    assert!(sampler.sample(target, TIMEOUT).is_ok());
    // A request read at once from a blocked thread holds nothing; a second
    // signal request while one is outstanding is refused, not queued.
    let read = sampler.request(target, 1024).expect("a request");
    assert!(read.is_answered());
    let signalling = sampler.signal_only();
    let first = signalling.request(target, 1024).expect("a request");
    assert_eq!(
        signalling.request(target, 1024).err(),
        Some(NoStack::Timeout)
    );
    assert!(first.wait(TIMEOUT).is_ok());
    assert!(read.wait(Duration::ZERO).is_ok());

    drop(stop);
    for (_, thread) in threads {
        thread.join().unwrap();
    }
}
