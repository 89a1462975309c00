//! `hangwatch soak --seconds N`: its arguments, and the one JSON object of
//! figures it prints. The run is `hangwatch_scenario`'s ([`soak::run`]);
//! its progress goes to stderr.

use std::process::ExitCode;

use hangwatch_scenario::soak;

#[derive(clap::Args)]
pub struct Options {
    /// How long the soak runs, in seconds, from 15 to 86,400.
    #[arg(long, default_value_t = 60.0, allow_hyphen_values = true,
          value_parser = crate::args::seconds_in(soak::MIN_SECONDS, soak::MAX_SECONDS))]
    seconds: f64,
    /// How many child processes run at once, 2 to 16 (`child-0` is never
    /// killed).
    #[arg(long, default_value_t = 3, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(2..=16))]
    processes: u32,
    /// Seed for the plans, the work, and which child is killed when.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    seed: u64,
}

/// Runs the soak and prints its figures; exits non-zero unless they
/// passed (130 after Ctrl-C).
pub fn run(options: &Options) -> ExitCode {
    let config = soak::Config {
        seconds: options.seconds,
        processes: options.processes,
        seed: options.seed,
    };
    let interrupted = crate::interrupt::watch_ctrl_c("soak");
    let summary = match soak::run(&config, &interrupted) {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("hangwatch soak: {error}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string_pretty(&summary) {
        Ok(text) => println!("{text}"),
        Err(error) => {
            eprintln!("hangwatch soak: cannot encode the figures: {error}");
            return ExitCode::FAILURE;
        }
    }
    if summary.interrupted {
        ExitCode::from(crate::interrupt::INTERRUPTED)
    } else if summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
