//! The sending halves: [`Register`], shared by the program, and [`Handle`],
//! owned by one component's thread.
//!
//! A handle's notifications are the hot path. They write the component's cell
//! (`cell.rs`) and consult the monitor's published schedule (`schedule.rs`);
//! they never lock, allocate, or make a system call, except for one wake-up
//! when the monitor must look earlier than it planned, or when a hang the
//! monitor alerted on ends.
//!
//! A handle is not `Send`: it belongs to the thread that registered, which is
//! the thread whose hangs it reports. That thread's exit is noticed even if the
//! handle is leaked (servo#22468): a thread-local hook marks every cell the
//! thread registered as it exits, and wakes the monitor.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::annotation::{Annotation, LabelCache};
use crate::cell::{self, ActivityCell};
use crate::clock::Clock;
use crate::component::{ComponentId, ExitSignal, Timeouts};
use crate::doorbell::{Doorbell, RingingSender};
use crate::error::RegisterError;
use crate::messages::{Registration, RegistryMsg};
use crate::schedule::Schedule;
use crate::stack::sampler::{SampleTarget, ThreadLease};
use crate::stack::NoStack;

/// What registers and handles share. Its sender keeps the monitor running;
/// its doorbell wakes the monitor (see `doorbell.rs`).
pub(crate) struct Shared {
    pub(crate) registry: RingingSender<RegistryMsg>,
    pub(crate) schedule: Arc<Schedule>,
    /// Live ids, for the duplicate check. Taken by registering and
    /// unregistering threads only, never by the monitor.
    ids: Mutex<HashMap<ComponentId, (Weak<ActivityCell>, u64)>>,
    next_key: AtomicU64,
    /// Bytes of stack to preallocate per component; `None` when stacks are off.
    stack_bytes: Option<usize>,
}

