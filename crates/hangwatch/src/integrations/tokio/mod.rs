//! Tokio worker threads as monitored components (feature `tokio`).
//!
//! A tokio worker is an event loop like any other: it runs tasks until it has
//! none left, then parks. A task that blocks its worker — `std::thread::sleep`,
//! a blocking lock, a CPU loop, synchronous I/O — keeps the worker from
//! parking and from running every other task queued on it. With a
//! [`WorkerMonitor`] installed on the runtime's builder, each worker thread
//! registers itself as a component (`name#0`, `name#1`, …, numbered by
//! tokio's worker index) and reports its
//! activity, so such a task raises the usual alerts; the permanent alert
//! carries the worker's stack, which points at the blocking call, and the
//! annotation names the task when it is known.
//!
//! ```
//! use std::time::Duration;
//! use hangwatch::integrations::tokio::{spawn_named, BuilderExt, WorkerMonitor};
//! use hangwatch::{AlertKind, Monitor, Timeouts};
//!
//! let Monitor { register, alerts, .. } = Monitor::builder().stacks(false).start()?;
//! let workers = WorkerMonitor::new(
//!     &register,
//!     "tokio-worker",
//!     Timeouts::new(Duration::from_millis(50), Duration::from_secs(1)),
//! )?;
//! // The one line: `.watch_workers(&workers)` on the runtime's builder.
//! let runtime = tokio::runtime::Builder::new_multi_thread()
//!     .worker_threads(2)
//!     .enable_all()
//!     .watch_workers(&workers)
//!     .build()?;
//! # // Workers register when they first park (see "What each option catches").
//! # while workers.registered() < 2 { std::thread::sleep(Duration::from_millis(1)); }
//!
//! runtime.block_on(async {
//!     // A task that blocks its worker for 150 ms.
//!     spawn_named("resize images", async {
//!         std::thread::sleep(Duration::from_millis(150));
//!     })
//!     .await
//! })?;
//!
//! let alert = alerts.recv()?;
//! assert_eq!(alert.kind, AlertKind::Transient);
//! assert_eq!(alert.annotation.as_deref(), Some("resize images"));
//! assert!(alert.component.name == "tokio-worker");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What each option catches, and what it costs
//!
//! **Worker hooks** ([`WorkerMonitor::install`], stable tokio). The runtime's
//! `on_thread_park` and `on_thread_unpark` hooks notify wait and activity:
//! a worker is active from the moment it wakes until it parks again. The
//! monitor also reads the worker's progress from tokio's own per-worker
//! counters (its published busy time and parks, see
//! [`Handle::watch_progress`](crate::Handle::watch_progress)): a worker that keeps finishing polls is busy,
//! not hung, however long it goes without parking.
//!
//! - *Catches* a poll that does not return for longer than the timeout, in
//!   any task, instrumented or not: blocking calls and CPU loops alike. The
//!   permanent alert's stack shows the blocking call; the annotation is
//!   [`RUNNING_TASKS`], since the hooks do not know which task runs. The
//!   hang is timed from the worker's wake-up if it made no progress since,
//!   else from the look that last saw its counters move: tokio publishes
//!   them every 61 polls (its `event_interval`) and at each park, and the
//!   monitor looks at an active worker ten times per transient timeout, so
//!   on a busy worker a hang's start and end are known within a tenth of the
//!   transient timeout (plus up to 60 short polls) while the monitor looks
//!   on time; a monitor kept waiting for a CPU sees them later. A worker whose polls
//!   each take longer than a 61st of the timeout publishes too seldom to
//!   look busy: instrument those tasks (below), or give the builder a
//!   shorter `event_interval` (which also makes tokio poll its I/O driver
//!   more often).
//! - Workers register when they first park or wake (the hooks are the only
//!   way to tell a worker from a blocking-pool thread), so a task that
//!   blocks a worker before its first park — at start-up, before the
//!   runtime was ever idle — is not seen.
//! - `tokio::task::block_in_place` hands the worker to another thread while
//!   the calling thread blocks. The worker's counters go on moving on that
//!   thread, so the caller is not reported while it blocks, and when the
//!   new thread first parks or wakes it takes the worker's component over:
//!   the caller stops being watched, whether it becomes a worker again or
//!   goes to the blocking pool. (If the new thread is itself stuck before
//!   its first park, the hang is reported against the caller.)
//! - *Costs* one notification per park and one per unpark (a thread-local
//!   lookup, two relaxed loads of the worker's counters and a few
//!   nanoseconds), nothing per task; on the monitor's thread, ten looks per
//!   transient timeout while a worker is active. Workers park only when they
//!   run out of work, so a busy runtime pays less, not more.
//!
//! **Instrumented tasks** ([`spawn`], [`spawn_named`], [`instrument`],
//! [`instrument_named`]). Each poll of the wrapped future is an activity
//! annotated with the task's name or spawn location (`file:line:column`, from
//! `#[track_caller]`); when the poll returns, the worker's activity goes back
//! to [`RUNNING_TASKS`] with its clock restarted.
//!
//! - *Catches* a poll of that task that blocks, and names the task in the
//!   alert, timed exactly from the poll's start. For servers, the `tower`
//!   integration's layer does this for every request, with its method and
//!   route.
//! - *Costs* per poll a thread-local lookup and two notifications (tens of
//!   nanoseconds); per [`spawn`]/[`instrument`] one thread-local hash lookup
//!   of the spawn location (the first time a thread sees a location, a global
//!   lock, and once per location in the program, one small string that is
//!   never freed). On a thread that is not a monitored worker the wrapper
//!   does nothing but the lookup.
//!
//! **Poll hooks** (with `RUSTFLAGS="--cfg tokio_unstable"`). Tokio's unstable
//! `on_before_task_poll` and `on_after_task_poll` hooks, which
//! [`WorkerMonitor::install`] adds when they are available, make every poll of
//! every task an activity annotated with the task's spawn location
//! (`TaskMeta::spawned_at`).
//!
//! - *Catches* every task without touching a spawn call, including tasks
//!   spawned by libraries (for a server, that is usually the library's spawn
//!   site for each connection: wrap your handler with [`instrument_named`] to
//!   name it), each poll timed exactly.
//! - *Costs* per poll of every task a thread-local hash lookup and two
//!   notifications, and an unstable tokio API that may change in a 1.x
//!   release; the whole program must be built with `--cfg tokio_unstable`.
//!
//! # When one blocked worker stalls the whole runtime
//!
//! Tokio polls its I/O and timer driver from whichever worker parked on it
//! last; the other idle workers sleep until someone hands them a task. When
//! the worker that held the driver wakes with a single task to run and that
//! task blocks, nobody polls the driver any more: no socket is read, no
//! timer fires, and requests that other workers could serve wait for the
//! blocked one (tokio's unstable `enable_eager_driver_handoff` exists for
//! this). So the moment the monitor raises a transient alert for a
//! monitored worker, it also spawns an empty task on that worker's runtime,
//! which wakes an idle worker; that worker runs it, parks again, and takes
//! the driver over. The monitor does this when it decides the alert, before
//! it asks for the worker's stack: the alert itself may wait for that stack
//! up to [`Builder::symbolicate_deadline`](crate::Builder::symbolicate_deadline)
//! before it is delivered, and the runtime does not wait with it. A
//! blocking task then costs the rest of the runtime at most the transient
//! timeout (and however late the monitor looks), not the whole hang, for
//! the price of one task spawned from the monitor's thread per transient
//! alert of a worker.
//! [`WorkerMonitor::hand_off_on_hang`] turns this off.
//!
//! A runtime made by `#[tokio::main]` cannot be given hooks: write `main`
//! with [`WorkerMonitor::block_on`] instead (see there), two lines.
//!
//! Only multi-thread runtimes are watched: a current-thread runtime runs on
//! the thread that calls `block_on`, which goes on with other work when
//! `block_on` returns, so register that thread yourself.
//!
//! If the runtime already has park, unpark or stop hooks of its own (tokio
//! keeps one of each), call [`WorkerMonitor::on_thread_park`],
//! [`WorkerMonitor::on_thread_unpark`] and [`WorkerMonitor::on_thread_stop`]
//! from them instead of calling `install`.
//!
//! # Layout
//!
//! This file holds [`WorkerMonitor`], what a runtime is given; `workers.rs`
//! what each worker thread keeps (its component, registered by its first
//! hook); `progress.rs` how tokio's counters show a worker's progress;
//! `hand_off.rs` the runtimes to wake on a hang, and the monitor's observer
//! that wakes them; `instrumented.rs` the instrumented futures and spawns.

