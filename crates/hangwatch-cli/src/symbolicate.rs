//! `hangwatch symbolicate`: names the frames of alerts saved as JSON lines
//! by a process that sent them normalized
//! ([`Symbolication::Elsewhere`](hangwatch::Symbolication::Elsewhere)), or
//! that lacked the debug files this machine has.
//!
//! Each line is read as a JSON object and only its `stack.frames` are
//! replaced, so fields that are not an alert's (the demo's `pid` and
//! `process`) are kept as they are; a line that is not a JSON object is
//! copied unchanged and said so. Debug files are found as
//! [`Symbolizer`](hangwatch::Symbolizer) finds them: the
//! module's own file if it is the same build, its debug link,
//! `/usr/lib/debug/.build-id`, and the debuginfod servers of
//! `DEBUGINFOD_URLS`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use hangwatch::Symbolizer;

use crate::output::same_file;
use hangwatch::Frame;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// Alerts as JSON lines (see "Alert JSON lines" in README.md).
    alerts: PathBuf,
    /// Write the symbolicated alerts to FILE [default: standard output].
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: &Args) -> ExitCode {
    match symbolicate(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hangwatch symbolicate: {error}");
            ExitCode::FAILURE
        }
    }
}

fn symbolicate(args: &Args) -> Result<(), String> {
    let source = args.alerts.display();
    if args.alerts.is_dir() {
        return Err(format!(
            "{source} is a directory: give a file of alerts as JSON lines"
        ));
    }
    let input =
        File::open(&args.alerts).map_err(|error| format!("cannot open {source}: {error}"))?;
    if let Some(output) = &args.output {
        if same_file(&args.alerts, output) {
            return Err(format!(
                "{} is the input file: write the symbolicated alerts to another file",
                output.display()
            ));
        }
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).map_err(|error| {
                format!("cannot create {}: {error}", path.display())
            })?))
        }
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let mut symbolizer = Symbolizer::new();
    let (mut named, mut frames_before) = (0usize, 0usize);
    for (number, line) in BufReader::new(input).lines().enumerate() {
        let line = line.map_err(|error| format!("cannot read {source}: {error}"))?;
        let written = match symbolicate_line(&mut symbolizer, &line) {
            Ok(Some((text, before, after))) => {
                frames_before += before;
                named += after;
                text
            }
            Ok(None) => line,
            Err(why) => {
                eprintln!(
                    "hangwatch symbolicate: {source}:{}: copied as it is: {why}",
                    number + 1
                );
                line
            }
        };
        writeln!(out, "{written}").map_err(|error| format!("cannot write: {error}"))?;
    }
    out.flush()
        .map_err(|error| format!("cannot write: {error}"))?;
    for (module, problem) in symbolizer.problems() {
        eprintln!("hangwatch symbolicate: frames of {module} left unnamed: {problem}");
    }
    eprintln!(
        "hangwatch symbolicate: {named} of {frames_before} frames without a name or source line \
         resolved"
    );
    Ok(())
}

/// The line with its stack's frames named, and how many frames lacked a
/// name or a source line and how many of them got what they lacked; `None`
/// for a line with no stack.
fn symbolicate_line(
    symbolizer: &mut Symbolizer,
    line: &str,
) -> Result<Option<(String, usize, usize)>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let mut alert: Value =
        serde_json::from_str(line).map_err(|error| format!("not JSON: {error}"))?;
    let Some(frames) = alert.pointer_mut("/stack/frames") else {
        return Ok(None);
    };
    let parsed: Vec<Frame> = serde_json::from_value(frames.take())
        .map_err(|error| format!("its frames are not frames: {error}"))?;
    let unnamed = parsed.iter().filter(|frame| frame.needs_symbols()).count();
    let symbolicated = symbolizer.symbolize_frames(&parsed);
    let still = symbolicated
        .iter()
        .filter(|frame| frame.needs_symbols())
        .count();
    *frames = serde_json::to_value(&symbolicated).map_err(|error| error.to_string())?;
    let text = serde_json::to_string(&alert).map_err(|error| error.to_string())?;
    Ok(Some((text, unnamed, unnamed.saturating_sub(still))))
}
