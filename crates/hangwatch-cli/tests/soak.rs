//! A 20-second soak, as README's "Reliability" section runs a longer one:
//! the demo's processes under heavy load with hangs, profiling windows,
//! kills and restarts; every hang of a live child detected, no false alert,
//! every kill survived, and no child's memory grown by a mebibyte. The
//! figures are one JSON object with every documented field.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every field README documents, and whether it may be null.
const FIELDS: [(&str, bool); 29] = [
    ("seconds", false),
    ("processes", false),
    ("processes_started", false),
    ("notifications", false),
    ("samples", false),
    ("alerts", false),
    ("alerts_dropped", false),
    ("monitor_pauses", false),
    ("hangs_injected", false),
    ("hangs_detected", false),
    ("hangs_cut_short", false),
    ("missed_hangs", false),
    ("false_alerts", false),
    ("missing_stacks", false),
    ("detection_latency_p50_ms", true),
    ("worst_detection_latency_ms", true),
    ("worst_warm_detection_latency_ms", true),
    ("profiling_windows", false),
    ("profiles", false),
    ("child_kills", false),
    ("child_crashes_survived", false),
    ("unexpected_exits", false),
    ("monitor_rss_process", true),
    ("monitor_rss_start_kib", true),
    ("monitor_rss_end_kib", true),
    ("monitor_rss_growth_kib", true),
    ("monitor_rss_seconds", true),
    ("interrupted", false),
    ("passed", false),
];

#[test]
fn a_short_soak_misses_nothing_survives_its_kills_and_holds_its_memory() {
    let mut soak = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(["soak", "--seconds", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hangwatch soak");
    // Read both pipes on threads of their own, so neither can fill up.
    let mut stdout = soak.stdout.take().expect("stdout");
    let mut stderr = soak.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = soak.try_wait().expect("the soak runs") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = soak.kill();
            let _ = soak.wait();
            panic!("the soak did not end within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let figures: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\n{stderr}"));
    let context = format!("{figures:#}\n{stderr}");

    let object = figures.as_object().expect("an object");
    assert!(
        object.keys().all(|k| FIELDS.iter().any(|(f, _)| f == k)),
        "a field this test does not know (document it in README too): {context}"
    );
    for (field, nullable) in FIELDS {
        let value = &figures[field];
        assert!(
            !value.is_null() || (nullable && figures.get(field).is_some()),
            "no {field}: {context}"
        );
    }
    let number = |field: &str| {
        figures[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is not a number: {context}"))
    };
    assert_eq!(number("missed_hangs"), 0.0, "{context}");
    assert_eq!(number("false_alerts"), 0.0, "{context}");
    assert_eq!(number("unexpected_exits"), 0.0, "{context}");
    assert!(number("hangs_detected") >= 10.0, "{context}");
    assert!(number("child_kills") >= 1.0, "{context}");
    assert_eq!(
        number("child_crashes_survived"),
        number("child_kills"),
        "{context}"
    );
    assert!(number("monitor_rss_growth_kib") < 1024.0, "{context}");
    assert!(number("monitor_rss_seconds") >= 4.0, "{context}");
    assert!(number("notifications") >= 1e6, "{context}");
    assert!(number("samples") > 0.0, "{context}");
    assert!(number("profiles") > 0.0, "{context}");
    assert_eq!(figures["passed"], true, "{context}");
    assert!(status.success(), "{context}");
}

#[test]
fn readme_documents_every_field() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Reliability")
        .nth(1)
        .expect("README has a Reliability section");
    for (field, _) in FIELDS {
        assert!(
            section.contains(&format!("| `{field}`")) || section.contains(&format!(", `{field}`")),
            "README's Reliability table does not document {field}"
        );
    }
}

#[test]
fn bad_soak_arguments_get_a_clear_error() {
    for (args, message) in [
        (
            &["soak", "--seconds", "3"][..],
            "--seconds <SECONDS>': must be from 15 to 86400",
        ),
        (
            &["soak", "--processes", "1"][..],
            "--processes <PROCESSES>': 1 is not in 2..=16",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
            .args(args)
            .output()
            .expect("run hangwatch soak");
        assert_eq!(output.status.code(), Some(2), "a usage error");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

#[test]
fn ctrl_c_ends_the_soak_and_prints_the_figures_so_far() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let soak = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(["soak", "--seconds", "120", "--processes", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hangwatch soak");
    // Long enough for the children to start and hang at least once.
    std::thread::sleep(Duration::from_secs(6));
    let interrupted_at = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &soak.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let output = soak.wait_with_output().expect("the soak ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        interrupted_at.elapsed() < Duration::from_secs(60),
        "it ran on to its end: {stderr}"
    );
    assert!(
        stderr.contains("soak: interrupted (Ctrl-C) after"),
        "{stderr}"
    );
    let figures: serde_json::Value = serde_json::from_str(&stdout).expect("the figures, as JSON");
    assert_eq!(figures["interrupted"], true, "{stdout}");
    assert_eq!(figures["passed"], false, "{stdout}");
    assert!(figures["processes_started"].as_u64() >= Some(2), "{stdout}");
}
