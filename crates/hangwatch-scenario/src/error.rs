//! Why a scenario (the demo, the soak, or one of their children) could not
//! run: one enum per side, each message saying what went wrong and what to
//! do about it. The `hangwatch` command prints them after its own prefix
//! (`hangwatch demo: `, `demo child N: `) and exits with status 1.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, TryFromFloatSecsError};

use hangwatch_hub::{ConnectError, HubError, HubGone};
use metrics_exporter_prometheus::BuildError;

/// Why the demo or the soak (the hub's side) stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The length of the run is not a length of time.
    #[error("--seconds {seconds}: {source}")]
    Seconds {
        /// The length asked for.
        seconds: f64,
        /// Why it is not one.
        #[source]
        source: TryFromFloatSecsError,
    },
    /// The children are this program started again, and it cannot be found.
    #[error("cannot find this program: {0}; run it from a path that still exists")]
    NoProgram(#[source] io::Error),
    /// `--out` names something that is not a directory.
    #[error("--out {} is not a directory: give a directory for the demo's files", .0.display())]
    OutNotADirectory(PathBuf),
    /// `--out` could not be made.
    #[error("cannot create {}: {source}", path.display())]
    CreateOut {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No file can be made in `--out`.
    #[error("cannot write files into --out {}: {source}", path.display())]
    OutNotWritable {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The Prometheus endpoint could not be served.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        #[source]
        source: BuildError,
    },
    /// The hub could not start.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The hub stopped during the run.
    #[error(transparent)]
    HubGone(#[from] HubGone),
    /// A thread of the harness could not be started.
    #[error("cannot start a thread: {0}; the machine may be out of threads or memory")]
    Thread(#[source] io::Error),
    /// A child process could not be started.
    #[error("cannot start child {index}: {source}")]
    Spawn {
        /// The child's role.
        index: u32,
        /// Why.
        #[source]
        source: HubError,
    },
    /// A child's lines (its standard output) cannot be read.
    #[error("cannot read child {pid}'s output: {source}")]
    ChildOutput {
        /// The child's pid.
        pid: u32,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A child did not connect to the hub in time.
    #[error(
        "a child did not connect within {0:?}: the machine may be overloaded; try again with \
         fewer --processes"
    )]
    NotConnected(Duration),
    /// A child the soak meant to kill could not be killed.
    #[error("cannot kill {name}: {source}")]
    Kill {
        /// The child's name and pid.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why a child process (`hangwatch demo-child`) could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// Its monitor did not start.
    #[error(transparent)]
    Monitor(#[from] hangwatch::StartError),
    /// It has no hub to report to.
    #[error("not started by a hub: {0}; the demo and the soak start their children themselves")]
    NoHub(#[source] ConnectError),
}
