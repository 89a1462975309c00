//! What a child tells its hub on stdout, beside the hub's own channel: when
//! its clock started (on the wall clock, which its alerts' times are on too,
//! so the hub can place them in its plan) and how many notifications its
//! loops have made so far. And the hub's side: starting a child with its
//! script and its stdout piped to a thread that reads these lines.
//!
//! One line per message, `started <unix ms>` or `notifications <count>`.
//! The child writes them and ignores a closed pipe (a hub that is gone);
//! the hub reports a line it cannot read on stderr and goes on.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use hangwatch_hub::Hub;

use crate::error::ScenarioError;
use crate::plan::Script;

/// One line from a child.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Line {
    /// The child's plan clock started at this time.
    Started(SystemTime),
    /// Its loops have made this many notifications so far.
    Notifications(u64),
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Started(at) => {
                let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
                write!(f, "started {:.3}", since.as_secs_f64() * 1e3)
            }
            Line::Notifications(count) => write!(f, "notifications {count}"),
        }
    }
}

/// A line on a child's stdout that is none of [`Line`]'s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a child's line: {0:?}; is the child built from this hangwatch?")]
pub struct BadLine(String);

impl FromStr for Line {
    type Err = BadLine;

    fn from_str(line: &str) -> Result<Line, BadLine> {
        let bad = || BadLine(line.to_owned());
        let (what, value) = line.split_once(' ').ok_or_else(bad)?;
        match what {
            "started" => {
                let ms: f64 = value.parse().map_err(|_| bad())?;
                let since = Duration::try_from_secs_f64(ms / 1e3).map_err(|_| bad())?;
                UNIX_EPOCH
                    .checked_add(since)
                    .map(Line::Started)
                    .ok_or_else(bad)
            }
            "notifications" => value.parse().map(Line::Notifications).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// Child: writes `line` to stdout for the hub.
pub fn say(line: Line) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Hub: starts `program`'s `demo-child` with `script` under `hub` as
/// `child-<index>`, its stdout read by a thread of its own that sends each
/// line, with the child's pid, to `lines` until the child's stdout closes.
pub fn spawn(
    hub: &Hub,
    program: &Path,
    script: &Script,
    lines: &Sender<(u32, Line)>,
) -> Result<Child, ScenarioError> {
    let mut command = Command::new(program);
    command
        .arg("demo-child")
        .args(script.args())
        .stdout(Stdio::piped());
    // A process group of its own: a terminal's Ctrl-C reaches the hub,
    // which then asks each child to exit, rather than killing the children
    // behind its back.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut process = hub
        .spawn(format!("child-{}", script.index), &mut command)
        .map_err(|source| ScenarioError::Spawn {
            index: script.index,
            source,
        })?;
    let pid = process.id();
    let reader = match process.stdout.take() {
        Some(stdout) => read(pid, stdout, lines.clone()),
        None => Err(std::io::Error::other("its standard output is not a pipe")),
    };
    if let Err(source) = reader {
        let _ = process.kill();
        let _ = process.wait();
        return Err(ScenarioError::ChildOutput { pid, source });
    }
    Ok(process)
}

/// Reads child `pid`'s lines on a thread of its own until its stdout closes.
fn read(pid: u32, stdout: ChildStdout, lines: Sender<(u32, Line)>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("child-{pid}-stdout"))
        .spawn(move || {
            for text in BufReader::new(stdout).lines() {
                let Ok(text) = text else { break };
                match text.parse() {
                    Ok(line) => {
                        let _ = lines.send((pid, line));
                    }
                    Err(error) => eprintln!("hangwatch: child pid {pid}: {error}"),
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_written() {
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let started: Line = Line::Started(at).to_string().parse().unwrap();
        let Line::Started(back) = started else {
            panic!("{started:?}")
        };
        let error = back.duration_since(at).unwrap_or_else(|e| e.duration());
        assert!(error < Duration::from_millis(1), "{error:?}");
        assert_eq!(
            "notifications 12".parse::<Line>(),
            Ok(Line::Notifications(12))
        );
        for bad in [
            "",
            "started",
            "started x",
            "started -5",
            "notifications -1",
            "hello 1",
        ] {
            assert!(bad.parse::<Line>().is_err(), "{bad:?}");
        }
    }
}
