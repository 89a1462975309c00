//! The processes of the hub's tests: this test binary, run again with a role.
//!
//! A test spawns `current_exe() child_role --exact` with [`ROLE_ENV`] set;
//! the `child_role` test sees the variable, plays the role, and exits the
//! process with the role's exit code. Run normally, `child_role` does
//! nothing.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use hangwatch::{Alert, ComponentId, Control, Monitor, Register, Timeouts};
use hangwatch_hub::{Bridge, BridgeBuilder, ChildInfo, Hub, HubEvent};

/// Which role this process plays.
pub const ROLE_ENV: &str = "HANGWATCH_HUB_TEST_ROLE";
/// Where a role that reports through a file writes its result.
pub const RESULT_ENV: &str = "HANGWATCH_HUB_TEST_RESULT";
/// How long a test waits for something that should happen: plenty on a
/// loaded two-core machine.
pub const GENEROUS: Duration = Duration::from_secs(20);
/// How long a child lives at most if nobody tells it to exit.
const LIFETIME: Duration = Duration::from_secs(40);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// This binary, set to play `role`.
pub fn child_command(role: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args(["child_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Plays `role` and returns the process's exit code.
pub fn run_role(role: &str) -> i32 {
    match role {
        "hangs" => hangs(),
        "idle" => idle(),
        "stream" => stream(),
        "busy" => busy(),
        "survivor" => survivor(),
        "hub" => hub(),
        _ => 99,
    }
}

// ---------------------------------------------------------------------------
// The parent's side.

/// Events from `hub`, gathered until `done` says so; panics after
/// [`GENEROUS`] with what was gathered.
pub fn gather(hub: &Hub, mut done: impl FnMut(&[HubEvent]) -> bool) -> Vec<HubEvent> {
    let deadline = Instant::now() + GENEROUS;
    let mut events = Vec::new();
    while !done(&events) {
        match hub.events().recv_deadline(deadline) {
            Ok(event) => events.push(event),
            Err(_) => panic!("timed out waiting on the hub; got so far:\n{events:#?}"),
        }
    }
    events
}

/// Events from `hub` during `span`.
pub fn gather_for(hub: &Hub, span: Duration) -> Vec<HubEvent> {
    let deadline = Instant::now() + span;
    let mut events = Vec::new();
    while let Ok(event) = hub.events().recv_deadline(deadline) {
        events.push(event);
    }
    events
}

pub fn connected(events: &[HubEvent]) -> Vec<&ChildInfo> {
    events
        .iter()
        .filter_map(|e| match e {
            HubEvent::Connected(child) => Some(child),
            _ => None,
        })
        .collect()
}

pub fn alerts_of(events: &[HubEvent], pid: u32) -> Vec<&Alert> {
    events
        .iter()
        .filter_map(|e| match e {
            HubEvent::Alert(a) if a.child.pid == pid => Some(&a.alert),
            _ => None,
        })
        .collect()
}

pub fn left(events: &[HubEvent], pid: u32) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, HubEvent::Left { child, .. } if child.pid == pid))
        .count()
}

pub fn gone(events: &[HubEvent], pid: u32) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, HubEvent::ProcessGone { child, .. } if child.pid == pid))
        .count()
}

/// Waits for `child` to exit, at most [`GENEROUS`]; kills it past that.
pub fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + GENEROUS;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child {} did not exit in time", child.id());
        }
        std::thread::sleep(ms(20));
    }
}

/// A file name in the temporary directory no other test uses.
pub fn scratch_file(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!(
        "hangwatch-hub-test-{what}-{}-{nanos}",
        std::process::id()
    ))
}

// ---------------------------------------------------------------------------
// The children's side.

/// A child's monitor and bridge.
struct Rig {
    register: Register,
    control: Control,
    monitor: JoinHandle<()>,
    bridge: Bridge,
}

fn rig(builder: BridgeBuilder) -> Rig {
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder()
        // A debug build symbolicates slowly on a loaded machine; the tests
        // want the names, however long they take.
        .symbolicate_deadline(GENEROUS)
        .start()
        .expect("a monitor");
    let bridge = builder
        .connect_from_env(alerts, control.clone())
        .expect("a bridge to the hub");
    Rig {
        register,
        control,
        monitor: thread,
        bridge,
    }
}

impl Rig {
    /// Drops the register, waits for the monitor to end, closes the bridge.
    fn finish(self) {
        let Rig {
            register,
            control,
            monitor,
            bridge,
        } = self;
        drop((register, control));
        let _ = monitor.join();
        bridge.close();
    }
}

