//! Alert JSON lines: write then read gives the alerts back; malformed lines
//! are reported with their number and skipped.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use hangwatch::Alert;
use hangwatch_export::{jsonl, write_file, ExportError, ReadError};

/// `alert` with its time rounded to the microsecond: JSON carries times as
/// fractional milliseconds since 1970, an `f64` that keeps about a tenth of
/// a microsecond of a present-day time.
fn to_the_microsecond(mut alert: Alert) -> Alert {
    let nanos = alert.time.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let micros = u64::try_from((nanos + 500) / 1000).unwrap();
    alert.time = UNIX_EPOCH + Duration::from_micros(micros);
    alert
}

fn same(a: &[Alert], b: &[Alert]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| to_the_microsecond(a.clone()) == to_the_microsecond(b.clone()))
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hangwatch-export-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn written_alerts_read_back_the_same() {
    let alerts = alerts();
    let text = jsonl::to_string(&alerts).unwrap();
    assert_eq!(text.lines().count(), alerts.len());
    assert!(text.ends_with('\n'));
    let read = jsonl::read(text.as_bytes()).unwrap();
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    assert!(same(&read.alerts, &alerts), "{:#?}", read.alerts);

    let path = scratch("round-trip").join("alerts.jsonl");
    write_file(&path, |out| jsonl::write(&alerts, out)).unwrap();
    let read = jsonl::read_file(&path).unwrap();
    assert!(read.errors.is_empty());
    assert!(same(&read.alerts, &alerts));
}

#[test]
fn the_field_names_are_the_documented_ones() {
    let alerts = alerts();
    let line = jsonl::to_string(&alerts[1..2]).unwrap();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "annotation",
            "component",
            "duration_ms",
            "kind",
            "raised_ns",
            "stack",
            "thread",
            "time_unix_ms"
        ]
    );
    assert_eq!(value["kind"], "permanent");
    assert_eq!(value["component"]["name"], "layout");
    assert_eq!(
        value["stack"]["frames"][3]["function"],
        "myapp::layout::reflow"
    );
}

#[test]
fn a_malformed_line_is_reported_with_its_number_and_skipped() {
    let alerts = alerts();
    let good = jsonl::to_string(&alerts[..4]).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    // Line 3 is torn, line 4 blank, line 6 not an alert, line 7 not UTF-8.
    let mut input = Vec::new();
    for line in [
        lines[0],
        lines[1],
        &lines[2][..40],
        "  ",
        lines[2],
        "{\"kind\": \"transient\"}",
    ] {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(lines[3].as_bytes()); // no final line break
    let read = jsonl::read(input.as_slice()).unwrap();
    assert!(same(&read.alerts, &alerts[..4]), "{:#?}", read.alerts);
    let numbers: Vec<usize> = read.errors.iter().map(|e| e.line).collect();
    assert_eq!(numbers, [3, 6, 7]);
    let message = read.errors[0].to_string();
    assert!(
        message.starts_with("line 3: not a hangwatch alert"),
        "{message}"
    );
    assert!(!message.contains("at line 1"), "{message}");
    assert!(message.contains("column 40"), "{message}");
    assert!(
        read.errors[1].message.contains("missing field `component`"),
        "{}",
        read.errors[1]
    );
    assert!(
        read.errors[2].message.contains("UTF-8"),
        "{}",
        read.errors[2]
    );
}

#[test]
fn only_blank_lines_give_nothing_and_no_error() {
    let read = jsonl::read("\n \n\t\n".as_bytes()).unwrap();
    assert!(read.alerts.is_empty());
    assert!(read.errors.is_empty());
}

#[test]
fn missing_files_and_directories_are_clear_errors() {
    let dir = scratch("missing");
    let error = jsonl::read_file(dir.join("nope.jsonl")).unwrap_err();
    assert!(matches!(error, ReadError::Open { .. }));
    let message = error.to_string();
    assert!(
        message.contains("nope.jsonl") && message.contains("check the path"),
        "{message}"
    );

    let error = write_file(dir.join("no/such/dir/out.jsonl"), |out| {
        jsonl::write(&[], out)
    })
    .unwrap_err();
    assert!(matches!(error, ExportError::Create { .. }));
    assert!(error.to_string().contains("out.jsonl"), "{error}");
}

#[test]
fn the_readme_example_line_is_an_alert() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme
        .find("## Alert JSON lines")
        .expect("the README section")..];
    let example = section
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a JSON example in the section");
    let read = jsonl::read(example.as_bytes()).unwrap();
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    assert_eq!(read.alerts.len(), 1);
    assert_eq!(read.alerts[0].component, layout());
    assert_eq!(read.alerts[0].duration, Duration::from_micros(1_600_200));
}

#[test]
fn a_time_past_what_the_system_can_represent_is_a_line_error() {
    let mut line = jsonl::to_string(&alerts()[..1]).unwrap();
    let start = line.find("\"time_unix_ms\":").unwrap();
    let end = start + line[start..].find([',', '}']).unwrap();
    line.replace_range(start..end, "\"time_unix_ms\":1e22");
    let read = jsonl::read(line.as_bytes()).unwrap();
    assert!(read.alerts.is_empty());
    assert_eq!(read.errors.len(), 1);
    assert!(
        read.errors[0].message.contains("out of range"),
        "{}",
        read.errors[0]
    );
}

/// Found by the round-trip check of the hostile-input tests (`alert_jsonl`,
/// on an edge-of-range seed): serde_json by default may read a number one
/// unit in the last place off. An alert at the latest time the system
/// represents read fine, was written back as `9.223372036854775e+21`, and
/// that text read back one unit higher: past the limit, so the line was
/// skipped as "out of range". Numbers are now read exactly.
#[test]
fn an_alert_at_the_latest_time_reads_back() {
    let mut alert = alerts()[0].clone();
    alert.time = UNIX_EPOCH + Duration::from_secs((1 << 63) - 1024);
    let text = jsonl::to_string(std::slice::from_ref(&alert)).unwrap();
    assert!(
        text.contains("\"time_unix_ms\":9.223372036854775e+21"),
        "{text}"
    );
    let read = jsonl::read(text.as_bytes()).unwrap();
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    assert_eq!(read.alerts, [alert]);
}
