//! The `alert_jsonl` target: bytes read as alert JSON lines, as
//! `hangwatch report` reads a file, then everything the report makes of
//! what was read.

use hangwatch_export::collapsed::{self, Prefix};
use hangwatch_export::report::Report;
use hangwatch_export::{firefox, jsonl, trace_event};

use crate::collapsed::draw;
use crate::round_trip::alerts_read_back;

/// Reads `data` with [`jsonl::read`] and asserts:
///
/// - reading from memory never fails as a whole, and every non-blank line
///   is either one alert or one error, whose line number is that line's;
/// - the alerts read are written back and read again unchanged (but for
///   time rounding);
/// - the text report, collapsed stacks, Firefox profile, trace and
///   flamegraph of them are made without a panic, the flamegraph checked by
///   [`draw`].
pub fn check(data: &[u8]) {
    let read = jsonl::read(data).expect("reading from memory does not fail");
    let lines: Vec<usize> = data
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(read.alerts.len() + read.errors.len(), lines.len());
    for error in &read.errors {
        assert!(lines.contains(&error.line), "{error}");
        assert!(!error.message.is_empty());
    }

    alerts_read_back(&read.alerts);

    let report = Report::from_alerts(&read.alerts);
    assert!(!report.to_string().is_empty());
    let profile = firefox::from_alerts("fuzz", 1, &read.alerts);
    profile.to_json().expect("a profile of alerts encodes");
    draw(&collapsed::from_alerts(
        &read.alerts,
        Prefix::Process("fuzz"),
    ));
    trace_event::from_alerts("fuzz", 1, &read.alerts)
        .to_json()
        .expect("a trace of alerts encodes");
}
