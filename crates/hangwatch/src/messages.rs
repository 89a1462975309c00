//! Every message that crosses into the monitor's thread, in one place.
//!
//! The monitor keeps every receiving half; the rest of the program holds the
//! sending halves:
//!
//! | channel      | senders                         | bound     | carries                 |
//! |--------------|---------------------------------|-----------|-------------------------|
//! | registry     | every `Register` and `Handle`   | unbounded | [`RegistryMsg`]         |
//! | control      | every `Control`                 | unbounded | [`ControlMsg`]          |
//! | wake         | every `Handle`, thread-exit hook| 1         | `()`                    |
//! | stack jobs   | the monitor                     | 64        | [`StackJob`]            |
//! | stacks       | the stack workers               | unbounded | [`StackDone`]           |
//! | alerts (out) | the monitor                     | bounded   | [`Alert`](crate::Alert) |
//!
//! Notifications do not travel as messages at all: a component writes its
//! cell (see `cell.rs`) and sends on `wake` only when the monitor would
//! otherwise look too late. A full `wake` channel already holds the wake-up,
//! so a component never queues more than one, whatever it does.
//!
//! The monitor's lifetime is the registry channel's: it ends when every
//! `Register` and `Handle` is gone, or earlier on `ControlMsg::Shutdown`.
//! `Control` does not keep it alive.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::cell::ActivityCell;
use crate::component::{ComponentId, ExitSignal, Timeouts};
use crate::stack::sampler::SampleTarget;
use crate::stack::{NoStack, RawSample, Stack};
use crate::stats::{ExitReport, Stats};

/// From registers and handles.
pub(crate) enum RegistryMsg {
    /// A thread registered a component.
    Register(Registration),
    /// A component unregistered (or its handle was dropped).
    Unregister {
        /// The `Registration::key` of that component.
        key: u64,
    },
}

/// Everything the monitor needs to watch one component.
pub(crate) struct Registration {
    /// Unique for the monitor's lifetime; ids can be reused after unregistering.
    pub(crate) key: u64,
    pub(crate) id: ComponentId,
    pub(crate) cell: Arc<ActivityCell>,
    pub(crate) timeouts: Timeouts,
    pub(crate) exit_signal: Option<ExitSignal>,
    pub(crate) thread: Option<String>,
    /// How to sample the component's thread, made on that thread; `None`
    /// when stacks are off.
    pub(crate) stack_target: Option<Result<SampleTarget, NoStack>>,
}

/// From [`Control`](crate::Control).
pub(crate) enum ControlMsg {
    /// Call every exit signal, now and for every later registration.
    Exit { reply: Sender<ExitReport> },
    /// Send back a snapshot of the figures.
    Stats { reply: Sender<Stats> },
    /// Turn hang checks on or off.
    SetEnabled(bool),
    /// End the monitor now, without calling exit signals.
    Shutdown { reply: Sender<()> },
}

/// To a stack worker: a raw sample to unwind and symbolicate.
pub(crate) struct StackJob {
    /// Which held alert this is for.
    pub(crate) id: u64,
    pub(crate) sample: RawSample,
}

/// From a stack worker, on a receiver in the monitor's select. The stacks
/// channel is unbounded, but holds at most two results per job, and jobs
/// are bounded.
pub(crate) enum StackDone {
    /// Unwound, with raw addresses and module offsets: what the alert
    /// carries if symbolication misses its deadline.
    Unwound { id: u64, stack: Stack },
    /// Symbolicated.
    Symbolized { id: u64, stack: Stack },
}
