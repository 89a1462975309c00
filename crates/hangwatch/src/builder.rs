//! Starting a monitor.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver};

use crate::alert::Alert;
use crate::clock::Clock;
use crate::control::Control;
use crate::doorbell::{Doorbell, RingingSender};
use crate::error::StartError;
use crate::handle::{Register, Shared};
use crate::integrations;
use crate::monitor::{self, AlertSink, Inbox, Settings, Stacks};
use crate::schedule::Schedule;
use crate::stack::capture::Capturer;
use crate::stack::sampler::{SampleSignal, Sampler, DEFAULT_COPY_LIMIT};
use crate::stack::workers::StackWorkers;
use crate::stack::Symbolication;

/// A running monitor: the parts you hand out.
///
/// Destructure it: `let Monitor { register, alerts, control, thread, .. } = ...`
/// (`..`: more parts may come).
#[non_exhaustive]
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
    stacks: bool,
    stack_signal: SampleSignal,
    stack_bytes: usize,
    capture_timeout: Duration,
    symbolicate_deadline: Duration,
    stack_on_transient: bool,
    stack_workers: usize,
    warm_symbols: bool,
    /// `None`: from `HANGWATCH_SYMBOLICATION`, else in the process.
    symbolication: Option<Symbolication>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// The defaults: room for 1,024 unread alerts, checks on, a pause
    /// threshold of 100 ms, a thread named `hangwatch-monitor`; stacks on
    /// permanent alerts, sampled with `SIGRTMIN+5`, 256 KiB of stack copied,
    /// 50 ms for a running thread to answer, alerts held at most 5 ms for
    /// their stacks (which follow if they are later), one stack worker.
    pub fn new() -> Builder {
        Builder {
            alert_capacity: 1024,
            enabled: true,
            pause_threshold: Duration::from_millis(100),
            thread_name: "hangwatch-monitor".to_owned(),
            stacks: true,
            stack_signal: SampleSignal::default(),
            stack_bytes: DEFAULT_COPY_LIMIT,
            capture_timeout: Duration::from_millis(50),
            symbolicate_deadline: Duration::from_millis(5),
            stack_on_transient: false,
            stack_workers: 1,
            warm_symbols: false,
            symbolication: None,
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

    /// Whether alerts carry stacks of the hung thread (on by default). Off,
    /// no signal handler is installed and nothing is preallocated.
    pub fn stacks(mut self, on: bool) -> Builder {
        self.stacks = on;
        self
    }

    /// The real-time signal used to sample hung threads (`SIGRTMIN+5` by
    /// default). Starting fails if something else already handles it.
    pub fn stack_signal(mut self, signal: SampleSignal) -> Builder {
        self.stack_signal = signal;
        self
    }

    /// How many bytes of a hung thread's stack to copy (256 KiB by default).
    /// A deeper stack is reported truncated. Preallocated per component.
    pub fn stack_bytes(mut self, bytes: usize) -> Builder {
        self.stack_bytes = bytes;
        self
    }

    /// How long a running thread has to answer the sampling signal (50 ms by
    /// default): a thread that does not (it is stopped, or starved of CPU) is
    /// given up. The monitor itself never waits for it; a thread blocked in
    /// the kernel is read at once, without a signal.
    pub fn capture_timeout(mut self, timeout: Duration) -> Builder {
        self.capture_timeout = timeout;
        self
    }

    /// How long an alert that carries a stack may wait for it — capture,
    /// unwinding and symbolication together — before it is delivered anyway
    /// (5 ms by default): with the unwound stack (raw addresses and module
    /// offsets) if it got that far, else with
    /// [`NoStack::Follows`](crate::stack::NoStack::Follows); the
    /// symbolicated stack then follows in an
    /// [`AlertKind::Stack`](crate::AlertKind::Stack) alert. A warm stack
    /// takes well under a millisecond; the first one of a process, while its
    /// symbols load, can take hundreds (see
    /// [`warm_symbols`](Builder::warm_symbols)), and a loaded machine adds
    /// its scheduling delays. A longer wait puts more stacks on their alerts,
    /// at the price of later alerts. Alerts without a stack never wait.
    pub fn symbolicate_deadline(mut self, deadline: Duration) -> Builder {
        self.symbolicate_deadline = deadline;
        self
    }

    /// Whether transient alerts carry a stack too (off by default). Gecko's
    /// experience is that the stack at the start of a hang is often the most
    /// telling; it costs one more sample per hang.
    pub fn stack_on_transient(mut self, on: bool) -> Builder {
        self.stack_on_transient = on;
        self
    }

    /// Whether the stack workers read the program's symbols as soon as the
    /// monitor starts (off by default). The first hang's stack is then
    /// symbolicated as fast as later ones (microseconds rather than tens of
    /// milliseconds, or more for a large debug build), at the price of that
    /// work and memory up front, even if nothing ever hangs.
    pub fn warm_symbols(mut self, warm: bool) -> Builder {
        self.warm_symbols = warm;
        self
    }

    /// Who names the frames of stacks: this process
    /// ([`Symbolication::InProcess`]; functions only:
    /// [`Symbolication::FunctionNamesInProcess`]) or whoever receives the
    /// alerts ([`Symbolication::Elsewhere`]: a hub, `hangwatch
    /// symbolicate`). Elsewhere, alerts carry normalized frames (module
    /// path, build id, offset) and `warm_symbols` has nothing to warm.
    ///
    /// Unset, the environment variable `HANGWATCH_SYMBOLICATION`
    /// (`in_process`, `function_names_in_process` or `elsewhere`) decides,
    /// a deployment's setting (a hub sets it to `elsewhere` for the
    /// children it starts); without it, in the process.
    pub fn symbolication(mut self, symbolication: Symbolication) -> Builder {
        self.symbolication = Some(symbolication);
        self
    }

    /// How many threads unwind and symbolicate stacks (1 by default).
    pub fn stack_workers(mut self, workers: usize) -> Builder {
        self.stack_workers = workers;
        self
    }

    /// Starts the monitor's thread (and, with stacks on, installs the
    /// sampling signal's handler and starts the stack workers).
    pub fn start(self) -> Result<Monitor, StartError> {
        if self.alert_capacity == 0 {
            return Err(StartError::ZeroAlertCapacity);
        }
        if self.stacks && (self.stack_bytes == 0 || self.stack_workers == 0) {
            return Err(StartError::ZeroStackSetting);
        }
        let symbolication = match self.symbolication {
            Some(chosen) => chosen,
            None => Symbolication::from_env()?,
        };
        // Calibrate the clock here rather than on a component's first notify.
        Clock::global();
        let schedule = Arc::new(Schedule::new(self.enabled));
        // Everything the monitor receives rings its one doorbell.
        let bell = Doorbell::new();
        let (registry_sender, registry) = unbounded();
        let registry_sender = RingingSender::new(registry_sender, bell.clone());
        let (control_sender, control) = unbounded();
        let control_sender = RingingSender::new(control_sender, bell.clone());
        let (alert_sender, alerts) = bounded(self.alert_capacity);
        let (stacks_sender, stacks) = unbounded();
        let stacks_sender = RingingSender::new(stacks_sender, bell.clone());
        let stack_stages = if self.stacks {
            let sampler = Sampler::install(self.stack_signal).map_err(StartError::Sampler)?;
            let workers = StackWorkers::start(
                self.stack_workers,
                &stacks_sender,
                symbolication,
                self.warm_symbols,
            )
            .map_err(StartError::Spawn)?;
            let capturer = Capturer::start(
                sampler,
                self.capture_timeout,
                workers.clone(),
                stacks_sender.clone(),
            )
            .map_err(StartError::Spawn)?;
            let clock = Clock::global();
            let hold = clock.to_stamps(self.symbolicate_deadline);
            // A stack still not symbolicated a minute later is not coming.
            let follow_for = clock.to_stamps(Duration::from_secs(60));
            Some(Stacks::new(capturer, workers, hold, follow_for))
        } else {
            None
        };
        let thread = monitor::spawn(
            Settings {
                enabled: self.enabled,
                stack_on_transient: self.stack_on_transient,
                pause_threshold: self.pause_threshold,
                thread_name: self.thread_name,
            },
            Inbox {
                bell,
                registry,
                control,
                stacks,
            },
            schedule.clone(),
            AlertSink::new(alert_sender, alerts.clone()).observed_by(integrations::observers()),
            stack_stages,
        )
        .map_err(StartError::Spawn)?;
        Ok(Monitor {
            register: Register::new(Arc::new(Shared::new(
                registry_sender,
                schedule.clone(),
                self.stacks.then_some(self.stack_bytes),
            ))),
            alerts,
            control: Control::new(control_sender, schedule),
            thread,
        })
    }
}