mod hand_off;
mod instrumented;
mod progress;
mod workers;

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ::tokio::runtime::Builder;

pub(crate) use self::hand_off::DriverHandOff;
pub use self::instrumented::{instrument, instrument_named, spawn, spawn_named, Instrumented};
use self::workers::Worker;
use crate::annotation::Annotation;
use crate::component::Timeouts;
use crate::error::RegisterError;
use crate::handle::Register;

/// The annotation of a worker's activity while it runs tasks that are not
/// instrumented.
pub const RUNNING_TASKS: Annotation = Annotation::new("tokio worker: running tasks");

/// How many registration errors a [`WorkerMonitor`] keeps.
const KEPT_ERRORS: usize = 16;

/// Registers a runtime's worker threads as components and reports their
/// activity. Cheap to clone; every clone shares the worker numbering.
///
/// See the [module docs](self) for what it catches and costs.
#[derive(Clone)]
pub struct WorkerMonitor {
    shared: Arc<Shared>,
}

struct Shared {
    register: Register,
    name: Cow<'static, str>,
    timeouts: Timeouts,
    /// The first component number of each runtime's workers: 0 for the
    /// first runtime seen, then after the previous runtime's workers.
    runtimes: Mutex<Vec<SeenRuntime>>,
    registered: AtomicU64,
    errors: Mutex<Vec<RegisterError>>,
    hand_off: AtomicBool,
}

