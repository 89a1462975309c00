//! `hangwatch bench`: hangwatch measured side by side with a reference that
//! behaves like Servo's background hang monitor (see [`servo`]), and with the
//! physical limit where there is one, in one run.
//!
//! Absolute times vary from machine to machine and run to run; the ratios
//! between columns measured in the same run are what to read. Every figure is
//! a field of [`Report`], printed as one JSON object by `hangwatch bench --json`.

mod children;
mod detect;
mod eintr;
mod idle;
mod loaded;
mod notify;
mod procfs;
mod profiling;
pub mod reference_symbolizer;
mod scale;
pub mod servo;
mod stacks;

use std::time::Duration;

use serde::Serialize;

pub use crate::loaded::{Delivery, DurationError, HangKind, MissedHang};

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Fewer iterations and shorter windows: about two minutes on two cores.
    pub quick: bool,
    /// Seed for the random timeouts of the detection run and the plan of the
    /// loaded runs.
    pub seed: u64,
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
    /// Our pair with 50 µs events and 200 µs waits (the monitor asleep), ns.
    pub notify_sparse_ns: f64,
    /// The same through the reference.
    pub notify_sparse_ns_servo: f64,
    /// Transient alert delivered minus its deadline, median, ms.
    pub detect_p50_ms: f64,
    /// The same, 99th percentile.
    pub detect_p99_ms: f64,
    /// The same, worst.
    pub detect_max_ms: f64,
    /// Hangs our monitor did not alert on (should be 0).
    pub detect_missed: u64,
    /// The reference's 99th percentile.
    pub detect_p99_ms_servo: f64,
    /// Hangs measured per monitor.
    pub detect_hangs: u64,
    /// Monitor wake-ups per second, 100 components all waiting.
    pub idle_wakeups_per_s: f64,
    /// The same for the reference.
    pub idle_wakeups_per_s_servo: f64,
    /// Monitor thread CPU, percent of a core, 10,000 components of which 1,000 notify.
    pub scale_monitor_cpu_pct: f64,
    /// Process RSS during that run, MiB (mostly the 10,000 threads' stacks).
    pub scale_rss_mib: f64,
    /// Process RSS before that run, MiB.
    pub scale_rss_before_mib: f64,
    /// Notification pairs per second during that run.
    pub scale_events_per_s: f64,
    /// Time a sampled thread spends in our signal handler, median, µs. The
    /// thread is blocked in a futex, which the default sampler reads from
    /// outside without a signal (no pause at all), so it is signalled with
    /// `Sampler::signal_only()`: this is what a running thread pays.
    pub sample_pause_p50_us: f64,
    /// The same, 99th percentile.
    pub sample_pause_p99_us: f64,
    /// The same for a handler that unwinds in place (pprof-rs style), p99.
    pub sample_pause_p99_us_inhandler: f64,
    /// Frames in that thread's stack, captured by the default sampler (read
    /// from outside, as a hung thread's is) and unwound.
    pub sample_frames: usize,
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
    pub hub_children: u64,
    /// Fresh child processes per figure above (medians of this many).
    pub child_runs: u64,
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
    pub blocked_capture_eintr: u64,
    /// The same during the signal-only sampler's captures.
    pub blocked_capture_eintr_signal: u64,
    /// Injected hangs in the loaded runs (`src/loaded.rs`), per
    /// monitor: six browser-shaped components (100 ms transient, 500 ms
    /// permanent), hangs of 150 ms–1.5 s of four kinds (CPU loop, sleep,
    /// mutex held by another thread, blocking socket read), beside
    /// `loaded_hog_threads` busy-loop threads.
    pub loaded_hangs: u64,
    /// Busy-loop threads the bench ran beside both loaded runs: two per core
    /// (`2 × available_parallelism()`), registered with no monitor.
    pub loaded_hog_threads: u64,
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
    pub loaded_alerts: u64,
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
    pub loaded_unplanned_alerts: u64,
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
    /// `notify_dense_ns_servo / notify_dense_ns` (target ≥ 10).
    pub ratio_dense: f64,
    /// `notify_sparse_ns_servo / notify_sparse_ns` (target ≥ 50).
    pub ratio_sparse: f64,
    /// Whether each target was met, by name.
    pub targets: Vec<Target>,
    /// Whether this was a `--quick` run.
    pub quick: bool,
}

/// One target from the design and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is compared.
    pub name: &'static str,
    /// Whether it held.
    pub met: bool,
}

