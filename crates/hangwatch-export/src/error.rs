//! What can go wrong when reading alerts or writing an export.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Writing an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output file could not be created.
    #[error(
        "cannot create {}: {source}; check that its directory exists and that you may write there",
        path.display()
    )]
    Create {
        /// The file asked for.
        path: PathBuf,
        /// Why it could not be created.
        source: io::Error,
    },
    /// Writing to the output failed part-way.
    #[error("cannot write the output: {0}; check the free space and the destination")]
    Write(#[from] io::Error),
    /// A value could not be encoded as JSON.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A flamegraph was asked for, but there is no stack to draw.
    #[error(
        "there is no stack to draw a flamegraph from: stacks come with permanent alerts \
         (and with profile samples), on platforms where hangwatch can sample threads"
    )]
    NoStacks,
}

/// Reading alerts failed as a whole (a malformed line is a [`LineError`]
/// instead, and does not stop the reading).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input file could not be opened.
    #[error("cannot open {}: {source}; check the path", path.display())]
    Open {
        /// The file asked for.
        path: PathBuf,
        /// Why it could not be opened.
        source: io::Error,
    },
    /// Reading from the input failed part-way.
    #[error("cannot read the input: {0}")]
    Read(#[from] io::Error),
}

/// One line of a line-based input that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// The line's number, counting from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LineError {}
