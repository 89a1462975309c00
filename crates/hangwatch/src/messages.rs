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
