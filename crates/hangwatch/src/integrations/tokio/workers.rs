//! What each worker thread of a watched runtime keeps: its component's
//! handle, registered by the first hook that runs on it, and the
//! annotation of the activity under way.
//!
//! The slot is thread-local, so a hook costs a thread-local lookup and no
//! lock. A thread's slot is checked at each park and unpark: a thread that
//! now runs another worker, or whose worker another thread took over
//! (tokio's `block_in_place`), registers again, so the component always
//! follows the thread that runs the worker. Every access tries its borrow
//! and gives up rather than panic: a hook can run while the thread is being
//! torn down, or inside another access.

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use ::tokio::runtime::RuntimeFlavor;

use super::hand_off::HandOff;
use super::progress::Progress;
use super::{WorkerMonitor, KEPT_ERRORS, RUNNING_TASKS};
use crate::annotation::Annotation;
use crate::component::ComponentId;
use crate::handle::Handle;

/// What the calling thread is to us.
enum Slot {
    /// Not yet seen by a park hook.
    Unseen,
    /// A monitored worker (boxed: it is large, and made once per thread).
    Worker(Box<Worker>),
    /// Not a worker of a multi-thread runtime, a worker that could not
    /// register, or a worker that stopped.
    Unmonitored,
}

thread_local! {
    static WORKER: RefCell<Slot> = const { RefCell::new(Slot::Unseen) };
}

/// A monitored worker thread.
pub(super) struct Worker {
    handle: Handle,
    /// Its tokio worker index.
    index: usize,
    progress: Progress,
    /// The annotation of the activity under way, to go back to when a nested
    /// (instrumented) poll ends.
    current: Cell<Annotation>,
    /// Its entry in the runtimes to wake on a hang, while it lives.
    _hand_off: Option<HandOff>,
}

impl Worker {
    pub(super) fn park(&self) {
        self.current.set(RUNNING_TASKS);
        self.handle.notify_wait();
    }

    pub(super) fn unpark(&self) {
        self.set(RUNNING_TASKS);
    }

    /// A new activity, annotated `label`; returns the one it replaces.
    pub(super) fn set(&self, label: Annotation) -> Annotation {
        // Before the activity's word is stored: the monitor, reading that
        // word, reads this start or a later one.
        self.progress.start_activity();
        self.handle.notify_activity(label);
        self.current.replace(label)
    }
}

impl WorkerMonitor {
    /// Runs `f` on the calling thread's worker, registering the thread first
    /// if it was never seen, or if it now runs another worker than the one
    /// it registered as, or its worker was taken over by another thread
    /// (tokio's `block_in_place` hands a worker to a new thread, and a thread
    /// of the blocking pool may later be handed another worker).
    pub(super) fn with_worker(&self, f: impl FnOnce(&Worker)) {
        let _ = WORKER.try_with(|slot| {
            let stale = slot.try_borrow().is_ok_and(|slot| match &*slot {
                Slot::Unseen => true,
                Slot::Worker(worker) => {
                    worker.handle.is_taken_over()
                        || ::tokio::runtime::worker_index() != Some(worker.index)
                }
                Slot::Unmonitored => false,
            });
            if stale {
                let found = self.register_this_thread();
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    *slot = found;
                }
            }
            if let Ok(slot) = slot.try_borrow() {
                if let Slot::Worker(worker) = &*slot {
                    f(worker);
                }
            }
        });
    }

    fn register_this_thread(&self) -> Slot {
        // Park hooks run on workers only, within the runtime's context; a
        // current-thread runtime's "worker" is whichever thread calls
        // `block_on`, which is not ours to watch.
        let runtime = match ::tokio::runtime::Handle::try_current() {
            Ok(runtime) if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread => runtime,
            _ => return Slot::Unmonitored,
        };
        let Some(index) = ::tokio::runtime::worker_index() else {
            return Slot::Unmonitored;
        };
        let shared = &self.shared;
        let number = self.first_number(&runtime) + index as u64;
        let id = ComponentId::new(shared.name.clone(), number);
        // Taken over: the thread that held this worker before handed it on
        // (`block_in_place`) and is no longer the one to watch.
        match shared
            .register
            .take_over_component(id.clone(), shared.timeouts, None)
        {
            Ok(handle) => {
                shared.registered.fetch_add(1, Ordering::Relaxed);
                let progress = Progress::new(runtime.metrics(), index);
                handle.watch_progress(progress.probe());
                let hand_off = shared
                    .hand_off
                    .load(Ordering::Relaxed)
                    .then(|| HandOff::watch(id, runtime));
                Slot::Worker(Box::new(Worker {
                    handle,
                    index,
                    progress,
                    current: Cell::new(RUNNING_TASKS),
                    _hand_off: hand_off,
                }))
            }
            Err(error) => {
                let mut errors = shared.errors.lock().unwrap_or_else(PoisonError::into_inner);
                if errors.len() < KEPT_ERRORS {
                    errors.push(error);
                }
                Slot::Unmonitored
            }
        }
    }
}

/// Stops watching the calling thread, if it was a monitored worker.
pub(super) fn unwatch_this_thread() {
    let _ = WORKER.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            // Dropping the handle unregisters the component.
            *slot = Slot::Unmonitored;
        }
    });
}

/// Runs `f` on the calling thread's worker, if it is a monitored one.
pub(super) fn with_registered_worker<R>(f: impl FnOnce(&Worker) -> R) -> Option<R> {
    WORKER
        .try_with(|slot| match &*slot.try_borrow().ok()? {
            Slot::Worker(worker) => Some(f(worker)),
            _ => None,
        })
        .ok()
        .flatten()
}
