//! Profiles: what profiling mode collected, as plain data.
//!
//! A [`Profile`] holds, for each component, the stacks its thread was
//! sampled in over the profiling window, and the hangs that happened during
//! it. Exporters (the `hangwatch-export` crate) turn it into a Firefox
//! Profiler profile, collapsed stacks or a flamegraph.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::alert::HangLevel;
use crate::component::ComponentId;
use crate::stack::Stack;

/// Samples of every monitored thread over one profiling window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// When the window began, by the wall clock.
    #[serde(with = "crate::alert::unix_millis")]
    pub start: SystemTime,
    /// How long it lasted.
    #[serde(with = "crate::alert::millis")]
    pub duration: Duration,
    /// The sampling interval asked for.
    #[serde(with = "crate::alert::millis")]
    pub interval: Duration,
    /// One entry per component that was registered during the window.
    pub threads: Vec<ProfiledThread>,
    /// Samples dropped: older ones that fell out of the ring buffer, and
    /// ones that could not be taken or processed in time.
    pub dropped_samples: u64,
}

/// One component's samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfiledThread {
    /// The component.
    pub component: ComponentId,
    /// Its thread's name, if it has one.
    pub thread: Option<String>,
    /// Its thread's OS id.
    pub tid: u32,
    /// Its samples, oldest first.
    pub samples: Vec<ProfileSample>,
    /// The hangs it had during the window.
    pub hangs: Vec<HangMarker>,
}

/// One sample of a thread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileSample {
    /// When it was taken, from the start of the window.
    #[serde(with = "crate::alert::millis")]
    pub time: Duration,
    /// Where the thread was, innermost frame first.
    pub stack: Stack,
}

/// A hang during the window, for markers on a timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HangMarker {
    /// When it started, from the start of the window (zero if before it).
    #[serde(with = "crate::alert::millis")]
    pub start: Duration,
    /// How long it lasted, or had lasted when the window closed.
    #[serde(with = "crate::alert::millis")]
    pub duration: Duration,
    /// The highest level it reached.
    pub level: HangLevel,
    /// What the component said it was doing.
    pub annotation: Option<String>,
    /// Whether it had ended when the window closed.
    pub ended: bool,
}
