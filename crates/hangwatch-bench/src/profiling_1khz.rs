//! What profiling at 1 kHz costs outside the sampled threads: hangwatch's
//! profiler beside pprof-rs, and our monitor's work per tick.
//!
//! A profiler's cost has two parts: what the sampled thread loses (its
//! stops, [`crate::sample_stop`]) and what the rest of the process spends.
//! These figures are the second part.
//!
//! - `profile_other_cpu_pct_1khz`: one component thread runs short
//!   activities back to back (1 ms of spinning each, so that it is never
//!   skipped as waiting), profiled by its monitor at 1 kHz
//!   (`Control::start_profiling` with `rate_hz: 1000`). The figure is the CPU
//!   time of every other thread of the process (the monitor, the capture
//!   thread, the stack workers, and the bench's own waiting main thread;
//!   `/proc/self/task/*/schedstat`) over `window`, minus the same over an
//!   equal window just before with the same thread busy and nothing
//!   profiling, as a percentage of one core. Profiling is started before its
//!   window and stopped after it, so the one-off symbolication of the
//!   profile at its stop is not in the window. Nothing else of the bench
//!   runs meanwhile.
//! - `profile_other_cpu_pct_1khz_pprof`: the same with pprof-rs at 1 kHz
//!   instead (its guard built before the window and dropped after it; its
//!   report, which symbolicates, is never built). pprof-rs has no thread: it
//!   unwinds and records in its `SIGPROF` handler, on the sampled thread,
//!   so its cost is in that thread's stops and this figure should be about
//!   zero.
//! - `profile_wakeup_cpu_pct_1khz`: the floor under the first figure on this
//!   machine: a bare thread that does nothing but sleep 1 ms
//!   (`std::thread::park_timeout`, the sleep our monitor's loop makes) and
//!   wake, its own CPU time over `window` as a percentage of one core. Our
//!   profiler wakes two threads per sample (the monitor at its tick, which
//!   queues the capture; the capture thread, which signals the sampled
//!   thread and is woken again by its answer), so it cannot cost the other
//!   threads less than about twice this. In a virtual machine a wake-up
//!   costs tens of microseconds of CPU (the idle vCPU's halt, the timer's
//!   and the wake-up's exits to the host), on bare metal a few.
//! - `profile_monitor_us_per_tick`: sixteen such busy components profiled
//!   at 1 kHz by one monitor; the monitor thread's CPU time over `window`
//!   divided by the ticks it made in it, µs per tick. A tick is one turn of
//!   the monitor's loop, which ends in a sleep: the ticks are the monitor
//!   thread's voluntary context switches (`/proc/.../status`). (The
//!   monitor's `Stats::looks` does not count them: a wake-up for a
//!   profiling tick alone does not look at the components.) Nothing else
//!   wakes it meanwhile: the components' activities are far within their
//!   timeouts.
//! - `profile_samples_per_s_1khz`: the samples that monitor took in that
//!   window (`Stats::samples`), per second, of the 16,000 a second asked
//!   for: a thread still being captured is not asked again, so this shows
//!   how far the capture thread keeps up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangwatch::{ComponentId, Control, Monitor, ProfilingOptions, Register, Timeouts};

use crate::procfs::{cpu_time_by_thread, Thread};

/// The sampling rate of both profilers.
const RATE_HZ: u32 = 1000;
/// Components of the per-tick measurement.
const THREADS: u64 = 16;

/// What the measurements found; see [`crate::Report`] for each field.
pub struct Profiling1kHz {
    pub other_cpu_pct: f64,
    pub other_cpu_pct_pprof: f64,
    pub wakeup_cpu_pct: f64,
    pub monitor_us_per_tick: f64,
    pub samples_per_s: f64,
}

fn profile_at_1khz(control: &Control) {
    control
        .start_profiling(ProfilingOptions {
            rate_hz: RATE_HZ,
            ..ProfilingOptions::default()
        })
        .expect("start profiling");
}

