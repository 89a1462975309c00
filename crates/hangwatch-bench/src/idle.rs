//! Wake-ups of an idle monitor: 100 registered components, all waiting,
//! counted as context switches of the monitor's thread (voluntary and
//! involuntary, `/proc/self/task/*/status`), per second.
//!
//! Each component notifies one activity and its end, then waits. The same
//! is done, side by side, for the Servo-style reference and for vigil (see
//! [`crate::notify`] for how each reference is called and how it differs):
//!
//! - **vigil**: one `Vigil` per component (interval 50 ms, our transient
//!   timeout), each with its own watcher thread; the figure is the sum of
//!   the 100 watchers' wake-ups. A watcher wakes every interval whatever its
//!   component does (a waiting component is, to vigil, stalled).
//! - **nano-watchdog**: one watchdog thread per process, which never ends,
//!   so it is measured in a child process ([`crate::children`]): 100
//!   threads each track one task and drop its guard, then wait; the figure
//!   is the watchdog thread's wake-ups (check interval 50 ms).

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hangwatch::{ComponentId, Monitor, Timeouts};
use nano_watchdog::TaskTracker;
use vigil::Vigil;

use crate::notify::{nano_watchdog_config, VIGIL_INTERVAL_MS};
use crate::procfs::{threads_starting_with, Thread};
use crate::servo::ServoMonitor;

const COMPONENTS: u64 = 100;

/// Threads that each run a set-up, keep what it returns (a handle: not
/// `Send`, so it must stay on its thread) and wait until released.
pub struct Parked {
    release: Option<crossbeam_channel::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Parked {
    /// Starts `count` threads and waits until each has run `setup`.
    pub fn start(count: u64, setup: Arc<dyn Fn(u64) -> Box<dyn Any> + Send + Sync>) -> Parked {
        let (release, released) = crossbeam_channel::bounded::<()>(0);
        let (ready, readies) = crossbeam_channel::unbounded();
        let threads = (0..count)
            .map(|n| {
                let setup = setup.clone();
                let released = released.clone();
                let ready = ready.clone();
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let _kept = setup(n);
                        let _ = ready.send(());
                        // Returns when the sender is dropped.
                        let _ = released.recv();
                    })
                    .expect("spawn a component thread")
            })
            .collect();
        for _ in 0..count {
            readies.recv().expect("component set up");
        }
        Parked {
            release: Some(release),
            threads,
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.release.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Wake-ups per second; see [`crate::Report`] for each.
pub struct Wakeups {
    pub ours: f64,
    pub servo: f64,
    pub vigil: f64,
}

/// The name the vigil watchers inherit from the thread that creates them
/// (vigil does not name its threads; Linux gives a new thread its
/// creator's name).
const VIGIL_THREADS: &str = "vigil-ref-idle";

/// Wake-ups per second of an idle hangwatch monitor, of the Servo-style
/// reference and of vigil's watchers, measured side by side over `window`.
pub fn wakeups_per_second(window: Duration) -> Wakeups {
    let Monitor { register, .. } = Monitor::builder()
        .thread_name("hw-bench-idle")
        .start()
        .expect("start the monitor");
    let servo = ServoMonitor::start("servo-ref-idle");
    let (transient, permanent) = (Duration::from_millis(50), Duration::from_millis(500));

    let ours = Parked::start(
        COMPONENTS,
        Arc::new(move |n| {
            let handle = register
                .register_component(
                    ComponentId::new("idle", n),
                    Timeouts::new(transient, permanent),
                    None,
                )
                .expect("register");
            // One event each, then nothing.
            handle.notify_activity("startup");
            handle.notify_wait();
            Box::new(handle)
        }),
    );
    let servo_register = servo.register.clone();
    let reference = Parked::start(
        COMPONENTS,
        Arc::new(move |n| {
            let handle = servo_register.register(n, transient, permanent);
            handle.notify_activity("startup");
            handle.notify_wait();
            Box::new(handle)
        }),
    );

    let (vigils, watchers): (Vec<_>, Vec<_>) = std::thread::Builder::new()
        .name(VIGIL_THREADS.into())
        .spawn(|| {
            (0..COMPONENTS)
                .map(|_| {
                    let (vigil, watcher) = Vigil::create(VIGIL_INTERVAL_MS, None, None, None);
                    (Some(vigil), watcher)
                })
                .unzip()
        })
        .expect("spawn the vigils' creator")
        .join()
        .expect("the vigils' creator");
    let vigils = Arc::new(Mutex::new(vigils));
    let vigil_components = Parked::start(
        COMPONENTS,
        Arc::new(move |n| {
            let vigil = vigils.lock().unwrap_or_else(PoisonError::into_inner)[n as usize]
                .take()
                .expect("a vigil per component");
            vigil.notify();
            Box::new(vigil)
        }),
    );

    // Let all settle after the start-up events.
    std::thread::sleep(Duration::from_millis(500));
    let our_thread = Thread::named("hw-bench-idle").expect("the monitor thread");
    let reference_thread = Thread::named("servo-ref-idle").expect("the reference thread");
    let vigil_threads = threads_starting_with(VIGIL_THREADS);
    assert_eq!(
        vigil_threads.len() as u64,
        COMPONENTS,
        "the vigils' watchers"
    );
    let vigil_switches = || {
        vigil_threads
            .iter()
            .map(Thread::context_switches)
            .sum::<u64>()
    };
    let before = (
        our_thread.context_switches(),
        reference_thread.context_switches(),
        vigil_switches(),
    );
    std::thread::sleep(window);
    let seconds = window.as_secs_f64();
    let result = Wakeups {
        ours: (our_thread.context_switches() - before.0) as f64 / seconds,
        servo: (reference_thread.context_switches() - before.1) as f64 / seconds,
        vigil: (vigil_switches() - before.2) as f64 / seconds,
    };
    drop((ours, reference, vigil_components));
    servo.stop();
    for watcher in watchers {
        let _ = watcher.join();
    }
    result
}

/// Wake-ups per second of nano-watchdog's thread over `window`, 100 threads
/// having tracked one task each and waiting. Starts that thread, which
/// never ends: call it in a child process of its own (`crate::children`).
pub fn nano_watchdog_wakeups_per_second(window: Duration) -> Option<f64> {
    let tracker: &'static TaskTracker = Box::leak(Box::new(TaskTracker::new()));
    nano_watchdog::start_watchdog(tracker, nano_watchdog_config(), None);
    let components = Parked::start(
        COMPONENTS,
        Arc::new(move |_| {
            drop(tracker.track("startup"));
            Box::new(())
        }),
    );
    std::thread::sleep(Duration::from_millis(500));
    // nano-watchdog names its thread "watchdog".
    let thread = Thread::named("watchdog")?;
    let before = thread.context_switches();
    std::thread::sleep(window);
    let wakeups = (thread.context_switches() - before) as f64 / window.as_secs_f64();
    drop(components);
    Some(wakeups)
}
