//! A tokio service under load: an axum server on a multi-thread runtime of
//! two workers, and an HTTP/1.1 keep-alive load generator over loopback on a
//! runtime of its own, for the `tokio` step and for
//! `tests/tokio_saturation.rs`.
//!
//! - [`Server`]: `GET /fast` answers `ok` at once; `GET /block?ms=N` blocks
//!   its worker with `std::thread::sleep` for N ms and records, from the
//!   worker itself, which worker and thread it was and its own `Instant`s
//!   before and after the sleep ([`Block`]).
//! - [`LoadGenerator`]: C connections, each sending `GET /fast` back to
//!   back on its own connection (the next request once the previous
//!   response was read whole, by its `Content-Length`), each request timed
//!   by the connection's task with its own `Instant`s, from just before the
//!   request is written to just after the last byte of its response is
//!   read. Its threads are not the server's, so the server's workers serve
//!   and the generator's threads load.
//!
//! The step ([`run`]) measures:
//!
//! - false alerts of a saturated runtime watched by its worker hooks only;
//! - requests per second with the hooks, and with the hooks plus the
//!   handler instrumented, against stock tokio, in interleaved rounds;
//! - the p99 latency of `/fast` while one request blocks its worker, with
//!   the driver hand-off on, off, and with no hangwatch at all.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use axum::extract::RawQuery;
use axum::routing::get;
use axum::Router;
use hangwatch::integrations::tokio::{BuilderExt, WorkerMonitor};
use hangwatch::integrations::tower::RequestLayer;
use hangwatch::{Alert, Monitor, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::{Builder, Runtime};

/// Worker threads of a [`Server`]'s runtime.
pub const SERVER_WORKERS: usize = 2;
/// Threads of a [`LoadGenerator`]'s runtime.
pub const LOAD_THREADS: usize = 2;
/// Connections that saturate `/fast`.
pub const SATURATING_CONNECTIONS: usize = 256;
/// The workers' transient timeout in the step and the test.
pub const TRANSIENT: Duration = Duration::from_millis(100);
/// The workers' permanent timeout in the step and the test.
pub const PERMANENT: Duration = Duration::from_secs(1);

/// The prefix of a server's worker threads' names: `api-worker-N`, N
/// unique in the process (tokio names every thread of the runtime,
/// blocking-pool ones too, with `thread_name_fn`).
pub const WORKER_THREAD_PREFIX: &str = "api-worker-";

/// A multi-thread runtime's builder: [`SERVER_WORKERS`] workers named
/// `api-worker-N` (N unique in the process), every driver enabled. Add
/// `.watch_workers(&workers)` to it for the worker hooks.
pub fn server_runtime() -> Builder {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut builder = Builder::new_multi_thread();
    builder
        .worker_threads(SERVER_WORKERS)
        .thread_name_fn(|| {
            format!(
                "{WORKER_THREAD_PREFIX}{}",
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
        })
        .enable_all();
    builder
}

/// What the `/fast` handler is wrapped in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Nothing: a plain axum handler.
    Plain,
    /// `hangwatch::integrations::tower::RequestLayer` on every route
    /// (`route_layer`): each poll of a request's handler is an activity of
    /// its worker, annotated `GET /fast`.
    Layered,
}

/// One `/block` request, as its handler saw it.
#[derive(Clone, Debug)]
pub struct Block {
    /// `tokio::runtime::worker_index()` of the worker that ran it.
    pub worker_index: Option<usize>,
    /// The worker thread's id.
    pub thread: ThreadId,
    /// The worker thread's name.
    pub thread_name: Option<String>,
    /// Just before the sleep.
    pub started: Instant,
    /// Just after it.
    pub ended: Instant,
}

impl Block {
    /// How long the handler blocked, by its own `Instant`s.
    pub fn length(&self) -> Duration {
        self.ended - self.started
    }
}

/// An axum service on its own runtime, served on `127.0.0.1:0`.
pub struct Server {
    addr: SocketAddr,
    runtime: Option<Runtime>,
    blocks: Arc<Mutex<Vec<Block>>>,
}

impl Server {
    /// Serves on `runtime` (see [`server_runtime`]).
    pub fn start(runtime: Runtime, handler: Handler) -> std::io::Result<Server> {
        let blocks = Arc::new(Mutex::new(Vec::new()));
        let app = {
            let blocks = blocks.clone();
            let router = Router::new().route("/fast", get(fast)).route(
                "/block",
                get(move |RawQuery(query): RawQuery| block(query, blocks.clone())),
            );
            match handler {
                Handler::Plain => router,
                Handler::Layered => router.route_layer(RequestLayer::new()),
            }
        };
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Server {
            addr,
            runtime: Some(runtime),
            blocks,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `/block` requests served so far.
    pub fn blocks(&self) -> Vec<Block> {
        self.blocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

async fn fast() -> &'static str {
    "ok"
}

/// `GET /block?ms=N`: blocks the worker N ms (100 by default).
async fn block(query: Option<String>, blocks: Arc<Mutex<Vec<Block>>>) -> String {
    let ms = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(100);
    let worker_index = tokio::runtime::worker_index();
    let thread = std::thread::current();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(ms));
    let ended = Instant::now();
    let block = Block {
        worker_index,
        thread: thread.id(),
        thread_name: thread.name().map(str::to_owned),
        started,
        ended,
    };
    let length = block.length();
    blocks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(block);
    format!("blocked {length:?}")
}

/// Sends one `GET path` on a new connection from the calling thread
/// (blocking I/O, not a tokio thread) and reads the response to its end.
pub fn request(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// One request of a load run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Just before the request was written.
    pub sent: Instant,
    /// From then to just after the last byte of its response was read.
    pub latency: Duration,
}

/// What a load run did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Every request answered with a 200, in no particular order.
    pub samples: Vec<Sample>,
    /// Failed connections, reads, writes and non-200 answers.
    pub errors: u64,
    /// From the start of the run to the end of its last connection.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.samples.len() as u64
    }

    /// Requests answered per second.
    pub fn per_second(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0 to 1) of the latencies of the requests sent
    /// within `[from, to]`, ms; NaN if there were none.
    pub fn latency_ms_sent_between(&self, from: Instant, to: Instant, q: f64) -> f64 {
        let latencies: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.sent >= from && s.sent <= to)
            .map(|s| s.latency.as_secs_f64() * 1e3)
            .collect();
        quantile(latencies, q)
    }

    /// The `q` quantile of every latency, ms.
    pub fn latency_ms(&self, q: f64) -> f64 {
        quantile(
            self.samples
                .iter()
                .map(|s| s.latency.as_secs_f64() * 1e3)
                .collect(),
            q,
        )
    }
}

