//! The cost of profiling mode: 16 busy threads sampled at 100 Hz.
//!
//! Sixteen components run short activities back to back (1 ms of spinning
//! each), so that no sample can be skipped as "still waiting". The cost is
//! the CPU time of the monitor thread, the capture thread (which takes and
//! unwinds the samples) and the stack workers while profiling,
//! minus the same with profiling off over an equal window, as a percentage
//! of one core.

use std::time::{Duration, Instant};

use hangwatch::{Monitor, ProfilingOptions};

use crate::procfs::{threads_starting_with, Thread};
use crate::profiling_1khz::Busy;

const THREADS: u64 = 16;

/// What profiling 16 busy threads cost.
pub struct ProfilingCost {
    /// Monitor and stack workers, percent of one core, above the baseline.
    pub overhead_pct: f64,
    /// Samples taken per second over all threads.
    pub samples_per_s: f64,
}

pub fn run(window: Duration) -> ProfilingCost {
    let name = "hw-bench-prof";
    let Monitor {
        register, control, ..
    } = Monitor::builder()
        .thread_name(name)
        .start()
        .expect("start the monitor");
    let busy = Busy::start(&register, THREADS, "hw-prof-busy");
    let mut ours = Thread::named(name).into_iter().collect::<Vec<_>>();
    ours.extend(threads_starting_with("hangwatch-stack"));
    // The capture thread ("hangwatch-capture", cut to 15 bytes by the kernel).
    ours.extend(threads_starting_with("hangwatch-capt"));
    let cpu = |threads: &[Thread]| threads.iter().map(Thread::cpu_time).sum::<Duration>();

    let before = cpu(&ours);
    std::thread::sleep(window);
    let baseline = cpu(&ours) - before;

    control
        .start_profiling(ProfilingOptions::default())
        .expect("start profiling");
    let before = cpu(&ours);
    let started = Instant::now();
    std::thread::sleep(window);
    let profiling = cpu(&ours) - before;
    let elapsed = started.elapsed();
    let profile = control.stop_profiling().expect("stop profiling");

    drop(busy);
    let samples: usize = profile.threads.iter().map(|t| t.samples.len()).sum();
    ProfilingCost {
        overhead_pct: profiling.saturating_sub(baseline).as_secs_f64() / elapsed.as_secs_f64()
            * 100.0,
        samples_per_s: samples as f64 / elapsed.as_secs_f64(),
    }
}
