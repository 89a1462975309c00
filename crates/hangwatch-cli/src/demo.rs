//! `hangwatch demo`: three event-loop threads shaped like a browser's doing
//! jittered work, one of which hangs on purpose; the alerts are printed as
//! they come, and the run checks itself at the end.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use hangwatch::{Alert, AlertKind, ComponentId, HangLevel, Monitor, Register};

#[derive(clap::Args)]
pub struct Options {
    /// How long the event loops run, in seconds.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Seed for the jitter of the work.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

const TRANSIENT: Duration = Duration::from_millis(150);
const PERMANENT: Duration = Duration::from_millis(1000);
/// How long the layout thread hangs.
const HANG: Duration = Duration::from_millis(1600);

/// A task for an event loop: how long its work takes, and whether it is the
/// one that hangs.
#[derive(Clone, Copy)]
enum Task {
    Work(Duration),
    Hang,
}

pub fn run(options: &Options) -> ExitCode {
    if !(options.seconds.is_finite() && options.seconds >= 2.5) {
        eprintln!(
            "hangwatch demo: --seconds must be at least 2.5 (the injected hang lasts {HANG:?})"
        );
        return ExitCode::FAILURE;
    }
    let Monitor {
        register, alerts, ..
    } = match Monitor::builder().start() {
        Ok(monitor) => monitor,
        Err(error) => {
            eprintln!("hangwatch demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "demo: script, layout and network event loops for {:.1} s; transient timeout {TRANSIENT:?}, \
         permanent {PERMANENT:?}; layout hangs once for {HANG:?}",
        options.seconds
    );
    let started = Instant::now();
    let printer = std::thread::spawn(move || print_alerts(alerts, started));

    let names = ["script", "layout", "network"];
    let mut loops = Vec::new();
    let mut inboxes = Vec::new();
    for name in names {
        let (sender, inbox) = unbounded();
        inboxes.push(sender);
        loops.push(spawn_event_loop(&register, name, inbox));
    }
    drop(register);

    // The driver: jittered tasks for every loop, and one hang for layout.
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let run_for = Duration::from_secs_f64(options.seconds);
    let hang_at = Duration::from_millis(800);
    let mut hung = false;
    while started.elapsed() < run_for {
        for (i, inbox) in inboxes.iter().enumerate() {
            let task = if i == 1 && !hung && started.elapsed() >= hang_at {
                hung = true;
                Task::Hang
            } else {
                Task::Work(Duration::from_micros(rng.u64(200..=20_000)))
            };
            let _ = inbox.send(task);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(10..=40)));
    }
    drop(inboxes);
    for event_loop in loops {
        let _ = event_loop.join();
    }
    // Every handle and register is gone: the monitor ends, the alert channel
    // closes, and the printer returns what it saw.
    let seen = printer.join().unwrap_or_default();
    check(&seen)
}

fn spawn_event_loop(
    register: &Register,
    name: &'static str,
    inbox: Receiver<Task>,
) -> std::thread::JoinHandle<()> {
    let register = register.clone();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let handle = match register.register_component(
                ComponentId::new(name, 1),
                TRANSIENT,
                PERMANENT,
                None,
            ) {
                Ok(handle) => handle,
                Err(error) => {
                    eprintln!("demo: {name} could not register: {error}");
                    return;
                }
            };
            for task in inbox {
                match task {
                    Task::Work(span) => {
                        let _busy = handle.activity("handle task");
                        do_work(span);
                    }
                    Task::Hang => {
                        let _busy = handle.activity("reflow");
                        reflow_stuck_on_lock();
                    }
                }
            }
        })
        .expect("spawn an event loop")
}

/// Busy work: part computing, part sleeping, like a real task.
fn do_work(span: Duration) {
    let start = Instant::now();
    while start.elapsed() < span / 2 {
        std::hint::spin_loop();
    }
    std::thread::sleep(span / 2);
}

/// The injected hang: a reflow waiting on a lock another thread holds.
#[inline(never)]
fn reflow_stuck_on_lock() {
    let lock = Arc::new(Mutex::new(()));
    let holder = {
        let lock = lock.clone();
        let (taken, is_taken) = crossbeam_channel::bounded(0);
        let holder = std::thread::spawn(move || {
            let _guard = lock.lock();
            let _ = taken.send(());
            std::thread::sleep(HANG);
        });
        let _ = is_taken.recv();
        holder
    };
    let _guard = lock.lock();
    let _ = holder.join();
}

fn print_alerts(alerts: Receiver<Alert>, started: Instant) -> Vec<Alert> {
    let mut seen = Vec::new();
    for alert in alerts {
        println!("[{:>6.3} s] {alert}", started.elapsed().as_secs_f64());
        seen.push(alert);
    }
    seen
}

/// The demo's self-check: layout raised transient, permanent and ended, in
/// that order, with a plausible duration; nobody else raised anything.
fn check(seen: &[Alert]) -> ExitCode {
    let layout = ComponentId::new("layout", 1);
    let kinds: Vec<AlertKind> = seen
        .iter()
        .filter(|a| a.component == layout)
        .map(|a| a.kind)
        .collect();
    let expected = [
        AlertKind::Transient,
        AlertKind::Permanent,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    ];
    let others = seen.iter().filter(|a| a.component != layout).count();
    let duration = seen
        .iter()
        .find(|a| matches!(a.kind, AlertKind::Ended { .. }))
        .map(|a| a.duration);
    let duration_ok = duration.is_some_and(|d| d >= HANG.mul_f64(0.8) && d <= HANG.mul_f64(1.2));
    let ok = kinds == expected && others == 0 && duration_ok;
    println!(
        "demo: layout raised {} of 3 expected alerts (hang of {}), other loops raised {others}: {}",
        kinds.len(),
        duration.map_or("?".to_owned(), |d| format!("{d:.2?}")),
        if ok { "ok" } else { "FAILED" }
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
