//! A background hang monitor for programs built from event-loop threads.
//!
//! Each event loop registers itself as a *component* and says when it starts
//! handling an event ([`Handle::notify_activity`]) and when it goes back to
//! waiting ([`Handle::notify_wait`]). One monitor thread watches them all. A
//! component busy past its *transient* timeout raises a
//! [`Transient`](AlertKind::Transient) alert, past its *permanent* timeout a
//! [`Permanent`](AlertKind::Permanent) one, and when that activity is over an
//! [`Ended`](AlertKind::Ended) alert says how long the hang lasted.
//!
//! # A monitored crossbeam event loop
//!
//! ```
//! use std::time::Duration;
//! use crossbeam_channel::unbounded;
//! use hangwatch::{AlertKind, ComponentId, Monitor, Timeouts};
//!
//! let Monitor { register, alerts, control, thread, .. } = Monitor::builder().start()?;
//!
//! let (tasks, inbox) = unbounded::<Duration>();
//! let worker = std::thread::spawn(move || {
//!     let handle = register
//!         .register_component(
//!             ComponentId::new("worker", 1),
//!             Timeouts::new(Duration::from_millis(50), Duration::from_millis(500)),
//!             None, // no exit signal
//!         )
//!         .expect("valid timeouts and a fresh id");
//!     // The loop: wait for a task, then handle it under an activity guard,
//!     // which notifies activity now and wait when it is dropped.
//!     for task in inbox {
//!         let _busy = handle.activity("run task");
//!         std::thread::sleep(task);
//!     }
//! });
//!
//! tasks.send(Duration::from_millis(1))?;   // quick: no alert
//! tasks.send(Duration::from_millis(150))?; // slow: transient, then ended
//! drop(tasks);
//! worker.join().unwrap();
//!
//! let transient = alerts.recv()?;
//! assert_eq!(transient.kind, AlertKind::Transient);
//! assert_eq!(transient.annotation.as_deref(), Some("run task"));
//! let ended = alerts.recv()?;
//! assert!(matches!(ended.kind, AlertKind::Ended { .. }));
//! assert!(ended.duration >= Duration::from_millis(150));
//!
//! // The worker's handle was dropped with its thread, and the register with
//! // it, so the monitor has ended.
//! thread.join().unwrap();
//! assert!(control.stats().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the monitor guarantees
//!
//! - **One alert per level per activity.** An activity raises at most one
//!   `Transient` and one `Permanent` alert, in that order; a new
//!   `notify_activity` or a `notify_wait` starts afresh. A waiting component
//!   never raises an alert, and after [`Handle::unregister`] (or dropping the
//!   handle) nothing more is said about it.
//! - **Alerts on time.** The monitor sleeps until the exact deadline of the
//!   earliest busy component; it does not tick. It raises a transient alert
//!   within about a millisecond of the deadline on an idle machine.
//! - **A cheap hot path that never blocks.** A notification writes one atomic
//!   word in a cache line the component owns and reads the monitor's published
//!   schedule: no lock, no allocation, no queue and no system call, except one
//!   wake-up when the monitor planned to look too late (after a quiet period)
//!   or when a hang it reported ends. A component that notifies a billion
//!   times uses no more memory than one that notifies once.
//! - **No wake-ups while idle.** When every component waits, the monitor
//!   sleeps until one becomes active.
//! - **Exit signals exactly once.** [`Control::exit`] calls the exit signal of
//!   every registered component once and returns when all were called;
//!   a component that registers later, however its registration races with
//!   the exit, gets its signal as soon as the monitor sees it. A panicking
//!   signal is caught and reported. When every [`Register`] and [`Handle`] is
//!   dropped, the monitor ends without calling any.
//! - **Pauses are not hangs; starvation is.** Time the process could not
//!   run (SIGSTOP, a debugger, a suspended laptop, a VM not scheduled)
//!   counts toward no hang: a paused program never raises an alert it did
//!   not earn while running. But a monitor that merely waited for a CPU on a
//!   loaded machine looks late, not paused: the kernel's accounting of its
//!   thread tells the two apart, and the hangs it then finds keep their whole
//!   length, with every level they reached raised (marked
//!   [`late`](Alert::late)) and `Ended.worst` the highest one.
//! - **The monitor never waits.** Capturing a hung thread's stack,
//!   unwinding and symbolicating happen on threads the monitor owns; an
//!   alert waits for its stack at most
//!   [`Builder::symbolicate_deadline`] (5 ms by default; a later stack
//!   follows in a [`Stack`](AlertKind::Stack) alert), and raising it
//!   allocates nothing.
//! - **Stacks without harm.** A thread blocked in the kernel is read from
//!   outside, never signalled, so its system call is not interrupted; only
//!   a running thread copies its own stack in a signal handler, on an
//!   alternate signal stack big enough for it.
//! - **Normalize here, name anywhere.** Each frame carries its module's
//!   path, build id and offset, so it can be named in the process (mapped
//!   symbol files: [`Symbolication::InProcess`]), by a hub for all its
//!   children, or later with `hangwatch symbolicate`
//!   ([`Symbolication::Elsewhere`]); debug files are found beside a module,
//!   under `/usr/lib/debug`, and (feature `debuginfod`) from debuginfod
//!   servers by build id.
//! - **Busy is not blocked.** A component that runs many short jobs in one
//!   activity can give the monitor a progress probe
//!   ([`Handle::watch_progress`]); it is then hung only for a stretch
//!   without progress. The tokio integration reads tokio's own counters.
//! - **A thread that exits without unregistering is not a hang**
//!   (servo#22468): the monitor says so once with a
//!   [`ThreadExited`](AlertKind::ThreadExited) alert and stops watching it.
//! - **Bounded everything.** The alert channel is bounded and drops its
//!   oldest alert when nobody reads it; the monitor never blocks on it.
//! - **An off switch.** [`Builder::enabled`] and [`Control::set_enabled`]
//!   turn checks off: notifications then cost a load and a branch, while
//!   registration and exit signals keep working.
//!
//! # How this differs from Servo's background hang monitor
//!
//! The API follows Servo's: a cloneable register, a handle per component with
//! `notify_activity`, `notify_wait` and `unregister`, transient and permanent
//! timeouts, exit signals. Underneath:
//!
//! | | Servo | hangwatch |
//! |---|---|---|
//! | a notification | `Weak` upgrade and an unbounded channel send; a futex wake when the monitor sleeps | one atomic store and a load; no queue |
//! | monitor wake-ups | every 100 ms, also when idle | at deadlines only; none when idle |
//! | alerts | transient, permanent | transient, permanent, ended with duration, thread exited |
//! | stopped process | counted as hang time | not counted |
//! | exited thread with no unregister | reported as hung | reported once as exited |
//!
//! Run `hangwatch bench` for the figures side by side on your machine.
//!
//! # Integrations
//!
//! Cargo features, all off by default, fit hangwatch to what a program
//! already uses; see the `integrations` module for each one's API and
//! cost:
//!
//! - `crossbeam`: a loop over crossbeam-channel receivers is monitored by
//!   changing one line, `for msg in handle.event_loop(annotate).iter(&inbox)`.
//! - `tokio`: every worker thread of a multi-thread runtime is a component;
//!   a task that blocks its worker raises alerts naming the task.
//! - `tower`: a `tower::Layer` for axum, hyper and tonic that names every
//!   request's handler in alerts by its method and route, such as
//!   `GET /users/{id}`.
//! - `tracing`: every alert is also a `tracing` event.
//! - `metrics`: hang counters, durations and health figures through the
//!   `metrics` facade, for Prometheus and the like.
//!
//! Two more features are not integrations: `debuginfod` (debug files
//! fetched by build id, see [`Symbolication`]) and `test-util`, which is
//! **not API: for hangwatch's own tests and benches**. It exposes the
//! `test_util` module (the sampler, the unwinder and the module list, one
//! stage at a time, and the hooks that install process-wide signal
//! handlers), which follows no semver.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alert;
mod annotation;
mod builder;
mod cell;
mod clock;
mod component;
mod control;
mod doorbell;
mod error;
mod handle;
pub mod integrations;
mod messages;
mod monitor;
mod profile;
mod schedule;
mod stack;
mod stats;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use crate::alert::{Alert, AlertKind, HangLevel};
pub use crate::annotation::Annotation;
pub use crate::builder::{Builder, Monitor};
pub use crate::clock::monotonic_ns;
pub use crate::component::{ComponentId, ExitSignal, ProgressProbe, Timeouts};
pub use crate::control::Control;
pub use crate::error::{MonitorGone, ProfilingError, RegisterError, StartError};
pub use crate::handle::{ActivityGuard, Handle, Register};
pub use crate::monitor::ProfilingOptions;
pub use crate::profile::{Frames, HangMarker, Profile, ProfileSample, ProfiledThread};
pub use crate::stack::sampler::{SampleSignal, SamplerError};
pub use crate::stack::symbolize::{SymbolizeError, Symbolizer};
pub use crate::stack::{
    is_program_frame_name, CaptureMethod, Frame, NoStack, Stack, Symbolication,
};
pub use crate::stats::{ComponentState, ComponentStats, ExitReport, Stats};
