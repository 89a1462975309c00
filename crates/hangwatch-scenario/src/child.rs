//! A child process of the demo and of the soak: four event loops under one
//! monitor, reporting to the parent's hub, injecting the hangs of its
//! [`Script`] between ordinary work until the hub asks it to exit.
//!
//! On stdout it tells the hub when its plan's clock started and, every
//! [`REPORT_EVERY`] and once more at the end, how many notifications its
//! loops have made (`lines.rs`). Each loop counts the messages it handles
//! in a counter of its own (no cache line shared between loops); each
//! message is two notifications, the activity that handles it and the wait
//! after it. A loop's inbox is topped up with a burst of tiny tasks only
//! while it is nearly empty, so a hung loop's backlog stays small.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{unbounded, Receiver, Sender};
use hangwatch::{Annotation, ComponentId, Monitor, Register, Timeouts};
use hangwatch_hub::Bridge;

use crate::error::ChildError;
use crate::lines::{self, Line};
use crate::plan::{self, InjectedHang, Script, LOOPS};

/// How long an alert may wait for its stack (capture and unwinding: the hub
/// names the frames) before it goes out without it: long enough for a
/// loaded machine.
pub const SYMBOLICATE_DEADLINE: Duration = Duration::from_secs(5);

/// How often a child reports its notifications.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// A burst of tiny tasks goes only to a loop with fewer than this many
/// tasks waiting.
const LOW_WATER: usize = 64;

/// What an event loop is asked to do.
enum Task {
    /// Ordinary work: part computing, part waiting on I/O.
    Work(Duration),
    /// A tiny task: a little computing, no waiting.
    Quick,
    /// The injected hang.
    Hang(InjectedHang),
    /// The exit signal: leave the loop.
    Stop,
}

impl Task {
    fn annotation(&self) -> Annotation {
        match self {
            Task::Work(_) | Task::Stop => Annotation::new("handle task"),
            Task::Quick => Annotation::new("quick task"),
            Task::Hang(hang) => Annotation::new(hang.annotation),
        }
    }
}

/// Messages one loop has handled, on a cache line of its own.
#[repr(align(64))]
#[derive(Default)]
struct Handled(AtomicU64);

/// Runs the child `script` describes; returns when the hub has asked it to
/// exit (or, if the hub is gone, some time after the plan is done), or at
/// once if it has no monitor or no hub.
pub fn run(script: &Script) -> Result<(), ChildError> {
    let index = script.index;
    // Symbolication is the hub's (it starts the children with
    // `HANGWATCH_SYMBOLICATION=elsewhere`): the child only normalizes.
    let mut builder = Monitor::builder()
        .stack_on_transient(true)
        .symbolicate_deadline(SYMBOLICATE_DEADLINE);
    if let Some(threshold) = script.mode.pause_threshold() {
        builder = builder.pause_threshold(threshold);
    }
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = builder.start()?;
    let bridge = Bridge::connect_from_env(alerts, control).map_err(ChildError::NoHub)?;

    let stopping = Arc::new(AtomicBool::new(false));
    let mut inboxes = Vec::new();
    let mut loops = Vec::new();
    let mut handled = Vec::new();
    for name in LOOPS {
        let (sender, inbox) = unbounded();
        let count = Arc::new(Handled::default());
        let spawned = spawn_loop(
            &register,
            name,
            index,
            script.timeouts(),
            Queue {
                inbox,
                stop: sender.clone(),
                stopping: stopping.clone(),
                handled: count.clone(),
            },
        );
        match spawned {
            Ok(event_loop) => loops.push(event_loop),
            Err(error) => eprintln!("demo child {index}: cannot start {name}: {error}"),
        }
        inboxes.push((name, sender));
        handled.push(count);
    }
    drop(register);

    drive(&inboxes, script, &handled, &stopping);
    for (_, inbox) in &inboxes {
        let _ = inbox.send(Task::Stop);
    }
    drop(inboxes);
    for event_loop in loops {
        let _ = event_loop.join();
    }
    lines::say(Line::Notifications(notifications(&handled)));
    // Every handle and the register are gone: the monitor ends; then the
    // bridge says goodbye.
    let _ = thread.join();
    bridge.close();
    Ok(())
}

/// The notifications the loops have made so far: two per message handled.
fn notifications(handled: &[Arc<Handled>]) -> u64 {
    handled
        .iter()
        .map(|count| 2 * count.0.load(Ordering::Relaxed))
        .sum()
}

/// Feeds the loops jittered work (and bursts of tiny tasks, if the script
/// has them) and, on time, their hangs, reporting the notifications made,
/// until an exit signal arrives (or, with no hub to send one, a while after
/// the plan).
fn drive(
    inboxes: &[(&str, Sender<Task>)],
    script: &Script,
    handled: &[Arc<Handled>],
    stopping: &AtomicBool,
) {
    let hangs = script.hangs();
    let burst = script.mode.burst();
    let mut rng = fastrand::Rng::with_seed(
        script.seed ^ u64::from(script.index) ^ (u64::from(script.generation) << 32),
    );
    let started = Instant::now();
    lines::say(Line::Started(SystemTime::now()));
    let mut reported = started;
    // With no hub left to send the exit signal, stop some time after the plan.
    let give_up = plan::last_end(std::slice::from_ref(&hangs)) + Duration::from_secs(30);
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
            if let Some(burst) = burst.clone().filter(|_| inbox.len() < LOW_WATER) {
                for _ in 0..rng.u64(burst) {
                    let _ = inbox.send(Task::Quick);
                }
            }
            let _ = inbox.send(task);
        }
        if reported.elapsed() >= REPORT_EVERY {
            reported = Instant::now();
            lines::say(Line::Notifications(notifications(handled)));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(10..=40)));
    }
}

/// A loop's ends of things: its inbox, a way to stop it, the flag that
/// tells the driver to stop, and its count of messages handled.
struct Queue {
    inbox: Receiver<Task>,
    stop: Sender<Task>,
    stopping: Arc<AtomicBool>,
    handled: Arc<Handled>,
}

fn spawn_loop(
    register: &Register,
    name: &'static str,
    index: u32,
    timeouts: Timeouts,
    queue: Queue,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let register = register.clone();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let Queue {
                inbox,
                stop,
                stopping,
                handled,
            } = queue;
            let stop = Mutex::new(stop);
            let exit_signal = Box::new(move || {
                stopping.store(true, Ordering::SeqCst);
                if let Ok(stop) = stop.lock() {
                    let _ = stop.send(Task::Stop);
                }
            });
            let id = ComponentId::new(name, u64::from(index));
            let registered = register.register_component(id, timeouts, Some(exit_signal));
            let handle = match registered {
                Ok(handle) => handle,
                Err(error) => {
                    eprintln!("demo child {index}: {name} could not register: {error}");
                    return;
                }
            };
            for task in handle.event_loop(Task::annotation).iter(&inbox) {
                handled.0.fetch_add(1, Ordering::Relaxed);
                match task {
                    Task::Work(span) => do_work(span),
                    Task::Quick => quick(),
                    Task::Hang(hang) => hang_in(&hang),
                    Task::Stop => break,
                }
            }
        })
}

/// A tiny task: a little arithmetic.
fn quick() {
    let mut x = 1u64;
    for i in 0..64 {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
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
