//! hangwatch's figures served to Prometheus: `metrics-exporter-prometheus`
//! on an HTTP address, and a component that hangs now and then.
//!
//! ```text
//! cargo run -p hangwatch --example prometheus --features metrics
//! cargo run -p hangwatch --example prometheus --features metrics -- --listen 127.0.0.1:9898 --seconds 60
//! ```
//!
//! It installs the exporter (on a free loopback port unless `--listen` says
//! where), starts a monitor and a "render" event loop whose every third frame
//! takes 400 ms (transient timeout 100 ms, permanent 300 ms), prints the
//! alerts for `--seconds` seconds (6 by default), then scrapes its own
//! endpoint once and prints the hangwatch series, as Prometheus would see
//! them:
//!
//! ```text
//! hangwatch_hangs_total{component="render",level="transient"} 2
//! hangwatch_hangs_total{component="render",level="permanent"} 2
//! hangwatch_hang_duration_seconds_bucket{component="render",le="0.5"} 2
//! hangwatch_monitored_components 1
//! ...
//! ```
//!
//! `tests/prometheus_scrape.rs` uses this file's helpers. The exporter runs
//! on a thread of its own; the monitor's recorder calls cost a hash-map
//! lookup and an atomic add per alert, registration and stack sample.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hangwatch::integrations::metrics::{describe, HANG_DURATION_BUCKETS, HANG_DURATION_SECONDS};
use hangwatch::{ComponentId, Monitor, Timeouts};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// A loopback address with a port that was free a moment ago: bind port 0,
/// read the port the system chose, and let it go for the exporter to take.
pub fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Installs the Prometheus exporter, serving on `addr`, as the global
/// recorder, with hangwatch's metrics described and its hang durations
/// in [`HANG_DURATION_BUCKETS`].
pub fn install_exporter(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(HANG_DURATION_SECONDS.to_owned()),
            HANG_DURATION_BUCKETS,
        )?
        .install()?;
    describe();
    Ok(())
}

/// Scrapes `addr` as Prometheus does (`GET /metrics`) and returns the page.
pub fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected scrape response: {response:.200}"),
        )),
    }
}

/// Waits until the exporter answers on `addr` (it starts on a thread of
/// its own), for at most ten seconds.
pub fn wait_for_exporter(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match scrape(addr) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The value of `series` (its name and labels, exactly as rendered) on a
/// scraped page, if present and a number.
pub fn series_value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[inline(never)]
fn render_a_heavy_frame() {
    std::thread::sleep(Duration::from_millis(400));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = None;
    let mut seconds = 6u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = Some(addr.parse::<SocketAddr>()?),
            ("--seconds", Some(n)) => seconds = n.parse()?,
            _ => return Err("usage: prometheus [--listen ADDR] [--seconds N]".into()),
        }
    }
    let addr = match listen {
        Some(addr) => addr,
        None => free_loopback_addr()?,
    };

    // The recorder first, so that it sees every registration.
    install_exporter(addr)?;
    wait_for_exporter(addr)?;
    println!("serving metrics on http://{addr}/metrics for {seconds} s");

    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start()?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let render = std::thread::Builder::new().name("render".into()).spawn(
        move || -> Result<(), hangwatch::RegisterError> {
            let handle = register.register_component(
                ComponentId::new("render", 1),
                Timeouts::new(Duration::from_millis(100), Duration::from_millis(300)),
                None,
            )?;
            let mut frame = 0u64;
            while Instant::now() < until {
                frame += 1;
                {
                    let _busy = handle.activity("render frame");
                    if frame.is_multiple_of(3) {
                        render_a_heavy_frame();
                    } else {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        },
    )?;

    while Instant::now() < until {
        if let Ok(alert) = alerts.recv_timeout(Duration::from_millis(100)) {
            println!("{}", alert.to_string().lines().next().unwrap_or_default());
        }
    }
    render.join().map_err(|_| "the render thread panicked")??;
    for alert in alerts.try_iter() {
        println!("{}", alert.to_string().lines().next().unwrap_or_default());
    }

    println!("\nwhat Prometheus scrapes from http://{addr}/metrics now:");
    for line in scrape(addr)?.lines() {
        if line.starts_with("hangwatch_") {
            println!("{line}");
        }
    }
    Ok(())
}