/// What a component does next.
enum Task {
    /// Hang in [`stuck_in_a_long_task`] for this long.
    Hang(Duration),
    Quit,
}

/// A component thread: registered with an exit signal that tells it to quit;
/// between tasks it waits. With `idle_work`, it does that much busy work in
/// [`busy_profiled_work`] whenever no task comes within 1 ms; with
/// `idle_hang`, it hangs for the first duration every second duration.
struct Component {
    tasks: Sender<Task>,
    thread: JoinHandle<Outcome>,
}

#[derive(Default)]
struct Outcome {
    signalled: bool,
    timed_out: bool,
    slowest_notify: Duration,
}

#[derive(Clone, Copy)]
enum Idle {
    Wait,
    Work(Duration),
    Hang { hang: Duration, every: Duration },
}

fn component(
    register: &Register,
    id: ComponentId,
    transient: Duration,
    permanent: Duration,
    idle: Idle,
) -> Component {
    let (tasks, inbox) = unbounded();
    let quit = tasks.clone();
    let register = register.clone();
    let signalled = Arc::new(AtomicBool::new(false));
    let flag = signalled.clone();
    let name = format!("{}-{}", id.name, id.number);
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let signal = Box::new(move || {
                flag.store(true, Ordering::SeqCst);
                let _ = quit.send(Task::Quit);
            });
            let handle = register
                .register_component(id, Timeouts::new(transient, permanent), Some(signal))
                .expect("registration");
            drop(register);
            let mut outcome = Outcome::default();
            let born = Instant::now();
            let tick = match idle {
                Idle::Wait => ms(200),
                Idle::Work(_) => ms(1),
                Idle::Hang { every, .. } => every,
            };
            loop {
                if born.elapsed() > LIFETIME {
                    outcome.timed_out = true;
                    break;
                }
                let hang = match inbox.recv_timeout(tick) {
                    Ok(Task::Quit) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(Task::Hang(span)) => span,
                    Err(RecvTimeoutError::Timeout) => match idle {
                        Idle::Wait => continue,
                        Idle::Work(span) => {
                            let _busy = handle.activity("work");
                            busy_profiled_work(Instant::now() + span);
                            continue;
                        }
                        Idle::Hang { hang, .. } => hang,
                    },
                };
                // Time the notifications themselves: they must never block.
                let before = Instant::now();
                handle.notify_activity("long task");
                let notified = before.elapsed();
                stuck_in_a_long_task(hang);
                let before = Instant::now();
                handle.notify_wait();
                let waited = before.elapsed();
                outcome.slowest_notify = outcome.slowest_notify.max(notified).max(waited);
            }
            outcome.signalled = signalled.load(Ordering::SeqCst);
            outcome
        })
        .expect("a component thread");
    Component { tasks, thread }
}

#[inline(never)]
pub fn stuck_in_a_long_task(span: Duration) {
    std::thread::sleep(std::hint::black_box(span));
}

#[inline(never)]
pub fn busy_profiled_work(until: Instant) -> u64 {
    let mut spins = 0u64;
    while Instant::now() < until {
        spins = std::hint::black_box(spins + 1);
    }
    spins
}

/// Exit code 0 if every component got its exit signal, 3 if one outlived
/// its lifetime, 4 if one quit without a signal.
fn outcome_code(components: Vec<Component>) -> i32 {
    let mut code = 0;
    for component in components {
        let outcome = component.thread.join().unwrap_or_default();
        if outcome.timed_out {
            code = 3;
        } else if !outcome.signalled && code == 0 {
            code = 4;
        }
    }
    code
}

/// Two components: `layout#1` hangs past its transient timeout only,
/// `script#1` past its permanent one; then both wait for their exit signal.
fn hangs() -> i32 {
    let rig = rig(Bridge::builder());
    let layout = component(
        &rig.register,
        ComponentId::new("layout", 1),
        ms(100),
        ms(1500),
        Idle::Wait,
    );
    let script = component(
        &rig.register,
        ComponentId::new("script", 1),
        ms(100),
        ms(400),
        Idle::Wait,
    );
    let _ = layout.tasks.send(Task::Hang(ms(350)));
    let _ = script.tasks.send(Task::Hang(ms(900)));
    let code = outcome_code(vec![layout, script]);
    rig.finish();
    code
}

