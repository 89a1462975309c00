//! The files the demo leaves: `alerts.jsonl`, `report.txt`, `hangs.svg`,
//! `profile.json` (Firefox Profiler) and `trace.json` (Perfetto UI,
//! chrome://tracing, speedscope).

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hangwatch::{Alert, Profile};
use hangwatch_export::collapsed::{self, Collapsed, Prefix};
use hangwatch_export::report::Report;
use hangwatch_export::{firefox, flamegraph, trace_event, write_file, ExportError};
use hangwatch_hub::ChildAlert;
use serde::Serialize;

/// A file the demo wrote.
#[derive(Debug)]
pub struct Written {
    what: &'static str,
    path: PathBuf,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrote {} to {}", self.what, self.path.display())
    }
}

/// A file the demo could not write.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing it failed.
    #[error("{what} not written: {source}")]
    Write {
        /// What the file holds.
        what: &'static str,
        /// Why.
        #[source]
        source: ExportError,
    },
    /// No child gave a profile, so the files made from profiles are not
    /// there.
    #[error("no profile came back: hangs.svg, profile.json and trace.json are missing")]
    NoProfile,
}

/// Writes `what` to `path`.
fn save(
    path: &Path,
    what: &'static str,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), ExportError>,
) -> Result<Written, OutputError> {
    match write_file(path, write) {
        Ok(()) => Ok(Written {
            what,
            path: path.to_owned(),
        }),
        Err(source) => Err(OutputError::Write { what, source }),
    }
}

/// An alert line with the process that raised it: the fields of an alert
/// (see README, "Alert JSON lines"), plus `pid` and `process`.
#[derive(Serialize)]
struct AlertLine<'a> {
    pid: u32,
    process: &'a str,
    #[serde(flatten)]
    alert: &'a Alert,
}

/// Writes the five files into `out`; says where each went, or why not.
pub fn write(
    out: &Path,
    alerts: &[ChildAlert],
    profiles: &[(String, u32, Profile)],
) -> Vec<Result<Written, OutputError>> {
    let plain: Vec<Alert> = alerts.iter().map(|a| a.alert.clone()).collect();
    let mut saved = vec![
        save(&out.join("alerts.jsonl"), "alerts", |file| {
            for alert in alerts {
                let line = AlertLine {
                    pid: alert.child.pid,
                    process: &alert.child.name,
                    alert: &alert.alert,
                };
                serde_json::to_writer(&mut *file, &line).map_err(ExportError::Json)?;
                writeln!(file).map_err(ExportError::Write)?;
            }
            Ok(())
        }),
        save(&out.join("report.txt"), "the report", |file| {
            write!(file, "{}", Report::from_alerts(&plain)).map_err(ExportError::Write)
        }),
    ];
    if profiles.is_empty() {
        saved.push(Err(OutputError::NoProfile));
    } else {
        // Where the threads were while they hung: the samples inside the
        // profiles' hang markers, under process and component.
        let mut stacks = Collapsed::default();
        for (name, _, profile) in profiles {
            for (frames, count) in
                collapsed::from_profile_hangs(profile, Prefix::Process(name)).stacks()
            {
                stacks.add(frames, count);
            }
        }
        let title = "hangwatch demo: where each thread was while it hung (100 Hz samples)";
        saved.push(save(&out.join("hangs.svg"), "the flamegraph", |file| {
            flamegraph::write(&stacks, title, "samples", file)
        }));
        let mut builder = firefox::Builder::new("hangwatch demo");
        let mut trace = trace_event::Builder::new();
        for (name, pid, profile) in profiles {
            builder = builder.profile(name.clone(), *pid, profile);
            trace = trace.profile(name.clone(), *pid, profile);
        }
        saved.push(save(
            &out.join("profile.json"),
            "the Firefox profile",
            |file| builder.build().write(file),
        ));
        saved.push(save(
            &out.join("trace.json"),
            "the trace (Perfetto UI, chrome://tracing, speedscope)",
            |file| trace.build().write(file),
        ));
    }
    saved
}
