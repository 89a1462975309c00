//! `hangwatch bench`: hangwatch measured side by side with a reference that
//! behaves like Servo's background hang monitor (see [`servo`]), with
//! watchdogs and a profiler people use (vigil, nano-watchdog, pprof-rs, from
//! crates.io), and with the physical limit where there is one, in one run.
//!
//! Absolute times vary from machine to machine and run to run; the ratios
//! between columns measured in the same run are what to read. Every figure is
//! a field of [`Report`], printed as one JSON object by `hangwatch bench --json`.
//!
//! The bench runs in [`Step`]s, in the order of [`Step::ALL`]; `--only`
//! ([`Options::steps`]) runs some of them. A figure of a step that did not
//! run is NaN (JSON `null`), a count `None` (`null`), a list empty, and the
//! targets that need it are left out of [`Report::targets`]. The two steps
//! that run pprof-rs come last: its start resolves symbols (through the
//! `backtrace` crate), which keeps the binary's debug information in this
//! process's memory from then on.

mod children;
mod detect;
// Makes its timed calls with raw libc (`nanosleep`, `poll`, `recv`...),
// so that an `EINTR` shows.
#[allow(unsafe_code)]
mod eintr;
mod idle;
mod loaded;
mod notify;
mod procfs;
mod profiling;
mod profiling_1khz;
// A sampler in pprof-rs's style, the reference of the stacks step: its
// signal handler walks the stack itself, with raw libc.
#[allow(unsafe_code)]
pub mod reference_sampler;
pub mod reference_symbolizer;
mod sample_stop;
mod scale;
pub mod servo;
mod stacks;
pub mod tokio_service;

use std::time::Duration;

use serde::Serialize;

pub use crate::loaded::{Delivery, DurationError, HangKind, MissedHang};

/// How long to measure, and what.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Fewer iterations and shorter windows: about two minutes on two cores.
    pub quick: bool,
    /// Seed for the random timeouts of the detection run and the plan of the
    /// loaded runs.
    pub seed: u64,
    /// The steps to run ([`Steps::ALL`] for the whole bench).
    pub steps: Steps,
}

/// One step of the bench: the figures measured together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `notify_*`: notification pairs, dense and sparse, with every reference.
    Notify,
    /// `detect_*`: transient alerts' delay after their deadlines.
    Detect,
    /// `idle_wakeups_per_s*`: wake-ups of idle monitors.
    Idle,
    /// `sample_handler_*`, `unwind_us`, `symbolize_*` (warm and cold),
    /// `permanent_alert_latency_*`.
    Stacks,
    /// Fresh child processes: `symbolize_private_mib*`, `child_*`,
    /// `first_alert_delivery_*`, `hub_*`.
    Children,
    /// `eintr_*`, `blocked_capture_*`.
    Eintr,
    /// `profile_overhead_pct`, `profile_samples_per_s`: 16 threads at 100 Hz.
    Profiling,
    /// `scale_*`: 10,000 components.
    Scale,
    /// `loaded_*`, `alert_delivery_*`: hangs under load.
    Loaded,
    /// `tokio_*`: an axum service on two watched tokio workers, loaded over
    /// loopback.
    Tokio,
    /// `sample_stop*`: a sampled thread's own stops, ours and pprof-rs's.
    SampleStop,
    /// `profile_other_cpu_pct_1khz*`, `profile_monitor_us_per_tick`.
    Profiling1k,
}

impl Step {
    /// Every step, in the order the bench runs them.
    pub const ALL: [Step; 12] = [
        Step::Notify,
        Step::Detect,
        Step::Idle,
        Step::Stacks,
        Step::Children,
        Step::Eintr,
        Step::Profiling,
        Step::Scale,
        Step::Loaded,
        Step::Tokio,
        Step::SampleStop,
        Step::Profiling1k,
    ];

    /// The step's name, as `--only` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Notify => "notify",
            Step::Detect => "detect",
            Step::Idle => "idle",
            Step::Stacks => "stacks",
            Step::Children => "children",
            Step::Eintr => "eintr",
            Step::Profiling => "profiling",
            Step::Scale => "scale",
            Step::Loaded => "loaded",
            Step::Tokio => "tokio",
            Step::SampleStop => "sample_stop",
            Step::Profiling1k => "profiling1k",
        }
    }

    /// The step called `name`.
    pub fn named(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.name() == name)
    }
}

/// A set of steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps(u32);

impl Steps {
    /// Every step.
    pub const ALL: Steps = Steps((1 << Step::ALL.len()) - 1);

    /// Just `steps`.
    pub fn only(steps: impl IntoIterator<Item = Step>) -> Steps {
        Steps(
            steps
                .into_iter()
                .fold(0, |set, step| set | Steps::bit(step)),
        )
    }

    /// Whether `step` is in the set.
    pub fn contains(self, step: Step) -> bool {
        self.0 & Steps::bit(step) != 0
    }

    fn bit(step: Step) -> u32 {
        1 << step as u32
    }
}

