//! The scenario harness of the `hangwatch` command: child processes with
//! planned hangs under a hub, watched, measured and checked against their
//! plans. `hangwatch demo` and `hangwatch soak` are its two scenarios; the
//! command only parses their arguments, calls [`demo::run`],
//! [`soak::run`] or [`run_child`], and prints what they give back.
//!
//! The crate's shape, one piece per file:
//!
//! - `plan.rs`: the children's script ([`Script`], [`Mode`]): which hangs
//!   each child injects, where, for how long, under which [`Timeouts`](hangwatch::Timeouts);
//!   the hub and the child compute the same plan from it.
//! - `child.rs`: a child process: four event loops under one monitor,
//!   reporting to the hub, injecting its plan's hangs.
//! - `lines.rs`: the child protocol beside the hub's channel, one line per
//!   message on the child's stdout; and starting a child with its reader.
//! - `check.rs`: matching alerts to injected hangs ([`Outcome`]).
//! - `driver.rs`: the one orchestration loop both scenarios run (events
//!   stamped as they reach the hub, profiling windows, exit with
//!   confirmation, waiting for the children to leave, their last lines),
//!   with what each scenario adds behind a small trait.
//! - `demo/`: the demo (its live view, its Prometheus endpoint, its files).
//! - `soak/`: the soak (its fleet of killed and restarted children, its
//!   figures).
//! - `procfs.rs`: a process's memory, from `/proc`.
//! - `error.rs`: why a scenario or a child could not run.

mod check;
mod child;
pub mod demo;
mod driver;
mod error;
mod lines;
mod plan;
mod procfs;
pub mod soak;

pub use crate::check::{Detection, Outcome};
pub use crate::child::run as run_child;
pub use crate::error::{ChildError, ScenarioError};
pub use crate::plan::{Mode, Script};