/// The `q` quantile (nearest rank) of `values`; NaN if empty.
pub fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// An HTTP/1.1 keep-alive load generator on a runtime of its own
/// ([`LOAD_THREADS`] threads named `load-N`).
pub struct LoadGenerator {
    runtime: Runtime,
}

/// A load run under way.
pub struct RunningLoad<'g> {
    generator: &'g LoadGenerator,
    started: Instant,
    connections: Vec<tokio::task::JoinHandle<(Vec<Sample>, u64)>>,
}

impl LoadGenerator {
    /// Its runtime.
    pub fn new() -> std::io::Result<LoadGenerator> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(LOAD_THREADS)
            .thread_name("load")
            .enable_all()
            .build()?;
        Ok(LoadGenerator { runtime })
    }

    /// Starts `connections` connections to `addr`, each sending `GET /fast`
    /// back to back until `duration` from now.
    pub fn start(
        &self,
        addr: SocketAddr,
        connections: usize,
        duration: Duration,
    ) -> RunningLoad<'_> {
        let started = Instant::now();
        let until = started + duration;
        let connections = (0..connections)
            .map(|_| self.runtime.spawn(connection(addr, until)))
            .collect();
        RunningLoad {
            generator: self,
            started,
            connections,
        }
    }

    /// [`start`](Self::start), then [`RunningLoad::finish`].
    pub fn run(&self, addr: SocketAddr, connections: usize, duration: Duration) -> LoadReport {
        self.start(addr, connections, duration).finish()
    }
}

