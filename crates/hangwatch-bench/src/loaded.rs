//! Hangs under load: a browser-shaped workload beside CPU hogs, watched by a
//! fresh hangwatch monitor and then, with the same plan, by the Servo-style
//! reference.
//!
//! - **Load.** Before either run the bench starts two busy-loop threads per
//!   core (`2 × available_parallelism()`, named `hw-bench-hog`, registered
//!   with no monitor); it stops them by a flag after both runs.
//! - **Workload.** Six components (threads named `script`, `layout`,
//!   `style`, `network`, `compositor`, `image`), each registered with a
//!   100 ms transient and a 500 ms permanent timeout, run ordinary tasks
//!   (1–5 ms of spinning inside an activity, then a 1–10 ms sleep outside
//!   one). Between tasks, at planned points (after 200–600 ms of tasks),
//!   each runs its share of the injected hangs: one activity that lasts
//!   150 ms–1.5 s (seeded `fastrand`) in one of four ways — a CPU-bound loop
//!   (`hang_cpu_loop`), `std::thread::sleep` (`hang_sleep`), a `Mutex` held
//!   by the component's helper thread (`hang_on_mutex`), or a blocking read
//!   of a Unix socket that the helper writes to after the hang's length
//!   (`hang_on_socket_read`). Kinds are dealt evenly and shuffled; hangs go
//!   to components in turn, so several components hang at once. 20 hangs
//!   with `--quick`, 40 without.
//! - **Own length.** Each activity is timed by its component's own
//!   `Instant`, read just before `notify_activity` and just after
//!   `notify_wait`: that is the length the hang earned its alerts by. The
//!   component also reads [`hangwatch::monotonic_ns`] just before and just
//!   after `notify_activity`; an alert of ours is about the hang whose two
//!   readings bracket its `started_ns`.
//! - **Receiving.** One thread per run receives the alerts as they come and
//!   stamps each on receipt: [`hangwatch::monotonic_ns`] for ours,
//!   `Instant::now()` for the reference. The reference's alerts carry no
//!   time: each is about the latest hang of its component, with its
//!   annotation, that had started by the time it was received.
//! - **CPU waits.** Our monitor's thread and our receiving thread read
//!   their run-queue wait and timeslices from schedstat at the start and
//!   end of our run: the mean wait for a CPU each time they were put on one.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hangwatch::{Alert, AlertKind, ComponentId, HangLevel, Monitor, Timeouts};
use serde::Serialize;

use crate::detect::percentile;
use crate::procfs::{run_queue_wait, Thread};
use crate::servo::{ServoAlert, ServoMonitor};

/// The components, as in a browser's content process.
const COMPONENTS: [&str; 6] = [
    "script",
    "layout",
    "style",
    "network",
    "compositor",
    "image",
];
const TRANSIENT: Duration = Duration::from_millis(100);
const PERMANENT: Duration = Duration::from_millis(500);
/// The annotation of ordinary tasks.
const TASK: &str = "task";

/// How an injected hang keeps its thread busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HangKind {
    /// Spinning on the CPU.
    CpuLoop,
    /// In `std::thread::sleep`.
    Sleep,
    /// Waiting for a `Mutex` another thread holds.
    Mutex,
    /// In a blocking `read` of a socket another thread writes to later.
    SocketRead,
}

const KINDS: [HangKind; 4] = [
    HangKind::CpuLoop,
    HangKind::Sleep,
    HangKind::Mutex,
    HangKind::SocketRead,
];

impl HangKind {
    fn annotation(self) -> &'static str {
        match self {
            HangKind::CpuLoop => "cpu loop",
            HangKind::Sleep => "sleep",
            HangKind::Mutex => "mutex",
            HangKind::SocketRead => "socket read",
        }
    }
}

/// One injected hang that was not detected as due.
#[derive(Clone, Debug, Serialize)]
pub struct MissedHang {
    /// `hangwatch` or `servo`.
    pub monitor: &'static str,
    /// The component's name.
    pub component: &'static str,
    /// How it hung.
    pub kind: HangKind,
    /// The hang's length by the component's own clock, ms.
    pub own_ms: f64,
    /// The length the plan asked for, ms.
    pub planned_ms: f64,
    /// The alerts about it that were received, in order (`transient`,
    /// `permanent`, `ended(<worst>) <duration> ms`, `late` appended to those
    /// raised late).
    pub alerts: Vec<String>,
}