/// Three components that only wait for their exit signal.
fn idle() -> i32 {
    let rig = rig(Bridge::builder());
    let components = ["script", "layout", "network"]
        .into_iter()
        .map(|name| {
            component(
                &rig.register,
                ComponentId::new(name, 1),
                ms(500),
                ms(5000),
                Idle::Wait,
            )
        })
        .collect();
    let code = outcome_code(components);
    rig.finish();
    code
}

/// One component that hangs for 150 ms every 250 ms (a transient alert and
/// an ended one each time), until its exit signal.
fn stream() -> i32 {
    let rig = rig(Bridge::builder());
    let network = component(
        &rig.register,
        ComponentId::new("network", 1),
        ms(60),
        ms(10_000),
        Idle::Hang {
            hang: ms(150),
            every: ms(250),
        },
    );
    let code = outcome_code(vec![network]);
    rig.finish();
    code
}

/// Two components busy in [`busy_profiled_work`], until their exit signal.
fn busy() -> i32 {
    let rig = rig(Bridge::builder());
    let components = (1..=2)
        .map(|n| {
            component(
                &rig.register,
                ComponentId::new("busy", n),
                ms(2000),
                ms(10_000),
                Idle::Work(ms(5)),
            )
        })
        .collect();
    let code = outcome_code(components);
    rig.finish();
    code
}

/// Keeps hanging while its hub is killed, then checks that it went on
/// without it, and writes the verdict to the file named in [`RESULT_ENV`].
fn survivor() -> i32 {
    let verdict = survive();
    let path = std::env::var(RESULT_ENV).expect("a result file");
    let temporary = format!("{path}.partial");
    let text = match &verdict {
        Ok(summary) => format!("ok {summary}\n"),
        Err(reason) => format!("fail {reason}\n"),
    };
    if std::fs::write(&temporary, text).is_err() || std::fs::rename(&temporary, &path).is_err() {
        return 2;
    }
    if verdict.is_ok() {
        0
    } else {
        1
    }
}

fn survive() -> Result<String, String> {
    let rig = rig(Bridge::builder().local_alerts(1024));
    let worker = component(
        &rig.register,
        ComponentId::new("survivor", 1),
        ms(50),
        ms(10_000),
        Idle::Hang {
            hang: ms(120),
            every: ms(150),
        },
    );
    let local = rig.bridge.local_alerts().expect("a local copy").clone();
    let deadline = Instant::now() + GENEROUS;
    while rig.bridge.hub_connected() {
        if Instant::now() > deadline {
            return Err("the hub never went away".into());
        }
        std::thread::sleep(ms(10));
    }
    let before = local.try_iter().count();
    std::thread::sleep(ms(1200));
    let after = local.try_iter().count();
    let counters = rig.bridge.counters();
    let _ = worker.tasks.send(Task::Quit);
    let outcome = worker.thread.join().map_err(|_| "the worker panicked")?;
    let stats = rig.control.stats().map_err(|e| e.to_string())?;
    let start = Instant::now();
    rig.finish();
    let closed_in = start.elapsed();
    let summary = format!(
        "before={before} after={after} not_forwarded={} slowest_notify_us={} close_ms={} \
         alerts_sent={}",
        counters.not_forwarded,
        outcome.slowest_notify.as_micros(),
        closed_in.as_millis(),
        stats.alerts_sent,
    );
    if after < 4 {
        return Err(format!(
            "the monitor stopped alerting without its hub: {summary}"
        ));
    }
    if outcome.slowest_notify > ms(100) {
        return Err(format!("a notification blocked: {summary}"));
    }
    if closed_in > ms(3000) {
        return Err(format!("closing the bridge blocked: {summary}"));
    }
    Ok(summary)
}

/// A hub in its own process, with one survivor child: prints
/// `ready <child pid>` once the child has connected and sent an alert, then
/// waits to be killed.
fn hub() -> i32 {
    let hub = Hub::start().expect("a hub");
    let mut command = child_command("survivor");
    let mut child = hub.spawn("survivor", &mut command).expect("a child");
    let mut alerts = 0;
    let deadline = Instant::now() + GENEROUS;
    while alerts < 2 {
        match hub.events().recv_deadline(deadline) {
            Ok(HubEvent::Alert(alert)) if alert.child.pid == child.id() => alerts += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let code = if alerts < 2 {
        6
    } else {
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "\nready {}", child.id());
        let _ = stdout.flush();
        // The test kills this process here; the child is meant to outlive it.
        std::thread::sleep(LIFETIME);
        5
    };
    let _ = child.kill();
    let _ = child.wait();
    code
}
