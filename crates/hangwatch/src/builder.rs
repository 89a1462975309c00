//! Starting a monitor.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver};

use crate::alert::Alert;
use crate::clock::Clock;
use crate::control::Control;
use crate::error::StartError;
use crate::handle::{Register, Shared};
use crate::monitor::{self, AlertSink, Inbox, Settings};
use crate::schedule::Schedule;

/// A running monitor: the parts you hand out.
///
/// Destructure it: `let Monitor { register, alerts, control, thread } = ...`.
pub struct Monitor {
    /// Clone this to every thread that should register itself.
    pub register: Register,
    /// Alerts, in the order the monitor raised them. Bounded: if nobody
    /// reads, the oldest are dropped (and counted in [`Stats`](crate::Stats)).
    /// Once the monitor has ended and every alert is read, `recv` fails.
    pub alerts: Receiver<Alert>,
    /// Exit, figures, and the off switch.
    pub control: Control,
    /// The monitor's thread. It ends when every [`Register`] and
    /// [`Handle`](crate::Handle) is dropped.
    pub thread: JoinHandle<()>,
}

impl Monitor {
    /// A builder with the default settings.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

/// Settings for a monitor. [`Builder::start`] starts it.
#[derive(Clone, Debug)]
pub struct Builder {
    alert_capacity: usize,
    enabled: bool,
    pause_threshold: Duration,
    thread_name: String,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// The defaults: room for 1,024 unread alerts, checks on, a pause
    /// threshold of 100 ms, a thread named `hangwatch-monitor`.
    pub fn new() -> Builder {
        Builder {
            alert_capacity: 1024,
            enabled: true,
            pause_threshold: Duration::from_millis(100),
            thread_name: "hangwatch-monitor".to_owned(),
        }
    }

    /// How many unread alerts to keep before dropping the oldest.
    pub fn alert_capacity(mut self, capacity: usize) -> Builder {
        self.alert_capacity = capacity;
        self
    }

    /// Whether hang checks start on. Off, the monitor still registers
    /// components and delivers exit signals, and notifications cost a load and
    /// a branch; [`Control::set_enabled`] turns checks on later.
    pub fn enabled(mut self, enabled: bool) -> Builder {
        self.enabled = enabled;
        self
    }

    /// How much later than planned the monitor may look before it decides the
    /// process was paused, and charges no hang for the time it could not
    /// watch. See the crate docs on pauses.
    pub fn pause_threshold(mut self, threshold: Duration) -> Builder {
        self.pause_threshold = threshold;
        self
    }

    /// The name of the monitor's thread.
    pub fn thread_name(mut self, name: impl Into<String>) -> Builder {
        self.thread_name = name.into();
        self
    }

    /// Starts the monitor's thread.
    pub fn start(self) -> Result<Monitor, StartError> {
        if self.alert_capacity == 0 {
            return Err(StartError::ZeroAlertCapacity);
        }
        // Calibrate the clock here rather than on a component's first notify.
        Clock::global();
        let schedule = Arc::new(Schedule::new(self.enabled));
        let (registry_sender, registry) = unbounded();
        let (control_sender, control) = unbounded();
        let (wake_sender, wake) = bounded(1);
        let (alert_sender, alerts) = bounded(self.alert_capacity);
        let thread = monitor::spawn(
            Settings {
                enabled: self.enabled,
                pause_threshold: self.pause_threshold,
                thread_name: self.thread_name,
            },
            Inbox {
                registry,
                control,
                wake,
            },
            schedule.clone(),
            AlertSink::new(alert_sender, alerts.clone()),
        )
        .map_err(StartError::Spawn)?;
        Ok(Monitor {
            register: Register::new(Arc::new(Shared::new(
                registry_sender,
                wake_sender,
                schedule.clone(),
            ))),
            alerts,
            control: Control::new(control_sender, schedule),
            thread,
        })
    }
}
