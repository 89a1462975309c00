//! How long a sampled thread really stops for each sample: hangwatch's
//! profiler beside pprof-rs, both at 1 kHz, on the same thread, in the same
//! run.
//!
//! [`crate::stacks`] times our signal handler from its entry to its exit, as
//! the handler itself sees it. A thread loses more than that: the kernel
//! interrupts it, builds a signal frame, runs the handler, and the thread
//! comes back through `sigreturn`. Here the thread times itself. It runs a
//! tight loop that reads the time-stamp counter (`quanta::Clock::raw`, a few
//! nanoseconds apart) and records every gap between two consecutive
//! readings longer than [`THRESHOLD`]; whatever stopped the thread shows as
//! one such gap: the kernel's delivery of a signal, the handler, the return
//! to the loop. The loop runs [`DEPTH`] calls deep (recursion kept by
//! `black_box`), so that a handler that unwinds walks some 50 frames.
//!
//! A gap during which the thread was taken off its CPU (another thread ran
//! there: on a shared machine, for milliseconds) is not a sample's stop: a
//! signal is handled by the running thread without a switch. After each
//! gap the thread reads how many times it has been put on a CPU
//! (`/proc/thread-self/schedstat`, third field, one `pread`, outside the
//! timed readings), and a gap across which that changed is counted as a
//! preemption instead (`sample_preemptions_per_s*`: more of them while
//! profiling means the profiler's own threads took the thread's CPU).
//!
//! The thread is a registered hangwatch component inside one activity for
//! the whole run (so our profiler samples it, by signal, since it runs), and
//! the loop runs in windows of [`WINDOW`], one after the other in rounds of
//! three kinds:
//!
//! - **baseline**: nothing samples the thread; its gaps are what the machine
//!   does to a running thread anyway (timer interrupts, other threads
//!   scheduled on its CPU, the hypervisor);
//! - **ours**: the thread's monitor profiles it at 1 kHz
//!   (`Control::start_profiling` with `rate_hz: 1000`, default sampler),
//!   started before the window and stopped after it;
//! - **pprof**: pprof-rs profiles the process at 1 kHz
//!   (`ProfilerGuardBuilder::default().frequency(1000).build()`: `SIGPROF`
//!   from `setitimer(ITIMER_PROF)`, a handler that unwinds the stack where
//!   it lands and records it), its guard built before the window and
//!   dropped after it.
//!
//! Only one of the two profilers runs at a time (each is stopped before the
//! next window starts), so they never meet in one window; they use
//! different signals anyway (`SIGRTMIN+5` and `SIGPROF`), and dropping
//! pprof's guard stops its timer and ignores `SIGPROF` from then on.
//! Interleaving the kinds round by round spreads a change of the machine's
//! load over the three alike. One round of each kind first warms up caches
//! (the unwinders' tables, pprof's symbol resolution at start) and is not
//! counted.
//!
//! # Which gaps are the samples'
//!
//! A profiled window's gaps are the samples' stops mixed with the
//! machine's own, and a sample can land in a gap the thread would have had
//! anyway: pprof's timer counts the process's CPU time and fires from the
//! timer interrupt, so its signal is delivered on the way out of that
//! interrupt and its stop *is* the interrupt's gap, made longer. So the
//! samples are counted by the profilers themselves (ours: the samples of
//! the thread in each window's `Profile`; pprof-rs: the samples its
//! unresolved report holds for the thread's name), and the stops are the
//! profiled windows' gaps counted from the longest down, less the
//! baseline's: with `N` samples, `P(x)` the profiled windows' gaps of at
//! least `x` and `B(x)` the baseline windows' (scaled to the same total
//! time), the q-th percentile is the longest gap `x` of the profiled
//! windows with `P(x) − B(x) ≥ N − ⌈qN⌉ + 1` (the nearest rank, counted
//! from the top). Where a sample lengthened a gap the thread had anyway,
//! the whole gap is its stop: that is what the thread lost at that moment.
//! So pprof-rs's percentiles include the timer interrupt its signals ride
//! on (the gap that interrupt leaves alone, one of the baseline's: on a
//! virtual machine, where the timer exits to the hypervisor, tens of
//! microseconds), which the thread would have lost without it, and ours,
//! whose signals come from another thread at their own times, do not. The mean has no such bias: the profiled
//! windows' gaps' total less the baseline's, divided by `N`, the time each
//! sample added.

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::Duration;

