//! `hangwatch report`: reads alerts saved as JSON lines, names the frames
//! that have no name yet (as `hangwatch symbolicate` does), prints the text
//! report, and writes the flamegraph, Firefox profile, trace (Perfetto,
//! chrome://tracing, speedscope) and collapsed stacks asked for. Collapsed
//! stacks and the flamegraph weigh each stack by the milliseconds of hang
//! time it stands for, under the program's and the component's names unless
//! `--no-prefix`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hangwatch::Symbolizer;
use hangwatch_export::collapsed::{self, Prefix};
use hangwatch_export::report::Report;
use hangwatch_export::{firefox, flamegraph, jsonl, trace_event};

use crate::output::{same_file, same_output, save};

#[derive(clap::Args)]
pub struct Args {
    /// Alerts as JSON lines, one alert per line (see "Alert JSON lines" in README.md).
    alerts: PathBuf,
    /// Also write a flamegraph of the hung stacks to FILE, as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Also write a Firefox Profiler profile to FILE (open it at https://profiler.firefox.com).
    #[arg(long, value_name = "FILE")]
    firefox: Option<PathBuf>,
    /// Also write the hung stacks to FILE as collapsed lines, weighted by milliseconds of hang
    /// time (for inferno, flamegraph.pl, speedscope).
    #[arg(long, value_name = "FILE")]
    collapsed: Option<PathBuf>,
    /// Also write a trace in the Chrome Trace Event Format to FILE (open it in Perfetto UI,
    /// chrome://tracing or speedscope).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Start collapsed stacks and the flamegraph at the stacks' own frames, without the
    /// program's and the component's names.
    #[arg(long)]
    no_prefix: bool,
    /// The program's name in the profiles, the trace and the stacks' first frame [default: the
    /// alerts file's name].
    #[arg(long, value_name = "NAME")]
    program: Option<String>,
}

pub fn run(args: &Args) -> ExitCode {
    let source = args.alerts.display();
    let outputs = [&args.svg, &args.firefox, &args.collapsed, &args.trace];
    if let Some(clash) = outputs
        .into_iter()
        .flatten()
        .find(|output| same_file(&args.alerts, output))
    {
        eprintln!(
            "hangwatch report: {} is the alerts file it reads: write the outputs to other files",
            clash.display()
        );
        return ExitCode::FAILURE;
    }
    let named = [
        (&args.svg, "--svg"),
        (&args.firefox, "--firefox"),
        (&args.collapsed, "--collapsed"),
        (&args.trace, "--trace"),
    ];
    let named: Vec<(&PathBuf, &str)> = named
        .into_iter()
        .filter_map(|(path, flag)| path.as_ref().map(|path| (path, flag)))
        .collect();
    for (at, (first, first_flag)) in named.iter().enumerate() {
        if let Some((_, second_flag)) = named[at + 1..]
            .iter()
            .find(|(second, _)| same_output(first, second))
        {
            eprintln!(
                "hangwatch report: {first_flag} and {second_flag} both name {}: give each output a file of its own",
                first.display()
            );
            return ExitCode::FAILURE;
        }
    }
    if args.alerts.is_dir() {
        eprintln!("hangwatch report: {source} is a directory, not a file of alerts");
        return ExitCode::FAILURE;
    }
    let mut read = match jsonl::read_file(&args.alerts) {
        Ok(read) => read,
        Err(error) => {
            eprintln!("hangwatch report: {error}");
            return ExitCode::FAILURE;
        }
    };
    for error in &read.errors {
        eprintln!("hangwatch report: {source}: skipped {error}");
    }
    if read.alerts.is_empty() {
        if read.errors.is_empty() {
            eprintln!("hangwatch report: {source} has no alerts: the file is empty");
        } else {
            let lines = match read.errors.len() {
                1 => "its one non-blank line is not an alert".to_owned(),
                n => format!("none of its {n} non-blank lines is an alert"),
            };
            eprintln!(
                "hangwatch report: {source} has no alerts: {lines}; is it a file of hangwatch alerts?"
            );
        }
        return ExitCode::FAILURE;
    }

    // Frames sent normalized (or left unnamed where they were taken) are
    // named here, as `hangwatch symbolicate` names them.
    let mut symbolizer = Symbolizer::new();
    for stack in read
        .alerts
        .iter_mut()
        .filter_map(|alert| alert.stack.as_mut())
    {
        symbolizer.symbolize_stack(stack);
    }

    let mut stdout = io::stdout().lock();
    if write!(stdout, "{}", Report::from_alerts(&read.alerts)).is_err() {
        // Standard output is gone (a closed pipe): nobody is reading.
        return ExitCode::FAILURE;
    }

    let program = args
        .program
        .clone()
        .or_else(|| file_stem(&args.alerts))
        .unwrap_or_else(|| "hangwatch".to_owned());
    let prefix = if args.no_prefix {
        Prefix::None
    } else {
        Prefix::Process(&program)
    };
    let stacks = collapsed::from_alerts(&read.alerts, prefix);
    let mut saved = Vec::new();
    if let Some(path) = &args.collapsed {
        saved.push(save(path, "collapsed stacks", |out| {
            collapsed::write(&stacks, out)
        }));
    }
    if let Some(path) = &args.svg {
        let title = format!("Hung stacks in {source}");
        saved.push(save(path, "flamegraph", |out| {
            flamegraph::write(&stacks, &title, "ms", out)
        }));
    }
    // The alerts do not say which process raised them.
    if let Some(path) = &args.firefox {
        let profile = firefox::from_alerts(&program, 0, &read.alerts);
        saved.push(save(path, "Firefox profile", |out| profile.write(out)));
    }
    if let Some(path) = &args.trace {
        let trace = trace_event::from_alerts(&program, 0, &read.alerts);
        saved.push(save(path, "trace", |out| trace.write(out)));
    }
    let mut failed = false;
    for result in saved {
        let said = match result {
            Ok(wrote) => writeln!(stdout, "{wrote}"),
            Err(error) => {
                failed = true;
                writeln!(io::stderr(), "hangwatch report: {error}")
            }
        };
        failed |= said.is_err();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `path`'s file name without its extension, if it has one.
fn file_stem(path: &Path) -> Option<String> {
    Some(path.file_stem()?.to_string_lossy().into_owned())
}
