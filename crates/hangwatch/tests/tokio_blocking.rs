//! The tokio integration (feature `tokio`): tasks that block their worker —
//! `std::thread::sleep` in an HTTP handler, a blocking lock, a CPU loop,
//! synchronous I/O — raise alerts carrying the worker's stack and the task's
//! name or spawn location, while the other workers go on serving; workers
//! unregister when the runtime stops.
//!
//! The HTTP server is `examples/tokio_http.rs`, compiled in here, driven
//! with real HTTP requests over loopback.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

mod common;
#[allow(dead_code)]
#[path = "../examples/tokio_http.rs"]
mod tokio_http;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ms, next_matching, GENEROUS};
use hangwatch::integrations::tokio::{
    spawn, spawn_named, BuilderExt, WorkerMonitor, RUNNING_TASKS,
};
use hangwatch::test_util::{
    block_sample_signal_on_this_thread, unblock_sample_signal_on_this_thread,
};
use hangwatch::{
    Alert, AlertKind, ComponentId, Control, HangLevel, Monitor, SampleSignal, Timeouts,
};
use hangwatch_test_support::eventually;

fn stack_names(alert: &Alert, function: &str) -> bool {
    alert.stack.as_ref().is_some_and(|stack| {
        stack.frames.iter().any(|frame| {
            frame
                .function
                .as_deref()
                .is_some_and(|f| f.contains(function))
        })
    })
}

/// Waits until no component named `name` is registered.
fn wait_until_unregistered(control: &Control, name: &str) {
    eventually(
        GENEROUS,
        &format!("every {name} worker to unregister"),
        || control.stats().unwrap(),
        |stats| !stats.components.iter().any(|c| c.id.name == name),
    );
}

#[test]
fn a_blocking_http_handler_is_caught_in_its_stack_while_other_workers_serve() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder()
        .symbolicate_deadline(GENEROUS)
        .start()
        .unwrap();
    let workers =
        WorkerMonitor::new(&register, "http-worker", Timeouts::new(ms(100), ms(400))).unwrap();
    let runtime = tokio_http::runtime(&workers, 3).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(tokio_http::serve(
        listener,
        tokio_http::app(Duration::from_millis(1500)),
    ));
    assert!(
        tokio_http::wait_for_workers(&workers, 3),
        "{:?}",
        workers.registration_errors()
    );

    // The slow request, from a thread of its own.
    let (slow_done, slow_answer) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let _ = slow_done.send(tokio_http::http_get(addr, "/slow"));
    });

    let transient = next_matching(&alerts, "a transient alert for GET /slow", |alert| {
        alert.kind == AlertKind::Transient && alert.annotation.as_deref() == Some("GET /slow")
    });
    let blocked = transient.component.clone();
    let blocked_thread = transient.thread.clone().expect("workers have names");

    // Meanwhile, the other workers serve.
    for _ in 0..4 {
        let (status, served_by) = tokio_http::http_get(addr, "/fast").unwrap();
        assert_eq!(status, 200);
        assert_ne!(*served_by, *blocked_thread, "served by the blocked worker");
    }
    assert!(
        slow_answer.try_recv().is_err(),
        "the fast requests were served while GET /slow was still blocked"
    );

    // The permanent alert carries the blocked worker's stack: the handler
    // calling std::thread::sleep.
    let permanent = next_matching(&alerts, "a permanent alert for GET /slow", |alert| {
        alert.kind == AlertKind::Permanent && alert.component == blocked
    });
    assert_eq!(permanent.annotation.as_deref(), Some("GET /slow"));
    assert!(
        stack_names(&permanent, "tokio_http::block_the_worker"),
        "the stack does not show the handler:\n{permanent}"
    );
    assert!(stack_names(&permanent, "std::thread"), "{permanent}");

    let (status, body) = slow_answer.recv_timeout(GENEROUS).unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "blocked a worker for 1.5s"));
    client.join().unwrap();
    let ended = next_matching(&alerts, "the hang's end", |alert| {
        matches!(alert.kind, AlertKind::Ended { .. }) && alert.component == blocked
    });
    assert_eq!(
        ended.kind,
        AlertKind::Ended {
            worst: HangLevel::Permanent
        }
    );
    assert!(ended.duration >= ms(400), "{ended}");

    // Stopping the runtime unregisters its workers: no "thread exited".
    runtime.shutdown_timeout(GENEROUS);
    wait_until_unregistered(&control, "http-worker");
    assert_eq!(control.stats().unwrap().threads_exited, 0);
}

