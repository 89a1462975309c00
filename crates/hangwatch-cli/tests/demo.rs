//! The demo runs to its self-check, as README's first command does: a hub
//! and real child processes, every injected hang detected, no false alert,
//! no missing stack, and the five files left behind.

use std::process::Command;

#[test]
fn the_demo_passes_its_own_check_and_leaves_its_files() {
    let out = std::env::temp_dir().join(format!("hangwatch-demo-test-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(["demo", "--processes", "2", "--seconds", "6", "--out"])
        .arg(&out)
        .output()
        .expect("run hangwatch demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().last(),
        Some("demo: 6 injected, 6 detected, 0 false alerts, 0 missing stacks"),
        "{stdout}"
    );
    for needle in [
        "child-0 (pid",
        "child-1 (pid",
        "PERMANENT hang in \"reflow\"",
        "hang ended in \"read response\"",
        "exit signals delivered to 4 loops",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }

    let read = |name: &str| {
        std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{stdout}"))
    };
    let alerts = read("alerts.jsonl");
    // Per child: transient and ended for the script task, transient,
    // permanent and ended for each of the two others; and, on a loaded
    // machine, `stack` alerts for stacks that came after their alerts.
    let hang_alerts = alerts
        .lines()
        .filter(|line| !line.contains(r#""kind":"stack""#))
        .count();
    assert_eq!(hang_alerts, 16, "{alerts}");
    let first: serde_json::Value = serde_json::from_str(alerts.lines().next().unwrap()).unwrap();
    assert!(
        first["pid"].is_number() && first["process"].is_string(),
        "{first}"
    );
    for function in [
        "run_long_script_task",
        "reflow_stuck_on_lock",
        "read_from_slow_socket",
    ] {
        assert!(
            read("report.txt").contains(function),
            "{function} not in the report"
        );
        assert!(
            read("hangs.svg").contains(function),
            "{function} not in the flamegraph"
        );
    }
    let profile: serde_json::Value =
        serde_json::from_str(&read("profile.json")).expect("profile.json is JSON");
    assert!(profile["meta"]["version"].is_number());
    let pids: std::collections::BTreeSet<String> = profile["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .filter_map(|t| t["pid"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(pids.len(), 2, "one process per child: {pids:?}");
    let trace: serde_json::Value =
        serde_json::from_str(&read("trace.json")).expect("trace.json is JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let processes = events
        .iter()
        .filter(|e| e["name"] == "process_name")
        .count();
    assert_eq!(processes, 2, "one process per child");
    for function in [
        "run_long_script_task",
        "reflow_stuck_on_lock",
        "read_from_slow_socket",
    ] {
        assert!(
            events.iter().any(|e| e["ph"] == "X"
                && e["name"]
                    .as_str()
                    .is_some_and(|name| name.ends_with(function))),
            "{function} not in the trace"
        );
    }
    assert!(
        events.iter().any(|e| e["cat"] == "hang"),
        "no hang in the trace"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_demo_arguments_get_a_clear_error() {
    for (args, message) in [
        (
            &["demo", "--seconds", "0.5"][..],
            "'--seconds <SECONDS>': must be from 6 to 86400 (it is 0.5)",
        ),
        (
            &["demo", "--seconds", "1e300"][..],
            "'--seconds <SECONDS>': must be from 6 to 86400 (it is 1e300)",
        ),
        (&["demo", "--seconds", "nan"][..], "(it is NaN)"),
        (&["demo", "--seconds", "-5"][..], "(it is -5.0)"),
        (&["demo", "--processes", "0"][..], "0 is not in 1..=16"),
        (&["demo", "--processes", "-1"][..], "-1 is not in 1..=16"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
            .args(args)
            .output()
            .expect("run hangwatch demo");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

#[test]
fn ctrl_c_ends_the_demo_in_order_and_keeps_what_it_gathered() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let out = std::env::temp_dir().join(format!("hangwatch-demo-ctrl-c-{}", std::process::id()));
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(["demo", "--processes", "1", "--seconds", "60", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hangwatch demo");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Wait for the first hang's alert: the demo has gathered something.
    for line in lines.by_ref() {
        let line = line.expect("the demo's output");
        let alerted = line.contains("transient hang in");
        seen.push(line);
        if alerted {
            break;
        }
    }
    let interrupted_at = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    seen.extend(lines.map_while(Result::ok));
    let status = demo.wait().expect("the demo ends");
    let stdout = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(
        interrupted_at.elapsed() < Duration::from_secs(45),
        "it ran on to its 60 s: {stdout}"
    );
    for needle in [
        "interrupted (Ctrl-C) after",
        "exit signals delivered to 4 loops",
        "wrote alerts to",
        "no self-check of a cut-short run",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    let alerts = std::fs::read_to_string(out.join("alerts.jsonl")).expect("alerts.jsonl");
    assert!(alerts.contains(r#""kind":"transient""#), "{alerts}");
    assert!(out.join("report.txt").exists());
    let _ = std::fs::remove_dir_all(&out);
}