/// Runs every measurement. `progress` is told what runs next.
///
/// In a child process the bench started (`HANGWATCH_BENCH_CHILD` set, see
/// `src/children.rs`) this measures nothing else: it does what the child
/// was started for, prints its answer on stdout and exits the process.
pub fn run(options: Options, mut progress: impl FnMut(&str)) -> Report {
    if let Some(code) = children::child_main() {
        std::process::exit(code);
    }
    let quick = options.quick;
    progress("notification cost, dense");
    let (notify_dense_ns, notify_dense_ns_servo, notify_dense_ns_limit) =
        notify::dense_pairs(quick);
    progress("notification cost, sparse");
    let (notify_sparse_ns, notify_sparse_ns_servo) = notify::sparse_pairs(quick);

    progress("detection latency");
    let hangs = if quick { 200 } else { 800 };
    let ours = detect::hangwatch_latencies(hangs, options.seed);
    let servo = detect::servo_latencies(hangs, options.seed);

    progress("idle wake-ups");
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let (idle_wakeups_per_s, idle_wakeups_per_s_servo) = idle::wakeups_per_second(window);

    progress("stacks: pauses, symbolication, permanent alerts");
    let stacks = stacks::run(quick);

    progress("fresh processes: symbolizers' memory, monitor and hub overhead, first alert");
    let children = children::run(quick);

    progress("EINTR: timed calls profiled and sampled at 1 kHz, captures of a blocked thread");
    let eintr = eintr::run(quick, window);

    progress("profiling 16 busy threads at 100 Hz");
    let profiling = profiling::run(Duration::from_secs(if quick { 2 } else { 5 }));

    progress("scale: 10,000 components");
    let scale = scale::run(Duration::from_secs(if quick { 3 } else { 10 }));

    progress("hangs under load: 6 components beside 2 busy-loop threads per core");
    let loaded = loaded::run(quick, options.seed);

    let mut report = Report {
        notify_dense_ns,
        notify_dense_ns_servo,
        notify_dense_ns_limit,
        notify_sparse_ns,
        notify_sparse_ns_servo,
        detect_p50_ms: detect::percentile(&ours, 0.5),
        detect_p99_ms: detect::percentile(&ours, 0.99),
        detect_max_ms: detect::percentile(&ours, 1.0),
        detect_missed: hangs - ours.len() as u64,
        detect_p99_ms_servo: detect::percentile(&servo, 0.99),
        detect_hangs: hangs,
        idle_wakeups_per_s,
        idle_wakeups_per_s_servo,
        scale_monitor_cpu_pct: scale.monitor_cpu_pct,
        scale_rss_mib: scale.rss_mib,
        scale_rss_before_mib: scale.rss_before_mib,
        scale_events_per_s: scale.events_per_s,
        sample_pause_p50_us: stacks.pause_p50_us,
        sample_pause_p99_us: stacks.pause_p99_us,
        sample_pause_p99_us_inhandler: stacks.pause_p99_us_inhandler,
        sample_frames: stacks.frames,
        unwind_us: stacks.unwind_us,
        symbolize_warm_us: stacks.symbolize_warm_us,
        symbolize_warm_us_reference: stacks.symbolize_warm_us_reference,
        symbolize_cold_ms: stacks.symbolize_cold_ms,
        symbolize_cold_ms_reference: stacks.symbolize_cold_ms_reference,
        symbolize_private_mib: children.symbolize_private_mib,
        symbolize_private_mib_reference: children.symbolize_private_mib_reference,
        child_private_mib_overhead_in_process: children.overhead_in_process_mib,
        child_private_mib_overhead_elsewhere: children.overhead_elsewhere_mib,
        child_private_mib_overhead_function_names: children.overhead_names_mib,
        first_alert_delivery_ms_in_process: children.delivery_in_process_ms,
        first_alert_delivery_ms_elsewhere: children.delivery_elsewhere_ms,
        first_alert_delivery_ms_function_names: children.delivery_names_ms,
        hub_private_mib_per_child: children.hub_per_child_mib,
        hub_children: children.hub_children as u64,
        child_runs: children.runs as u64,
        permanent_alert_latency_ms: stacks.permanent_alert_latency_ms,
        permanent_alert_latency_p99_ms: stacks.permanent_alert_latency_p99_ms,
        profile_overhead_pct: profiling.overhead_pct,
        profile_samples_per_s: profiling.samples_per_s,
        eintr_per_1k_profiled_calls: eintr.per_1k_profiled,
        eintr_per_1k_profiled_calls_signal: eintr.per_1k_sampled_signal,
        eintr_per_1k_sampled_calls: eintr.per_1k_sampled,
        blocked_capture_us_p50: eintr.capture_p50_us,
        blocked_capture_us_p99: eintr.capture_p99_us,
        blocked_capture_us_p50_signal: eintr.capture_p50_us_signal,
        blocked_capture_us_p99_signal: eintr.capture_p99_us_signal,
        blocked_capture_eintr: eintr.capture_eintr,
        blocked_capture_eintr_signal: eintr.capture_eintr_signal,
        loaded_hangs: loaded.hangs,
        loaded_hog_threads: loaded.hog_threads,
        loaded_recall: loaded.recall,
        loaded_recall_servo: loaded.recall_servo,
        loaded_duration_error_pct_max: loaded.duration_error_pct_max,
        loaded_detect_p99_ms: loaded.detect_p99_ms,
        loaded_detect_p99_ms_servo: loaded.detect_p99_ms_servo,
        alert_delivery_p99_ms: loaded.delivery_p99_ms,
        alert_delivery_p99_ms_transient: loaded.delivery_p99_ms_transient,
        loaded_alerts: loaded.alerts,
        loaded_monitor_cpu_wait_ms: loaded.monitor_wait_ms,
        loaded_receiver_cpu_wait_ms: loaded.receiver_wait_ms,
        loaded_unplanned_alerts: loaded.unplanned_alerts,
        loaded_task_max_ms: loaded.task_max_ms,
        loaded_missed: loaded.missed,
        loaded_worst_duration_errors: loaded.worst_duration_errors,
        loaded_slowest_deliveries: loaded.slowest_deliveries,
        ratio_dense: notify_dense_ns_servo / notify_dense_ns,
        ratio_sparse: notify_sparse_ns_servo / notify_sparse_ns,
        targets: Vec::new(),
        quick,
    };
    report.targets = targets(&report);
    report
}