/// Spins on the calling thread for `length` with the sampling signal
/// blocked: a running thread that never answers it, so that its stack can
/// come no sooner than the capture timeout.
fn spin_deaf_to_signals(length: Duration) {
    let signal = SampleSignal::default();
    block_sample_signal_on_this_thread(&signal).expect("block the sampling signal");
    let started = Instant::now();
    while started.elapsed() < length {
        std::hint::spin_loop();
    }
    unblock_sample_signal_on_this_thread(&signal).expect("unblock the sampling signal");
}

#[test]
fn the_driver_is_handed_off_when_the_alert_is_raised_not_when_its_stack_is_ready() {
    // The transient alert carries a stack, and waits for it (the deadline is
    // generous); the blocked worker does not answer the sampling signal, so
    // its stack is given up only after `HOLD`. Whatever reacts to the alert
    // when it leaves the monitor reacts `HOLD` after it was raised.
    let hold = ms(1_000);
    let block = ms(1_500);
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .stack_on_transient(true)
        .capture_timeout(hold)
        .symbolicate_deadline(GENEROUS)
        .start()
        .unwrap();
    let workers =
        WorkerMonitor::new(&register, "handed-off", Timeouts::new(ms(100), GENEROUS)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .watch_workers(&workers)
        .build()
        .unwrap();
    assert!(tokio_http::wait_for_workers(&workers, 2));

    // A ticker on the runtime's timers notes when each tick fires. At its
    // tenth it spawns the blocking task: spawned from the worker that the
    // timer woke, which is the one that polled the driver, it takes that
    // worker's next-task slot, and no other worker is woken for it. So the
    // driver stays with the blocked worker: until the hand-off wakes the
    // other one, no timer fires.
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let (blocked_sender, blocked) = mpsc::channel();
    runtime.spawn({
        let ticks = ticks.clone();
        async move {
            for tick in 0.. {
                tokio::time::sleep(ms(5)).await;
                ticks.lock().unwrap().push(Instant::now());
                if tick == 10 {
                    let blocked_sender = blocked_sender.clone();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        spin_deaf_to_signals(block);
                        let _ = blocked_sender.send((started, Instant::now()));
                    });
                }
            }
        }
    });

    let transient = next_matching(
        &alerts,
        "a transient alert of the blocked worker",
        |alert| alert.kind == AlertKind::Transient && alert.component.name == "handed-off",
    );
    let (started, ended) = blocked.recv_timeout(GENEROUS).unwrap();
    // The monitor raised the alert when the worker had been busy for
    // `transient.duration`, and the worker became busy before the block
    // began: the alert was raised by `started + duration`.
    let raised_by = started + transient.duration;
    let first_tick = ticks
        .lock()
        .unwrap()
        .iter()
        .copied()
        .find(|tick| *tick > started)
        .expect("the ticker goes on after the block");
    assert!(
        first_tick < raised_by + hold / 2,
        "the first timer fired {:?} after the block began ({:?} long) and {:?} after the \
         alert was raised, not within half of the {hold:?} its stack was waited for: \
         {transient}",
        first_tick - started,
        ended - started,
        first_tick.saturating_duration_since(raised_by),
    );
    runtime.shutdown_timeout(GENEROUS);
}
#[inline(never)]
fn blocked_on_a_lock(lock: &Mutex<()>) {
    drop(std::hint::black_box(lock).lock());
}

