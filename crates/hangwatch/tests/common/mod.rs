//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;
use hangwatch::{
    Alert, AlertKind, ComponentId, ExitSignal, HangLevel, Register, RegisterError, Timeouts,
};
use hangwatch_test_support::eventually;

/// How long a test waits for something that should happen: long enough for a
/// loaded two-core machine.
pub const GENEROUS: Duration = Duration::from_secs(10);

/// What a [`Puppet`] does next.
pub enum Step {
    Activity(&'static str),
    Wait,
    /// Leaks the handle and lets the thread end, without unregistering.
    ForgetAndExit,
    /// Drops the handle and lets the thread end.
    Unregister,
}

/// A component thread driven step by step from the test. Between steps it
/// blocks on its command channel, so an activity it started stays under way
/// until the next step: a hang on demand.
pub struct Puppet {
    steps: mpsc::Sender<Step>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Puppet {
    pub fn spawn(
        register: &Register,
        id: ComponentId,
        transient: Duration,
        permanent: Duration,
        exit_signal: Option<ExitSignal>,
    ) -> Result<Puppet, RegisterError> {
        let (steps, inbox) = mpsc::channel();
        let (done_sender, done) = mpsc::channel();
        let (registered_sender, registered) = mpsc::channel();
        let register = register.clone();
        let name = format!("{}-{}", id.name, id.number);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let handle = match register.register_component(
                    id,
                    Timeouts::new(transient, permanent),
                    exit_signal,
                ) {
                    Ok(handle) => {
                        let _ = registered_sender.send(Ok(()));
                        handle
                    }
                    Err(error) => {
                        let _ = registered_sender.send(Err(error));
                        return;
                    }
                };
                for step in inbox {
                    match step {
                        Step::Activity(label) => handle.notify_activity(label),
                        Step::Wait => handle.notify_wait(),
                        Step::ForgetAndExit => {
                            std::mem::forget(handle);
                            let _ = done_sender.send(());
                            return;
                        }
                        Step::Unregister => {
                            handle.unregister();
                            let _ = done_sender.send(());
                            return;
                        }
                    }
                    let _ = done_sender.send(());
                }
            })
            .expect("spawn a component thread");
        registered.recv().expect("the component thread reports")?;
        Ok(Puppet {
            steps,
            done,
            thread: Some(thread),
        })
    }

    /// Does `step` and returns once the component has done it.
    pub fn step(&self, step: Step) {
        self.steps.send(step).expect("component thread alive");
        self.done.recv().expect("component thread acknowledges");
    }

    /// Waits for the component thread to end (after `ForgetAndExit` or `Unregister`).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("component thread ends cleanly");
        }
    }
}

impl Drop for Puppet {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop, dropping its handle.
        let (closed, _) = mpsc::channel();
        self.steps = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The next alert, or a panic naming what was expected.
pub fn next_alert(alerts: &Receiver<Alert>, expected: &str) -> Alert {
    alerts
        .recv_timeout(GENEROUS)
        .unwrap_or_else(|e| panic!("expected {expected} within {GENEROUS:?}: {e}"))
}

/// Asserts the next alert is of `kind` for `id`.
pub fn expect_alert(alerts: &Receiver<Alert>, id: &ComponentId, kind: AlertKind) -> Alert {
    let alert = next_alert(alerts, &format!("{kind:?} for {id}"));
    assert_eq!(
        (&alert.component, alert.kind),
        (id, kind),
        "unexpected alert: {alert}"
    );
    alert
}

/// Asserts the next two alerts are a transient hang of `id`: its
/// `Transient` alert, then its `Ended` with `worst` transient. Returns both.
pub fn expect_transient_hang(alerts: &Receiver<Alert>, id: &ComponentId) -> (Alert, Alert) {
    let transient = expect_alert(alerts, id, AlertKind::Transient);
    let ended = expect_alert(
        alerts,
        id,
        AlertKind::Ended {
            worst: HangLevel::Transient,
        },
    );
    (transient, ended)
}

/// Asserts that no alert arrives within `quiet`.
pub fn expect_silence(alerts: &Receiver<Alert>, quiet: Duration) {
    if let Ok(alert) = alerts.recv_timeout(quiet) {
        panic!("expected no alert, got: {alert}");
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The kernel's id of this process's thread named `name`, found by its
/// `/proc/self/task/*/comm` (a thread's name cut to 15 bytes), waiting up to
/// [`GENEROUS`] for the thread to have its name. Give the thread a name no
/// other thread of the test binary has.
#[cfg(target_os = "linux")]
pub fn thread_id_named(name: &str) -> u32 {
    let comm = &name.as_bytes()[..name.len().min(15)];
    let find = || {
        for task in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
            let Ok(task) = task else { continue };
            let Ok(found) = std::fs::read(task.path().join("comm")) else {
                continue;
            };
            if found.strip_suffix(b"\n").unwrap_or(&found) == comm {
                if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                    return Some(tid);
                }
            }
        }
        None
    };
    let awaited = format!("a thread named {name:?}");
    eventually(GENEROUS, &awaited, find, Option::is_some).expect("a thread was found")
}

/// Whether `alert` only completes an earlier one (its stack, which followed
/// it) rather than saying something new about a hang or a thread.
pub fn is_follow_up(alert: &Alert) -> bool {
    matches!(alert.kind, AlertKind::Stack { .. })
}

/// Like [`expect_alert`], skipping follow-ups ([`is_follow_up`]) on the way.
pub fn expect_hang_alert(alerts: &Receiver<Alert>, id: &ComponentId, kind: AlertKind) -> Alert {
    loop {
        let alert = next_alert(alerts, &format!("{kind:?} for {id}"));
        if is_follow_up(&alert) {
            continue;
        }
        assert_eq!(
            (&alert.component, alert.kind),
            (id, kind),
            "unexpected alert: {alert}"
        );
        return alert;
    }
}

/// The next alert that `wanted` accepts within [`GENEROUS`], skipping others
/// (a worker of a loaded machine may legitimately be reported busy now and
/// then).
pub fn next_matching(
    alerts: &Receiver<Alert>,
    what: &str,
    wanted: impl Fn(&Alert) -> bool,
) -> Alert {
    let deadline = std::time::Instant::now() + GENEROUS;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match alerts.recv_timeout(left) {
            Ok(alert) if wanted(&alert) => return alert,
            Ok(_) => continue,
            Err(error) => panic!("expected {what} within {GENEROUS:?}: {error}"),
        }
    }
}
