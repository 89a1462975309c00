//! The `hangwatch` command: a thin layer over the libraries. It parses the
//! arguments, calls `hangwatch_scenario` (demo, soak), `hangwatch_bench` or
//! the exporters, prints what they give back and sets the exit status.

mod args;
mod demo;
mod interrupt;
mod output;
mod report;
mod soak;
mod symbolicate;

use std::process::ExitCode;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{CommandFactory, Parser, Subcommand};
use hangwatch_bench::{Step, Steps};

#[derive(Parser)]
#[command(
    name = "hangwatch",
    version,
    about = "A background hang monitor for event-loop threads"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: a hub and child processes with injected hangs, a live
    /// view, a report, a flamegraph and a Firefox profile, and a self-check.
    Demo(demo::Options),
    /// One child process of the demo (started by `hangwatch demo`).
    #[command(hide = true)]
    DemoChild(hangwatch_scenario::Script),
    /// The demo's processes under a heavy mix for a while (load, hangs,
    /// profiling windows, kills and restarts); prints one JSON object of
    /// figures.
    Soak(soak::Options),
    /// Report on alerts saved as JSON lines; write a flamegraph, a Firefox profile, a trace
    /// (Perfetto, chrome://tracing, speedscope), collapsed stacks.
    Report(report::Args),
    /// Name the frames of alerts saved as JSON lines (sent normalized, or
    /// symbolicated where debug files were missing), here or through debuginfod.
    Symbolicate(symbolicate::Args),
    /// Measure hangwatch side by side with a Servo-style reference.
    Bench {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Shorter runs: under a minute on two cores.
        #[arg(long)]
        quick: bool,
        /// Seed for the random timeouts of the detection run.
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        seed: u64,
        /// Run only these steps (comma-separated, in the bench's own
        /// order); the figures of the others are null and their targets
        /// are left out.
        #[arg(long, value_delimiter = ',', value_parser = StepParser)]
        only: Vec<Step>,
    },
}

/// `--only`'s values: the bench's step names.
#[derive(Clone)]
struct StepParser;

impl StepParser {
    fn names() -> PossibleValuesParser {
        PossibleValuesParser::new(Step::ALL.map(Step::name))
    }
}

impl TypedValueParser for StepParser {
    type Value = Step;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Step, clap::Error> {
        let name = Self::names().parse_ref(command, arg, value)?;
        Step::named(&name).ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("{name:?} is not a step of the bench\n"),
            )
            .with_cmd(command)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            Step::ALL
                .into_iter()
                .map(|step| PossibleValue::new(step.name())),
        ))
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return args::show(&error, Cli::command()),
    };
    match cli.command {
        Command::Demo(options) => demo::run(&options),
        Command::DemoChild(script) => demo::child(&script),
        Command::Soak(options) => soak::run(&options),
        Command::Report(args) => report::run(&args),
        Command::Symbolicate(args) => symbolicate::run(&args),
        Command::Bench {
            json,
            quick,
            seed,
            only,
        } => bench(json, quick, seed, &only),
    }
}

fn bench(json: bool, quick: bool, seed: u64, only: &[Step]) -> ExitCode {
    let steps = if only.is_empty() {
        Steps::ALL
    } else {
        Steps::only(only.iter().copied())
    };
    let options = hangwatch_bench::Options { quick, seed, steps };
    let report = hangwatch_bench::run(options, |step| eprintln!("bench: {step}..."));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("hangwatch: cannot encode the report: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_table(&report);
    }
    ExitCode::SUCCESS
}

/// A count of the report, `-` for a step that did not run.
fn count(value: Option<impl std::fmt::Display>) -> String {
    value.map_or("-".to_owned(), |value| value.to_string())
}

