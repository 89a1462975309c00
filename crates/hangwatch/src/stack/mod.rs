//! Stacks of hung threads: capture, unwind, symbolicate, as separate stages
//! with plain data between them.
//!
//! ```text
//!   monitor thread        capture thread              stack workers
//!  +--------------+     +----------------------+     +----------------------+
//!  | look: raise, | --> | sampler::request:    | --> | normalize: module    |
//!  | ask, go on   |     |  blocked: read it;   |     |  path, build id,     |
//!  |              |     |  running: signal it; |     |  offset              |
//!  |              |     | unwind (framehop)    |     | symbolize (blazesym, |
//!  |              | <------------------------------- |  in process) -> Stack|
//!  +--------------+     +----------------------+     +----------------------+
//! ```
//!
//! - `sampler` (the only `unsafe` of any size in the crate) stops nothing: a
//!   thread blocked in the kernel is read from outside, without a signal; a
//!   running one copies its own registers and a bounded slice of its stack
//!   in a signal handler and returns at once.
//! - `capture` is the thread that asks: the monitor never waits for a
//!   thread to answer.
//! - `unwind` walks that copy offline with DWARF CFI from `.eh_frame`.
//! - `symbolize` normalizes each frame (module path, build id, offset) and,
//!   with [`Symbolication::InProcess`], turns it into functions, files and
//!   lines, inlined frames included, with caches owned by the worker that
//!   uses them; the same [`Symbolizer`](symbolize::Symbolizer) names normalized frames
//!   in a hub or from a file, anywhere.

pub(crate) mod capture;
#[cfg(feature = "debuginfod")]
mod debuginfod;
pub(crate) mod modules;
mod program;
// The crate's one place for `unsafe`: a signal handler, its alternate
// stacks, and system calls that libc does not wrap.
#[allow(unsafe_code)]
pub(crate) mod sampler;
pub(crate) mod symbolize;
pub(crate) mod unwind;
pub(crate) mod workers;

pub use program::is_program_frame_name;
use serde::{Deserialize, Serialize};

/// Where a stack's frames get their names.
///
/// Capturing, unwinding and *normalizing* (each frame becomes its module's
/// path and build id and an offset in the module) always happen in the
/// monitored process; they read nothing from disk but the headers of each
/// module once. Naming the frames needs the modules' symbols, and those can
/// be large: this says who reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Symbolication {
    /// The process names its own frames before the alert leaves (the
    /// default). Symbol files are mapped, not read into the heap: their
    /// pages are the page cache's, shared with every process of the same
    /// binary.
    #[default]
    InProcess,
    /// The process names its frames' functions from its modules' symbol
    /// tables only, and leaves files, lines and inlined calls (the DWARF,
    /// whose index grows with the number of compilation units: tens of
    /// MiB of heap for a 50 MB binary) to whoever receives the alerts, as
    /// with `Elsewhere`. A few hundred KiB, whatever the binary's size.
    FunctionNamesInProcess,
    /// Frames leave normalized and are named by whoever receives them: a
    /// hub (one symbolizer and one set of symbol tables for every child of
    /// a binary), `hangwatch symbolicate` on a file of alerts, or any
    /// consumer with [`Symbolizer::symbolize_frames`](crate::Symbolizer::symbolize_frames).
    /// The process then never opens a symbol table, and its first alert is
    /// not held while one loads.
    Elsewhere,
}

impl Symbolication {
    /// The environment variable that sets the default.
    pub const ENV: &'static str = "HANGWATCH_SYMBOLICATION";

    /// What [`Symbolication::ENV`] says; in the process when it is unset.
    pub fn from_env() -> Result<Symbolication, crate::StartError> {
        Symbolication::from_setting(std::env::var(Symbolication::ENV))
    }

