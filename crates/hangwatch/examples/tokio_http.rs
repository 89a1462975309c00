//! An HTTP server (axum on a multi-thread tokio runtime) in which one handler
//! blocks its worker thread with `std::thread::sleep`, and hangwatch says so.
//!
//! The runtime's workers are monitored with one line on its builder,
//! `.watch_workers(&workers)`, and the blocking handler is wrapped with
//! `instrument_named("GET /slow", ...)` so that the alert names it. `GET
//! /slow` then raises a transient alert, a permanent one whose stack shows
//! `block_the_worker` calling `std::thread::sleep`, and an ended one, while
//! `GET /fast` is still served by the other workers (the transient alert
//! also wakes an idle worker to take over tokio's I/O driver, which the
//! blocked worker may have held: see the `tokio` integration's docs).
//!
//! ```text
//! cargo run -p hangwatch --example tokio_http --features tokio            # drives itself, then exits
//! cargo run -p hangwatch --example tokio_http --features tokio -- --serve 127.0.0.1:3000
//! ```
//!
//! Without arguments it serves on a free loopback port, sends itself one slow
//! request and a few fast ones, prints the replies and the alerts, and exits.
//! With `--serve ADDR` it keeps serving on `ADDR` and prints alerts as they
//! come, until it is killed.
//!
//! `tests/tokio_blocking.rs` runs this same server in-process. Monitoring
//! costs one notification per worker park and unpark, and two per poll of
//! the instrumented handler.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hangwatch::integrations::tokio::{instrument_named, BuilderExt, WorkerMonitor};
use hangwatch::{AlertKind, Monitor, Timeouts};

/// The server: `GET /fast` answers at once with the name of the worker
/// thread that served it; `GET /slow` blocks its worker for `block_for`.
pub fn app(block_for: Duration) -> Router {
    Router::new().route("/fast", get(fast)).route(
        "/slow",
        get(move || instrument_named("GET /slow", block_the_worker(block_for))),
    )
}

async fn fast() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

/// The bug this example is about: a blocking call inside an async handler,
/// which holds its worker thread (and every task queued on it) hostage.
pub async fn block_the_worker(block_for: Duration) -> String {
    std::thread::sleep(block_for);
    format!("blocked a worker for {block_for:?}")
}

/// A multi-thread runtime with `threads` workers named `http-worker-N`,
/// each monitored by `workers`.
pub fn runtime(
    workers: &WorkerMonitor,
    threads: usize,
) -> std::io::Result<tokio::runtime::Runtime> {
    let numbers = AtomicUsize::new(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name_fn(move || format!("http-worker-{}", numbers.fetch_add(1, Ordering::Relaxed)))
        .enable_all()
        .watch_workers(workers)
        .build()
}

/// Serves `app` on `listener` until the runtime shuts down.
pub async fn serve(listener: std::net::TcpListener, app: Router) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, app).await
}

/// A minimal HTTP/1.1 client: `GET path` on `addr`, returning the status
/// code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let malformed =
        || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    Ok((status, body.to_owned()))
}

/// Waits until the runtime's workers have registered (each does when it
/// first parks, which an idle runtime does at once).
pub fn wait_for_workers(workers: &WorkerMonitor, count: u64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while workers.registered() < count {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve_at = match args.as_slice() {
        [] => None,
        [flag, addr] if flag == "--serve" => Some(addr.clone()),
        _ => return Err("usage: tokio_http [--serve ADDR]".into()),
    };

    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start()?;
    let workers = WorkerMonitor::new(
        &register,
        "http-worker",
        Timeouts::new(Duration::from_millis(100), Duration::from_millis(500)),
    )?;
    let runtime = runtime(&workers, 3)?;
    let listener = std::net::TcpListener::bind(serve_at.as_deref().unwrap_or("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let server = runtime.spawn(serve(listener, app(Duration::from_millis(1500))));
    println!(
        "serving on http://{addr}: GET /fast, and GET /slow, which blocks its worker for 1.5 s"
    );
    if !wait_for_workers(&workers, 3) {
        return Err(format!(
            "workers did not register: {:?}",
            workers.registration_errors()
        )
        .into());
    }

    if serve_at.is_some() {
        for alert in alerts.iter() {
            println!("{alert}");
        }
        return Ok(());
    }

    // Drive it: one slow request in the background, fast ones meanwhile.
    let started = std::time::Instant::now();
    let slow = std::thread::spawn(move || http_get(addr, "/slow"));
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(250));
        let (status, body) = http_get(addr, "/fast")?;
        println!(
            "GET /fast -> {status}, served by {body}, {:.0?} after GET /slow was sent",
            started.elapsed()
        );
    }
    let (status, body) = slow.join().map_err(|_| "the client thread panicked")??;
    println!("GET /slow -> {status}, {body}");

    loop {
        let alert = alerts.recv_timeout(Duration::from_secs(10))?;
        println!("{alert}");
        if matches!(alert.kind, AlertKind::Ended { .. }) {
            break;
        }
    }
    server.abort();
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