fn print_table(r: &hangwatch_bench::Report) {
    let ran = |step: Step| r.steps.contains(&step.name());
    println!(
        "{:<28} {:>12} {:>14} {:>10} {:>8}",
        "measure", "hangwatch", "servo-style", "limit", "ratio"
    );
    let row = |name: &str, ours: f64, servo: f64, limit: Option<f64>| {
        let limit = limit.map_or("-".to_owned(), |l| format!("{l:.2}"));
        println!(
            "{name:<28} {ours:>12.2} {servo:>14.2} {limit:>10} {:>7.1}x",
            servo / ours
        );
    };
    if ran(Step::Notify) {
        row(
            "notify pair, dense (ns)",
            r.notify_dense_ns,
            r.notify_dense_ns_servo,
            Some(r.notify_dense_ns_limit),
        );
        row(
            "notify pair, sparse (ns)",
            r.notify_sparse_ns,
            r.notify_sparse_ns_servo,
            None,
        );
    }
    if ran(Step::Detect) {
        row(
            "detect p99 (ms)",
            r.detect_p99_ms,
            r.detect_p99_ms_servo,
            None,
        );
    }
    if ran(Step::Idle) {
        row(
            "idle wake-ups (/s)",
            r.idle_wakeups_per_s,
            r.idle_wakeups_per_s_servo,
            None,
        );
    }
    if ran(Step::Notify) {
        println!(
            "notify pair, other references: dense vigil {:.2} ns, nano-watchdog {:.2} ns \
             (clock read alone {:.2} ns); sparse vigil {:.2} ns, nano-watchdog {:.2} ns",
            r.notify_dense_ns_vigil,
            r.notify_dense_ns_nano_watchdog,
            r.notify_dense_ns_clock,
            r.notify_sparse_ns_vigil,
            r.notify_sparse_ns_nano_watchdog
        );
    }
    if ran(Step::Idle) {
        println!(
            "idle wake-ups, other references: vigil {:.1}/s (a watcher thread per component), \
             nano-watchdog {:.1}/s",
            r.idle_wakeups_per_s_vigil, r.idle_wakeups_per_s_nano_watchdog
        );
    }
    if ran(Step::Detect) {
        println!(
            "detect p50 {:.2} ms, max {:.2} ms, {} of {} hangs missed",
            r.detect_p50_ms,
            r.detect_max_ms,
            count(r.detect_missed),
            count(r.detect_hangs)
        );
    }
    if ran(Step::Scale) {
        println!(
            "scale: monitor CPU {:.2}% of a core, RSS {:.0} MiB ({:.0} MiB before), {:.0} events/s",
            r.scale_monitor_cpu_pct, r.scale_rss_mib, r.scale_rss_before_mib, r.scale_events_per_s
        );
    }
    if ran(Step::Stacks) {
        println!(
            "stacks: handler p50 {:.1} us; {} frames unwound in {:.1} us, symbolicated (warm) in \
             {:.1} us; permanent alert with stack {:.2} ms after its deadline (p99 {:.2} ms)",
            r.sample_handler_us_p50,
            count(r.sample_frames),
            r.unwind_us,
            r.symbolize_warm_us,
            r.permanent_alert_latency_ms,
            r.permanent_alert_latency_p99_ms
        );
        println!(
            "symbolication: warm {:.1} us (reference {:.1} us), cold {:.1} ms (reference {:.1} ms)",
            r.symbolize_warm_us,
            r.symbolize_warm_us_reference,
            r.symbolize_cold_ms,
            r.symbolize_cold_ms_reference,
        );
    }
    if ran(Step::SampleStop) {
        println!(
            "a sampled thread's own stop at 1 kHz: p50 {:.1} us, p99 {:.1} us, mean {:.1} us \
             ({:.0}/s); pprof-rs p50 {:.1} us, p99 {:.1} us, mean {:.1} us ({:.0}/s); \
             unsampled: {:.0} gaps/s, p50 {:.1} us, p99 {:.1} us; preempted {:.0}/s ({:.0}/s pprof-rs, \
             {:.0}/s unsampled)",
            r.sample_stop_us_p50,
            r.sample_stop_us_p99,
            r.sample_stop_us_mean,
            r.sample_stops_per_s,
            r.sample_stop_us_p50_pprof,
            r.sample_stop_us_p99_pprof,
            r.sample_stop_us_mean_pprof,
            r.sample_stops_per_s_pprof,
            r.sample_stop_background_per_s,
            r.sample_stop_background_us_p50,
            r.sample_stop_background_us_p99,
            r.sample_preemptions_per_s,
            r.sample_preemptions_per_s_pprof,
            r.sample_preemptions_per_s_baseline
        );
    }
    if ran(Step::Children) {
        println!(
            "symbolizers' private memory: {:.1} MiB (reference {:.1} MiB)",
            r.symbolize_private_mib, r.symbolize_private_mib_reference
        );
        println!(
            "fresh child ({} runs): private memory over none {:.1} MiB in process, {:.1} MiB \
             function names only, {:.1} MiB elsewhere; first alert {:.1} ms in process, {:.1} ms \
             function names only, {:.1} ms elsewhere; hub {:.2} MiB per child ({} children)",
            count(r.child_runs),
            r.child_private_mib_overhead_in_process,
            r.child_private_mib_overhead_function_names,
            r.child_private_mib_overhead_elsewhere,
            r.first_alert_delivery_ms_in_process,
            r.first_alert_delivery_ms_function_names,
            r.first_alert_delivery_ms_elsewhere,
            r.hub_private_mib_per_child,
            count(r.hub_children)
        );
    }
    if ran(Step::Profiling) {
        println!(
            "profiling 16 busy threads at 100 Hz: {:.2}% of a core ({:.0} samples/s)",
            r.profile_overhead_pct, r.profile_samples_per_s
        );
    }
    if ran(Step::Profiling1k) {
        println!(
            "profiling at 1 kHz: other threads {:.2}% of a core for one busy thread (pprof-rs \
             {:.2}%; a bare thread waking at 1 kHz {:.2}%); monitor {:.1} us per tick for 16 \
             ({:.0} samples/s of 16000)",
            r.profile_other_cpu_pct_1khz,
            r.profile_other_cpu_pct_1khz_pprof,
            r.profile_wakeup_cpu_pct_1khz,
            r.profile_monitor_us_per_tick,
            r.profile_samples_per_s_1khz
        );
    }
    if ran(Step::Eintr) {
        println!(
            "EINTR per 1,000 timed calls at 1 kHz: profiled {:.3}; sampled {:.3}, signal-only {:.3}",
            r.eintr_per_1k_profiled_calls,
            r.eintr_per_1k_sampled_calls,
            r.eintr_per_1k_profiled_calls_signal
        );
        println!(
            "capture of a blocked thread: p50 {:.1} us, p99 {:.1} us, {} EINTR; \
             signal-only p50 {:.1} us, p99 {:.1} us, {} EINTR",
            r.blocked_capture_us_p50,
            r.blocked_capture_us_p99,
            count(r.blocked_capture_eintr),
            r.blocked_capture_us_p50_signal,
            r.blocked_capture_us_p99_signal,
            count(r.blocked_capture_eintr_signal)
        );
    }
    if ran(Step::Loaded) {
        println!(
            "under load ({} hangs, {} hog threads): recall {:.2} (servo-style {:.2}), \
             duration error max {:.1}%, detect p99 {:.2} ms (servo-style {:.2} ms), \
             delivery p99 {:.2} ms over {} alerts",
            count(r.loaded_hangs),
            count(r.loaded_hog_threads),
            r.loaded_recall,
            r.loaded_recall_servo,
            r.loaded_duration_error_pct_max,
            r.loaded_detect_p99_ms,
            r.loaded_detect_p99_ms_servo,
            r.alert_delivery_p99_ms,
            count(r.loaded_alerts)
        );
    }
    if ran(Step::Tokio) {
        println!(
            "tokio (2 workers, 256 connections): {} alerts saturated; requests/s with hooks \
             {:.3}x, hooks + request layer {:.3}x of stock ({:.0}/s); /fast p99 while a \
             worker blocks 1.5 s: {:.1} ms hand-off, {:.1} ms no hand-off, {:.1} ms stock",
            count(r.tokio_false_alerts_saturated),
            r.tokio_rps_ratio_hooks,
            r.tokio_rps_ratio_layer,
            r.tokio_rps_unwatched,
            r.tokio_fast_p99_during_block_ms,
            r.tokio_fast_p99_during_block_ms_no_handoff,
            r.tokio_fast_p99_during_block_ms_unwatched
        );
    }
    for target in &r.targets {
        println!(
            "[{}] {}",
            if target.met { "met" } else { "MISSED" },
            target.name
        );
    }
}
