//! Errors, each with a message that says what to do about it.

use std::time::Duration;

use crate::component::ComponentId;

/// Why a monitor could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The alert channel needs room for at least one alert.
    #[error("alert capacity must be at least 1; use Builder::alert_capacity(n) with n > 0")]
    ZeroAlertCapacity,
    /// The operating system refused to start the monitor's thread or a
    /// stack worker.
    #[error("could not start a hangwatch thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A stack setting of zero.
    #[error(
        "stack_bytes and stack_workers must be at least 1; to go without stacks use \
         Builder::stacks(false)"
    )]
    ZeroStackSetting,
    /// The sampling signal could not be set up.
    #[error("cannot sample hung threads: {0}")]
    Sampler(#[source] crate::stack::sampler::SamplerError),
    /// `HANGWATCH_SYMBOLICATION` holds none of `in_process`,
    /// `function_names_in_process` and `elsewhere`.
    #[error(
        "HANGWATCH_SYMBOLICATION is {0:?}: set it to in_process, function_names_in_process or \
         elsewhere, or unset it (Builder::symbolication overrides it)"
    )]
    SymbolicationEnv(String),
}

/// Why a component could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A timeout of zero would raise an alert for every activity.
    #[error("hang timeouts must be longer than zero")]
    ZeroTimeout,
    /// The permanent timeout must come after the transient one.
    #[error(
        "the permanent timeout ({permanent:?}) must be longer than the transient timeout \
         ({transient:?})"
    )]
    PermanentNotLonger {
        /// The transient timeout given.
        transient: Duration,
        /// The permanent timeout given.
        permanent: Duration,
    },
    /// Another live component already uses this id.
    #[error(
        "component {0} is already registered; give each component a distinct (name, number), \
         or unregister the other one first"
    )]
    Duplicate(ComponentId),
    /// The monitor thread is no longer running.
    #[error("the hang monitor is no longer running")]
    MonitorGone,
}

/// The monitor thread is no longer running, so it cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the hang monitor is no longer running (every register and handle was dropped, or it failed)"
)]
pub struct MonitorGone;

/// Why profiling could not start or stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfilingError {
    /// The monitor thread is no longer running.
    #[error(transparent)]
    MonitorGone(#[from] MonitorGone),
    /// Profiling samples threads, which needs stacks.
    #[error("profiling needs stack sampling; start the monitor with Builder::stacks(true)")]
    StacksOff,
    /// A profiling window is already open.
    #[error("profiling is already on; call stop_profiling first")]
    AlreadyProfiling,
    /// No profiling window is open.
    #[error("profiling is not on; call start_profiling first")]
    NotProfiling,
    /// A setting out of range.
    #[error(
        "invalid profiling options: rate_hz must be 1 to 10000, max_duration and stack_bytes \
         more than zero"
    )]
    InvalidOptions,
}
