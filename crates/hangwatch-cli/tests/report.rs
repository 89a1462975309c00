//! `hangwatch report` on files of alerts: good, partly malformed, empty,
//! missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use hangwatch::{Alert, AlertKind, ComponentId, Frame, HangLevel, Stack};
use hangwatch_export::{jsonl, write_file};

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hangwatch-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A layout hang on a lock, with its stack on the permanent alert.
fn alerts() -> Vec<Alert> {
    let frame = |name: &str| Frame {
        function: Some(name.into()),
        ..Frame::default()
    };
    let stack = Stack {
        frames: ["syscall", "myapp::layout::reflow", "myapp::layout::run"]
            .map(frame)
            .to_vec(),
        truncated: false,
        ..Stack::default()
    };
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let alert = |kind, at_ms, duration_ms, stack| {
        let mut alert = Alert::new(
            ComponentId::new("layout", 1),
            kind,
            Duration::from_millis(duration_ms),
            t0 + Duration::from_millis(at_ms),
        );
        alert.annotation = Some("reflow".into());
        alert.thread = Some("layout".into());
        alert.stack = stack;
        alert
    };
    vec![
        alert(AlertKind::Transient, 1150, 150, None),
        alert(AlertKind::Permanent, 2000, 1000, Some(stack)),
        alert(
            AlertKind::Ended {
                worst: HangLevel::Permanent,
            },
            2600,
            1600,
            None,
        ),
    ]
}

fn hangwatch(args: &[&Path]) -> (Output, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .arg("report")
        .args(args)
        .output()
        .expect("run hangwatch report");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

#[test]
fn a_good_file_gives_the_report_and_the_four_files() {
    let dir = scratch("good");
    let input = dir.join("alerts.jsonl");
    write_file(&input, |out| jsonl::write(&alerts(), out)).unwrap();
    let (svg, firefox, folded, trace) = (
        dir.join("hangs.svg"),
        dir.join("hangs.json"),
        dir.join("hangs.folded"),
        dir.join("hangs.trace.json"),
    );
    let (output, stdout, stderr) = hangwatch(&[
        &input,
        "--svg".as_ref(),
        &svg,
        "--firefox".as_ref(),
        &firefox,
        "--collapsed".as_ref(),
        &folded,
        "--trace".as_ref(),
        &trace,
    ]);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.starts_with("1 hang in 1 component;"), "{stdout}");
    assert!(
        stdout.contains("layout#1 [thread layout]: 1 hang;"),
        "{stdout}"
    );
    assert!(stdout.contains("      myapp::layout::reflow\n"), "{stdout}");
    for (path, what) in [
        (&svg, "flamegraph"),
        (&firefox, "Firefox profile"),
        (&folded, "collapsed stacks"),
        (&trace, "trace"),
    ] {
        let said = format!("wrote {what} to {}", path.display());
        assert!(stdout.contains(&said), "{said:?} not in {stdout}");
    }

    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("myapp::layout::reflow"));
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(firefox).unwrap()).unwrap();
    assert_eq!(profile["meta"]["product"], "alerts");
    assert_eq!(profile["threads"][0]["name"], "layout#1");
    // Under the program's and the component's names, weighing the
    // milliseconds of the hang (1.6 s) the stack stands for.
    assert_eq!(
        std::fs::read_to_string(folded).unwrap(),
        "alerts;layout#1;myapp::layout::run;myapp::layout::reflow;syscall 1600\n"
    );
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let named = |name: &str| events.iter().find(|e| e["name"] == name);
    assert_eq!(named("process_name").unwrap()["args"]["name"], "alerts");
    assert_eq!(named("thread_name").unwrap()["args"]["name"], "layout#1");
    let hang = named("Hang: permanent in \"reflow\"").expect("the hang's slice");
    assert_eq!(hang["dur"], 1_600_000);
    assert_eq!(named("myapp::layout::reflow").unwrap()["dur"], 600_000);
}

#[test]
fn no_prefix_leaves_the_stacks_as_they_were_taken() {
    let dir = scratch("no-prefix");
    let input = dir.join("alerts.jsonl");
    write_file(&input, |out| jsonl::write(&alerts(), out)).unwrap();
    let folded = dir.join("hangs.folded");
    let (output, stdout, stderr) = hangwatch(&[
        &input,
        "--collapsed".as_ref(),
        &folded,
        "--no-prefix".as_ref(),
    ]);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(&folded).unwrap(),
        "myapp::layout::run;myapp::layout::reflow;syscall 1600\n"
    );
    let (output, _, stderr) = hangwatch(&[
        &input,
        "--collapsed".as_ref(),
        &folded,
        "--program".as_ref(),
        "browser".as_ref(),
    ]);
    assert!(output.status.success(), "{stderr}");
    assert!(std::fs::read_to_string(&folded)
        .unwrap()
        .starts_with("browser;layout#1;myapp::layout::run;"));
}

