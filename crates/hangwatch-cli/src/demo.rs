//! `hangwatch demo` and `hangwatch demo-child`: their arguments, and what
//! they print. The run is `hangwatch_scenario`'s ([`demo::run`],
//! [`run_child`]).

use std::path::PathBuf;
use std::process::ExitCode;

use hangwatch_scenario::demo::{self, Ending};
use hangwatch_scenario::{run_child, Script};

#[derive(clap::Args)]
pub struct Options {
    /// How many child processes (1 to 16).
    #[arg(long, default_value_t = 3, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    processes: u32,
    /// How long the demo runs, in seconds, from 6 to 86,400 (longer if the
    /// plan needs it).
    #[arg(long, default_value_t = 15.0, allow_hyphen_values = true,
          value_parser = crate::args::seconds_in(demo::MIN_SECONDS, demo::MAX_SECONDS))]
    seconds: f64,
    /// Where to write alerts.jsonl, report.txt, hangs.svg, profile.json and trace.json.
    #[arg(long, default_value = "hangwatch-demo")]
    out: PathBuf,
    /// Seed for the plan of hangs and the jitter of the work.
    #[arg(long, default_value_t = 7, allow_hyphen_values = true)]
    seed: u64,
    /// Serve every child's figures for Prometheus on this address
    /// (`127.0.0.1:9184`), labelled by process.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::args::listen_address)]
    metrics: Option<std::net::SocketAddr>,
}

/// Runs the demo; prints its report, where its files went and its
/// self-check, whose last line says how many hangs were injected and
/// detected. Exits non-zero if a file is missing or a count is off (130
/// after Ctrl-C).
pub fn run(options: &Options) -> ExitCode {
    let config = demo::Config {
        processes: options.processes,
        seconds: options.seconds,
        out: options.out.clone(),
        seed: options.seed,
        metrics: options.metrics,
    };
    let interrupted = crate::interrupt::watch_ctrl_c("demo");
    let run = match demo::run(&config, &interrupted) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("hangwatch demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("\n{}", run.report);
    for output in &run.outputs {
        match output {
            Ok(written) => println!("demo: {written}"),
            Err(error) => println!("demo: {error}"),
        }
    }
    let written = run.written();
    match &run.ending {
        Ending::Interrupted { after, run_for } => {
            println!(
                "demo: interrupted after {:.1} s of {:.1} s: what was gathered is written above; \
                 no self-check of a cut-short run",
                after.as_secs_f64(),
                run_for.as_secs_f64()
            );
            if written {
                ExitCode::from(crate::interrupt::INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
        Ending::Checked(check) => {
            println!("demo: {}", check.memory);
            println!("demo: {}", check.first_alerts);
            for problem in &check.outcome.problems {
                println!("demo: {problem}");
            }
            println!("{}", check.outcome);
            if written && check.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs one child of the demo or the soak.
pub fn child(script: &Script) -> ExitCode {
    match run_child(script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo child {}: {error}", script.index);
            ExitCode::FAILURE
        }
    }
}