impl Shared {
    pub(crate) fn new(
        registry: RingingSender<RegistryMsg>,
        schedule: Arc<Schedule>,
        stack_bytes: Option<usize>,
    ) -> Shared {
        Shared {
            registry,
            schedule,
            ids: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            stack_bytes,
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<ComponentId, (Weak<ActivityCell>, u64)>> {
        // The map stays consistent even if a holder panicked: every critical
        // section is a single insert or remove.
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Lets threads register themselves as monitored components.
///
/// Cheap to clone and `Send`: hand one to every part of the program that
/// starts event-loop threads. The monitor runs until every register and every
/// handle is dropped.
#[derive(Clone)]
pub struct Register {
    shared: Arc<Shared>,
}

impl Register {
    pub(crate) fn new(shared: Arc<Shared>) -> Register {
        Register { shared }
    }

    /// Registers the calling thread as the component `id`.
    ///
    /// The component raises a transient alert when one activity lasts longer
    /// than `timeouts.transient()`, and a permanent one past
    /// `timeouts.permanent()`. If the program
    /// calls [`Control::exit`](crate::Control::exit), `exit_signal` is called
    /// once, on the monitor's thread; if exit was already requested, it is
    /// called as soon as the monitor sees this registration.
    ///
    /// Registration never waits for the monitor.
    pub fn register_component(
        &self,
        id: ComponentId,
        timeouts: Timeouts,
        exit_signal: Option<ExitSignal>,
    ) -> Result<Handle, RegisterError> {
        self.register(id, timeouts.checked()?, exit_signal, Takeover::Refuse)
    }

    /// Registers the calling thread as the component `id`, as
    /// [`register_component`](Register::register_component) does, taking
    /// the id over from the thread that holds it, if any: that thread's
    /// component stops being watched (an activity of it under way is not
    /// reported), as if it had unregistered, and its handle says so
    /// ([`Handle::is_taken_over`]).
    ///
    /// For a role that moves from thread to thread, such as a tokio
    /// worker's, which `block_in_place` hands to a new thread while the old
    /// one blocks.
    pub fn take_over_component(
        &self,
        id: ComponentId,
        timeouts: Timeouts,
        exit_signal: Option<ExitSignal>,
    ) -> Result<Handle, RegisterError> {
        self.register(id, timeouts.checked()?, exit_signal, Takeover::Replace)
    }

    fn register(
        &self,
        id: ComponentId,
        timeouts: Timeouts,
        exit_signal: Option<ExitSignal>,
        takeover: Takeover,
    ) -> Result<Handle, RegisterError> {
        let transient = timeouts.transient();
        let cell = Arc::new(ActivityCell::default());
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        {
            let mut ids = self.shared.ids();
            let holder = ids
                .get(&id)
                .and_then(|(cell, key)| Some((cell.upgrade()?, *key)))
                .filter(|(other, _)| !other.is_retired());
            if let Some((other, other_key)) = holder {
                if takeover == Takeover::Refuse {
                    return Err(RegisterError::Duplicate(id));
                }
                // What the holder's own unregistering would do; its handle,
                // when it drops, finds the id no longer its own, and the
                // monitor no longer knows its key.
                other.unregistered.store(true, Ordering::Release);
                let _ = self
                    .shared
                    .registry
                    .send(RegistryMsg::Unregister { key: other_key });
            }
            ids.insert(id.clone(), (Arc::downgrade(&cell), key));
        }
        let mut registration = Registration {
            key,
            id: id.clone(),
            cell: cell.clone(),
            timeouts,
            exit_signal,
            thread: std::thread::current().name().map(str::to_owned),
            stack_target: None,
        };
        // Made here, on the component's own thread: it records this thread's
        // id and stack bounds, and makes sure the sampling handler fits on
        // its alternate signal stack (the lease gives it back on unregister).
        let mut stack_lease = None;
        registration.stack_target = self.shared.stack_bytes.map(|bytes| {
            SampleTarget::current_thread_leased(bytes)
                .map(|(target, lease)| {
                    stack_lease = Some(lease);
                    Arc::new(target)
                })
                .map_err(|error| NoStack::Disabled(error.to_string()))
        });
        if self
            .shared
            .registry
            .send(RegistryMsg::Register(registration))
            .is_err()
        {
            self.shared.ids().remove(&id);
            return Err(RegisterError::MonitorGone);
        }
        exit_hook::watch(&cell, self.shared.registry.doorbell());
        let clock = Clock::global();
        Ok(Handle {
            transient: clock.to_stamps(transient),
            clock,
            schedule: self.shared.schedule.clone(),
            cell,
            last_word: Cell::new(0),
            labels: LabelCache::default(),
            shared: self.shared.clone(),
            id,
            key,
            _stack_lease: stack_lease,
            _owned_by_its_thread: PhantomData,
        })
    }
}

/// Whether a registration may take an id over from the thread holding it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takeover {
    Refuse,
    Replace,
}

/// A component's link to the monitor, owned by the component's thread.
///
/// Call [`notify_activity`](Handle::notify_activity) when the component starts
/// handling an event and [`notify_wait`](Handle::notify_wait) when it goes back
/// to waiting, or hold an [`activity`](Handle::activity) guard while it works.
/// Dropping the handle unregisters the component.
pub struct Handle {
    // The hot path's fields come first.
    clock: &'static Clock,
    schedule: Arc<Schedule>,
    cell: Arc<ActivityCell>,
    transient: u64,
    last_word: Cell<u64>,
    labels: LabelCache,
    shared: Arc<Shared>,
    id: ComponentId,
    key: u64,
    /// The thread's side of its sample target, given back (on this thread)
    /// after the monitor is told of the unregistration.
    _stack_lease: Option<ThreadLease>,
    _owned_by_its_thread: PhantomData<*const ()>,
}

impl Handle {
    /// The component starts handling an event. This also ends the previous
    /// activity, if there was one.
    #[inline]
    pub fn notify_activity(&self, annotation: impl Into<Annotation>) {
        if !self.schedule.is_enabled() {
            return;
        }
        let label = self.labels.id_of(annotation.into());
        let now = self.clock.now();
        let word = cell::active_word(now, label);
        let last = self.last_word.replace(word);
        if self
            .schedule
            .publish_activity(&self.cell, last, word, now, self.transient)
        {
            self.wake_monitor();
        }
    }

    /// The component goes back to waiting for its next event.
    #[inline]
    pub fn notify_wait(&self) {
        let last = self.last_word.get();
        if !cell::is_active(last) {
            return;
        }
        self.last_word.set(cell::waiting_word(last));
        if self.cell.publish_wait(last, || self.clock.now()) {
            self.wake_monitor();
        }
    }

    /// Notifies activity now and wait when the guard is dropped.
    pub fn activity(&self, annotation: impl Into<Annotation>) -> ActivityGuard<'_> {
        self.notify_activity(annotation);
        ActivityGuard { handle: self }
    }

    /// Lets the monitor tell a busy component from a stuck one: `probe`
    /// returns how many pieces of work (a task's poll, a message) the
    /// component has completed since its current activity began.
    ///
    /// For a loop that runs many short jobs in one activity, without a
    /// notification between them (a scheduler that reports only when it
    /// sleeps and wakes): while the count keeps moving, the activity is busy,
    /// not hung, however long it lasts. A hang is then a stretch with no
    /// progress: it begins at the look that last saw the count move (or at
    /// the activity's start, if it never moved), and it ends at its
    /// activity's end or at the look that sees the count move again. While
    /// such a component is active the monitor looks at it ten times per
    /// transient timeout, so a hang's start and end are seen within a tenth
    /// of that timeout when it looks on time (later, if it waits for a CPU);
    /// a probe that counts work only in batches (tokio publishes its
    /// counters every 61 polls) moves in batches.
    ///
    /// `probe` runs on the monitor's thread at each look at the active
    /// component: a few atomic loads, never a lock or a wait. A later call
    /// replaces it.
    pub fn watch_progress(&self, probe: impl Fn() -> u64 + Send + 'static) {
        let _ = self.shared.registry.send(RegistryMsg::Progress {
            key: self.key,
            probe: Box::new(probe),
        });
    }

    /// Stops monitoring this component. Dropping the handle does the same.
    pub fn unregister(self) {}

    /// The id this component registered with.
    pub fn id(&self) -> &ComponentId {
        &self.id
    }

    /// Whether another thread took this component's id over
    /// ([`Register::take_over_component`]): the monitor no longer watches
    /// this handle's notifications.
    pub fn is_taken_over(&self) -> bool {
        self.cell.unregistered.load(Ordering::Acquire)
    }

    #[cold]
    fn wake_monitor(&self) {
        self.shared.registry.ring();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.cell.unregistered.store(true, Ordering::Release);
        {
            let mut ids = self.shared.ids();
            let ours = ids
                .get(&self.id)
                .is_some_and(|(cell, _)| std::ptr::eq(cell.as_ptr(), Arc::as_ptr(&self.cell)));
            if ours {
                ids.remove(&self.id);
            }
        }
        let _ = self
            .shared
            .registry
            .send(RegistryMsg::Unregister { key: self.key });
    }
}

/// Ends the activity it was made for when dropped. See [`Handle::activity`].
#[must_use = "the activity ends when the guard is dropped"]
pub struct ActivityGuard<'a> {
    handle: &'a Handle,
}

impl Drop for ActivityGuard<'_> {
    fn drop(&mut self) {
        self.handle.notify_wait();
    }
}

/// Marks a thread's cells when the thread exits.
mod exit_hook {
    use super::*;

    struct ExitHook {
        cells: RefCell<Vec<(Weak<ActivityCell>, Arc<Doorbell>)>>,
    }

    impl Drop for ExitHook {
        fn drop(&mut self) {
            for (cell, bell) in self.cells.get_mut().drain(..) {
                if let Some(cell) = cell.upgrade() {
                    cell.thread_exited.store(true, Ordering::Release);
                    bell.ring();
                }
            }
        }
    }

    thread_local! {
        static EXIT_HOOK: ExitHook = const { ExitHook { cells: RefCell::new(Vec::new()) } };
    }

    /// Marks `cell` when the calling thread exits.
    pub(super) fn watch(cell: &Arc<ActivityCell>, bell: &Arc<Doorbell>) {
        // A registration made while the thread's locals are being destroyed
        // goes unwatched; the handle's own drop still unregisters it.
        let _ = EXIT_HOOK.try_with(|hook| {
            let mut cells = hook.cells.borrow_mut();
            cells.retain(|(cell, _)| cell.strong_count() > 0);
            cells.push((Arc::downgrade(cell), bell.clone()));
        });
    }
}
