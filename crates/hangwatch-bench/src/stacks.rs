//! Stacks: how long a sampled thread spends in the sampling signal's
//! handler, how fast a warm stack is symbolicated, and how soon a permanent
//! alert with a symbolicated stack follows its deadline.
//!
//! - **Handler** (`sample_handler_us_p50`, `sample_handler_us_p99`): the time
//!   a thread spends in our signal handler, from its entry to the
//!   publication of its copy, as the handler measures it
//!   (`RawSample::pause_ns`): the handler only, not the kernel's delivery of
//!   the signal nor the return from it (the whole stop a thread sees is
//!   [`crate::sample_stop`]). The
//!   thread sampled is blocked in a futex (`mpsc::Receiver::recv`) 24 calls
//!   deep; the default sampler reads such a thread from outside without a
//!   signal (pause 0), so these captures are taken with
//!   [`Sampler::signal_only`], which signals it as a running thread is
//!   signalled. Only captures taken by the handler count.
//! - **Reference handler** (`sample_handler_us_p99_inhandler`): the same thread,
//!   signalled by a sampler that unwinds inside the handler with
//!   `backtrace::trace_unsynchronized`, as pprof-rs does by default, entry
//!   to exit of its handler.
//! - **Unwind and symbolicate** (`sample_frames`, `unwind_us`,
//!   `symbolize_warm_us`, `symbolize_cold_ms` and their `_reference`): one
//!   capture of that thread taken by the default sampler (read from
//!   outside, as a hung thread's is) and unwound from its copy (mean of 200
//!   rounds). The module files the stack goes through are then read once
//!   into nothing (into the page cache), and the stack is symbolicated by a
//!   fresh [`Symbolizer`] (blazesym) once, timed from its creation
//!   (`symbolize_cold_ms`), then by a fresh [`ReferenceSymbolizer`] (the
//!   pre-blazesym addr2line one) once (`symbolize_cold_ms_reference`); then
//!   the same unwound stack 200 times by each, warm (mean). Their private
//!   memory is measured in fresh processes ([`crate::children`]).
//! - **Permanent alerts** (`permanent_alert_latency_ms`, `_p99_ms`): a
//!   monitor's permanent deadline to the delivery of the alert with its
//!   symbolicated stack.
//!
//! The signal-free path's own capture time, and what each path does to a
//! thread blocked in a timed call, are in [`crate::eintr`].

use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch::test_util::{
    SampleTarget, Sampler, SymbolizeUnwound, Unwinder, UnwoundStack, DEFAULT_COPY_LIMIT,
};
use hangwatch::{
    AlertKind, CaptureMethod, ComponentId, Monitor, SampleSignal, Symbolizer, Timeouts,
};

use crate::detect::percentile;
use crate::reference_sampler::ReferenceSampler;
use crate::reference_symbolizer::ReferenceSymbolizer;

/// What the stack measurements found.
pub struct StackFigures {
    pub handler_us_p50: f64,
    pub handler_us_p99: f64,
    pub handler_us_p99_inhandler: f64,
    pub frames: usize,
    pub symbolize_warm_us: f64,
    pub symbolize_warm_us_reference: f64,
    pub symbolize_cold_ms: f64,
    pub symbolize_cold_ms_reference: f64,
    pub unwind_us: f64,
    pub permanent_alert_latency_ms: f64,
    pub permanent_alert_latency_p99_ms: f64,
}

/// How many calls deep the sampled threads block.
pub(crate) const DEPTH: u32 = 24;

/// A thread blocked `DEPTH` calls deep, until the sender is dropped.
pub(crate) fn blocked_thread() -> (SampleTarget, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (release, released) = mpsc::channel::<()>();
    let (target_sender, target) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let made = SampleTarget::current_thread(DEFAULT_COPY_LIMIT).expect("a sample target");
        target_sender.send(made).expect("send the target");
        descend(DEPTH, &released);
    });
    (target.recv().expect("the target"), release, thread)
}

#[inline(never)]
pub(crate) fn descend(depth: u32, released: &mpsc::Receiver<()>) {
    if depth == 0 {
        let _ = std::hint::black_box(released).recv();
    } else {
        descend(std::hint::black_box(depth - 1), released);
    }
    std::hint::black_box(depth);
}

fn micros(mut pauses: Vec<u64>) -> Vec<f64> {
    pauses.sort_unstable();
    pauses.into_iter().map(|ns| ns as f64 / 1e3).collect()
}