/// Every figure the bench measures. Field names are stable.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Our `notify_activity` + `notify_wait`, back to back, ns per pair.
    pub notify_dense_ns: f64,
    /// The same through the Servo-style reference.
    pub notify_dense_ns_servo: f64,
    /// Two plain atomic stores: the physical limit.
    pub notify_dense_ns_limit: f64,
    /// One read of the clock our pair reads (`quanta::Clock::raw`, the
    /// time-stamp counter), alone in the same loop, ns per read: a lower
    /// bound of our pair.
    pub notify_dense_ns_clock: f64,
    /// The same loop through vigil: `Vigil::notify` for the activity,
    /// nothing for the wait (vigil has none), ns per pair (see `src/notify.rs`
    /// for what vigil does and does not do).
    pub notify_dense_ns_vigil: f64,
    /// The same loop through nano-watchdog, its watchdog thread running:
    /// `TaskTracker::track` for the activity, dropping its guard for the
    /// wait, ns per pair, in a child process.
    pub notify_dense_ns_nano_watchdog: f64,
    /// Our pair with 50 µs events and 200 µs waits (the monitor asleep), ns.
    pub notify_sparse_ns: f64,
    /// The same through the reference.
    pub notify_sparse_ns_servo: f64,
    /// The same through vigil, ns.
    pub notify_sparse_ns_vigil: f64,
    /// The same through nano-watchdog, ns, in a child process.
    pub notify_sparse_ns_nano_watchdog: f64,
    /// Transient alert delivered minus its deadline, median, ms.
    pub detect_p50_ms: f64,
    /// The same, 99th percentile.
    pub detect_p99_ms: f64,
    /// The same, worst.
    pub detect_max_ms: f64,
    /// Hangs our monitor did not alert on (should be 0).
    pub detect_missed: Option<u64>,
    /// The reference's 99th percentile.
    pub detect_p99_ms_servo: f64,
    /// Hangs measured per monitor.
    pub detect_hangs: Option<u64>,
    /// Monitor wake-ups per second, 100 components all waiting.
    pub idle_wakeups_per_s: f64,
    /// The same for the reference.
    pub idle_wakeups_per_s_servo: f64,
    /// The same for vigil: one vigil (interval 50 ms) per component, each
    /// with its own watcher thread; the 100 watchers' wake-ups together.
    pub idle_wakeups_per_s_vigil: f64,
    /// The same for nano-watchdog's one thread (check interval 50 ms), 100
    /// threads having each tracked one task, in a child process.
    pub idle_wakeups_per_s_nano_watchdog: f64,
    /// Monitor thread CPU, percent of a core, 10,000 components of which 1,000 notify.
    pub scale_monitor_cpu_pct: f64,
    /// Process RSS during that run, MiB (mostly the 10,000 threads' stacks).
    pub scale_rss_mib: f64,
    /// Process RSS before that run, MiB.
    pub scale_rss_before_mib: f64,
    /// Notification pairs per second during that run.
    pub scale_events_per_s: f64,
    /// Time a sampled thread spends in our signal handler, from the
    /// handler's entry to the publication of its copy, as the handler
    /// times it, median, µs: the handler only, not the kernel's delivery
    /// nor the return (the whole stop is `sample_stop_us_p50`). The thread
    /// is blocked in a futex, which the default sampler reads from outside
    /// without a signal (no handler at all), so it is signalled with
    /// `Sampler::signal_only()`: this is what a running thread's handler
    /// takes.
    pub sample_handler_us_p50: f64,
    /// The same, 99th percentile.
    pub sample_handler_us_p99: f64,
    /// The same for a handler that unwinds in place (pprof-rs style, our
    /// `ReferenceSampler`), entry to exit, p99.
    pub sample_handler_us_p99_inhandler: f64,
    /// How long a thread profiled by our monitor at 1 kHz stops per sample,
    /// as the thread itself sees it: a gap in its own time-stamp counter
    /// readings (`quanta::Clock::raw` in a tight loop, 50 calls deep, inside
    /// one activity), which covers the kernel's delivery of the signal, our
    /// handler and `sigreturn` (and, for our sampler, the capture thread
    /// being scheduled on the thread's CPU if it is). Of the profiled
    /// windows' gaps, counted from the longest down, those beyond the gaps
    /// the same loop has with nothing sampling it (baseline windows
    /// interleaved with the profiled ones) are the samples' stops, as many
    /// as the profiler says it took of the thread (see
    /// `src/sample_stop.rs`), median, µs.
    pub sample_stop_us_p50: f64,
    /// The same, 99th percentile, µs.
    pub sample_stop_us_p99: f64,
    /// The time the thread lost in profiled windows beyond the baseline's,
    /// divided by the samples taken of it, µs: the mean time a sample
    /// added, the figure least moved by the machine's own noise.
    pub sample_stop_us_mean: f64,
    /// The same thread and loop profiled by pprof-rs 0.15 at 1 kHz
    /// (`ProfilerGuardBuilder::default().frequency(1000)`: `SIGPROF` from
    /// `setitimer`, a handler that unwinds in place and records the
    /// stack), median, µs. Its signals are delivered on the way out of the
    /// timer interrupt, so each of these gaps includes that interrupt's own
    /// gap (one of the baseline's; on a virtual machine tens of µs), which
    /// the thread loses without profiling too; `sample_stop_us_mean_pprof`
    /// does not.
    pub sample_stop_us_p50_pprof: f64,
    /// The same, 99th percentile, µs.
    pub sample_stop_us_p99_pprof: f64,
    /// The same, mean, µs.
    pub sample_stop_us_mean_pprof: f64,
    /// Samples per second our profiler took of that thread, by its own
    /// count (the samples of the thread in each window's `Profile`).
    pub sample_stops_per_s: f64,
    /// The same for pprof-rs, by its own count (the samples its unresolved
    /// report holds for the thread). Its timer counts the process's CPU
    /// time and fires from the kernel's timer tick, so it takes at most one
    /// sample per tick (250 a second on a 250 Hz kernel), whatever it was
    /// asked for.
    pub sample_stops_per_s_pprof: f64,
    /// Gaps across which that thread was taken off its CPU, per second,
    /// while our profiler sampled it: not counted as stops (a signal is
    /// handled without a switch); more than `sample_preemptions_per_s_baseline`
    /// means the profiler's own threads took the thread's CPU.
    pub sample_preemptions_per_s: f64,
    /// The same while pprof-rs sampled it.
    pub sample_preemptions_per_s_pprof: f64,
    /// The same with nothing sampling it.
    pub sample_preemptions_per_s_baseline: f64,
    /// Gaps per second of that loop with nothing sampling it (over 0.5 µs,
    /// on its CPU throughout).
    pub sample_stop_background_per_s: f64,
    /// Their median, µs.
    pub sample_stop_background_us_p50: f64,
    /// Their 99th percentile, µs.
    pub sample_stop_background_us_p99: f64,
    /// Frames in that thread's stack, captured by the default sampler (read
    /// from outside, as a hung thread's is) and unwound.
    pub sample_frames: Option<usize>,
    /// Unwinding that stack from its copy, µs.
    pub unwind_us: f64,
    /// Symbolicating that stack with warm caches (blazesym, our
    /// `Symbolizer`), mean of 200, µs.
    pub symbolize_warm_us: f64,
    /// The same unwound stack, the same way, with the pre-blazesym
    /// symbolizer (addr2line over module files read whole into the heap,
    /// [`reference_symbolizer`]), µs.
    pub symbolize_warm_us_reference: f64,
    /// A fresh `Symbolizer`'s first symbolication of that unwound stack,
    /// from its creation (opening and parsing what the stack's modules need;
    /// the files' pages already in the page cache), ms.
    pub symbolize_cold_ms: f64,
    /// The same for a fresh reference symbolizer (reading the module files
    /// whole, parsing), measured just after ours in the same process, ms.
    pub symbolize_cold_ms_reference: f64,
    /// Growth of `RssAnon` (`/proc/self/status`) caused by a fresh
    /// `Symbolizer`'s first symbolication of a stack of the same shape,
    /// read while the symbolizer is alive, in a fresh child process of this
    /// binary (see `src/children.rs`), median over the runs, MiB.
    pub symbolize_private_mib: f64,
    /// The same for the reference symbolizer, MiB.
    pub symbolize_private_mib_reference: f64,
    /// `RssAnon` of a fresh child process of this binary (the `hangwatch`
    /// binary, as the demo's children are) just after it received its first
    /// alert with its stack symbolicated in the process (a fresh monitor,
    /// `Symbolication::InProcess`, cold symbols), minus that of the same
    /// program with no monitor, medians over the runs, MiB (target ≤ 4).
    pub child_private_mib_overhead_in_process: f64,
    /// The same with `Symbolication::Elsewhere` (the alert carries
    /// normalized frames; no hub, no bridge, in the child), MiB (target ≤ 2).
    pub child_private_mib_overhead_elsewhere: f64,
    /// The same with `Symbolication::FunctionNamesInProcess` (functions
    /// named from symbol tables in the process, no DWARF), MiB.
    pub child_private_mib_overhead_function_names: f64,
    /// In those fresh children with `Symbolication::InProcess`: the first
    /// hang's transient alert, which waits for its stack
    /// (`stack_on_transient`, `symbolicate_deadline` 10 s, so including the
    /// cold symbol load), `monotonic_ns()` at `recv` minus (its
    /// `started_ns` + the 20 ms transient timeout), median over the runs, ms.
    pub first_alert_delivery_ms_in_process: f64,
    /// The same with `Symbolication::Elsewhere`: the alert waits for the
    /// capture and unwinding only (normalized frames), ms (target ≤ 20).
    pub first_alert_delivery_ms_elsewhere: f64,
    /// The same with `Symbolication::FunctionNamesInProcess`, ms.
    pub first_alert_delivery_ms_function_names: f64,
    /// A hub (`hangwatch_hub::Hub`, naming its children's frames) in a
    /// fresh process of this binary: its `RssAnon` once `hub_children`
    /// children of this binary are connected and each one's first alert
    /// arrived with its frames named, minus its `RssAnon` when the first
    /// child's had (its symbolizer then holding the binary's symbols),
    /// divided by the `hub_children - 1` children added, MiB (target ≤ 1).
    pub hub_private_mib_per_child: f64,
    /// Children of that hub.
    pub hub_children: Option<u64>,
    /// Fresh child processes per figure above (medians of this many).
    pub child_runs: Option<u64>,
    /// Permanent deadline to the alert with its symbolicated stack, median, ms (warm caches).
    pub permanent_alert_latency_ms: f64,
    /// The same, 99th percentile.
    pub permanent_alert_latency_p99_ms: f64,
    /// CPU of the monitor, the capture thread and the stack workers while
    /// profiling 16 busy threads at 100 Hz, above the same without
    /// profiling, percent of one core.
    pub profile_overhead_pct: f64,
    /// Samples per second that profiling collected over those threads.
    pub profile_samples_per_s: f64,
    /// One busy component (1 ms activities back to back) profiled by our
    /// monitor at 1 kHz: the CPU time of every other thread of the process
    /// (monitor, capture thread, stack workers, the bench's main thread)
    /// over the window, minus the same over an equal window without
    /// profiling, percent of one core. The busy thread's own loss is
    /// `sample_stop_us_p50` per sample.
    pub profile_other_cpu_pct_1khz: f64,
    /// The same with pprof-rs at 1 kHz instead: it has no thread of its own
    /// and works in its handler, on the busy thread (so about 0; its cost is
    /// in `sample_stop_us_p50_pprof`).
    pub profile_other_cpu_pct_1khz_pprof: f64,
    /// The floor under `profile_other_cpu_pct_1khz` on this machine: a bare
    /// thread that only sleeps 1 ms (`park_timeout`) and wakes, its own CPU
    /// time, percent of one core. Our profiler wakes two threads per sample
    /// (see `src/profiling_1khz.rs`).
    pub profile_wakeup_cpu_pct_1khz: f64,
    /// Sixteen busy components profiled by one monitor at 1 kHz: the
    /// monitor thread's CPU time over the window divided by the ticks it
    /// made in it (turns of its loop, each ending in a sleep: its voluntary
    /// context switches; `Stats::looks` does not count profiling ticks), µs
    /// per tick.
    pub profile_monitor_us_per_tick: f64,
    /// Samples per second that monitor took in that window
    /// (`Stats::samples`), of the 16,000 a second asked for (a thread still
    /// being captured is not asked again).
    pub profile_samples_per_s_1khz: f64,
    /// `EINTR`s per 1,000 timed calls (1 ms `nanosleep`, `poll`, `epoll_wait`,
    /// `recv` with `SO_RCVTIMEO`, one kind per thread, raw libc) made by 4
    /// active components while the monitor profiles them at 1 kHz with its
    /// default sampler (target ≤ 1).
    pub eintr_per_1k_profiled_calls: f64,
    /// The same 4 threads sampled at the sampler level (`Sampler::request`
    /// then `PendingSample::wait` on each, every 1 ms, 32 KiB) with the
    /// signal-only sampler, the reference: the monitor cannot be given that
    /// sampler, so compare with `eintr_per_1k_sampled_calls`.
    pub eintr_per_1k_profiled_calls_signal: f64,
    /// That sampler-level loop with the default sampler.
    pub eintr_per_1k_sampled_calls: f64,
    /// One `Sampler::sample` of a thread blocked in `recv` 24 calls deep,
    /// as the sampling thread sees it, with the default sampler (read from
    /// outside, no signal), median, µs.
    pub blocked_capture_us_p50: f64,
    /// The same, 99th percentile.
    pub blocked_capture_us_p99: f64,
    /// The same captures with the signal-only sampler (the thread woken by
    /// the signal, its handler, the answer), median, µs.
    pub blocked_capture_us_p50_signal: f64,
    /// The same, 99th percentile.
    pub blocked_capture_us_p99_signal: f64,
    /// `EINTR`s the captured thread's `recv` (`SO_RCVTIMEO` 10 s, restarted
    /// each time) returned during the default sampler's captures (target 0).
    pub blocked_capture_eintr: Option<u64>,
    /// The same during the signal-only sampler's captures.
    pub blocked_capture_eintr_signal: Option<u64>,
    /// Injected hangs in the loaded runs (`src/loaded.rs`), per
    /// monitor: six browser-shaped components (100 ms transient, 500 ms
    /// permanent), hangs of 150 ms–1.5 s of four kinds (CPU loop, sleep,
    /// mutex held by another thread, blocking socket read), beside
    /// `loaded_hog_threads` busy-loop threads.
    pub loaded_hangs: Option<u64>,
    /// Busy-loop threads the bench ran beside both loaded runs: two per core
    /// (`2 × available_parallelism()`), registered with no monitor.
    pub loaded_hog_threads: Option<u64>,
    /// Injected hangs detected / injected in our loaded run (a fresh
    /// monitor, default settings). Detected means: for the hang's own length
    /// (the component's `Instant` from just before `notify_activity` to just
    /// after `notify_wait`) a `Transient` alert if it exceeded 100 ms, a
    /// `Permanent` one if and only if it exceeded 500 ms, and an `Ended`
    /// whose `worst` is the highest of those levels, all matched to the hang
    /// by `started_ns` (target 1.0).
    pub loaded_recall: f64,
    /// The same for the Servo-style reference with the same plan and load: a
    /// hang counts as detected if the reference raised its transient alert
    /// when the hang's own length exceeded 100 ms and its permanent alert if
    /// and only if it exceeded 500 ms. The reference has no `Ended` alert, so
    /// it is held to less than ours.
    pub loaded_recall_servo: f64,
    /// Over the hangs counted in `loaded_recall`, the largest
    /// |`Ended.duration` − own length| / own length × 100 (target ≤ 10).
    pub loaded_duration_error_pct_max: f64,
    /// Our transient alerts about injected hangs in the loaded run: the
    /// alert's own `raised_ns − started_ns − 100 ms` (when the monitor raised
    /// it, not when it was delivered), 99th percentile, ms (target ≤ 50).
    pub loaded_detect_p99_ms: f64,
    /// The reference's transient alerts in its loaded run, by the only means
    /// it gives: the receiving thread's `Instant` on receipt minus (the
    /// component's own `Instant` just before `notify_activity` + 100 ms),
    /// 99th percentile, ms. Unlike `loaded_detect_p99_ms` this includes the
    /// channel delivery.
    pub loaded_detect_p99_ms_servo: f64,
    /// Every alert of our loaded run (transient, permanent, ended, about
    /// injected hangs or not): `monotonic_ns()` read by the receiving thread
    /// just after `recv` returned it, minus its `raised_ns`, 99th
    /// percentile, ms. The monitor is fresh, so its first permanent alert's
    /// stack is symbolicated with cold caches; an alert with a stack is held
    /// at most `symbolicate_deadline` (20 ms by default) for it, so one
    /// whose stack is not ready in that time arrives after the 20 ms plus
    /// however long the monitor takes to let it out. Includes the receiving
    /// thread's own wait for a CPU beside the hogs (target ≤ 20).
    pub alert_delivery_p99_ms: f64,
    /// The same over transient alerts only, which carry no stack (by
    /// default) and so are never held for one.
    pub alert_delivery_p99_ms_transient: f64,
    /// Alerts received in our loaded run: the population of
    /// `alert_delivery_p99_ms`.
    pub loaded_alerts: Option<u64>,
    /// Our monitor thread's time on a run queue (runnable, waiting for a
    /// CPU) during the loaded run, per time it was put on a CPU, from
    /// `/proc/.../schedstat`, mean, ms: on average, how long the load kept
    /// it from a look or from letting a held alert out once it was due (a
    /// mean; the tail is longer).
    pub loaded_monitor_cpu_wait_ms: f64,
    /// The same for the thread that receives and stamps the alerts.
    pub loaded_receiver_cpu_wait_ms: f64,
    /// Of the alerts received in our loaded run, those about no injected
    /// hang (an ordinary 1–5 ms task stretched past 100 ms by the load would
    /// be a real hang by its own length; see `loaded_task_max_ms`).
    pub loaded_unplanned_alerts: Option<u64>,
    /// The longest ordinary task of our loaded run by its component's own
    /// `Instant`, ms.
    pub loaded_task_max_ms: f64,
    /// Injected hangs not counted as detected, by either monitor, with the
    /// alerts received about each.
    pub loaded_missed: Vec<MissedHang>,
    /// The five largest duration errors among our detected hangs.
    pub loaded_worst_duration_errors: Vec<DurationError>,
    /// The five slowest deliveries of our loaded run.
    pub loaded_slowest_deliveries: Vec<Delivery>,
    /// An axum service (`src/tokio_service.rs`) on a multi-thread runtime
    /// of 2 workers watched by their hooks only (`WorkerMonitor::new` +
    /// `.watch_workers`, transient 100 ms, permanent 1 s, a fresh monitor),
    /// `GET /fast` answered at once, saturated by 256 keep-alive
    /// connections from a load generator on 2 threads of its own (each
    /// connection sends its next request as soon as its previous response
    /// is read) for 10 s (3 s quick): every alert the monitor raised in
    /// that window (target 0; none of its tasks blocks).
    pub tokio_false_alerts_saturated: Option<u64>,
    /// `GET /fast` requests answered per second, 256 connections, by such a
    /// server with the worker hooks divided by the mean of two rounds of a
    /// stock tokio server (no hangwatch) just before and after it, median
    /// of the ratios of 7 interleaved rounds of 2 s (3 of 1 s quick),
    /// servers and load generator the same in every round (target ≥ 0.97).
    pub tokio_rps_ratio_hooks: f64,
    /// The same for a server with the worker hooks and the request layer
    /// (`hangwatch::integrations::tower::RequestLayer` as the router's
    /// `route_layer`: each poll of a request's handler an activity of its
    /// worker, annotated `GET /fast`), measured in the same rounds.
    pub tokio_rps_ratio_layer: f64,
    /// Requests per second of the stock tokio server in those rounds,
    /// median.
    pub tokio_rps_unwatched: f64,
    /// 16 keep-alive connections sending `GET /fast` back to back (not
    /// saturating: the workers park between requests) to such a server
    /// with the worker hooks and the driver hand-off
    /// (`WorkerMonitor::hand_off_on_hang(true)`, the default), while one
    /// `GET /block?ms=1500` request sleeps its worker 1.5 s: the latency of
    /// the `/fast` requests sent between the handler's own `Instant`s just
    /// before and after its sleep, from the connection's `Instant` before
    /// writing the request to its after reading the response's last byte,
    /// 99th percentile, ms.
    pub tokio_fast_p99_during_block_ms: f64,
    /// The same with `hand_off_on_hang(false)`, ms.
    pub tokio_fast_p99_during_block_ms_no_handoff: f64,
    /// The same with a stock tokio server (no hangwatch), ms.
    pub tokio_fast_p99_during_block_ms_unwatched: f64,
    /// `notify_dense_ns_servo / notify_dense_ns` (target ≥ 10).
    pub ratio_dense: f64,
    /// `notify_sparse_ns_servo / notify_sparse_ns` (target ≥ 50).
    pub ratio_sparse: f64,
    /// Whether each target was met, by name.
    pub targets: Vec<Target>,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// The steps this run measured ([`Step::name`]); the figures of the
    /// others are null.
    pub steps: Vec<&'static str>,
}

