//! Every message that crosses into the monitor's thread, in one place.
//!
//! The monitor keeps every receiving half; the rest of the program holds the
//! sending halves:
//!
//! | channel      | senders                         | bound     | carries                 |
//! |--------------|---------------------------------|-----------|-------------------------|
//! | registry     | every `Register` and `Handle`   | unbounded | [`RegistryMsg`]         |
//! | control      | every `Control`                 | unbounded | [`ControlMsg`]          |
//! | captures     | the monitor                     | 64 + 256  | [`CaptureJob`]          |
//! | stack jobs   | the monitor, the capture thread | 64 + 256  | [`StackJob`] (to symbolicate) |
//! | stacks       | the stack workers, the capture thread | unbounded | [`StackDone`]     |
//! | alerts (out) | the monitor                     | bounded   | [`Alert`](crate::Alert) |
//!
//! The monitor and the capture thread each sleep on one doorbell
//! (`doorbell.rs`), which every sender into their channels rings after it
//! sends (a profile's samples excepted: the monitor takes them at its next
//! tick). The monitor never waits on the way to an alert: it asks the
//! capture thread for a hung thread's stack (`try_send` into a bounded
//! queue), goes on, and takes the answer when it comes back on `stacks`.
//!
//! Notifications do not travel as messages at all: a component writes its
//! cell (see `cell.rs`) and rings the monitor's doorbell only when the
//! monitor would otherwise look too late. Rings fold into one, so a
//! component never queues anything, whatever it does.
//!
//! The monitor's lifetime is the registry channel's: it ends when every
//! `Register` and `Handle` is gone, or earlier on `ControlMsg::Shutdown`.
//! `Control` does not keep it alive.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::cell::ActivityCell;
use crate::component::{ComponentId, ExitSignal, ProgressProbe, Timeouts};
use crate::error::ProfilingError;
use crate::monitor::ProfilingOptions;
use crate::profile::Profile;
use crate::stack::sampler::SampleTarget;
use crate::stack::unwind::UnwoundStack;
use crate::stack::{Frame, NoStack, Stack};
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
    /// A component gave the monitor a way to see its progress.
    Progress {
        /// The `Registration::key` of that component.
        key: u64,
        probe: ProgressProbe,
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
    pub(crate) stack_target: Option<Result<Arc<SampleTarget>, NoStack>>,
}

/// From [`Control`](crate::Control).
pub(crate) enum ControlMsg {
    /// Call every exit signal, now and for every later registration.
    Exit { reply: Sender<ExitReport> },
    /// Send back a snapshot of the figures.
    Stats { reply: Sender<Stats> },
    /// Turn hang checks on or off.
    SetEnabled(bool),
    /// Start sampling every component's thread.
    StartProfiling {
        options: ProfilingOptions,
        reply: Sender<Result<(), ProfilingError>>,
    },
    /// Stop, and send back the profile once it is symbolicated.
    StopProfiling {
        reply: Sender<Result<Profile, ProfilingError>>,
    },
    /// End the monitor now, without calling exit signals.
    Shutdown { reply: Sender<()> },
}

/// To the capture thread: take a sample of `target`'s thread.
pub(crate) struct CaptureJob {
    /// Names the job in its answers.
    pub(crate) id: u64,
    pub(crate) target: Arc<SampleTarget>,
    /// The most bytes of stack to copy.
    pub(crate) max_bytes: usize,
}

/// To a stack worker.
pub(crate) struct StackJob {
    /// Names the job in its answers.
    pub(crate) id: u64,
    pub(crate) work: StackWork,
}

/// What a stack worker is asked to do: symbolicate. (Unwinding is done
/// where the sample is taken, on the capture thread, so that a slow
/// symbolication never holds up a profile's samples.)
pub(crate) enum StackWork {
    /// A hung thread's unwound stack: answer `Symbolized`.
    Hang(UnwoundStack),
    /// The distinct addresses of a finished profile: answer `Symbols`.
    Symbolize(Vec<u64>),
}

/// From a stack worker or the capture thread, to the monitor. The stacks
/// channel is unbounded, but holds at most two answers per job, and jobs
/// are bounded.
pub(crate) enum StackDone {
    /// Unwound, with raw addresses and module offsets (from the capture
    /// thread): what a hang alert carries if symbolication misses its
    /// deadline.
    Unwound { id: u64, stack: Stack },
    /// Symbolicated.
    Symbolized { id: u64, stack: Stack },
    /// A profile sample's lookup addresses, innermost first (from the
    /// capture thread).
    Walked {
        id: u64,
        addresses: Vec<u64>,
        truncated: bool,
    },
    /// The frames of each address of a `Symbolize` job, in its order.
    Symbols { id: u64, frames: Vec<Vec<Frame>> },
    /// A capture job that ended without a sample, or whose sample no worker
    /// could take.
    Missing { id: u64, reason: NoStack },
}