pub fn run(quick: bool) -> StackFigures {
    let samples = if quick { 2_000 } else { 10_000 };
    let timeout = Duration::from_millis(50);
    let (target, release, thread) = blocked_thread();

    let sampler = Sampler::install(SampleSignal::default()).expect("install the sampler");
    // The thread is blocked: only the signal-only sampler runs our handler
    // on it.
    let signalling = sampler.signal_only();
    let ours: Vec<u64> = (0..samples)
        .filter_map(|_| signalling.sample(&target, timeout).ok())
        .filter(|s| s.method == CaptureMethod::Signal)
        .map(|s| s.pause_ns)
        .collect();
    let reference_signal = SampleSignal::new(SampleSignal::default().raw() + 1);
    let reference =
        ReferenceSampler::install(reference_signal).expect("install the reference sampler");
    let theirs: Vec<u64> = (0..samples)
        .filter_map(|_| reference.sample(&target, timeout).ok().map(|s| s.pause_ns))
        .collect();

    // Unwind and symbolicate one sample taken the default way (read from
    // outside, as a hung thread's is): cold once, then warm; ours, then the
    // pre-blazesym reference on the same unwound stack. The module files
    // are read through once first so that neither cold time includes the
    // disk.
    let sample = sampler.sample(&target, timeout).expect("a sample");
    let mut unwinder = Unwinder::new();
    let unwound = unwinder.unwind(&sample);
    warm_page_cache(&unwound);
    let started = Instant::now();
    let mut symbolizer = Symbolizer::new();
    let frames = symbolizer.symbolize_unwound(&unwound).frames.len();
    let symbolize_cold_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut reference_symbolizer = ReferenceSymbolizer::new();
    std::hint::black_box(reference_symbolizer.symbolize(&unwound));
    let symbolize_cold_ms_reference = started.elapsed().as_secs_f64() * 1e3;
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(unwinder.unwind(&sample));
    }
    let unwind_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(symbolizer.symbolize_unwound(&unwound));
    }
    let symbolize_warm_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(reference_symbolizer.symbolize(&unwound));
    }
    let symbolize_warm_us_reference = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    drop(reference_symbolizer);
    drop(release);
    let _ = thread.join();

    let latencies = permanent_alert_latencies(if quick { 20 } else { 100 });
    let (ours, theirs) = (micros(ours), micros(theirs));
    StackFigures {
        handler_us_p50: percentile(&ours, 0.5),
        handler_us_p99: percentile(&ours, 0.99),
        handler_us_p99_inhandler: percentile(&theirs, 0.99),
        frames,
        symbolize_warm_us,
        symbolize_warm_us_reference,
        symbolize_cold_ms,
        symbolize_cold_ms_reference,
        unwind_us,
        permanent_alert_latency_ms: percentile(&latencies, 0.5),
        permanent_alert_latency_p99_ms: percentile(&latencies, 0.99),
    }
}

/// Reads every module file `stack` goes through once, into nothing, so
/// that its pages are in the page cache.
fn warm_page_cache(stack: &UnwoundStack) {
    let mut read = std::collections::HashSet::new();
    for module in stack.frames.iter().filter_map(|f| f.module.as_deref()) {
        if read.insert(module.path().to_owned()) {
            if let Ok(mut file) = std::fs::File::open(module.path()) {
                let _ = std::io::copy(&mut file, &mut std::io::sink());
            }
        }
    }
}

/// Permanent deadline to the permanent alert, with its symbolicated stack,
/// being delivered; the first hang warms the caches and is not counted.
fn permanent_alert_latencies(hangs: usize) -> Vec<f64> {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .thread_name("hw-bench-stacks")
        .start()
        .expect("start the monitor");
    let (transient, permanent) = (Duration::from_millis(10), Duration::from_millis(30));
    let mut latencies = Vec::new();
    for n in 0..=hangs {
        let register = register.clone();
        let (release, released) = mpsc::channel::<()>();
        let (started_sender, started) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let handle = register
                .register_component(
                    ComponentId::new("stacks", n as u64),
                    Timeouts::new(transient, permanent),
                    None,
                )
                .expect("register");
            let start = Instant::now();
            let _busy = handle.activity("bench hang");
            started_sender.send(start).expect("send the start");
            descend(DEPTH, &released);
        });
        let due = started.recv().expect("the start") + permanent;
        let delivered = loop {
            let alert = alerts.recv().expect("alerts");
            if alert.kind == AlertKind::Permanent {
                break (Instant::now(), alert);
            }
        };
        let symbolicated = delivered
            .1
            .stack
            .as_ref()
            .is_some_and(|s| s.frames.iter().any(|f| f.function.is_some()));
        if n > 0 && symbolicated {
            latencies.push(delivered.0.saturating_duration_since(due).as_secs_f64() * 1e3);
        }
        drop(release);
        let _ = thread.join();
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}