/// Components that each run 1 ms activities back to back until dropped
/// (so that profiling never skips them as waiting), on threads named `name`.
pub(crate) struct Busy {
    running: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    pub(crate) fn start(register: &Register, count: u64, name: &str) -> Busy {
        let running = Arc::new(AtomicBool::new(true));
        let threads = (0..count)
            .map(|n| {
                let register = register.clone();
                let running = running.clone();
                let name = name.to_owned();
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || {
                        let handle = register
                            .register_component(
                                ComponentId::new(name, n),
                                Timeouts::new(Duration::from_secs(1), Duration::from_secs(10)),
                                None,
                            )
                            .expect("register");
                        while running.load(Ordering::Relaxed) {
                            let _task = handle.activity("busy");
                            let start = Instant::now();
                            while start.elapsed() < Duration::from_millis(1) {
                                std::hint::spin_loop();
                            }
                        }
                    })
                    .expect("spawn a busy component")
            })
            .collect();
        // Let them register and start.
        std::thread::sleep(Duration::from_millis(200));
        Busy { running, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// CPU time of every thread of the process but `excluded` over `window`,
/// as a percentage of one core. A thread that started during the window
/// counts from zero; one that ended during it is lost (none does here).
fn others_cpu_pct(excluded: u32, window: Duration) -> f64 {
    let before = cpu_time_by_thread();
    let started = Instant::now();
    std::thread::sleep(window);
    let after = cpu_time_by_thread();
    let elapsed = started.elapsed();
    let used: Duration = after
        .iter()
        .filter(|(tid, _)| **tid != excluded)
        .map(|(tid, cpu)| cpu.saturating_sub(before.get(tid).copied().unwrap_or_default()))
        .sum();
    used.as_secs_f64() / elapsed.as_secs_f64() * 100.0
}

pub fn run(window: Duration) -> Profiling1kHz {
    let (other_cpu_pct, other_cpu_pct_pprof) = others_cpu(window);
    let wakeup_cpu_pct = wakeups_cpu_pct(window);
    let (monitor_us_per_tick, samples_per_s) = monitor_per_tick(window);
    Profiling1kHz {
        other_cpu_pct,
        other_cpu_pct_pprof,
        wakeup_cpu_pct,
        monitor_us_per_tick,
        samples_per_s,
    }
}

/// `profile_other_cpu_pct_1khz` and its pprof-rs counterpart.
fn others_cpu(window: Duration) -> (f64, f64) {
    let Monitor {
        register, control, ..
    } = Monitor::builder()
        .thread_name("hw-bench-1k")
        .start()
        .expect("start the monitor");
    let busy = Busy::start(&register, 1, "hw-1k-busy");
    let tid = Thread::named("hw-1k-busy")
        .and_then(|thread| thread.tid())
        .expect("the busy thread");
    let baseline = others_cpu_pct(tid, window);

    profile_at_1khz(&control);
    let ours = others_cpu_pct(tid, window);
    control.stop_profiling().expect("stop profiling");

    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(RATE_HZ as i32)
        .build()
        .expect("start pprof");
    let theirs = others_cpu_pct(tid, window);
    drop(guard);
    drop(busy);
    (ours - baseline, theirs - baseline)
}

/// `profile_wakeup_cpu_pct_1khz`.
fn wakeups_cpu_pct(window: Duration) -> f64 {
    let name = "hw-1k-wakeups";
    let sleeper = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let until = Instant::now() + window + Duration::from_millis(400);
            while Instant::now() < until {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        })
        .expect("spawn the sleeper");
    std::thread::sleep(Duration::from_millis(100));
    let thread = Thread::named(name).expect("the sleeping thread");
    let before = thread.cpu_time();
    let started = Instant::now();
    std::thread::sleep(window);
    let used = thread.cpu_time() - before;
    let elapsed = started.elapsed();
    let _ = sleeper.join();
    used.as_secs_f64() / elapsed.as_secs_f64() * 100.0
}

/// `profile_monitor_us_per_tick` and `profile_samples_per_s_1khz`.
fn monitor_per_tick(window: Duration) -> (f64, f64) {
    let name = "hw-bench-1k16";
    let Monitor {
        register, control, ..
    } = Monitor::builder()
        .thread_name(name)
        .start()
        .expect("start the monitor");
    let busy = Busy::start(&register, THREADS, "hw-1k16-busy");
    let monitor = Thread::named(name).expect("the monitor thread");
    profile_at_1khz(&control);
    std::thread::sleep(Duration::from_millis(100));
    let samples = || control.stats().expect("the monitor's stats").samples;
    let before = (
        monitor.cpu_time(),
        monitor.voluntary_context_switches(),
        samples(),
    );
    let started = Instant::now();
    std::thread::sleep(window);
    let (cpu, ticks, taken) = (
        monitor.cpu_time() - before.0,
        monitor.voluntary_context_switches() - before.1,
        samples() - before.2,
    );
    let elapsed = started.elapsed();
    control.stop_profiling().expect("stop profiling");
    drop(busy);
    let per_tick = if ticks == 0 {
        f64::NAN
    } else {
        cpu.as_secs_f64() * 1e6 / ticks as f64
    };
    (per_tick, taken as f64 / elapsed.as_secs_f64())
}