/// One target from the design and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is compared.
    pub name: &'static str,
    /// Whether it held.
    pub met: bool,
}

/// Runs the measurements of `options.steps`. `progress` is told what runs
/// next.
///
/// In a child process the bench started (`HANGWATCH_BENCH_CHILD` set, see
/// `src/children.rs`) this measures nothing else: it does what the child
/// was started for, prints its answer on stdout and exits the process.
pub fn run(options: Options, mut progress: impl FnMut(&str)) -> Report {
    if let Some(code) = children::child_main() {
        std::process::exit(code);
    }
    let quick = options.quick;
    let mut step = |step: Step, what: &str| {
        let runs = options.steps.contains(step);
        if runs {
            progress(what);
        }
        runs
    };
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let hangs = if quick { 200 } else { 800 };

    let notify = step(Step::Notify, "notification cost, dense and sparse").then(|| {
        let dense = notify::dense_pairs(quick);
        let sparse = notify::sparse_pairs(quick);
        let nano_watchdog = children::nano_watchdog_pairs(quick);
        (dense, sparse, nano_watchdog)
    });
    let detect = step(Step::Detect, "detection latency").then(|| {
        let ours = detect::hangwatch_latencies(hangs, options.seed);
        let servo = detect::servo_latencies(hangs, options.seed);
        (ours, servo)
    });
    let idle = step(Step::Idle, "idle wake-ups").then(|| {
        let wakeups = idle::wakeups_per_second(window);
        let nano_watchdog = children::nano_watchdog_wakeups_per_second(window);
        (wakeups, nano_watchdog)
    });
    let stacks = step(
        Step::Stacks,
        "stacks: handler time, symbolication, permanent alerts",
    )
    .then(|| stacks::run(quick));
    let children = step(
        Step::Children,
        "fresh processes: symbolizers' memory, monitor and hub overhead, first alert",
    )
    .then(|| children::run(quick));
    let eintr = step(
        Step::Eintr,
        "EINTR: timed calls profiled and sampled at 1 kHz, captures of a blocked thread",
    )
    .then(|| eintr::run(quick, window));
    let profiling = step(Step::Profiling, "profiling 16 busy threads at 100 Hz")
        .then(|| profiling::run(Duration::from_secs(if quick { 2 } else { 5 })));
    let scale = step(Step::Scale, "scale: 10,000 components")
        .then(|| scale::run(Duration::from_secs(if quick { 3 } else { 10 })));
    let mut loaded = step(
        Step::Loaded,
        "hangs under load: 6 components beside 2 busy-loop threads per core",
    )
    .then(|| loaded::run(quick, options.seed));
    let tokio = step(
        Step::Tokio,
        "tokio: an axum service on 2 watched workers, saturated and blocked",
    )
    .then(|| tokio_service::run(quick));
    let stop = step(
        Step::SampleStop,
        "a sampled thread's own stops at 1 kHz: ours, pprof-rs",
    )
    .then(|| sample_stop::run(quick));
    let profiling_1khz = step(
        Step::Profiling1k,
        "profiling at 1 kHz: other threads' CPU (ours, pprof-rs), monitor per tick",
    )
    .then(|| profiling_1khz::run(Duration::from_secs(if quick { 2 } else { 5 })));

    // A figure of a step that ran, else NaN; a count, else `None`.
    fn figure<T>(step: &Option<T>, get: impl FnOnce(&T) -> f64) -> f64 {
        step.as_ref().map_or(f64::NAN, get)
    }
    fn count<T>(step: &Option<T>, get: impl FnOnce(&T) -> u64) -> Option<u64> {
        step.as_ref().map(get)
    }
    // No latencies (NaN percentiles) if the step did not run.
    let detected = detect.is_some();
    let (ours, servo) = detect.unwrap_or_default();

    let mut report = Report {
        notify_dense_ns: figure(&notify, |n| n.0.ours),
        notify_dense_ns_servo: figure(&notify, |n| n.0.servo),
        notify_dense_ns_limit: figure(&notify, |n| n.0.limit),
        notify_dense_ns_clock: figure(&notify, |n| n.0.clock),
        notify_dense_ns_vigil: figure(&notify, |n| n.0.vigil),
        notify_dense_ns_nano_watchdog: figure(&notify, |n| n.2 .0),
        notify_sparse_ns: figure(&notify, |n| n.1.ours),
        notify_sparse_ns_servo: figure(&notify, |n| n.1.servo),
        notify_sparse_ns_vigil: figure(&notify, |n| n.1.vigil),
        notify_sparse_ns_nano_watchdog: figure(&notify, |n| n.2 .1),
        detect_p50_ms: detect::percentile(&ours, 0.5),
        detect_p99_ms: detect::percentile(&ours, 0.99),
        detect_max_ms: detect::percentile(&ours, 1.0),
        detect_missed: detected.then(|| hangs - ours.len() as u64),
        detect_p99_ms_servo: detect::percentile(&servo, 0.99),
        detect_hangs: detected.then_some(hangs),
        idle_wakeups_per_s: figure(&idle, |i| i.0.ours),
        idle_wakeups_per_s_servo: figure(&idle, |i| i.0.servo),
        idle_wakeups_per_s_vigil: figure(&idle, |i| i.0.vigil),
        idle_wakeups_per_s_nano_watchdog: figure(&idle, |i| i.1),
        scale_monitor_cpu_pct: figure(&scale, |s| s.monitor_cpu_pct),
        scale_rss_mib: figure(&scale, |s| s.rss_mib),
        scale_rss_before_mib: figure(&scale, |s| s.rss_before_mib),
        scale_events_per_s: figure(&scale, |s| s.events_per_s),
        sample_handler_us_p50: figure(&stacks, |s| s.handler_us_p50),
        sample_handler_us_p99: figure(&stacks, |s| s.handler_us_p99),
        sample_handler_us_p99_inhandler: figure(&stacks, |s| s.handler_us_p99_inhandler),
        sample_stop_us_p50: figure(&stop, |s| s.p50_us),
        sample_stop_us_p99: figure(&stop, |s| s.p99_us),
        sample_stop_us_mean: figure(&stop, |s| s.mean_us),
        sample_stop_us_p50_pprof: figure(&stop, |s| s.p50_us_pprof),
        sample_stop_us_p99_pprof: figure(&stop, |s| s.p99_us_pprof),
        sample_stop_us_mean_pprof: figure(&stop, |s| s.mean_us_pprof),
        sample_stops_per_s: figure(&stop, |s| s.per_s),
        sample_stops_per_s_pprof: figure(&stop, |s| s.per_s_pprof),
        sample_preemptions_per_s: figure(&stop, |s| s.preemptions_per_s),
        sample_preemptions_per_s_pprof: figure(&stop, |s| s.preemptions_per_s_pprof),
        sample_preemptions_per_s_baseline: figure(&stop, |s| s.preemptions_per_s_baseline),
        sample_stop_background_per_s: figure(&stop, |s| s.background_per_s),
        sample_stop_background_us_p50: figure(&stop, |s| s.background_p50_us),
        sample_stop_background_us_p99: figure(&stop, |s| s.background_p99_us),
        sample_frames: stacks.as_ref().map(|s| s.frames),
        unwind_us: figure(&stacks, |s| s.unwind_us),
        symbolize_warm_us: figure(&stacks, |s| s.symbolize_warm_us),
        symbolize_warm_us_reference: figure(&stacks, |s| s.symbolize_warm_us_reference),
        symbolize_cold_ms: figure(&stacks, |s| s.symbolize_cold_ms),
        symbolize_cold_ms_reference: figure(&stacks, |s| s.symbolize_cold_ms_reference),
        symbolize_private_mib: figure(&children, |c| c.symbolize_private_mib),
        symbolize_private_mib_reference: figure(&children, |c| c.symbolize_private_mib_reference),
        child_private_mib_overhead_in_process: figure(&children, |c| c.overhead_in_process_mib),
        child_private_mib_overhead_elsewhere: figure(&children, |c| c.overhead_elsewhere_mib),
        child_private_mib_overhead_function_names: figure(&children, |c| c.overhead_names_mib),
        first_alert_delivery_ms_in_process: figure(&children, |c| c.delivery_in_process_ms),
        first_alert_delivery_ms_elsewhere: figure(&children, |c| c.delivery_elsewhere_ms),
        first_alert_delivery_ms_function_names: figure(&children, |c| c.delivery_names_ms),
        hub_private_mib_per_child: figure(&children, |c| c.hub_per_child_mib),
        hub_children: count(&children, |c| c.hub_children as u64),
        child_runs: count(&children, |c| c.runs as u64),
        permanent_alert_latency_ms: figure(&stacks, |s| s.permanent_alert_latency_ms),
        permanent_alert_latency_p99_ms: figure(&stacks, |s| s.permanent_alert_latency_p99_ms),
        profile_overhead_pct: figure(&profiling, |p| p.overhead_pct),
        profile_samples_per_s: figure(&profiling, |p| p.samples_per_s),
        profile_other_cpu_pct_1khz: figure(&profiling_1khz, |p| p.other_cpu_pct),
        profile_other_cpu_pct_1khz_pprof: figure(&profiling_1khz, |p| p.other_cpu_pct_pprof),
        profile_wakeup_cpu_pct_1khz: figure(&profiling_1khz, |p| p.wakeup_cpu_pct),
        profile_monitor_us_per_tick: figure(&profiling_1khz, |p| p.monitor_us_per_tick),
        profile_samples_per_s_1khz: figure(&profiling_1khz, |p| p.samples_per_s),
        eintr_per_1k_profiled_calls: figure(&eintr, |e| e.per_1k_profiled),
        eintr_per_1k_profiled_calls_signal: figure(&eintr, |e| e.per_1k_sampled_signal),
        eintr_per_1k_sampled_calls: figure(&eintr, |e| e.per_1k_sampled),
        blocked_capture_us_p50: figure(&eintr, |e| e.capture_p50_us),
        blocked_capture_us_p99: figure(&eintr, |e| e.capture_p99_us),
        blocked_capture_us_p50_signal: figure(&eintr, |e| e.capture_p50_us_signal),
        blocked_capture_us_p99_signal: figure(&eintr, |e| e.capture_p99_us_signal),
        blocked_capture_eintr: count(&eintr, |e| e.capture_eintr),
        blocked_capture_eintr_signal: count(&eintr, |e| e.capture_eintr_signal),
        loaded_hangs: count(&loaded, |l| l.hangs),
        loaded_hog_threads: count(&loaded, |l| l.hog_threads),
        loaded_recall: figure(&loaded, |l| l.recall),
        loaded_recall_servo: figure(&loaded, |l| l.recall_servo),
        loaded_duration_error_pct_max: figure(&loaded, |l| l.duration_error_pct_max),
        loaded_detect_p99_ms: figure(&loaded, |l| l.detect_p99_ms),
        loaded_detect_p99_ms_servo: figure(&loaded, |l| l.detect_p99_ms_servo),
        alert_delivery_p99_ms: figure(&loaded, |l| l.delivery_p99_ms),
        alert_delivery_p99_ms_transient: figure(&loaded, |l| l.delivery_p99_ms_transient),
        loaded_alerts: count(&loaded, |l| l.alerts),
        loaded_monitor_cpu_wait_ms: figure(&loaded, |l| l.monitor_wait_ms),
        loaded_receiver_cpu_wait_ms: figure(&loaded, |l| l.receiver_wait_ms),
        loaded_unplanned_alerts: count(&loaded, |l| l.unplanned_alerts),
        loaded_task_max_ms: figure(&loaded, |l| l.task_max_ms),
        loaded_missed: loaded
            .as_mut()
            .map(|l| std::mem::take(&mut l.missed))
            .unwrap_or_default(),
        loaded_worst_duration_errors: loaded
            .as_mut()
            .map(|l| std::mem::take(&mut l.worst_duration_errors))
            .unwrap_or_default(),
        loaded_slowest_deliveries: loaded
            .as_mut()
            .map(|l| std::mem::take(&mut l.slowest_deliveries))
            .unwrap_or_default(),
        tokio_false_alerts_saturated: count(&tokio, |t| t.false_alerts_saturated),
        tokio_rps_ratio_hooks: figure(&tokio, |t| t.rps_ratio_hooks),
        tokio_rps_ratio_layer: figure(&tokio, |t| t.rps_ratio_layer),
        tokio_rps_unwatched: figure(&tokio, |t| t.rps_unwatched),
        tokio_fast_p99_during_block_ms: figure(&tokio, |t| t.fast_p99_during_block_ms),
        tokio_fast_p99_during_block_ms_no_handoff: figure(&tokio, |t| {
            t.fast_p99_during_block_ms_no_handoff
        }),
        tokio_fast_p99_during_block_ms_unwatched: figure(&tokio, |t| {
            t.fast_p99_during_block_ms_unwatched
        }),
        ratio_dense: figure(&notify, |n| n.0.servo / n.0.ours),
        ratio_sparse: figure(&notify, |n| n.1.servo / n.1.ours),
        targets: Vec::new(),
        quick,
        steps: Step::ALL
            .into_iter()
            .filter(|&step| options.steps.contains(step))
            .map(Step::name)
            .collect(),
    };
    report.targets = targets(&report, options.steps);
    report
}