    fn from_setting(
        setting: Result<String, std::env::VarError>,
    ) -> Result<Symbolication, crate::StartError> {
        match setting {
            Err(std::env::VarError::NotPresent) => Ok(Symbolication::InProcess),
            Ok(value) if value == "in_process" => Ok(Symbolication::InProcess),
            Ok(value) if value == "function_names_in_process" => {
                Ok(Symbolication::FunctionNamesInProcess)
            }
            Ok(value) if value == "elsewhere" => Ok(Symbolication::Elsewhere),
            Ok(value) => Err(crate::StartError::SymbolicationEnv(value)),
            Err(std::env::VarError::NotUnicode(value)) => Err(crate::StartError::SymbolicationEnv(
                value.to_string_lossy().into_owned(),
            )),
        }
    }
}

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
    #[cfg(any(test, feature = "test-util"))]
    pub tid: u32,
    /// Its registers when the signal arrived.
    pub registers: Registers,
    /// The address of `stack[0]`: the stack pointer when the signal arrived.
    pub stack_start: u64,
    /// The bytes from `stack_start` upward.
    pub stack: Vec<u8>,
    /// The copy stopped at its size limit before the end of the thread's stack.
    pub truncated: bool,
    /// How long the thread spent in the handler, from entry to exit (zero
    /// when it was read from outside).
    #[cfg(feature = "test-util")]
    pub pause_ns: u64,
    /// How the sample was taken.
    pub method: CaptureMethod,
    /// The system call the thread was blocked in, by number, if it was read
    /// from outside while inside one.
    pub syscall: Option<u64>,
}

/// How a thread's stack was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    /// The thread was blocked in the kernel: its stack pointer and program
    /// counter came from the kernel and its stack was read from outside. It
    /// was not interrupted; its frame pointer (and, on aarch64, its link
    /// register) were not known to the unwinder.
    Blocked,
    /// The thread was running: it copied its own registers and stack in a
    /// signal handler.
    Signal,
}

/// Why an alert carries no stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
#[non_exhaustive]
pub enum NoStack {
    /// The thread did not answer in time: it is stopped, or it has not run
    /// since it was asked.
    Timeout,
    /// The thread was running with the sampling signal blocked.
    SignalBlocked,
    /// The thread had been woken inside a system call and had not run since:
    /// a signal then would make that call fail (`EINTR`), so it was not sent.
    Waking,
    /// The thread was running, and the signal path is refused for it: the
    /// reason says why (its alternate signal stack could not be made big
    /// enough for the handler). It is sampled while blocked.
    Refused(String),
    /// The thread no longer exists.
    ThreadGone,
    /// This platform has no sampler yet.
    Unsupported(String),
    /// Sampling is switched off, or the signal could not be installed.
    Disabled(String),
    /// Unwinding failed.
    UnwindFailed(String),
    /// The hang had ended by the time the monitor saw it was due (it looked
    /// late), so there was nothing left to sample.
    HangEnded,
    /// The stack will follow: it was not ready within the alert's wait for
    /// it ([`Builder::symbolicate_deadline`](crate::Builder::symbolicate_deadline)),
    /// so the alert left without it, and an
    /// [`AlertKind::Stack`](crate::AlertKind::Stack) alert will carry it.
    Follows,
    /// The capture could not even be asked for, or its sample not handed
    /// on: the capture thread's or the stack workers' queue was full.
    NotReady,
}

/// A stack, innermost frame first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// The frames, innermost first. An inlined call expands into several
    /// frames at one address: the inlined callees first, then their caller.
    pub frames: Vec<Frame>,
    /// The stack copy ended before the outermost frame, or the walk needed
    /// a register the capture did not have: there are more frames than
    /// shown.
    pub truncated: bool,
    /// How the stack was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureMethod>,
    /// The system call the thread was blocked in (`futex`, `read`, or
    /// `syscall 435` for one without a name here), when it was read from
    /// outside while inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_in: Option<String>,
}