impl WorkerMonitor {
    /// Worker threads will register with `register` as components named
    /// `name`, numbered by their tokio worker index
    /// ([`tokio::runtime::worker_index`], from 0, as in tokio's
    /// `RuntimeMetrics`), with these timeouts.
    ///
    /// Fails if the timeouts are invalid (see
    /// [`Register::register_component`]). Give each runtime its own name, or
    /// share one `WorkerMonitor` between runtimes (the second runtime's
    /// workers are numbered after the first's): two monitors with the same
    /// name would register the same ids, and each worker would take its id
    /// over from the other's.
    pub fn new(
        register: &Register,
        name: impl Into<Cow<'static, str>>,
        timeouts: Timeouts,
    ) -> Result<WorkerMonitor, RegisterError> {
        Ok(WorkerMonitor {
            shared: Arc::new(Shared {
                register: register.clone(),
                name: name.into(),
                timeouts: timeouts.checked()?,
                runtimes: Mutex::new(Vec::new()),
                registered: AtomicU64::new(0),
                errors: Mutex::new(Vec::new()),
                hand_off: AtomicBool::new(true),
            }),
        })
    }

    /// Whether a transient alert of one of these workers wakes an idle
    /// worker of its runtime to take over the I/O and timer driver (on by
    /// default; see the [module docs](self)). Applies to workers that
    /// register afterwards.
    pub fn hand_off_on_hang(self, on: bool) -> WorkerMonitor {
        self.shared.hand_off.store(on, Ordering::Relaxed);
        self
    }

