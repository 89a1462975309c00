//! Exporters for [hangwatch]: what the monitor said, in the
//! formats people and tools read.
//!
//! | module | from | to | read it with |
//! |---|---|---|---|
//! | [`jsonl`] | alerts | JSON lines, one alert per line (and back) | `jq`, any language; `hangwatch report` |
//! | [`report`] | alerts | a text report: hangs by component and stack signature, with p50/p99/max durations | your eyes |
//! | [`collapsed`] | alerts with stacks, or a [`Profile`](hangwatch::Profile) | collapsed stacks (and back) | inferno, `flamegraph.pl`, speedscope |
//! | [`flamegraph`] | collapsed stacks | an SVG flamegraph | a browser |
//! | [`firefox`] | a profile, or alerts; one or more processes | the Firefox Profiler's processed format | <https://profiler.firefox.com> |
//! | [`trace_event`] | a profile, or alerts; one or more processes | the Chrome Trace Event Format (JSON) | <https://ui.perfetto.dev>, `chrome://tracing`, <https://www.speedscope.app> |
//!
//! Every exporter is a plain function from data to a value or text, with a
//! `write` beside it that writes to any [`io::Write`](std::io::Write);
//! [`write_file`] gives them a file. Frames are named by
//! [`Frame::name`](hangwatch::Frame::name), and which are the program's own
//! is hangwatch's one rule, [`is_program_frame_name`](hangwatch::is_program_frame_name); [`hangs`] rebuilds hangs from alerts.
//! Nothing here panics on bad input: malformed lines come back as
//! [`LineError`]s with their line number, failures as [`ExportError`] or
//! [`ReadError`] with a message that says what to do.
//!
//! # Example: from a file of alerts to every format
//!
//! ```no_run
//! use hangwatch_export::collapsed::{self, Prefix};
//! use hangwatch_export::{firefox, flamegraph, jsonl, report::Report, trace_event, write_file};
//!
//! let read = jsonl::read_file("alerts.jsonl")?;
//! for error in &read.errors {
//!     eprintln!("alerts.jsonl: skipped {error}");
//! }
//! print!("{}", Report::from_alerts(&read.alerts));
//!
//! // Milliseconds of hang time, under process and component.
//! let stacks = collapsed::from_alerts(&read.alerts, Prefix::Process("myapp"));
//! write_file("hangs.folded", |out| collapsed::write(&stacks, out))?;
//! write_file("hangs.svg", |out| flamegraph::write(&stacks, "Hangs", "ms", out))?;
//! let profile = firefox::from_alerts("myapp", std::process::id(), &read.alerts);
//! write_file("hangs.json", |out| profile.write(out))?;
//! let trace = trace_event::from_alerts("myapp", std::process::id(), &read.alerts);
//! write_file("hangs.trace.json", |out| trace.write(out))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod collapsed;
mod error;
pub mod firefox;
pub mod flamegraph;
pub mod hangs;
pub mod jsonl;
pub mod report;
pub mod trace_event;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

pub use crate::error::{ExportError, LineError, ReadError};

/// Creates (or truncates) the file at `path` and lets `write` fill it
/// through a buffer, which is flushed before returning. If writing fails,
/// the partly written file is removed, so that no broken output is left
/// behind.
pub fn write_file(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let path = path.as_ref();
    let file = File::create(path).map_err(|source| ExportError::Create {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BufWriter::new(file);
    let written = write(&mut out).and_then(|()| Ok(out.flush()?));
    if written.is_err() {
        drop(out);
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(path);
    }
    written
}