#[test]
fn a_malformed_line_is_reported_with_its_number_and_skipped() {
    let dir = scratch("malformed");
    let input = dir.join("alerts.jsonl");
    let good = jsonl::to_string(&alerts()).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "{\"component\": {\"name\": \"lay");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let (output, stdout, stderr) = hangwatch(&[&input]);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("skipped line 3: not a hangwatch alert"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stdout.contains("layout#1 [thread layout]: 1 hang;"),
        "{stdout}"
    );
}

#[test]
fn an_empty_file_says_so_and_fails() {
    let dir = scratch("empty");
    let input = dir.join("alerts.jsonl");
    std::fs::write(&input, "").unwrap();
    let (output, stdout, stderr) = hangwatch(&[&input]);
    assert!(!output.status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("has no alerts: the file is empty"),
        "{stderr}"
    );

    std::fs::write(&input, "not json\n{}\n").unwrap();
    let (output, _, stderr) = hangwatch(&[&input]);
    assert!(!output.status.success());
    assert!(stderr.contains("skipped line 1"), "{stderr}");
    assert!(stderr.contains("skipped line 2"), "{stderr}");
    assert!(
        stderr.contains("none of its 2 non-blank lines is an alert"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = scratch("missing");
    let input = dir.join("nope.jsonl");
    let (output, stdout, stderr) = hangwatch(&[&input]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("cannot open {}", input.display())),
        "{stderr}"
    );
    assert!(stderr.contains("check the path"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn no_stacks_means_no_flamegraph_but_the_rest_is_written() {
    let dir = scratch("no-stacks");
    let input = dir.join("alerts.jsonl");
    let mut alerts = alerts();
    for alert in &mut alerts {
        alert.stack = None;
    }
    write_file(&input, |out| jsonl::write(&alerts, out)).unwrap();
    let (svg, firefox) = (dir.join("hangs.svg"), dir.join("hangs.json"));
    let (output, stdout, stderr) = hangwatch(&[
        &input,
        "--svg".as_ref(),
        &svg,
        "--firefox".as_ref(),
        &firefox,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr.contains("flamegraph not written: there is no stack"),
        "{stderr}"
    );
    assert!(!svg.exists(), "a broken SVG was left behind");
    assert!(stdout.contains("wrote Firefox profile"), "{stdout}");
    assert!(firefox.exists());
}

#[test]
fn an_output_that_is_the_input_is_refused_and_the_input_kept() {
    let dir = scratch("same-file");
    let input = dir.join("alerts.jsonl");
    write_file(&input, |out| jsonl::write(&alerts(), out)).unwrap();
    let before = std::fs::read(&input).unwrap();
    // The same file under another spelling.
    let again = dir.join(".").join("alerts.jsonl");
    for flag in ["--svg", "--firefox", "--collapsed", "--trace"] {
        let (output, stdout, stderr) = hangwatch(&[&input, flag.as_ref(), &again]);
        assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
        assert!(stdout.is_empty(), "{flag}: {stdout}");
        assert!(
            stderr.contains("is the alerts file it reads"),
            "{flag}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "{flag} wrote over its input"
        );
    }
}

#[test]
fn two_outputs_naming_one_file_are_refused_before_anything_is_written() {
    let dir = scratch("two-outputs");
    let input = dir.join("alerts.jsonl");
    write_file(&input, |out| jsonl::write(&alerts(), out)).unwrap();
    let first = dir.join("out.file");
    // The same file, not written yet, under another spelling.
    let again = dir.join("sub").join("..").join("out.file");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let (output, stdout, stderr) =
        hangwatch(&[&input, "--svg".as_ref(), &first, "--trace".as_ref(), &again]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("--svg and --trace both name"), "{stderr}");
    assert!(!first.exists(), "an output was written");
}

#[test]
fn a_directory_as_the_input_is_named_in_the_error() {
    let dir = scratch("directory-input");
    let (output, stdout, stderr) = hangwatch(&[&dir]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("{} is a directory", dir.display())),
        "{stderr}"
    );
}
