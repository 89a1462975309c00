//! Alerts as JSON lines: one [`Alert`] per line, as a JSON object.
//!
//! This is the format to keep alerts in: it appends, it streams, each line
//! stands alone, and `jq`, `grep` and every language read it. The other
//! exporters can be run on it later (`hangwatch report ALERTS.jsonl`).
//!
//! # Fields
//!
//! The names are stable: fields may be added, none renamed or removed.
//!
//! | field | type | present | meaning |
//! |---|---|---|---|
//! | `component` | object | always | the component: `{"name": "layout", "number": 1}` |
//! | `kind` | string | always | `transient`, `permanent`, `ended`, `thread_exited`, or `stack`: the stack of an earlier alert that left before its stack was ready (every other field is that alert's) |
//! | `worst` | string | `ended` only | the highest level the hang reached: `transient` or `permanent` |
//! | `of` | string | `stack` only | the level of the alert it completes |
//! | `annotation` | string or null | always | what the component said it was doing |
//! | `duration_ms` | number | always | how long the component had been busy (for `ended`, how long the hang lasted), in milliseconds, with a fraction |
//! | `thread` | string or null | always | the name of the component's thread |
//! | `time_unix_ms` | number | always | when the monitor raised the alert, in milliseconds since the Unix epoch, with a fraction |
//! | `started_ns` | number | hang alerts | when the activity began, in nanoseconds on hangwatch's monotonic clock (`hangwatch::monotonic_ns`, per process) |
//! | `raised_ns` | number | always | when the monitor raised the alert, on the same clock: `raised_ns - started_ns` against the component's timeout is how late it was |
//! | `late` | bool | when true | raised more than the pause threshold after its deadline: the monitor could not look in time (a loaded machine); a late `permanent` of a hang already over carries no stack |
//! | `stack` | object | when sampled | `{"frames": [...], "truncated": bool, "capture": ..., "blocked_in": ...}`, innermost frame first |
//! | `stack.frames[]` | object | | `address` (number), `module`, `module_offset`, `function`, `file`, `line` (each may be null), `inlined` (bool) |
//! | `stack.capture` | string | when sampled | `blocked`: the thread was blocked in the kernel and was read from outside, not interrupted; `signal`: it was running and copied its own stack in a signal handler |
//! | `stack.blocked_in` | string | `blocked` only | the system call it was blocked in: `futex`, `read`, `epoll_wait`, ... (`syscall N` for others) |
//! | `no_stack` | object | when a stack was due but is missing | `{"reason": "timeout" \| "signal_blocked" \| "waking" \| "refused" \| "thread_gone" \| "unsupported" \| "disabled" \| "unwind_failed" \| "hang_ended" \| "follows" \| "not_ready", "detail": string}` (`detail` with `refused`, `unsupported`, `disabled` and `unwind_failed`) |
//!
//! # Invariants
//!
//! - One alert per line, each line a complete JSON object with no line break
//!   inside it; lines end with `\n`.
//! - Alerts keep the order they were written in, which for one component is
//!   the order the monitor raised them.
//! - Times and durations are fractional milliseconds in JSON numbers (`f64`):
//!   a present-day `time_unix_ms` keeps about a quarter of a microsecond, so
//!   an alert read back may differ from the one written by less than a
//!   microsecond in its time.
//! - Reading skips blank lines, and reports each line that is not an alert
//!   with its 1-based line number, then goes on: one torn line (a process
//!   killed mid-write) costs that line only.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use hangwatch::{Alert, AlertKind, ComponentId};
//! use hangwatch_export::jsonl;
//!
//! let mut alert = Alert::new(
//!     ComponentId::new("layout", 1),
//!     AlertKind::Transient,
//!     Duration::from_millis(150),
//!     SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
//! );
//! alert.annotation = Some("reflow".into());
//! alert.thread = Some("layout".into());
//! let text = jsonl::to_string(&[alert.clone()])?;
//! assert!(text.starts_with(r#"{"component":{"name":"layout","number":1},"kind":"transient""#));
//!
//! let torn = format!("{text}{{\"component\":\n\n{text}");
//! let read = jsonl::read(torn.as_bytes())?;
//! assert_eq!(read.alerts, [alert.clone(), alert]);
//! assert_eq!(read.errors.len(), 1);
//! assert_eq!(read.errors[0].line, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use hangwatch::Alert;

use crate::error::{ExportError, LineError, ReadError};

/// Alerts read from JSON lines, and the lines that were not alerts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadAlerts {
    /// The alerts, in file order.
    pub alerts: Vec<Alert>,
    /// The lines that could not be read as alerts, in file order.
    pub errors: Vec<LineError>,
}

/// `alerts` as JSON lines, each ending with `\n`.
pub fn to_string(alerts: &[Alert]) -> Result<String, ExportError> {
    let mut out = Vec::new();
    write(alerts, &mut out)?;
    // serde_json writes UTF-8 only.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `alerts` to `out` as JSON lines, each ending with `\n`.
pub fn write(alerts: &[Alert], mut out: impl Write) -> Result<(), ExportError> {
    for alert in alerts {
        serde_json::to_writer(&mut out, alert)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads JSON lines from `input`: every line that is an alert, and an error
/// for every other non-blank line. Fails only if `input` itself fails.
pub fn read(mut input: impl BufRead) -> Result<ReadAlerts, ReadError> {
    let mut read = ReadAlerts::default();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(read);
        }
        number += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match parse_line(text) {
            Ok(alert) => read.alerts.push(alert),
            Err(message) => read.errors.push(LineError {
                line: number,
                message,
            }),
        }
    }
}

/// One non-blank line as an alert, or what is wrong with it.
fn parse_line(line: &[u8]) -> Result<Alert, String> {
    const EXPECTED: &str = "each line must be one alert object as hangwatch writes it";
    if std::str::from_utf8(line).is_err() {
        return Err(format!("not UTF-8 text; {EXPECTED}"));
    }
    serde_json::from_slice(line).map_err(|error| {
        // serde_json's "at line 1" is the object's line, not the file's.
        let full = error.to_string();
        let position = format!(" at line {} column {}", error.line(), error.column());
        let what = full.strip_suffix(&position).unwrap_or(&full);
        format!(
            "not a hangwatch alert ({what} at column {}); {EXPECTED}",
            error.column()
        )
    })
}

/// Reads the JSON-lines file at `path` (see [`read`]).
pub fn read_file(path: impl AsRef<Path>) -> Result<ReadAlerts, ReadError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    read(BufReader::new(file))
}
