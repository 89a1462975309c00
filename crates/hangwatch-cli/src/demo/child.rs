//! A demo child process: four event loops under one monitor, reporting to
//! the parent's hub, injecting the hangs of its plan until the hub asks it to
//! exit.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use hangwatch::{Annotation, ComponentId, Monitor, Register};
use hangwatch_hub::Bridge;

use super::plan::{self, InjectedHang, LOOPS, PERMANENT, TRANSIENT};

/// The hidden `hangwatch demo-child` command, which the demo's hub starts.
#[derive(clap::Args, Clone, Copy)]
pub struct ChildArgs {
    /// Which child this is.
    #[arg(long)]
    pub index: u32,
    /// The demo's seed.
    #[arg(long)]
    pub seed: u64,
    /// The demo's length.
    #[arg(long)]
    pub seconds: f64,
}

/// What an event loop is asked to do.
enum Task {
    /// Ordinary work: part computing, part waiting on I/O.
    Work(Duration),
    /// The injected hang.
    Hang(InjectedHang),
    /// The exit signal: leave the loop.
    Stop,
}

impl Task {
    fn annotation(&self) -> Annotation {
        match self {
            Task::Work(_) | Task::Stop => Annotation::new("handle task"),
            Task::Hang(hang) => Annotation::new(hang.annotation),
        }
    }
}

/// Runs child `index`; returns when the hub has asked it to exit (or, if the
/// hub is gone, soon after the plan is done).
pub fn run(args: &ChildArgs) -> ExitCode {
    let ChildArgs {
        index,
        seed,
        seconds,
    } = *args;
    let monitor = Monitor::builder()
        .stack_on_transient(true)
        .warm_symbols(true)
        .symbolicate_deadline(Duration::from_secs(5))
        .start();
    let Monitor {
        register,
        alerts,
        control,
        thread,
    } = match monitor {
        Ok(monitor) => monitor,
        Err(error) => {
            eprintln!("demo child {index}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bridge = match Bridge::connect_from_env(alerts, control) {
        Ok(bridge) => bridge,
        Err(error) => {
            eprintln!("demo child {index}: not started by a hub: {error}");
            return ExitCode::FAILURE;
        }
    };

    let stopping = Arc::new(AtomicBool::new(false));
    let mut inboxes = Vec::new();
    let mut loops = Vec::new();
    for name in LOOPS {
        let (sender, inbox) = unbounded();
        loops.push(spawn_loop(
            &register,
            name,
            index,
            inbox,
            sender.clone(),
            stopping.clone(),
        ));
        inboxes.push((name, sender));
    }
    drop(register);

    drive(
        &inboxes,
        &plan::hangs(index, seed, seconds),
        &stopping,
        seed ^ u64::from(index),
    );
    for (_, inbox) in &inboxes {
        let _ = inbox.send(Task::Stop);
    }
    drop(inboxes);
    for event_loop in loops {
        let _ = event_loop.join();
    }
    // Every handle and the register are gone: the monitor ends; then the
    // bridge says goodbye.
    let _ = thread.join();
    bridge.close();
    ExitCode::SUCCESS
}

/// Feeds the loops jittered work and, on time, their hangs, until an exit
/// signal arrives (or, with no hub to send one, a while after the plan).
fn drive(
    inboxes: &[(&str, Sender<Task>)],
    hangs: &[InjectedHang],
    stopping: &AtomicBool,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    // With no hub left to send the exit signal, stop some time after the plan.
    let give_up = plan::last_end(&[hangs.to_vec()]) + Duration::from_secs(30);
    let mut pending: Vec<&InjectedHang> = hangs.iter().collect();
    while !stopping.load(Ordering::SeqCst) && started.elapsed() < give_up {
        let now = started.elapsed();
        for (name, inbox) in inboxes {
            let due = pending
                .iter()
                .position(|h| h.component == *name && h.at <= now);
            let task = match due {
                Some(at) => Task::Hang(pending.remove(at).clone()),
                None => Task::Work(Duration::from_micros(rng.u64(200..=8_000))),
            };
            let _ = inbox.send(task);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(10..=40)));
    }
}

fn spawn_loop(
    register: &Register,
    name: &'static str,
    index: u32,
    inbox: Receiver<Task>,
    stop: Sender<Task>,
    stopping: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let register = register.clone();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let stop = Mutex::new(stop);
            let exit_signal = Box::new(move || {
                stopping.store(true, Ordering::SeqCst);
                if let Ok(stop) = stop.lock() {
                    let _ = stop.send(Task::Stop);
                }
            });
            let id = ComponentId::new(name, u64::from(index));
            let handle =
                match register.register_component(id, TRANSIENT, PERMANENT, Some(exit_signal)) {
                    Ok(handle) => handle,
                    Err(error) => {
                        eprintln!("demo child {index}: {name} could not register: {error}");
                        return;
                    }
                };
            for task in handle.event_loop(Task::annotation).iter(&inbox) {
                match task {
                    Task::Work(span) => do_work(span),
                    Task::Hang(hang) => hang_in(&hang),
                    Task::Stop => break,
                }
            }
        })
        .expect("spawn an event loop")
}

/// Busy work: part computing, part sleeping.
fn do_work(span: Duration) {
    let start = Instant::now();
    while start.elapsed() < span / 4 {
        std::hint::spin_loop();
    }
    std::thread::sleep(span * 3 / 4);
}

fn hang_in(hang: &InjectedHang) {
    match hang.function {
        "run_long_script_task" => run_long_script_task(hang.length),
        "reflow_stuck_on_lock" => reflow_stuck_on_lock(hang.length),
        _ => read_from_slow_socket(hang.length),
    }
}

/// A script task that computes for too long.
#[inline(never)]
fn run_long_script_task(length: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < length {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

/// A reflow waiting on a lock another thread holds.
#[inline(never)]
fn reflow_stuck_on_lock(length: Duration) {
    let lock = Arc::new(Mutex::new(()));
    let (taken, is_taken) = crossbeam_channel::bounded(0);
    let holder = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let _guard = lock.lock();
            let _ = taken.send(());
            std::thread::sleep(length);
        })
    };
    let _ = is_taken.recv();
    let _guard = lock.lock();
    let _ = holder.join();
}

/// A network thread blocked reading a response that comes late.
#[inline(never)]
fn read_from_slow_socket(length: Duration) {
    let Ok((mut ours, mut theirs)) = UnixStream::pair() else {
        return;
    };
    let server = std::thread::spawn(move || {
        std::thread::sleep(length);
        let _ = theirs.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
    });
    let mut response = [0u8; 19];
    let _ = ours.read_exact(&mut response);
    let _ = server.join();
}