#[test]
fn a_lock_a_cpu_loop_and_synchronous_io_are_caught_and_named() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder()
        .symbolicate_deadline(GENEROUS)
        .start()
        .unwrap();
    let workers = WorkerMonitor::new(&register, "worker", Timeouts::new(ms(80), ms(300))).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_park({
            let workers = workers.clone();
            move || workers.on_thread_park()
        })
        .on_thread_unpark({
            let workers = workers.clone();
            move || workers.on_thread_unpark()
        })
        .on_thread_stop(WorkerMonitor::on_thread_stop)
        .build()
        .unwrap();
    assert!(tokio_http::wait_for_workers(&workers, 2));
    let is_worker = |alert: &Alert| alert.component.name == "worker";

    // A blocking lock, in a task spawned through the integration: named by
    // its spawn location, and seen in the stack.
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let task = {
        let _runtime = runtime.enter();
        let lock = lock.clone();
        spawn(async move { blocked_on_a_lock(&lock) })
    };
    let spawned_at = format!("{}:{}:", file!(), line!() - 2);
    let transient = next_matching(&alerts, "a transient alert for the lock", |alert| {
        is_worker(alert) && alert.kind == AlertKind::Transient
    });
    assert!(
        transient
            .annotation
            .as_deref()
            .is_some_and(|label| label.starts_with(&spawned_at)),
        "{transient} (expected the spawn location {spawned_at}...)"
    );
    let permanent = next_matching(&alerts, "a permanent alert for the lock", |alert| {
        alert.component == transient.component && alert.kind == AlertKind::Permanent
    });
    assert!(stack_names(&permanent, "blocked_on_a_lock"), "{permanent}");
    drop(held);
    runtime.block_on(task).unwrap();
    next_matching(&alerts, "the lock's hang to end", |alert| {
        alert.component == transient.component && matches!(alert.kind, AlertKind::Ended { .. })
    });

    // A CPU loop in a plain tokio task: the worker hooks alone catch it,
    // without a task name.
    let spin = runtime.spawn(async {
        let start = Instant::now();
        let mut turns = 0u64;
        while start.elapsed() < ms(200) {
            turns = std::hint::black_box(turns + 1);
        }
        turns
    });
    let transient = next_matching(&alerts, "a transient alert for the CPU loop", |alert| {
        is_worker(alert) && alert.kind == AlertKind::Transient
    });
    assert_eq!(
        transient.annotation.as_deref(),
        Some(RUNNING_TASKS.as_str())
    );
    assert!(runtime.block_on(spin).unwrap() > 0);
    next_matching(&alerts, "the CPU loop's hang to end", |alert| {
        alert.component == transient.component && matches!(alert.kind, AlertKind::Ended { .. })
    });

    // Synchronous I/O: a blocking read from a socket, in a named task.
    let (mut ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let read = {
        let _runtime = runtime.enter();
        spawn_named("read a socket", async move {
            let mut byte = [0u8; 1];
            theirs.read_exact(&mut byte).map(|()| byte[0])
        })
    };
    let transient = next_matching(&alerts, "a transient alert for the read", |alert| {
        is_worker(alert) && alert.kind == AlertKind::Transient
    });
    assert_eq!(transient.annotation.as_deref(), Some("read a socket"));
    ours.write_all(&[42]).unwrap();
    assert_eq!(runtime.block_on(read).unwrap().unwrap(), 42);
    next_matching(&alerts, "the read's hang to end", |alert| {
        alert.component == transient.component && matches!(alert.kind, AlertKind::Ended { .. })
    });

    runtime.shutdown_timeout(GENEROUS);
    wait_until_unregistered(&control, "worker");
}

