//! The `hangwatch` command: a thin layer over the library.

mod demo;
mod output;
mod procfs;
mod report;
mod soak;
mod symbolicate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    DemoChild(demo::plan::Script),
    /// The demo's processes under a heavy mix for a while (load, hangs,
    /// profiling windows, kills and restarts); prints one JSON object of
    /// figures.
    Soak(soak::Options),
    /// Report on alerts saved as JSON lines; write a flamegraph, a Firefox profile, collapsed stacks.
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
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo(options) => demo::run(&options),
        Command::DemoChild(script) => demo::run_child(&script),
        Command::Soak(options) => soak::run(&options),
        Command::Report(args) => report::run(&args),
        Command::Symbolicate(args) => symbolicate::run(&args),
        Command::Bench { json, quick, seed } => bench(json, quick, seed),
    }
}

fn bench(json: bool, quick: bool, seed: u64) -> ExitCode {
    let options = hangwatch_bench::Options { quick, seed };
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

fn print_table(r: &hangwatch_bench::Report) {
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
    row(
        "detect p99 (ms)",
        r.detect_p99_ms,
        r.detect_p99_ms_servo,
        None,
    );
    row(
        "idle wake-ups (/s)",
        r.idle_wakeups_per_s,
        r.idle_wakeups_per_s_servo,
        None,
    );
    println!(
        "detect p50 {:.2} ms, max {:.2} ms, {} of {} hangs missed",
        r.detect_p50_ms, r.detect_max_ms, r.detect_missed, r.detect_hangs
    );
    println!(
        "scale: monitor CPU {:.2}% of a core, RSS {:.0} MiB ({:.0} MiB before), {:.0} events/s",
        r.scale_monitor_cpu_pct, r.scale_rss_mib, r.scale_rss_before_mib, r.scale_events_per_s
    );
    println!(
        "stacks: pause p50 {:.1} us; {} frames unwound in {:.1} us, symbolicated (warm) in {:.1} us; \
         permanent alert with stack {:.2} ms after its deadline (p99 {:.2} ms)",
        r.sample_pause_p50_us,
        r.sample_frames,
        r.unwind_us,
        r.symbolize_warm_us,
        r.permanent_alert_latency_ms,
        r.permanent_alert_latency_p99_ms
    );
    println!(
        "symbolication: warm {:.1} us (reference {:.1} us), cold {:.1} ms (reference {:.1} ms), \
         private memory {:.1} MiB (reference {:.1} MiB)",
        r.symbolize_warm_us,
        r.symbolize_warm_us_reference,
        r.symbolize_cold_ms,
        r.symbolize_cold_ms_reference,
        r.symbolize_private_mib,
        r.symbolize_private_mib_reference
    );
    println!(
        "fresh child ({} runs): private memory over none {:.1} MiB in process, {:.1} MiB function \
         names only, {:.1} MiB elsewhere; first alert {:.1} ms in process, {:.1} ms function names \
         only, {:.1} ms elsewhere; hub {:.2} MiB per child ({} children)",
        r.child_runs,
        r.child_private_mib_overhead_in_process,
        r.child_private_mib_overhead_function_names,
        r.child_private_mib_overhead_elsewhere,
        r.first_alert_delivery_ms_in_process,
        r.first_alert_delivery_ms_function_names,
        r.first_alert_delivery_ms_elsewhere,
        r.hub_private_mib_per_child,
        r.hub_children
    );
    println!(
        "profiling 16 busy threads at 100 Hz: {:.2}% of a core ({:.0} samples/s)",
        r.profile_overhead_pct, r.profile_samples_per_s
    );
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
        r.blocked_capture_eintr,
        r.blocked_capture_us_p50_signal,
        r.blocked_capture_us_p99_signal,
        r.blocked_capture_eintr_signal
    );
    println!(
        "under load ({} hangs, {} hog threads): recall {:.2} (servo-style {:.2}), \
         duration error max {:.1}%, detect p99 {:.2} ms (servo-style {:.2} ms), \
         delivery p99 {:.2} ms over {} alerts",
        r.loaded_hangs,
        r.loaded_hog_threads,
        r.loaded_recall,
        r.loaded_recall_servo,
        r.loaded_duration_error_pct_max,
        r.loaded_detect_p99_ms,
        r.loaded_detect_p99_ms_servo,
        r.alert_delivery_p99_ms,
        r.loaded_alerts
    );
    for target in &r.targets {
        println!(
            "[{}] {}",
            if target.met { "met" } else { "MISSED" },
            target.name
        );
    }
}