/// One detected hang's `Ended` duration against its own length.
#[derive(Clone, Debug, Serialize)]
pub struct DurationError {
    /// The component's name.
    pub component: &'static str,
    /// How it hung.
    pub kind: HangKind,
    /// By the component's own clock, ms.
    pub own_ms: f64,
    /// `Ended.duration`, ms.
    pub reported_ms: f64,
    /// |reported − own| / own × 100.
    pub error_pct: f64,
    /// Whether the `Ended` alert was raised late.
    pub late: bool,
}

/// One alert's raise → delivery time.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// `transient`, `permanent`, `ended` or `thread_exited`.
    pub alert: &'static str,
    /// The component, `name#number`.
    pub component: String,
    /// The injected hang it is about, if any (`None`: an ordinary task).
    pub kind: Option<HangKind>,
    /// Receipt minus `raised_ns`, ms.
    pub delivery_ms: f64,
    /// Whether this was the first permanent alert the fresh monitor raised
    /// (its stack symbolicated with cold caches).
    pub first_permanent: bool,
    /// When it was raised, `raised_ns` minus the monitor's start, ms.
    pub raised_at_ms: f64,
    /// `symbolicated`, `raw` (unwound, not symbolicated), `none: <reason>`,
    /// or `-` for an alert that carries no stack.
    pub stack: String,
    /// Whether the alert was raised late (see `Alert::late`).
    pub late: bool,
}

/// What the loaded runs found.
pub struct LoadedFigures {
    pub hangs: u64,
    pub hog_threads: u64,
    pub recall: f64,
    pub recall_servo: f64,
    pub duration_error_pct_max: f64,
    pub detect_p99_ms: f64,
    pub detect_p99_ms_servo: f64,
    pub delivery_p99_ms: f64,
    pub delivery_p99_ms_transient: f64,
    pub monitor_wait_ms: f64,
    pub receiver_wait_ms: f64,
    pub alerts: u64,
    pub unplanned_alerts: u64,
    pub task_max_ms: f64,
    pub missed: Vec<MissedHang>,
    pub worst_duration_errors: Vec<DurationError>,
    pub slowest_deliveries: Vec<Delivery>,
}

/// One hang of the plan.
#[derive(Clone, Copy)]
struct Planned {
    /// Ordinary tasks before it.
    gap: Duration,
    kind: HangKind,
    length: Duration,
}

/// One hang as it happened.
struct HangRecord {
    component: usize,
    kind: HangKind,
    planned: Duration,
    /// By the component's own `Instant`.
    own: Duration,
    start: Instant,
    /// `monotonic_ns` just before and just after `notify_activity`.
    start_ns: (u64, u64),
}

/// The plan: each component's hangs, in order.
fn plan(hangs: usize, seed: u64) -> Vec<Vec<Planned>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kinds: Vec<HangKind> = (0..hangs).map(|i| KINDS[i % KINDS.len()]).collect();
    rng.shuffle(&mut kinds);
    let mut plans = vec![Vec::new(); COMPONENTS.len()];
    for (i, kind) in kinds.into_iter().enumerate() {
        plans[i % COMPONENTS.len()].push(Planned {
            gap: Duration::from_millis(rng.u64(200..=600)),
            kind,
            length: Duration::from_millis(rng.u64(150..=1500)),
        });
    }
    plans
}