/// The design's targets over the figures of `steps`; a target that needs a
/// step that did not run is left out.
fn targets(r: &Report, steps: Steps) -> Vec<Target> {
    use Step::*;
    let all: Vec<(&[Step], &'static str, bool)> = vec![
        (
            &[Notify],
            "notify_dense_ns <= notify_dense_ns_servo / 10",
            r.notify_dense_ns <= r.notify_dense_ns_servo / 10.0,
        ),
        (
            &[Notify],
            "notify_sparse_ns <= notify_sparse_ns_servo / 50",
            r.notify_sparse_ns <= r.notify_sparse_ns_servo / 50.0,
        ),
        (&[Notify], "notify_dense_ns <= 4", r.notify_dense_ns <= 4.0),
        (
            &[Notify],
            "notify_dense_ns <= notify_dense_ns_vigil * 3",
            r.notify_dense_ns <= r.notify_dense_ns_vigil * 3.0,
        ),
        (
            &[Notify],
            "notify_sparse_ns <= notify_sparse_ns_vigil",
            r.notify_sparse_ns <= r.notify_sparse_ns_vigil,
        ),
        (
            &[Detect],
            "detect_p99_ms <= 1",
            r.detect_p99_ms <= 1.0 && r.detect_missed == Some(0),
        ),
        (
            &[Idle],
            "idle_wakeups_per_s < 0.5",
            r.idle_wakeups_per_s < 0.5,
        ),
        (
            &[Scale],
            "scale_monitor_cpu_pct <= 5",
            r.scale_monitor_cpu_pct <= 5.0,
        ),
        (
            &[Stacks],
            "sample_handler_us_p99 <= sample_handler_us_p99_inhandler / 10 and <= 30",
            r.sample_handler_us_p99 <= r.sample_handler_us_p99_inhandler / 10.0
                && r.sample_handler_us_p99 <= 30.0,
        ),
        (
            &[SampleStop],
            "sample_stop_us_p99 <= sample_stop_us_p99_pprof / 4",
            r.sample_stop_us_p99 <= r.sample_stop_us_p99_pprof / 4.0,
        ),
        (
            &[Stacks],
            "symbolize_warm_us <= 200",
            r.symbolize_warm_us <= 200.0,
        ),
        (
            &[Children],
            "child_private_mib_overhead_in_process <= 4",
            r.child_private_mib_overhead_in_process <= 4.0,
        ),
        (
            &[Children],
            "child_private_mib_overhead_function_names <= 4",
            r.child_private_mib_overhead_function_names <= 4.0,
        ),
        (
            &[Children],
            "child_private_mib_overhead_elsewhere <= 2",
            r.child_private_mib_overhead_elsewhere <= 2.0,
        ),
        (
            &[Children],
            "first_alert_delivery_ms_elsewhere <= 20",
            r.first_alert_delivery_ms_elsewhere <= 20.0,
        ),
        (
            &[Children],
            "hub_private_mib_per_child <= 1",
            r.hub_private_mib_per_child <= 1.0,
        ),
        (
            &[Stacks],
            "permanent_alert_latency_ms <= 10",
            r.permanent_alert_latency_ms <= 10.0,
        ),
        (
            &[Profiling],
            "profile_overhead_pct < 5",
            r.profile_overhead_pct < 5.0,
        ),
        (
            &[Profiling1k],
            "profile_other_cpu_pct_1khz <= 2",
            r.profile_other_cpu_pct_1khz <= 2.0,
        ),
        (
            &[Profiling1k],
            "profile_monitor_us_per_tick <= 20",
            r.profile_monitor_us_per_tick <= 20.0,
        ),
        (
            &[Eintr],
            "eintr_per_1k_profiled_calls <= 1",
            r.eintr_per_1k_profiled_calls <= 1.0,
        ),
        (
            &[Eintr],
            "blocked_capture_eintr == 0",
            r.blocked_capture_eintr == Some(0),
        ),
        (&[Loaded], "loaded_recall == 1.0", r.loaded_recall == 1.0),
        (
            &[Loaded],
            "loaded_duration_error_pct_max <= 10",
            r.loaded_duration_error_pct_max <= 10.0,
        ),
        (
            &[Loaded],
            "loaded_detect_p99_ms <= 50",
            r.loaded_detect_p99_ms <= 50.0,
        ),
        (
            &[Loaded],
            "alert_delivery_p99_ms <= 20",
            r.alert_delivery_p99_ms <= 20.0,
        ),
        (
            &[Tokio],
            "tokio_false_alerts_saturated == 0",
            r.tokio_false_alerts_saturated == Some(0),
        ),
        (
            &[Tokio],
            "tokio_rps_ratio_hooks >= 0.97",
            r.tokio_rps_ratio_hooks >= 0.97,
        ),
        (
            &[Tokio],
            "tokio_rps_ratio_layer >= 0.97",
            r.tokio_rps_ratio_layer >= 0.97,
        ),
    ];
    all.into_iter()
        .filter(|(needs, _, _)| needs.iter().all(|&step| steps.contains(step)))
        .map(|(_, name, met)| Target { name, met })
        .collect()
}
