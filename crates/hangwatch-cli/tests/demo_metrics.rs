//! `hangwatch demo --metrics ADDR`: the hub serves the children's figures
//! for Prometheus, labelled by process; scraped here over HTTP on loopback
//! while the demo runs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}

/// The value of the series whose line starts with `series`.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_hub_serves_every_childs_figures_for_prometheus() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::env::temp_dir().join(format!("hangwatch-demo-metrics-{}", std::process::id()));
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(["demo", "--processes", "2", "--seconds", "6", "--metrics"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .expect("run hangwatch demo");

    // Scrape until the demo ends (its endpoint with it): the first and the
    // last answers.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut first = None;
    let mut last = String::new();
    let status = loop {
        if let Some(status) = demo.try_wait().expect("the demo runs") {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not end");
        if let Some(body) = scrape(port) {
            first.get_or_insert_with(|| body.clone());
            last = body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the demo failed");
    let first = first.expect("the endpoint answered");
    // The counters moved while we watched: no permanent hang at first, one later.
    assert_ne!(
        value(
            &first,
            r#"hangwatch_hangs_total{process="child-1",component="layout",level="permanent"}"#
        ),
        Some(1.0),
        "{first}"
    );
    for series in [
        r#"hangwatch_hangs_total{process="child-0",component="layout",level="permanent"} 1"#,
        r#"hangwatch_hangs_total{process="child-1",component="script",level="transient"} 1"#,
        r#"hangwatch_monitored_components{process="child-0"} 4"#,
        r#"hangwatch_alerts_dropped_total{process="child-1"} 0"#,
        r#"hangwatch_hang_duration_seconds_count{process="child-0",component="layout"} 1"#,
    ] {
        assert!(last.contains(series), "no {series} in:\n{last}");
    }
    assert!(
        value(&last, r#"hangwatch_samples_total{process="child-0"}"#).is_some_and(|n| n > 0.0),
        "{last}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