/// Busy-loop threads, stopped by a flag.
struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Hogs {
    fn start(count: usize) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..count)
            .map(|_| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("hw-bench-hog".to_owned())
                    .spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..1_000 {
                                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                            }
                        }
                    })
                    .expect("spawn a hog")
            })
            .collect();
        Hogs { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// What a component tells its monitor.
trait Notify {
    fn activity(&self, annotation: &'static str);
    fn wait(&self);
}

impl Notify for hangwatch::Handle {
    fn activity(&self, annotation: &'static str) {
        self.notify_activity(annotation);
    }
    fn wait(&self) {
        self.notify_wait();
    }
}

impl Notify for crate::servo::ServoHandle {
    fn activity(&self, annotation: &'static str) {
        self.notify_activity(annotation);
    }
    fn wait(&self) {
        self.notify_wait();
    }
}

enum HelperCommand {
    /// Lock the mutex, say so, hold it this long.
    Hold(Duration, mpsc::Sender<()>),
    /// Write one byte to the socket after this long.
    Write(Duration),
}

/// A component's helper thread: holds its mutex, writes to its socket.
struct Helper {
    commands: mpsc::Sender<HelperCommand>,
    lock: Arc<Mutex<()>>,
    socket: UnixStream,
    thread: JoinHandle<()>,
}

impl Helper {
    fn start(name: &str) -> Helper {
        let (commands, received) = mpsc::channel();
        let lock = Arc::new(Mutex::new(()));
        let (socket, mut peer) = UnixStream::pair().expect("a socket pair");
        let held = lock.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-helper"))
            .spawn(move || {
                for command in received {
                    match command {
                        HelperCommand::Hold(length, locked) => {
                            let _guard = held.lock().expect("the helper's mutex");
                            let _ = locked.send(());
                            std::thread::sleep(length);
                        }
                        HelperCommand::Write(length) => {
                            std::thread::sleep(length);
                            peer.write_all(&[1]).expect("write to the socket");
                        }
                    }
                }
            })
            .expect("spawn a helper");
        Helper {
            commands,
            lock,
            socket,
            thread,
        }
    }

    fn stop(self) {
        drop(self.commands);
        let _ = self.thread.join();
    }
}

#[inline(never)]
fn spin_for(length: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < length {
        for _ in 0..100 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }
}

#[inline(never)]
fn hang_cpu_loop(length: Duration) {
    spin_for(length);
}

#[inline(never)]
fn hang_sleep(length: Duration) {
    std::thread::sleep(length);
}

#[inline(never)]
fn hang_on_mutex(lock: &Mutex<()>) {
    drop(std::hint::black_box(
        lock.lock().expect("the helper's mutex"),
    ));
}

#[inline(never)]
fn hang_on_socket_read(mut socket: &UnixStream) {
    let mut byte = [0u8];
    socket.read_exact(&mut byte).expect("read the socket");
}

/// Ordinary tasks for `length`; returns the longest, by its own clock.
fn tasks(notify: &impl Notify, length: Duration, rng: &mut fastrand::Rng) -> Duration {
    let end = Instant::now() + length;
    let mut longest = Duration::ZERO;
    while Instant::now() < end {
        let work = Duration::from_micros(rng.u64(1_000..=5_000));
        let wait = Duration::from_micros(rng.u64(1_000..=10_000));
        let start = Instant::now();
        notify.activity(TASK);
        spin_for(work);
        notify.wait();
        longest = longest.max(start.elapsed());
        std::thread::sleep(wait);
    }
    longest
}

/// One injected hang.
fn hang(notify: &impl Notify, component: usize, planned: Planned, helper: &Helper) -> HangRecord {
    let length = planned.length;
    // Set up what will keep the thread waiting before the activity starts.
    match planned.kind {
        HangKind::Mutex => {
            let (locked, is_locked) = mpsc::channel();
            helper
                .commands
                .send(HelperCommand::Hold(length, locked))
                .expect("the helper");
            is_locked.recv().expect("the helper locked");
        }
        HangKind::SocketRead => helper
            .commands
            .send(HelperCommand::Write(length))
            .expect("the helper"),
        HangKind::CpuLoop | HangKind::Sleep => {}
    }
    let before = hangwatch::monotonic_ns();
    let start = Instant::now();
    notify.activity(planned.kind.annotation());
    let after = hangwatch::monotonic_ns();
    match planned.kind {
        HangKind::CpuLoop => hang_cpu_loop(length),
        HangKind::Sleep => hang_sleep(length),
        HangKind::Mutex => hang_on_mutex(&helper.lock),
        HangKind::SocketRead => hang_on_socket_read(&helper.socket),
    }
    notify.wait();
    let own = start.elapsed();
    HangRecord {
        component,
        kind: planned.kind,
        planned: length,
        own,
        start,
        start_ns: (before, after),
    }
}

/// Runs the six components with `make` giving each its notifier (on its own
/// thread); returns every hang and the longest ordinary task.
fn run_components<N: Notify>(
    plans: &[Vec<Planned>],
    seed: u64,
    make: impl Fn(usize) -> N + Sync,
) -> (Vec<HangRecord>, Duration) {
    let make = &make;
    std::thread::scope(|s| {
        let threads: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(c, plan)| {
                std::thread::Builder::new()
                    .name(COMPONENTS[c].to_owned())
                    .spawn_scoped(s, move || {
                        let helper = Helper::start(COMPONENTS[c]);
                        let mut rng = fastrand::Rng::with_seed(seed ^ (0x5eed << 8) ^ c as u64);
                        let notify = make(c);
                        let mut records = Vec::new();
                        let mut longest = Duration::ZERO;
                        for planned in plan {
                            longest = longest.max(tasks(&notify, planned.gap, &mut rng));
                            records.push(hang(&notify, c, *planned, &helper));
                        }
                        longest = longest.max(tasks(&notify, Duration::from_millis(300), &mut rng));
                        drop(notify);
                        helper.stop();
                        (records, longest)
                    })
                    .expect("spawn a component")
            })
            .collect();
        let mut records = Vec::new();
        let mut longest = Duration::ZERO;
        for thread in threads {
            let (mut r, l) = thread.join().expect("a component");
            records.append(&mut r);
            longest = longest.max(l);
        }
        (records, longest)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ns_to_ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

fn kind_name(kind: &AlertKind) -> &'static str {
    match kind {
        AlertKind::Transient => "transient",
        AlertKind::Permanent => "permanent",
        AlertKind::Ended { .. } => "ended",
        AlertKind::ThreadExited => "thread_exited",
        AlertKind::Stack { .. } => "stack",
        // A kind newer than this bench.
        _ => "unknown",
    }
}

fn describe(alert: &Alert) -> String {
    let mut text = match alert.kind {
        AlertKind::Ended { worst } => format!(
            "ended({}) {:.1} ms",
            match worst {
                HangLevel::Transient => "transient",
                HangLevel::Permanent => "permanent",
            },
            ms(alert.duration)
        ),
        ref kind => kind_name(kind).to_owned(),
    };
    if alert.late {
        text.push_str(" late");
    }
    text
}

fn stack_state(alert: &Alert) -> String {
    match (&alert.stack, &alert.no_stack) {
        (Some(stack), _) if stack.frames.iter().any(|f| f.function.is_some()) => {
            "symbolicated".to_owned()
        }
        (Some(_), _) => "raw".to_owned(),
        (None, Some(reason)) => format!("none: {reason}"),
        (None, None) => "-".to_owned(),
    }
}

/// A thread's mean wait for a CPU per time it was put on one, between two
/// schedstat readings, ms.
fn mean_wait_ms(before: Option<(Duration, u64)>, after: Option<(Duration, u64)>) -> f64 {
    match (before, after) {
        (Some((w0, n0)), Some((w1, n1))) if n1 > n0 => ms(w1.saturating_sub(w0)) / (n1 - n0) as f64,
        _ => f64::NAN,
    }
}

/// What our run gave.
struct OursRun {
    records: Vec<HangRecord>,
    task_longest: Duration,
    received: Vec<(u64, Alert)>,
    /// `monotonic_ns` just before the monitor started.
    started_ns: u64,
    monitor_wait_ms: f64,
    receiver_wait_ms: f64,
}

/// Our run: a fresh monitor, alerts stamped on receipt.
fn run_ours(plans: &[Vec<Planned>], seed: u64) -> OursRun {
    const MONITOR: &str = "hw-loaded-mon";
    let started_ns = hangwatch::monotonic_ns();
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .thread_name(MONITOR)
        .start()
        .expect("start the monitor");
    let monitor = Thread::named(MONITOR);
    let monitor_before = monitor.as_ref().and_then(Thread::run_queue_wait);
    let receiver = std::thread::Builder::new()
        .name("hw-loaded-rx".to_owned())
        .spawn(move || {
            let own = Path::new("/proc/thread-self/schedstat");
            let before = run_queue_wait(own);
            let mut received = Vec::new();
            for alert in alerts {
                received.push((hangwatch::monotonic_ns(), alert));
            }
            (received, mean_wait_ms(before, run_queue_wait(own)))
        })
        .expect("spawn the receiver");
    let (records, longest) = run_components(plans, seed, |c| {
        register
            .register_component(
                ComponentId::new(COMPONENTS[c], c as u64),
                Timeouts::new(TRANSIENT, PERMANENT),
                None,
            )
            .expect("register")
    });
    let monitor_after = monitor.as_ref().and_then(Thread::run_queue_wait);
    drop(register);
    let (received, receiver_wait_ms) = receiver.join().expect("the receiver");
    OursRun {
        records,
        task_longest: longest,
        received,
        started_ns,
        monitor_wait_ms: mean_wait_ms(monitor_before, monitor_after),
        receiver_wait_ms,
    }
}

/// The reference's run, with the same plan.
fn run_servo(plans: &[Vec<Planned>], seed: u64) -> (Vec<HangRecord>, Vec<(Instant, ServoAlert)>) {
    let servo = ServoMonitor::start("hw-loaded-servo");
    let alerts = servo.alerts.clone();
    let receiver = std::thread::Builder::new()
        .name("hw-loaded-srx".to_owned())
        .spawn(move || {
            let mut received = Vec::new();
            for alert in alerts {
                received.push((Instant::now(), alert));
            }
            received
        })
        .expect("spawn the receiver");
    let (records, _) = run_components(plans, seed, |c| {
        servo.register.register(c as u64, TRANSIENT, PERMANENT)
    });
    servo.stop();
    (records, receiver.join().expect("the receiver"))
}

pub fn run(quick: bool, seed: u64) -> LoadedFigures {
    let hangs = if quick { 20 } else { 40 };
    let plans = plan(hangs, seed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hogs = Hogs::start(2 * cores);
    let OursRun {
        records: ours,
        task_longest,
        received,
        started_ns,
        monitor_wait_ms,
        receiver_wait_ms,
    } = run_ours(&plans, seed);
    let (theirs, received_servo) = run_servo(&plans, seed);
    hogs.stop();

    let mut missed = Vec::new();

    // Ours: each alert to the hang whose start readings bracket its start.
    let about = |alert: &Alert| -> Option<usize> {
        let started = alert.started_ns?;
        ours.iter().position(|h| {
            h.component as u64 == alert.component.number
                && alert.component.name == COMPONENTS[h.component]
                && (h.start_ns.0..=h.start_ns.1).contains(&started)
        })
    };
    let matched: Vec<Option<usize>> = received.iter().map(|(_, a)| about(a)).collect();
    let mut detected = 0;
    let mut detect_ms = Vec::new();
    let mut errors = Vec::new();
    for (i, hang) in ours.iter().enumerate() {
        let alerts: Vec<&Alert> = received
            .iter()
            .zip(&matched)
            .filter(|(_, m)| **m == Some(i))
            .map(|((_, a), _)| a)
            .collect();
        let transient = alerts.iter().find(|a| a.kind == AlertKind::Transient);
        let permanent = alerts.iter().any(|a| a.kind == AlertKind::Permanent);
        let ended = alerts.iter().find_map(|a| match a.kind {
            AlertKind::Ended { worst } => Some((worst, *a)),
            _ => None,
        });
        if let Some(t) = transient {
            let started = t.started_ns.expect("a transient alert has a start");
            detect_ms.push(ns_to_ms(
                t.raised_ns as i128 - started as i128 - TRANSIENT.as_nanos() as i128,
            ));
        }
        // The highest level the hang's own length reached, if any.
        let earned = if hang.own > PERMANENT {
            Some(HangLevel::Permanent)
        } else if hang.own > TRANSIENT {
            Some(HangLevel::Transient)
        } else {
            None
        };
        let ok = transient.is_some() == earned.is_some()
            && permanent == (earned == Some(HangLevel::Permanent))
            && ended.map(|(w, _)| w) == earned;
        if ok {
            detected += 1;
            if let Some((_, ended)) = ended {
                let reported = ms(ended.duration);
                let own = ms(hang.own);
                errors.push(DurationError {
                    component: COMPONENTS[hang.component],
                    kind: hang.kind,
                    own_ms: own,
                    reported_ms: reported,
                    error_pct: (reported - own).abs() / own * 100.0,
                    late: ended.late,
                });
            }
        } else {
            missed.push(MissedHang {
                monitor: "hangwatch",
                component: COMPONENTS[hang.component],
                kind: hang.kind,
                own_ms: ms(hang.own),
                planned_ms: ms(hang.planned),
                alerts: alerts.iter().map(|a| describe(a)).collect(),
            });
        }
    }

    // Deliveries: every alert of our run but the `stack` alerts, which
    // complete alerts already delivered (their `raised_ns` is the alert's).
    let first_permanent = received
        .iter()
        .position(|(_, a)| a.kind == AlertKind::Permanent);
    let mut deliveries: Vec<Delivery> = received
        .iter()
        .zip(&matched)
        .enumerate()
        .filter(|(_, ((_, alert), _))| !matches!(alert.kind, AlertKind::Stack { .. }))
        .map(|(n, ((at, alert), m))| Delivery {
            alert: kind_name(&alert.kind),
            component: alert.component.to_string(),
            kind: m.map(|i| ours[i].kind),
            delivery_ms: ns_to_ms(*at as i128 - alert.raised_ns as i128),
            first_permanent: Some(n) == first_permanent,
            raised_at_ms: ns_to_ms(alert.raised_ns as i128 - started_ns as i128),
            stack: stack_state(alert),
            late: alert.late,
        })
        .collect();
    let mut delivery_ms: Vec<f64> = deliveries.iter().map(|d| d.delivery_ms).collect();
    delivery_ms.sort_by(f64::total_cmp);
    let mut delivery_ms_transient: Vec<f64> = deliveries
        .iter()
        .filter(|d| d.alert == "transient")
        .map(|d| d.delivery_ms)
        .collect();
    delivery_ms_transient.sort_by(f64::total_cmp);
    deliveries.sort_by(|a, b| b.delivery_ms.total_cmp(&a.delivery_ms));
    deliveries.truncate(5);
    detect_ms.sort_by(f64::total_cmp);
    errors.sort_by(|a, b| b.error_pct.total_cmp(&a.error_pct));
    let duration_error_pct_max = errors.first().map_or(f64::NAN, |e| e.error_pct);
    errors.truncate(5);

    // The reference: each alert to the latest hang of its component, with
    // its annotation, started before the alert was received.
    let mut servo_alerts: Vec<Vec<(Instant, bool)>> = theirs.iter().map(|_| Vec::new()).collect();
    for (at, alert) in &received_servo {
        let hang = theirs
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                h.component as u64 == alert.component
                    && alert.annotation == Some(h.kind.annotation())
                    && h.start <= *at
            })
            .max_by_key(|(_, h)| h.start);
        if let Some((i, _)) = hang {
            servo_alerts[i].push((*at, alert.permanent));
        }
    }
    let mut detected_servo = 0;
    let mut detect_ms_servo = Vec::new();
    for (hang, alerts) in theirs.iter().zip(&servo_alerts) {
        let transient = alerts.iter().find(|(_, permanent)| !permanent);
        let permanent = alerts.iter().any(|(_, permanent)| *permanent);
        if let Some((at, _)) = transient {
            let due = hang.start + TRANSIENT;
            detect_ms_servo.push(if *at >= due {
                ms(*at - due)
            } else {
                -ms(due - *at)
            });
        }
        let ok =
            transient.is_some() == (hang.own > TRANSIENT) && permanent == (hang.own > PERMANENT);
        if ok {
            detected_servo += 1;
        } else {
            missed.push(MissedHang {
                monitor: "servo",
                component: COMPONENTS[hang.component],
                kind: hang.kind,
                own_ms: ms(hang.own),
                planned_ms: ms(hang.planned),
                alerts: alerts
                    .iter()
                    .map(|(_, p)| if *p { "permanent" } else { "transient" }.to_owned())
                    .collect(),
            });
        }
    }
    detect_ms_servo.sort_by(f64::total_cmp);

    LoadedFigures {
        hangs: hangs as u64,
        hog_threads: 2 * cores as u64,
        recall: detected as f64 / ours.len() as f64,
        recall_servo: detected_servo as f64 / theirs.len() as f64,
        duration_error_pct_max,
        detect_p99_ms: percentile(&detect_ms, 0.99),
        detect_p99_ms_servo: percentile(&detect_ms_servo, 0.99),
        delivery_p99_ms: percentile(&delivery_ms, 0.99),
        delivery_p99_ms_transient: percentile(&delivery_ms_transient, 0.99),
        monitor_wait_ms,
        receiver_wait_ms,
        alerts: received.len() as u64,
        unplanned_alerts: matched.iter().filter(|m| m.is_none()).count() as u64,
        task_max_ms: ms(task_longest),
        missed,
        worst_duration_errors: errors,
        slowest_deliveries: deliveries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_deals_every_kind_evenly_within_its_lengths() {
        let plans = plan(20, 7);
        let all: Vec<Planned> = plans.iter().flatten().copied().collect();
        assert_eq!(all.len(), 20);
        for kind in KINDS {
            assert_eq!(all.iter().filter(|p| p.kind == kind).count(), 5);
        }
        assert!(all
            .iter()
            .all(|p| (150..=1500).contains(&p.length.as_millis())));
        assert!(plans.iter().all(|p| (3..=4).contains(&p.len())));
    }
}
