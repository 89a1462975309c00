//! Stacks of hung threads: capture, unwind, symbolicate, as separate stages
//! with plain data between them.
//!
//! ```text
//!   component thread            monitor thread              stack workers
//!  +-------------------+      +------------------+      +---------------------+
//!  | signal handler:   | <--- | sampler::sample  |      | unwind (framehop)   |
//!  | copy registers +  | ---> |  -> RawSample    | ---> |  -> raw frames      |
//!  | stack slice, done |      |                  | <--- | symbolize (addr2line)|
//!  +-------------------+      +------------------+      |  -> Stack           |
//!                                                       +---------------------+
//! ```
//!
//! - `sampler` (the only `unsafe` of any size in the crate) stops nothing: the
//!   hung thread copies its own registers and a bounded slice of its stack in
//!   a signal handler and returns at once.
//! - `unwind` walks that copy offline with DWARF CFI from `.eh_frame`.
//! - `symbolize` turns addresses into functions, files and lines, inlined
//!   frames included, with caches owned by the worker that uses them.

pub mod modules;
pub mod sampler;
pub mod symbolize;
pub mod unwind;
pub(crate) mod workers;

use serde::{Deserialize, Serialize};

/// The registers an unwinder needs to start from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// Instruction pointer (x86-64 `rip`, aarch64 `pc`).
    pub ip: u64,
    /// Stack pointer.
    pub sp: u64,
    /// Frame pointer (x86-64 `rbp`, aarch64 `x29`).
    pub fp: u64,
    /// Link register (aarch64 `x30`); zero on x86-64.
    pub lr: u64,
}

/// What the sampler copied out of a thread: registers and a slice of its
/// stack, as plain bytes. Unwinding and symbolication happen later, on
/// another thread.
#[derive(Clone, Debug)]
pub struct RawSample {
    /// The sampled thread's OS id.
    pub tid: u32,
    /// Its registers when the signal arrived.
    pub registers: Registers,
    /// The address of `stack[0]`: the stack pointer when the signal arrived.
    pub stack_start: u64,
    /// The bytes from `stack_start` upward.
    pub stack: Vec<u8>,
    /// The copy stopped at its size limit before the end of the thread's stack.
    pub truncated: bool,
    /// How long the thread spent in the handler, from entry to exit.
    pub pause_ns: u64,
}

/// Why an alert carries no stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum NoStack {
    /// The thread did not run the handler in time: it blocks the signal, or
    /// it is stopped.
    Timeout,
    /// The thread no longer exists.
    ThreadGone,
    /// This platform has no sampler yet.
    Unsupported(String),
    /// Sampling is switched off, or the signal could not be installed.
    Disabled(String),
    /// Unwinding failed.
    UnwindFailed(String),
}

/// A stack, innermost frame first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// The frames, innermost first. An inlined call expands into several
    /// frames at one address: the inlined callees first, then their caller.
    pub frames: Vec<Frame>,
    /// The stack copy ended before the outermost frame: there are more
    /// frames than shown.
    pub truncated: bool,
}

/// One frame of a stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The instruction address (for frames above the innermost, the return
    /// address minus one, so that it points into the call).
    pub address: u64,
    /// The file name of the module the address lies in.
    pub module: Option<String>,
    /// The address relative to that module's base.
    pub module_offset: Option<u64>,
    /// The demangled function name.
    pub function: Option<String>,
    /// The source file.
    pub file: Option<String>,
    /// The source line.
    pub line: Option<u32>,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

impl std::fmt::Display for Stack {
    /// One frame per line, innermost first, indented under the alert.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, frame) in self.frames.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "    #{n:<2} {frame}")?;
        }
        if self.truncated {
            write!(
                f,
                "\n    ... (the stack copy ended here; outer frames are missing)"
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#014x} ", self.address)?;
        match (&self.function, &self.module, self.module_offset) {
            (Some(function), _, _) => f.write_str(function)?,
            (None, Some(module), Some(offset)) => write!(f, "{module}+{offset:#x}")?,
            (None, Some(module), None) => f.write_str(module)?,
            (None, None, _) => f.write_str("??")?,
        }
        if let Some(file) = &self.file {
            write!(f, " at {file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
        }
        if self.inlined {
            f.write_str(" (inlined)")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for NoStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoStack::Timeout => {
                f.write_str("the thread did not answer the sampling signal in time")
            }
            NoStack::ThreadGone => f.write_str("the thread no longer exists"),
            NoStack::Unsupported(why) => write!(f, "unsupported: {why}"),
            NoStack::Disabled(why) => write!(f, "disabled: {why}"),
            NoStack::UnwindFailed(why) => write!(f, "unwinding failed: {why}"),
        }
    }
}