    /// Installs the hooks on `builder`: `on_thread_park`, `on_thread_unpark`
    /// and `on_thread_stop`, and with `--cfg tokio_unstable` also
    /// `on_before_task_poll` and `on_after_task_poll`. Each replaces a hook
    /// of the same kind set earlier.
    pub fn install<'b>(&self, builder: &'b mut Builder) -> &'b mut Builder {
        let park = self.clone();
        let unpark = self.clone();
        builder
            .on_thread_park(move || park.on_thread_park())
            .on_thread_unpark(move || unpark.on_thread_unpark())
            .on_thread_stop(WorkerMonitor::on_thread_stop);
        #[cfg(tokio_unstable)]
        builder
            .on_before_task_poll(WorkerMonitor::on_before_task_poll)
            .on_after_task_poll(WorkerMonitor::on_after_task_poll);
        builder
    }

    /// What the park hook does: the worker goes back to waiting. The first
    /// call on a worker thread registers it.
    pub fn on_thread_park(&self) {
        self.with_worker(Worker::park);
    }

    /// What the unpark hook does: the worker becomes active.
    pub fn on_thread_unpark(&self) {
        self.with_worker(Worker::unpark);
    }

    /// What the stop hook does: unregisters the calling thread, if it was a
    /// monitored worker.
    pub fn on_thread_stop() {
        workers::unwatch_this_thread();
    }

    /// What the before-poll hook does (`--cfg tokio_unstable`): the poll is
    /// an activity annotated with the task's spawn location.
    #[cfg(tokio_unstable)]
    pub fn on_before_task_poll(meta: &::tokio::runtime::TaskMeta<'_>) {
        let spawned_at = meta.spawned_at();
        workers::with_registered_worker(|worker| {
            worker.set(instrumented::location_label(spawned_at))
        });
    }

    /// What the after-poll hook does (`--cfg tokio_unstable`): the worker's
    /// activity goes back to [`RUNNING_TASKS`].
    #[cfg(tokio_unstable)]
    pub fn on_after_task_poll(_meta: &::tokio::runtime::TaskMeta<'_>) {
        workers::with_registered_worker(|worker| worker.set(RUNNING_TASKS));
    }

    /// How many times worker threads have registered so far (a worker
    /// registers again on the thread that takes it over after tokio's
    /// `block_in_place`).
    pub fn registered(&self) -> u64 {
        self.shared.registered.load(Ordering::Relaxed)
    }

    /// Runs `future` to completion on a new multi-thread runtime whose
    /// workers these are (tokio's defaults, every driver enabled): what
    /// `#[tokio::main]` does, with the workers watched. `#[tokio::main]`
    /// builds its runtime where no hook can be added, so write `main` as
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use hangwatch::{integrations::tokio::WorkerMonitor, Monitor, Timeouts};
    /// # async fn serve() {}
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let Monitor { register, .. } = Monitor::builder().start()?;
    ///     let timeouts = Timeouts::new(Duration::from_millis(100), Duration::from_secs(1));
    ///     let workers = WorkerMonitor::new(&register, "tokio-worker", timeouts)?;
    ///     workers.block_on(serve())?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// Fails where tokio's `Builder::build` does.
    pub fn block_on<F: Future>(&self, future: F) -> std::io::Result<F::Output> {
        let runtime = Builder::new_multi_thread()
            .enable_all()
            .watch_workers(self)
            .build()?;
        Ok(runtime.block_on(future))
    }

    /// The errors met registering workers (at most the first 16). A worker
    /// that failed to register goes unmonitored.
    pub fn registration_errors(&self) -> Vec<RegisterError> {
        self.shared
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl WorkerMonitor {
    /// The component number of worker 0 of `runtime`.
    fn first_number(&self, runtime: &::tokio::runtime::Handle) -> u64 {
        let mut runtimes = self
            .shared
            .runtimes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = runtime.id();
        if let Some(seen) = runtimes.iter().find(|seen| seen.id == id) {
            return seen.first;
        }
        let first = runtimes.last().map_or(0, |last| last.first + last.workers);
        runtimes.push(SeenRuntime {
            id,
            first,
            workers: runtime.metrics().num_workers() as u64,
        });
        first
    }
}

/// A runtime whose workers registered, and the numbers they took.
struct SeenRuntime {
    id: ::tokio::runtime::Id,
    first: u64,
    workers: u64,
}

impl std::fmt::Debug for WorkerMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMonitor")
            .field("name", &self.shared.name)
            .field("timeouts", &self.shared.timeouts)
            .field("registered", &self.registered())
            .finish()
    }
}

/// Adds [`watch_workers`](BuilderExt::watch_workers) to tokio's runtime
/// builder.
pub trait BuilderExt {
    /// Installs `workers`' hooks: see [`WorkerMonitor::install`].
    fn watch_workers(&mut self, workers: &WorkerMonitor) -> &mut Self;
}

impl BuilderExt for Builder {
    fn watch_workers(&mut self, workers: &WorkerMonitor) -> &mut Self {
        workers.install(self)
    }
}
