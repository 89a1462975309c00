//! A monitor starved of CPU is not a paused one: a hang during which the
//! monitor's thread waits behind CPU hogs on its CPU is reported in full,
//! however late the monitor looks, and no pause is recorded.
//!
//! The monitor's thread and three busy-loop hogs are pinned to one CPU, the
//! hung component's thread to another, so that the component runs while the
//! monitor waits for its turn; the monitor's thread runs at the lowest
//! priority (nice 19, which needs no privilege), so that it waits long
//! (hundreds of milliseconds: its looks are late past the pause threshold).
//! The hang is judged by the component's own clock. Two variants:
//!
//! - hog *threads* of this process and a component that spins: what a busy
//!   program looks like (the process's CPU time alone tells the monitor it
//!   was not stopped);
//! - hog *processes* and a component that sleeps: this process uses almost
//!   no CPU, so only the kernel's account of the monitor's thread waiting
//!   for a CPU tells starvation from a stop.
//!
//! Its counterpart, a process stopped with SIGSTOP (no alert for the stop),
//! is `pause.rs`.
#![cfg(target_os = "linux")]
// CPU affinity and priorities are set with libc, which has no safe wrapper.
#![allow(unsafe_code)]

mod common;

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{expect_hang_alert, is_follow_up, ms, thread_id_named};
use hangwatch::{Alert, AlertKind, ComponentId, HangLevel, Monitor, Timeouts};

/// The variants pin threads to the same CPUs: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const TRANSIENT: Duration = Duration::from_millis(100);
const PERMANENT: Duration = Duration::from_secs(1);
const HANG: Duration = Duration::from_secs(2);

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Pins thread or process `tid` (0: the calling thread) to `cpu`.
fn pin(tid: i32, cpu: usize) {
    // SAFETY: as above; sched_setaffinity reads the set.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        result,
        0,
        "pin {tid} to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}

/// Two CPUs to use, or `None` (with a message) on a one-CPU machine.
fn two_cpus() -> Option<(usize, usize)> {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        println!("skipped: this test needs two CPUs, the process may use {cpus:?}");
        return None;
    }
    Some((cpus[0], cpus[1]))
}

/// Busy-loop threads pinned to `cpu`, until dropped.
struct HogThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HogThreads {
    fn start(count: usize, cpu: usize) -> HogThreads {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..count)
            .map(|n| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("hw-hog-{n}"))
                    .spawn(move || {
                        pin(0, cpu);
                        while !stop.load(Ordering::Relaxed) {
                            std::hint::spin_loop();
                        }
                    })
                    .unwrap()
            })
            .collect();
        HogThreads { stop, threads }
    }
}

impl Drop for HogThreads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Busy-loop processes pinned to `cpu`, killed (by pid) when dropped.
struct HogProcesses(Vec<Child>);

impl HogProcesses {
    fn start(count: usize, cpu: usize) -> HogProcesses {
        let hogs = (0..count)
            .map(|_| {
                let hog = Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("start a hog process");
                pin(hog.id() as i32, cpu);
                hog
            })
            .collect();
        HogProcesses(hogs)
    }
}

