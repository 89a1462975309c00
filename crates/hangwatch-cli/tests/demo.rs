//! The demo runs to its self-check, as README's first command does.

use std::process::Command;

#[test]
fn the_demo_passes_its_own_check_and_leaves_its_files() {
    let out = std::env::temp_dir().join(format!("hangwatch-demo-test-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(["demo", "--seconds", "3", "--out"])
        .arg(&out)
        .output()
        .expect("run hangwatch demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("transient hang in \"reflow\""), "{stdout}");
    assert!(stdout.contains("PERMANENT hang in \"reflow\""), "{stdout}");
    assert!(stdout.contains("hang ended in \"reflow\""), "{stdout}");
    assert!(
        stdout.lines().last().is_some_and(|l| l.ends_with(": ok")),
        "{stdout}"
    );
}

#[test]
fn bad_demo_arguments_get_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(["demo", "--seconds", "0.5"])
        .output()
        .expect("run hangwatch demo");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--seconds must be at least"), "{stderr}");
}