#[test]
fn tokios_own_block_in_place_is_not_reported_and_its_worker_is_taken_over() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let workers =
        WorkerMonitor::new(&register, "placing", Timeouts::new(ms(150), ms(1_000))).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_park({
            let workers = workers.clone();
            move || workers.on_thread_park()
        })
        .on_thread_unpark({
            let workers = workers.clone();
            move || workers.on_thread_unpark()
        })
        .on_thread_stop(WorkerMonitor::on_thread_stop)
        .build()
        .unwrap();
    assert!(tokio_http::wait_for_workers(&workers, 2));
    // tokio's own, as libraries call it: the worker is handed to another
    // thread while this one blocks for longer than the permanent timeout.
    let task =
        runtime.spawn(async { tokio::task::block_in_place(|| std::thread::sleep(ms(1_300))) });
    runtime.block_on(task).unwrap();
    // Neither the blocking closure nor the thread afterwards (a worker
    // again, or retired to the blocking pool) is reported, then or later.
    common::expect_silence(&alerts, ms(1_200));
    // The workers are still the runtime's two indexes, each watched once.
    let mut numbers: Vec<u64> = control
        .stats()
        .unwrap()
        .components
        .iter()
        .filter(|c| c.id.name == "placing")
        .map(|c| c.id.number)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [0, 1]);
    runtime.shutdown_timeout(GENEROUS);
}

#[test]
fn component_numbers_are_tokio_worker_indexes() {
    let Monitor {
        register, control, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let workers =
        WorkerMonitor::new(&register, "indexed", Timeouts::new(ms(500), ms(5_000))).unwrap();
    let names = std::sync::atomic::AtomicUsize::new(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .thread_name_fn(move || {
            format!(
                "indexed-{}",
                names.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        })
        .enable_all()
        .watch_workers(&workers)
        .build()
        .unwrap();
    assert!(tokio_http::wait_for_workers(&workers, 3));
    // Each worker says which thread it is, from inside a task it runs.
    let seen: Vec<(usize, String)> = runtime.block_on(async {
        let mut seen = Vec::new();
        for _ in 0..200 {
            let here = tokio::spawn(async {
                let index = tokio::runtime::worker_index().unwrap();
                (index, std::thread::current().name().unwrap().to_owned())
            });
            seen.push(here.await.unwrap());
        }
        seen
    });
    let stats = control.stats().unwrap();
    for (index, thread) in seen {
        let component = stats
            .components
            .iter()
            .find(|c| c.id == ComponentId::new("indexed", index as u64))
            .unwrap_or_else(|| panic!("no component for worker {index}"));
        assert_eq!(component.thread.as_deref(), Some(thread.as_str()));
    }
    runtime.shutdown_timeout(GENEROUS);
}

#[test]
fn a_current_thread_runtime_and_bad_timeouts_are_refused_without_panicking() {
    let Monitor {
        register, control, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    assert!(WorkerMonitor::new(&register, "bad", Timeouts::new(ms(100), ms(100))).is_err());
    assert!(WorkerMonitor::new(&register, "bad", Timeouts::new(Duration::ZERO, ms(100))).is_err());

    // A current-thread runtime's park hooks run on whoever calls block_on:
    // not registered.
    let workers =
        WorkerMonitor::new(&register, "current", Timeouts::new(ms(100), ms(200))).unwrap();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    workers.install(&mut builder);
    let runtime = builder.build().unwrap();
    runtime.block_on(async { tokio::time::sleep(ms(20)).await });
    assert_eq!(workers.registered(), 0);
    assert!(control
        .stats()
        .unwrap()
        .components
        .iter()
        .all(|c| c.id.name != "current"));
}

/// With `RUSTFLAGS="--cfg tokio_unstable"`, the poll hooks name every task
/// by its spawn location, with no change to the spawn call.
#[cfg(tokio_unstable)]
#[test]
fn with_tokio_unstable_a_plain_task_is_named_by_its_spawn_location() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let workers =
        WorkerMonitor::new(&register, "unstable", Timeouts::new(ms(80), ms(5_000))).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .watch_workers(&workers)
        .build()
        .unwrap();
    assert!(tokio_http::wait_for_workers(&workers, 2));
    let task = runtime.spawn(async { std::thread::sleep(ms(200)) });
    let spawned_at = format!("{}:{}:", file!(), line!() - 1);
    let transient = next_matching(&alerts, "a transient alert for the task", |alert| {
        alert.component.name == "unstable" && alert.kind == AlertKind::Transient
    });
    assert!(
        transient
            .annotation
            .as_deref()
            .is_some_and(|label| label.starts_with(&spawned_at)),
        "{transient} (expected the spawn location {spawned_at}...)"
    );
    runtime.block_on(task).unwrap();
}
