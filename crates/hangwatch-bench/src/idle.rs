//! Wake-ups of an idle monitor: 100 registered components, all waiting,
//! counted as context switches of the monitor's thread.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use hangwatch::{ComponentId, Monitor};

use crate::procfs::Thread;
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

/// Wake-ups per second of an idle hangwatch monitor and of the reference,
/// measured side by side over `window`.
pub fn wakeups_per_second(window: Duration) -> (f64, f64) {
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
                .register_component(ComponentId::new("idle", n), transient, permanent, None)
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

    // Let both settle after the start-up events.
    std::thread::sleep(Duration::from_millis(500));
    let our_thread = Thread::named("hw-bench-idle").expect("the monitor thread");
    let reference_thread = Thread::named("servo-ref-idle").expect("the reference thread");
    let before = (
        our_thread.context_switches(),
        reference_thread.context_switches(),
    );
    std::thread::sleep(window);
    let seconds = window.as_secs_f64();
    let result = (
        (our_thread.context_switches() - before.0) as f64 / seconds,
        (reference_thread.context_switches() - before.1) as f64 / seconds,
    );
    drop((ours, reference));
    servo.stop();
    result
}