impl RunningLoad<'_> {
    /// Waits for every connection to end.
    pub fn finish(self) -> LoadReport {
        let started = self.started;
        let connections = self.connections;
        self.generator.runtime.block_on(async move {
            let mut report = LoadReport::default();
            for connection in connections {
                match connection.await {
                    Ok((samples, errors)) => {
                        report.samples.extend(samples);
                        report.errors += errors;
                    }
                    Err(_) => report.errors += 1,
                }
            }
            report.elapsed = started.elapsed();
            report
        })
    }
}

/// One connection's requests until `until`: the samples and the errors. A
/// connection that fails is counted and opened again.
async fn connection(addr: SocketAddr, until: Instant) -> (Vec<Sample>, u64) {
    let request = format!("GET /fast HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut buffer = Vec::with_capacity(1024);
    while Instant::now() < until {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        loop {
            let sent = Instant::now();
            if sent >= until {
                break;
            }
            let answered = async {
                stream.write_all(request.as_bytes()).await?;
                read_response(&mut stream, &mut buffer).await
            }
            .await;
            match answered {
                Ok(true) => samples.push(Sample {
                    sent,
                    latency: sent.elapsed(),
                }),
                Ok(false) => errors += 1,
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    (samples, errors)
}

/// Reads one response whole (headers, then `Content-Length` bytes of
/// body); whether its status was 200.
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<bool> {
    buffer.clear();
    let mut chunk = [0u8; 1024];
    let (head_end, length) = loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).unwrap_or("");
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .ok_or(std::io::ErrorKind::InvalidData)?;
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Ok(buffer.starts_with(b"HTTP/1.1 200"))
}

/// A server watched by a fresh monitor's worker hooks (no stacks), and the
/// monitor's alerts.
pub struct Watched {
    /// The server.
    pub server: Server,
    /// Its alerts.
    pub alerts: crossbeam_channel::Receiver<Alert>,
    /// Its workers' monitor.
    pub workers: WorkerMonitor,
    _monitor: Monitor,
}

impl Watched {
    /// A fresh monitor, workers named `name` with [`TRANSIENT`] and
    /// [`PERMANENT`], `hand_off` as [`WorkerMonitor::hand_off_on_hang`];
    /// returns once both workers registered.
    pub fn start(name: &'static str, handler: Handler, hand_off: bool) -> Watched {
        let monitor = Monitor::builder()
            .stacks(false)
            .start()
            .expect("start a monitor");
        let workers =
            WorkerMonitor::new(&monitor.register, name, Timeouts::new(TRANSIENT, PERMANENT))
                .expect("valid timeouts")
                .hand_off_on_hang(hand_off);
        let runtime = server_runtime()
            .watch_workers(&workers)
            .build()
            .expect("build the server's runtime");
        let server = Server::start(runtime, handler).expect("serve on loopback");
        wait_registered(&workers);
        Watched {
            server,
            alerts: monitor.alerts.clone(),
            workers,
            _monitor: monitor,
        }
    }
}

/// Waits (at most 10 s) until both workers of `workers` registered: they
/// register when they first park.
pub fn wait_registered(workers: &WorkerMonitor) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.registered() < SERVER_WORKERS as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A stock tokio server (no hangwatch).
pub fn unwatched(handler: Handler) -> Server {
    let runtime = server_runtime()
        .build()
        .expect("build the server's runtime");
    Server::start(runtime, handler).expect("serve on loopback")
}

/// The step's figures, reported as the `tokio_*` fields of
/// [`crate::Report`] (whose docs say how each is measured).
pub struct Results {
    /// Alerts raised while a runtime watched by its worker hooks only was
    /// saturated (target 0).
    pub false_alerts_saturated: u64,
    /// Requests per second with the worker hooks, over stock tokio's.
    pub rps_ratio_hooks: f64,
    /// Requests per second with the worker hooks and the request layer,
    /// over stock tokio's.
    pub rps_ratio_layer: f64,
    /// Requests per second of stock tokio, median of the rounds.
    pub rps_unwatched: f64,
    /// p99 latency of `/fast` while `/block` sleeps its worker, with the
    /// driver hand-off on, ms.
    pub fast_p99_during_block_ms: f64,
    /// The same with the hand-off off, ms.
    pub fast_p99_during_block_ms_no_handoff: f64,
    /// The same with stock tokio (no hangwatch), ms.
    pub fast_p99_during_block_ms_unwatched: f64,
}

/// How long the `/block` request of the latency figures blocks.
const BLOCK: Duration = Duration::from_millis(1500);
/// Connections loading `/fast` in the latency figures: enough to keep
/// requests in flight through the block, few enough that the runtime is not
/// saturated (its workers park between requests, and one of them holds the
/// driver when it does).
const LATENCY_CONNECTIONS: usize = 16;

/// Runs the step.
pub fn run(quick: bool) -> Results {
    let load = LoadGenerator::new().expect("the load generator's runtime");

    // False alerts of a saturated runtime.
    let saturated = Watched::start("api-saturated", Handler::Plain, true);
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let report = load.run(saturated.server.addr(), SATURATING_CONNECTIONS, window);
    let false_alerts_saturated = saturated.alerts.try_iter().count() as u64;
    assert!(report.requests() > 0, "no /fast request was answered");
    drop(saturated);

    // Requests per second, interleaved rounds.
    let plain = unwatched(Handler::Plain);
    let hooks = Watched::start("api-hooks", Handler::Plain, true);
    let layer = Watched::start("api-layer", Handler::Layered, true);
    let (rounds, round) = if quick {
        (3, Duration::from_secs(1))
    } else {
        (7, Duration::from_secs(2))
    };
    let rps = |addr| load.run(addr, SATURATING_CONNECTIONS, round).per_second();
    // One round of each to warm up (connections, caches, page faults).
    for addr in [plain.addr(), hooks.server.addr(), layer.server.addr()] {
        rps(addr);
    }
    let (mut ratios_hooks, mut ratios_layer, mut unwatched_rps) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let a = rps(plain.addr());
        let b = rps(hooks.server.addr());
        let c = rps(layer.server.addr());
        let a2 = rps(plain.addr());
        let base = (a + a2) / 2.0;
        ratios_hooks.push(b / base);
        ratios_layer.push(c / base);
        unwatched_rps.push(base);
    }
    drop((plain, hooks, layer));

    // `/fast` while one request blocks its worker.
    let during_block = |server: &Server| {
        let running = load.start(
            server.addr(),
            LATENCY_CONNECTIONS,
            BLOCK + Duration::from_secs(1),
        );
        std::thread::sleep(Duration::from_millis(300));
        let _ = request(server.addr(), &format!("/block?ms={}", BLOCK.as_millis()));
        let report = running.finish();
        match server.blocks().last() {
            Some(block) => report.latency_ms_sent_between(block.started, block.ended, 0.99),
            None => f64::NAN,
        }
    };
    let handoff = Watched::start("api-handoff", Handler::Plain, true);
    let fast_p99_during_block_ms = during_block(&handoff.server);
    drop(handoff);
    let no_handoff = Watched::start("api-no-handoff", Handler::Plain, false);
    let fast_p99_during_block_ms_no_handoff = during_block(&no_handoff.server);
    drop(no_handoff);
    let stock = unwatched(Handler::Plain);
    let fast_p99_during_block_ms_unwatched = during_block(&stock);
    drop(stock);

    Results {
        false_alerts_saturated,
        rps_ratio_hooks: quantile(ratios_hooks, 0.5),
        rps_ratio_layer: quantile(ratios_layer, 0.5),
        rps_unwatched: quantile(unwatched_rps, 0.5),
        fast_p99_during_block_ms,
        fast_p99_during_block_ms_no_handoff,
        fast_p99_during_block_ms_unwatched,
    }
}