fn targets(r: &Report) -> Vec<Target> {
    vec![
        Target {
            name: "notify_dense_ns <= notify_dense_ns_servo / 10",
            met: r.notify_dense_ns <= r.notify_dense_ns_servo / 10.0,
        },
        Target {
            name: "notify_sparse_ns <= notify_sparse_ns_servo / 50",
            met: r.notify_sparse_ns <= r.notify_sparse_ns_servo / 50.0,
        },
        Target {
            name: "detect_p99_ms <= 2",
            met: r.detect_p99_ms <= 2.0 && r.detect_missed == 0,
        },
        Target {
            name: "idle_wakeups_per_s < 0.5",
            met: r.idle_wakeups_per_s < 0.5,
        },
        Target {
            name: "scale_monitor_cpu_pct <= 5",
            met: r.scale_monitor_cpu_pct <= 5.0,
        },
        Target {
            name: "sample_pause_p99_us <= sample_pause_p99_us_inhandler / 10 and <= 30",
            met: r.sample_pause_p99_us <= r.sample_pause_p99_us_inhandler / 10.0
                && r.sample_pause_p99_us <= 30.0,
        },
        Target {
            name: "symbolize_warm_us <= 200",
            met: r.symbolize_warm_us <= 200.0,
        },
        Target {
            name: "child_private_mib_overhead_in_process <= 4",
            met: r.child_private_mib_overhead_in_process <= 4.0,
        },
        Target {
            name: "child_private_mib_overhead_function_names <= 4",
            met: r.child_private_mib_overhead_function_names <= 4.0,
        },
        Target {
            name: "child_private_mib_overhead_elsewhere <= 2",
            met: r.child_private_mib_overhead_elsewhere <= 2.0,
        },
        Target {
            name: "first_alert_delivery_ms_elsewhere <= 20",
            met: r.first_alert_delivery_ms_elsewhere <= 20.0,
        },
        Target {
            name: "hub_private_mib_per_child <= 1",
            met: r.hub_private_mib_per_child <= 1.0,
        },
        Target {
            name: "permanent_alert_latency_ms <= 10",
            met: r.permanent_alert_latency_ms <= 10.0,
        },
        Target {
            name: "profile_overhead_pct < 5",
            met: r.profile_overhead_pct < 5.0,
        },
        Target {
            name: "eintr_per_1k_profiled_calls <= 1",
            met: r.eintr_per_1k_profiled_calls <= 1.0,
        },
        Target {
            name: "blocked_capture_eintr == 0",
            met: r.blocked_capture_eintr == 0,
        },
        Target {
            name: "loaded_recall == 1.0",
            met: r.loaded_recall == 1.0,
        },
        Target {
            name: "loaded_duration_error_pct_max <= 10",
            met: r.loaded_duration_error_pct_max <= 10.0,
        },
        Target {
            name: "loaded_detect_p99_ms <= 50",
            met: r.loaded_detect_p99_ms <= 50.0,
        },
        Target {
            name: "alert_delivery_p99_ms <= 20",
            met: r.alert_delivery_p99_ms <= 20.0,
        },
    ]
}