use hangwatch::{ComponentId, Monitor, ProfilingOptions, Timeouts};

/// Calls between the thread's entry and its timing loop.
pub(crate) const DEPTH: u32 = 48;
/// Gaps between two readings shorter than this are not stops (the loop's
/// own iterations take tens of nanoseconds).
const THRESHOLD: Duration = Duration::from_nanos(500);
/// One window of one kind.
const WINDOW: Duration = Duration::from_millis(250);
/// Gaps kept per window at most: the loop does not allocate while it times.
const MAX_GAPS: usize = 200_000;
/// The sampling rate of both profilers.
const RATE_HZ: u32 = 1000;
/// The sampled thread's name (at most 15 bytes: the kernel's limit, which
/// pprof-rs's reports carry).
const THREAD: &str = "hw-stop-sampled";

/// What the measurements found; see [`crate::Report`] for each field.
pub struct StopFigures {
    pub preemptions_per_s: f64,
    pub preemptions_per_s_pprof: f64,
    pub preemptions_per_s_baseline: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub per_s: f64,
    pub p50_us_pprof: f64,
    pub p99_us_pprof: f64,
    pub mean_us_pprof: f64,
    pub per_s_pprof: f64,
    pub background_per_s: f64,
    pub background_p50_us: f64,
    pub background_p99_us: f64,
}

/// The gaps of all windows of one kind.
#[derive(Default)]
struct Gaps {
    /// Gap lengths in clock ticks, sorted once all windows are in.
    ticks: Vec<u64>,
    /// The windows' total length, in ticks.
    span: u64,
    /// Samples the profiler took of the thread in those windows.
    samples: u64,
    /// Gaps across which the thread was taken off its CPU (not in `ticks`).
    preemptions: u64,
}

impl Gaps {
    fn add(&mut self, (window, samples): (Window, u64)) {
        self.ticks.extend(window.gaps);
        self.span += window.span;
        self.samples += samples;
        self.preemptions += window.preemptions;
    }

    fn total(&self) -> f64 {
        self.ticks.iter().map(|&gap| gap as f64).sum()
    }
}

/// What the timing loop saw in one window.
struct Window {
    gaps: Vec<u64>,
    span: u64,
    preemptions: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Baseline,
    Ours,
    Pprof,
}