impl Drop for HogProcesses {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// How the component hangs.
#[derive(Clone, Copy, Debug)]
enum Hang {
    Spin,
    Sleep,
}

/// What the component measured of its own hang.
struct Measured {
    /// From just before `notify_activity` to just after `notify_wait`.
    outer: Duration,
    /// From just after `notify_activity` to just before `notify_wait`.
    inner: Duration,
}

/// A component thread pinned to `cpu` that hangs once for `HANG` inside
/// one activity, timed by its own clock.
fn hang_once(
    register: &hangwatch::Register,
    id: ComponentId,
    cpu: usize,
    how: Hang,
) -> std::thread::JoinHandle<Measured> {
    let register = register.clone();
    let (registered, is_registered) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("hw-starved-hung".into())
        .spawn(move || {
            pin(0, cpu);
            let handle = register
                .register_component(id, Timeouts::new(TRANSIENT, PERMANENT), None)
                .unwrap();
            registered.send(()).unwrap();
            let before = Instant::now();
            handle.notify_activity("hang beside a starved monitor");
            let started = Instant::now();
            match how {
                Hang::Spin => {
                    while started.elapsed() < HANG {
                        std::hint::spin_loop();
                    }
                }
                Hang::Sleep => {
                    while let Some(left) = HANG.checked_sub(started.elapsed()) {
                        std::thread::sleep(left);
                    }
                }
            }
            let stopped = Instant::now();
            handle.notify_wait();
            Measured {
                outer: before.elapsed(),
                inner: stopped - started,
            }
        })
        .unwrap();
    is_registered.recv().unwrap();
    thread
}

/// How late `alert` was raised after the deadline `timeout` after its start.
fn lateness(alert: &Alert, timeout: Duration) -> String {
    let due = alert.started_ns.unwrap() + timeout.as_nanos() as u64;
    let late = alert.raised_ns as i128 - due as i128;
    format!("{:.1} ms", late as f64 / 1e6)
}

fn starved_hang_is_reported_in_full(name: &str, hogs_are_processes: bool, how: Hang) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((monitor_cpu, component_cpu)) = two_cpus() else {
        return;
    };
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().thread_name(name).start().unwrap();
    let monitor_tid = thread_id_named(name);
    pin(monitor_tid as i32, monitor_cpu);
    // The lowest priority, so that three hogs starve it for real (raising
    // the hogs' priority instead would need privileges; this does not).
    // SAFETY: setpriority on a thread of this process.
    let niced = unsafe { libc::setpriority(libc::PRIO_PROCESS, monitor_tid, 19) };
    assert_eq!(
        niced,
        0,
        "nice the monitor: {}",
        std::io::Error::last_os_error()
    );

    let id = ComponentId::new("starved-neighbour", 1);
    let (hang, stats_before) = {
        let _hog_threads = (!hogs_are_processes).then(|| HogThreads::start(3, monitor_cpu));
        let _hog_processes = hogs_are_processes.then(|| HogProcesses::start(3, monitor_cpu));
        let stats_before = control.stats().unwrap();
        let hang = hang_once(&register, id.clone(), component_cpu, how);
        let measured = hang.join().unwrap();
        (measured, stats_before)
    };
    // The hogs are gone: the alerts come now if they have not yet.
    let transient = expect_hang_alert(&alerts, &id, AlertKind::Transient);
    let permanent = expect_hang_alert(&alerts, &id, AlertKind::Permanent);
    let ended = expect_hang_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
    let stats = control.stats().unwrap();
    println!(
        "{name}: component measured {:?} (inside the activity {:?}); ended alert says {:?}; \
         transient raised {} after its deadline (late flag {}), permanent {} (late flag {}, \
         stack {}, no_stack {:?}); starved looks {} ({:?} late in all) of {} looks, pauses {}",
        hang.outer,
        hang.inner,
        ended.duration,
        lateness(&transient, TRANSIENT),
        transient.late,
        lateness(&permanent, PERMANENT),
        permanent.late,
        permanent.stack.is_some(),
        permanent.no_stack,
        stats.starved_looks - stats_before.starved_looks,
        stats.starved.saturating_sub(stats_before.starved),
        stats.looks - stats_before.looks,
        stats.pauses,
    );
    assert_eq!(
        stats.pauses, 0,
        "a starved monitor recorded a pause: {stats:?}"
    );
    // Within 10% of what the component measured of its own activity.
    let slack = hang.outer / 10;
    assert!(
        ended.duration + slack >= hang.inner && ended.duration <= hang.outer + slack,
        "the hang was {:?}..{:?} by the component's clock, the ended alert says {:?}",
        hang.inner,
        hang.outer,
        ended.duration
    );
    assert!(
        transient.started_ns == ended.started_ns && permanent.started_ns == ended.started_ns,
        "the alerts are about one activity: {:?} {:?} {:?}",
        transient.started_ns,
        permanent.started_ns,
        ended.started_ns
    );
    // Nothing else was said about it.
    while let Ok(extra) = alerts.recv_timeout(ms(200)) {
        assert!(is_follow_up(&extra), "unexpected alert: {extra}");
    }
}

#[test]
fn a_hang_beside_a_monitor_starved_by_hog_threads_is_reported_in_full() {
    starved_hang_is_reported_in_full("hw-starved-thr", false, Hang::Spin);
}

#[test]
fn a_sleeping_hang_beside_a_monitor_starved_by_hog_processes_is_reported_in_full() {
    starved_hang_is_reported_in_full("hw-starved-proc", true, Hang::Sleep);
}
