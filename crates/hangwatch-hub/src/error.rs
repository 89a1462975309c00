//! Errors, each with a message that says what to do about it.

use std::io;
use std::time::Duration;

use hangwatch::ProfilingError;

use crate::protocol::{RemoteError, HUB_ENV};

/// Why the hub could not start, invite or launch a child.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub's receiver set or its wake-up channel could not be made.
    #[error(
        "could not set up the hub's channels: {0}; the process may be out of file descriptors \
         (see `ulimit -n`)"
    )]
    Channels(#[source] io::Error),
    /// A thread could not be started.
    #[error("could not start a hub thread: {0}")]
    Spawn(#[source] io::Error),
    /// An invitation's one-shot server could not be opened.
    #[error(
        "could not open a one-shot server for child {name:?}: {source}; check that the \
         temporary directory is writable and that file descriptors are left"
    )]
    Server {
        /// The invitation's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The child's command could not be started.
    #[error("could not start child {name:?}: {source}")]
    Launch {
        /// The invitation's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The hub's thread has ended.
    #[error(transparent)]
    Gone(#[from] HubGone),
    /// The hub's thread ended on an error of its receiver set.
    #[error("the hub stopped: waiting on its channels failed: {0}")]
    Select(#[source] io::Error),
}

/// The hub's thread has ended, so it cannot act or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hub has stopped (it was shut down, or its thread failed); start a new hub")]
pub struct HubGone;

/// Why a control request to a child failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No connected child has this pid.
    #[error(
        "no child with pid {pid} is connected to this hub (it has not connected yet, or it has \
         left); see Hub::children"
    )]
    UnknownChild {
        /// The pid asked for.
        pid: u32,
    },
    /// The child went away (or said goodbye) before it answered.
    #[error("child process {pid} went away before it answered (it exited or was killed)")]
    ChildGone {
        /// The child's pid.
        pid: u32,
    },
    /// The child did not answer in time.
    #[error(
        "child process {pid} did not answer within {timeout:?}: it may be stopped, overloaded \
         or hung outside its monitor; try again with a longer Hub request timeout"
    )]
    TimedOut {
        /// The child's pid.
        pid: u32,
        /// How long the hub waited.
        timeout: Duration,
    },
    /// The child's monitor is no longer running (the child's program is
    /// ending).
    #[error("the hang monitor of child process {pid} is no longer running")]
    MonitorGone {
        /// The child's pid.
        pid: u32,
    },
    /// The child's monitor refused to start or stop profiling.
    #[error("child process {pid}: {source}")]
    Profiling {
        /// The child's pid.
        pid: u32,
        /// Why.
        #[source]
        source: ProfilingError,
    },
    /// The child's answer could not be read.
    #[error(
        "child process {pid} sent an answer that does not decode ({detail}); are the hub and \
         the child built from the same hangwatch-hub?"
    )]
    BadReply {
        /// The child's pid.
        pid: u32,
        /// What was wrong with it.
        detail: String,
    },
    /// The hub has stopped.
    #[error(transparent)]
    HubGone(#[from] HubGone),
}

impl ControlError {
    pub(crate) fn remote(pid: u32, error: RemoteError) -> ControlError {
        let profiling = |source| ControlError::Profiling { pid, source };
        match error {
            RemoteError::MonitorGone => ControlError::MonitorGone { pid },
            RemoteError::StacksOff => profiling(ProfilingError::StacksOff),
            RemoteError::AlreadyProfiling => profiling(ProfilingError::AlreadyProfiling),
            RemoteError::NotProfiling => profiling(ProfilingError::NotProfiling),
            RemoteError::InvalidOptions => profiling(ProfilingError::InvalidOptions),
            RemoteError::Encode(detail) => ControlError::BadReply { pid, detail },
        }
    }
}

/// Why a child could not connect to its hub. The child's monitor works on
/// regardless: these only mean its alerts stay in the process.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The environment names no hub.
    #[error(
        "{HUB_ENV} is not set: this process was not started by a hangwatch hub; run without a \
         hub, or start the process with Hub::spawn or Invitation::configure"
    )]
    NoHub,
    /// The hub's server could not be reached.
    #[error(
        "cannot reach the hangwatch hub at {server:?}: {source}; the hub may have exited, or \
         the invitation was already used or withdrawn (each child needs its own)"
    )]
    Connect {
        /// The server name tried.
        server: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The child's own control server could not be opened.
    #[error(
        "could not open this process's control server: {0}; check that the temporary \
         directory is writable and that file descriptors are left"
    )]
    Server(#[source] io::Error),
    /// The hello could not be sent.
    #[error("could not introduce this process to the hub: {0}; the hub may have exited")]
    Hello(#[source] ipc_channel::IpcError),
    /// A bridge thread could not be started.
    #[error("could not start a bridge thread: {0}")]
    Spawn(#[source] io::Error),
}