/// One frame of a stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The instruction address (for frames above the innermost, the return
    /// address minus one, so that it points into the call).
    pub address: u64,
    /// The file name of the module the address lies in.
    pub module: Option<String>,
    /// The module's full path (`[vdso]` for the vDSO), when its file could
    /// be read: with `build_id` and `module_offset`, what symbolication
    /// needs, in this process or anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_path: Option<String>,
    /// The module's GNU build id, in lower-case hex: the key that debug
    /// files are found by (`/usr/lib/debug/.build-id`, debuginfod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// The address relative to that module's base: the *relative address*
    /// of samply and the Firefox Profiler; for position-independent modules
    /// (shared libraries, PIE executables), the address the file states,
    /// what `addr2line -e FILE` takes.
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
                "\n    ... (the walk ended here; outer frames are missing)"
            )?;
        }
        match (&self.capture, &self.blocked_in) {
            (Some(CaptureMethod::Blocked), Some(call)) => {
                write!(f, "\n    (read while blocked in {call}: not interrupted)")?
            }
            (Some(CaptureMethod::Blocked), None) => {
                write!(f, "\n    (read while blocked: not interrupted)")?
            }
            (Some(CaptureMethod::Signal), _) => write!(f, "\n    (taken by signal: running)")?,
            (None, _) => {}
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
            // `{:#}` shows the whole path.
            if f.alternate() {
                write!(f, " at {file}")?;
            } else {
                write!(f, " at {}", short_path(file))?;
            }
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

/// `file` without the toolchain's checkout prefix of the standard library's
/// sources (`/rustc/<commit>/library/std/src/...` becomes `std/src/...`,
/// and likewise `core`, `alloc`; another path under the checkout becomes
/// `<rustc>/...`), which otherwise makes every std frame wrap in a
/// terminal. Only the display is shortened (`{:#}` shows the whole path);
/// the frame keeps the whole path.
fn short_path(file: &str) -> std::borrow::Cow<'_, str> {
    let commit = file
        .strip_prefix("/rustc/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(commit, _)| commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
    match commit {
        Some((_, rest)) => match rest.strip_prefix("library/") {
            Some(library) => library.to_owned().into(),
            None => format!("<rustc>/{rest}").into(),
        },
        None => file.into(),
    }
}

impl std::fmt::Display for NoStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoStack::Timeout => f.write_str("the thread did not answer in time"),
            NoStack::SignalBlocked => {
                f.write_str("the thread was running with the sampling signal blocked")
            }
            NoStack::Refused(why) => write!(f, "not signalled while running: {why}"),
            NoStack::Waking => f.write_str(
                "the thread was on its way out of a system call, where a signal would make the call fail",
            ),
            NoStack::ThreadGone => f.write_str("the thread no longer exists"),
            NoStack::Unsupported(why) => write!(f, "unsupported: {why}"),
            NoStack::Disabled(why) => write!(f, "disabled: {why}"),
            NoStack::UnwindFailed(why) => write!(f, "unwinding failed: {why}"),
            NoStack::HangEnded => f.write_str("the hang had ended when the monitor saw it"),
            NoStack::Follows => f.write_str("the stack follows in its own alert"),
            NoStack::NotReady => f.write_str("the stack workers were too busy to take it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::env::VarError;

    #[test]
    fn std_paths_are_shown_without_the_toolchain_commit() {
        let frame = |file: &str| Frame {
            function: Some("f".into()),
            file: Some(file.into()),
            line: Some(3),
            ..Frame::default()
        };
        let hash = "59807616e1b5cbe4ba2e0c4b1c48bf3cd49ec0a6";
        let whole = format!("/rustc/{hash}/library/std/src/thread/mod.rs");
        let shown = frame(&whole).to_string();
        assert!(shown.ends_with(" f at std/src/thread/mod.rs:3"), "{shown}");
        let shown = format!("{:#}", frame(&whole));
        assert!(shown.ends_with(&format!(" f at {whole}:3")), "{shown}");
        let shown = frame(&format!("/rustc/{hash}/compiler/x.rs")).to_string();
        assert!(shown.ends_with(" f at <rustc>/compiler/x.rs:3"), "{shown}");
        for kept in ["/rustc/notacommit/x.rs", "src/main.rs", "/rustc/"] {
            assert!(
                frame(kept).to_string().contains(&format!(" at {kept}:3")),
                "{kept}"
            );
        }
    }

    #[test]
    fn symbolication_is_set_by_its_three_names_and_nothing_else() {
        let from = |value: &str| Symbolication::from_setting(Ok(value.to_owned()));
        assert_eq!(
            Symbolication::from_setting(Err(VarError::NotPresent)).unwrap(),
            Symbolication::InProcess
        );
        assert_eq!(from("in_process").unwrap(), Symbolication::InProcess);
        assert_eq!(
            from("function_names_in_process").unwrap(),
            Symbolication::FunctionNamesInProcess
        );
        assert_eq!(from("elsewhere").unwrap(), Symbolication::Elsewhere);
        for bad in ["", "Elsewhere", "hub", "in-process"] {
            let error = from(bad).unwrap_err().to_string();
            assert!(
                error.contains("in_process, function_names_in_process or elsewhere")
                    && error.contains(&format!("{bad:?}")),
                "{error}"
            );
        }
    }
}