pub fn run(quick: bool) -> StopFigures {
    let rounds = if quick { 8 } else { 24 };
    let clock = quanta::Clock::new();
    let Monitor {
        register, control, ..
    } = Monitor::builder()
        .thread_name("hw-bench-stop")
        .start()
        .expect("start the monitor");
    let (order, orders) = mpsc::channel::<()>();
    let (result, results) = mpsc::channel::<Window>();
    let loop_clock = clock.clone();
    let threshold = ticks_in(&clock, THRESHOLD);
    let window_ticks = ticks_in(&clock, WINDOW);
    let thread = std::thread::Builder::new()
        .name(THREAD.into())
        .spawn(move || {
            let handle = register
                .register_component(
                    ComponentId::new("sample-stop", 0),
                    Timeouts::new(Duration::from_secs(3600), Duration::from_secs(7200)),
                    None,
                )
                .expect("register");
            let _busy = handle.activity("timing its own gaps");
            let schedstat =
                File::open("/proc/thread-self/schedstat").expect("the thread's schedstat");
            descend(DEPTH, &mut || {
                while orders.recv().is_ok() {
                    let window = time_gaps(&loop_clock, &schedstat, threshold, window_ticks);
                    if result.send(window).is_err() {
                        return;
                    }
                }
            });
        })
        .expect("spawn the sampled thread");

    // One window of `kind`, and the samples taken of the thread in it.
    let window = |kind: Kind| -> (Window, u64) {
        let time_one = || {
            order.send(()).expect("the sampled thread");
            results.recv().expect("the sampled thread's window")
        };
        let taken = match kind {
            Kind::Baseline => (time_one(), 0),
            Kind::Ours => {
                control
                    .start_profiling(ProfilingOptions {
                        rate_hz: RATE_HZ,
                        ..ProfilingOptions::default()
                    })
                    .expect("start profiling");
                let window = time_one();
                let profile = control.stop_profiling().expect("stop profiling");
                let samples = profile.threads.iter().map(|t| t.samples.len() as u64);
                (window, samples.sum())
            }
            Kind::Pprof => {
                let guard = pprof::ProfilerGuardBuilder::default()
                    .frequency(RATE_HZ as i32)
                    .build()
                    .expect("start pprof");
                let window = time_one();
                let report = guard.report().build_unresolved().expect("pprof's report");
                drop(guard);
                let samples = report
                    .data
                    .iter()
                    .filter(|(frames, _)| {
                        frames.thread_name.get(..frames.thread_name_length)
                            == Some(THREAD.as_bytes())
                    })
                    .map(|(_, &count)| count.max(0) as u64);
                (window, samples.sum())
            }
        };
        // Whatever stopping left to do is done before the next window.
        std::thread::sleep(Duration::from_millis(20));
        taken
    };

    const KINDS: [Kind; 3] = [Kind::Baseline, Kind::Ours, Kind::Pprof];
    for kind in KINDS {
        window(kind);
    }
    let (mut baseline, mut ours, mut pprof) = (Gaps::default(), Gaps::default(), Gaps::default());
    for _ in 0..rounds {
        for kind in KINDS {
            let seen = window(kind);
            match kind {
                Kind::Baseline => baseline.add(seen),
                Kind::Ours => ours.add(seen),
                Kind::Pprof => pprof.add(seen),
            }
        }
    }
    drop(order);
    let _ = thread.join();

    for gaps in [&mut baseline, &mut ours, &mut pprof] {
        gaps.ticks.sort_unstable();
    }
    let micros = |ticks: f64| clock.delta_as_nanos(0, ticks.max(0.0) as u64) as f64 / 1e3;
    let per_s = |count: f64, span: u64| count / (micros(span as f64) / 1e6);
    let stops = |profiled: &Gaps| {
        let percentile = |q| stop_percentile(profiled, &baseline, q).map_or(f64::NAN, micros);
        let scale = profiled.span as f64 / baseline.span.max(1) as f64;
        let lost = profiled.total() - scale * baseline.total();
        let mean = if profiled.samples == 0 || lost < 0.0 {
            f64::NAN
        } else {
            micros(lost / profiled.samples as f64)
        };
        (
            percentile(0.5),
            percentile(0.99),
            mean,
            per_s(profiled.samples as f64, profiled.span),
        )
    };
    let (p50_us, p99_us, mean_us, per_s_ours) = stops(&ours);
    let (p50_us_pprof, p99_us_pprof, mean_us_pprof, per_s_pprof) = stops(&pprof);
    let background = |q: f64| {
        let rank = ((baseline.ticks.len() as f64 - 1.0) * q).round() as usize;
        baseline
            .ticks
            .get(rank)
            .map_or(f64::NAN, |&t| micros(t as f64))
    };
    let preemptions = |gaps: &Gaps| per_s(gaps.preemptions as f64, gaps.span);
    StopFigures {
        preemptions_per_s: preemptions(&ours),
        preemptions_per_s_pprof: preemptions(&pprof),
        preemptions_per_s_baseline: preemptions(&baseline),
        p50_us,
        p99_us,
        mean_us,
        per_s: per_s_ours,
        p50_us_pprof,
        p99_us_pprof,
        mean_us_pprof,
        per_s_pprof,
        background_per_s: per_s(baseline.ticks.len() as f64, baseline.span),
        background_p50_us: background(0.5),
        background_p99_us: background(0.99),
    }
}

/// Clock ticks in `span`.
fn ticks_in(clock: &quanta::Clock, span: Duration) -> u64 {
    const SPAN: u64 = 1 << 40;
    let ns_per_tick = clock.delta_as_nanos(0, SPAN) as f64 / SPAN as f64;
    (span.as_nanos() as f64 / ns_per_tick).ceil() as u64
}

/// Times put on a CPU, from the thread's own schedstat file.
fn timeslices(schedstat: &File) -> Option<u64> {
    let mut text = [0u8; 96];
    let read = schedstat.read_at(&mut text, 0).ok()?;
    let text = std::str::from_utf8(&text[..read]).ok()?;
    text.split_whitespace().nth(2)?.parse().ok()
}

