//! Snapshots the monitor hands out on request.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::HangLevel;
use crate::component::ComponentId;

/// The monitor's figures at one moment. See [`Control::stats`](crate::Control::stats).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Whether hang checks are on.
    pub enabled: bool,
    /// Whether [`Control::exit`](crate::Control::exit) has been called.
    pub exited: bool,
    /// Every registered component, in registration order.
    pub components: Vec<ComponentStats>,
    /// Alerts handed to the alert channel.
    pub alerts_sent: u64,
    /// Alerts dropped because nobody read the alert channel and it was full
    /// (the oldest alert goes first).
    pub alerts_dropped: u64,
    /// Components whose exit signal panicked; the panic was caught.
    pub exit_signal_panics: Vec<ComponentId>,
    /// Components whose thread exited without unregistering.
    pub threads_exited: u64,
    /// Times the monitor woke much later than it planned and judged the
    /// process to have been paused (see the crate docs on pauses).
    pub pauses: u64,
    /// The time those pauses covered, which no hang was charged for.
    pub paused: Duration,
    /// Times the monitor looked much later than it planned although the
    /// process could run: its thread waited for a CPU (a loaded machine), or
    /// was held up while the program ran. Hangs keep their whole length
    /// through these; many of them mean alerts arrive late.
    #[serde(default)]
    pub starved_looks: u64,
    /// How late those looks were, together.
    #[serde(default)]
    pub starved: Duration,
    /// Times the monitor has looked at its components.
    pub looks: u64,
    /// Stack samples taken (for hang alerts and for profiles).
    #[serde(default)]
    pub samples: u64,
}

/// One component's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ComponentStats {
    /// Which component.
    pub id: ComponentId,
    /// Its thread's name, if it has one.
    pub thread: Option<String>,
    /// Transient alerts raised for it.
    pub transient_alerts: u64,
    /// Permanent alerts raised for it.
    pub permanent_alerts: u64,
    /// Hangs of it that have ended.
    pub ended_hangs: u64,
    /// Its longest hang so far, ended or not.
    pub longest_hang: Duration,
    /// What it is doing now.
    pub state: ComponentState,
}

impl ComponentStats {
    /// The figures of component `id` in `state` that has raised no alert
    /// yet and has no thread name: for whoever builds stats outside a
    /// monitor (a hub's peer, a test), who then sets the public fields it
    /// knows.
    pub fn new(id: ComponentId, state: ComponentState) -> ComponentStats {
        ComponentStats {
            id,
            thread: None,
            transient_alerts: 0,
            permanent_alerts: 0,
            ended_hangs: 0,
            longest_hang: Duration::ZERO,
            state,
        }
    }
}

/// What a component is doing, as of the monitor's latest look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ComponentState {
    /// Waiting for its next event.
    Waiting,
    /// Handling an event, within its timeouts.
    Active {
        /// What it said it is doing.
        annotation: Cow<'static, str>,
        /// For how long (for a component whose progress the monitor reads,
        /// since its progress last moved).
        busy: Duration,
    },
    /// Handling an event, past a timeout.
    Hung {
        /// Which timeout it is past.
        level: HangLevel,
        /// What it said it is doing.
        annotation: Cow<'static, str>,
        /// For how long (for a component whose progress the monitor reads,
        /// since its progress last moved).
        busy: Duration,
    },
}

/// The monitor's answer to [`Control::exit`](crate::Control::exit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExitReport {
    /// Exit signals called by this request (a component registered without a
    /// signal, or signalled by an earlier request, is not counted).
    pub signalled: usize,
    /// Components whose exit signal panicked during this request.
    pub panicked: Vec<ComponentId>,
}
