//! An axum server whose every request is named in hangwatch's alerts by its
//! method and route, with one layer: `.route_layer(RequestLayer::new())`.
//!
//! The runtime's two workers are monitored (`.watch_workers(&workers)` on
//! its builder, as in the `tokio_http` example), and the router's routes go
//! through the `tower` integration's [`RequestLayer`], so each poll of a
//! request's handler is an activity annotated `"{METHOD} {route}"`. The
//! handler of `/users/{id}` blocks its worker with `std::thread::sleep` for
//! one id, and the transient alert it raises says `GET /users/{id}`: the
//! route axum matched, not the concrete path `/users/42`, so the number of
//! labels stays bounded however many users there are.
//!
//! ```text
//! cargo run -p hangwatch --example tower_axum --features tower
//! ```
//!
//! It serves on a free loopback port, sends itself a few requests over raw
//! HTTP/1.1, prints the replies and the alerts, and exits.
//! `tests/tower_layer.rs` runs this same server in-process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use hangwatch::integrations::tokio::{BuilderExt, WorkerMonitor};
use hangwatch::integrations::tower::RequestLayer;
use hangwatch::{AlertKind, Monitor, Timeouts};

/// The user whose page blocks its worker.
pub const SLOW_USER: u64 = 42;

/// The server: `GET /fast` answers at once; `GET /users/{id}` too, except
/// for [`SLOW_USER`], whose handler blocks its worker for `block_for` and
/// answers how long it measured itself sleeping (see [`slept`]). Every route
/// goes through `layer`.
pub fn app(layer: RequestLayer, block_for: Duration) -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/users/{id}",
            get(move |Path(id): Path<u64>| user(id, block_for)),
        )
        // After the routes: axum runs it per route, once the route is
        // matched, so the layer sees the route template.
        .route_layer(layer)
}

/// The bug this example is about: a blocking call inside an async handler.
async fn user(id: u64, block_for: Duration) -> String {
    if id != SLOW_USER {
        return format!("user {id}");
    }
    let started = Instant::now();
    std::thread::sleep(block_for);
    let slept = started.elapsed();
    format!("user {id}, slept {} ns", slept.as_nanos())
}

/// How long the slow handler measured its own sleep, from its reply.
pub fn slept(body: &str) -> Option<Duration> {
    let ns = body.split_once("slept ")?.1.strip_suffix(" ns")?;
    Some(Duration::from_nanos(ns.parse().ok()?))
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.registered() < count {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start()?;
    let workers = WorkerMonitor::new(
        &register,
        "http-worker",
        Timeouts::new(Duration::from_millis(100), Duration::from_secs(1)), // permanent
    )?;
    let runtime = runtime(&workers, 2)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = runtime.spawn(serve(
        listener,
        app(RequestLayer::new(), Duration::from_millis(300)),
    ));
    println!("serving on http://{addr}: GET /fast, GET /users/{{id}} (user {SLOW_USER} blocks its worker for 300 ms)");
    if !wait_for_workers(&workers, 2) {
        return Err(format!(
            "workers did not register: {:?}",
            workers.registration_errors()
        )
        .into());
    }

    for path in [
        "/fast",
        "/users/1",
        &format!("/users/{SLOW_USER}"),
        "/users/2",
    ] {
        let (status, body) = http_get(addr, path)?;
        println!("GET {path} -> {status}, {body}");
    }

    let mut named = None;
    loop {
        let alert = alerts.recv_timeout(Duration::from_secs(10))?;
        println!("{alert}");
        match alert.kind {
            AlertKind::Transient => named = alert.annotation.clone(),
            AlertKind::Ended { .. } => break,
            _ => {}
        }
    }
    server.abort();
    runtime.shutdown_timeout(Duration::from_secs(1));
    match named.as_deref() {
        Some("GET /users/{id}") => Ok(()),
        other => {
            Err(format!("the transient alert said {other:?}, not \"GET /users/{{id}}\"").into())
        }
    }
}