/// Reads the clock in a tight loop for `span` ticks, keeping every gap
/// between two readings longer than `threshold` ticks during which the
/// thread stayed on its CPU, and counting the others.
#[inline(never)]
fn time_gaps(clock: &quanta::Clock, schedstat: &File, threshold: u64, span: u64) -> Window {
    let mut gaps = Vec::with_capacity(MAX_GAPS);
    let mut preemptions = 0;
    let mut slices = timeslices(schedstat);
    let start = clock.raw();
    let mut previous = start;
    loop {
        let now = black_box(clock.raw());
        if now.wrapping_sub(start) >= span {
            break;
        }
        let gap = now.wrapping_sub(previous);
        previous = now;
        if gap > threshold {
            let slices_now = timeslices(schedstat);
            if slices_now != slices {
                preemptions += 1;
                slices = slices_now;
            } else if gaps.len() < MAX_GAPS {
                gaps.push(gap);
            }
            // The read is not a gap.
            previous = clock.raw();
        }
    }
    Window {
        gaps,
        span: previous.wrapping_sub(start),
        preemptions,
    }
}

/// Runs `bottom` `depth` calls deep.
#[inline(never)]
fn descend(depth: u32, bottom: &mut dyn FnMut()) {
    if depth == 0 {
        bottom();
    } else {
        descend(black_box(depth - 1), bottom);
    }
    black_box(depth);
}

/// The q-th percentile of the stops of `profiled.samples` samples, in
/// ticks: the longest gap `x` of `profiled` such that its gaps of at least
/// `x` outnumber `baseline`'s (scaled to the same time) by the nearest rank
/// counted from the top (see the module docs). `None` without samples, or
/// if the background hides them. Both sorted.
fn stop_percentile(profiled: &Gaps, baseline: &Gaps, q: f64) -> Option<f64> {
    if profiled.samples == 0 {
        return None;
    }
    let samples = profiled.samples as f64;
    let rank_from_top = samples - (q * samples).ceil() + 1.0;
    let scale = profiled.span as f64 / baseline.span.max(1) as f64;
    // `baseline.ticks[first..]` are the baseline's gaps of at least `gap`.
    let mut first = baseline.ticks.len();
    for (n, &gap) in profiled.ticks.iter().enumerate().rev() {
        while first > 0 && baseline.ticks[first - 1] >= gap {
            first -= 1;
        }
        let at_least = (profiled.ticks.len() - n) as f64;
        let excess = at_least - scale * (baseline.ticks.len() - first) as f64;
        if excess >= rank_from_top {
            return Some(gap as f64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(ticks: &[u64], span: u64, samples: u64) -> Gaps {
        let mut ticks = ticks.to_vec();
        ticks.sort_unstable();
        Gaps {
            ticks,
            span,
            samples,
            preemptions: 0,
        }
    }

    #[test]
    fn the_background_is_taken_out() {
        // Background gaps of 1 and 2 in both; four samples of 10 to 40.
        let baseline = gaps(&[1, 2, 1, 2], 100, 0);
        let profiled = gaps(&[1, 2, 1, 2, 10, 20, 30, 40], 100, 4);
        assert_eq!(stop_percentile(&profiled, &baseline, 0.5), Some(20.0));
        assert_eq!(stop_percentile(&profiled, &baseline, 0.99), Some(40.0));
        assert_eq!(stop_percentile(&baseline, &baseline, 0.5), None);
    }

    #[test]
    fn a_sample_that_lengthens_a_background_gap_is_that_gap() {
        // Two of the four background gaps carried a sample, as pprof's
        // signals ride on the timer interrupt: no more gaps than before.
        let baseline = gaps(&[1, 1, 2, 2], 100, 0);
        let profiled = gaps(&[1, 2, 11, 12], 100, 2);
        assert_eq!(stop_percentile(&profiled, &baseline, 0.5), Some(11.0));
        assert_eq!(stop_percentile(&profiled, &baseline, 0.99), Some(12.0));
    }

    #[test]
    fn a_longer_baseline_is_scaled() {
        let baseline = gaps(&[1, 1, 9, 9], 200, 0);
        let profiled = gaps(&[1, 1, 5, 6, 9], 100, 2);
        assert_eq!(stop_percentile(&profiled, &baseline, 0.5), Some(5.0));
    }
}
