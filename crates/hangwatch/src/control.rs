//! The control side: exit, figures, and the off switch.

use std::sync::Arc;

use crossbeam_channel::{bounded, Sender};

use crate::doorbell::RingingSender;
use crate::error::{MonitorGone, ProfilingError};
use crate::messages::ControlMsg;
use crate::monitor::ProfilingOptions;
use crate::profile::Profile;
use crate::schedule::Schedule;
use crate::stats::{ExitReport, Stats};

/// Asks the monitor to act. Cheap to clone and `Send`.
///
/// A `Control` does not keep the monitor running: once every
/// [`Register`](crate::Register) and [`Handle`](crate::Handle) is dropped the
/// monitor ends, and requests return [`MonitorGone`].
#[derive(Clone)]
pub struct Control {
    sender: RingingSender<ControlMsg>,
    schedule: Arc<Schedule>,
}

impl Control {
    pub(crate) fn new(sender: RingingSender<ControlMsg>, schedule: Arc<Schedule>) -> Control {
        Control { sender, schedule }
    }

    /// Calls the exit signal of every registered component, and returns once
    /// they have all been called.
    ///
    /// Each signal is called exactly once over the monitor's life: components
    /// that register afterwards get theirs as soon as the monitor sees them,
    /// whichever way their registration races with this call. A signal that
    /// panics is caught, reported here and in [`Stats`], and the others are
    /// still called.
    pub fn exit(&self) -> Result<ExitReport, MonitorGone> {
        self.request(|reply| ControlMsg::Exit { reply })
    }

    /// A snapshot of the monitor's figures, taken right after it looks at
    /// every component.
    pub fn stats(&self) -> Result<Stats, MonitorGone> {
        self.request(|reply| ControlMsg::Stats { reply })
    }

    /// Turns hang checks on or off.
    ///
    /// Off, notifications return at once and the monitor raises no alerts,
    /// while registration and exit signals keep working. Turning checks back
    /// on takes effect when the monitor next runs (immediately, unless it is
    /// busy); an activity that was under way while checks were off is never
    /// reported.
    pub fn set_enabled(&self, enabled: bool) -> Result<(), MonitorGone> {
        if !enabled {
            // Handles stop writing now; the monitor stops checking when it
            // reads the message.
            self.schedule.set_enabled(false);
        }
        self.sender
            .send(ControlMsg::SetEnabled(enabled))
            .map_err(|_| MonitorGone)
    }

    /// Starts sampling every component's thread at `options.rate_hz`,
    /// keeping the latest `options.max_duration` of samples. Hang checks and
    /// alerts go on meanwhile. Threads that wait are not interrupted: their
    /// previous stack is repeated.
    pub fn start_profiling(&self, options: ProfilingOptions) -> Result<(), ProfilingError> {
        let valid = (1..=10_000).contains(&options.rate_hz)
            && !options.max_duration.is_zero()
            && options.stack_bytes > 0;
        if !valid {
            return Err(ProfilingError::InvalidOptions);
        }
        self.request(|reply| ControlMsg::StartProfiling { options, reply })?
    }

    /// Stops profiling and returns the profile, symbolicated (each distinct
    /// address once; this may take a moment the first time).
    pub fn stop_profiling(&self) -> Result<Profile, ProfilingError> {
        self.request(|reply| ControlMsg::StopProfiling { reply })?
    }

    /// Ends the monitor now, without calling exit signals, and waits until
    /// it has stopped looking. Handles stay valid: their notifications become
    /// no-ops, and registering returns
    /// [`RegisterError::MonitorGone`](crate::RegisterError::MonitorGone).
    pub fn shutdown(&self) -> Result<(), MonitorGone> {
        self.request(|reply| ControlMsg::Shutdown { reply })
    }

    fn request<T>(&self, message: impl FnOnce(Sender<T>) -> ControlMsg) -> Result<T, MonitorGone> {
        let (reply, answer) = bounded(1);
        self.sender.send(message(reply)).map_err(|_| MonitorGone)?;
        answer.recv().map_err(|_| MonitorGone)
    }
}
