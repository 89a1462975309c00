//! Installing a handler for the sampling signal, process-wide, without
//! taking a signal someone else uses.

use std::ffi::c_void;
use std::fmt;
#[cfg(any(test, feature = "test-util"))]
use std::io;
use std::sync::{Mutex, PoisonError};

use libc::{c_int, siginfo_t};

use super::handler::on_copy_signal;
use super::sys;
use crate::stack::sampler::{SampleSignal, SamplerError};

/// Serializes installs, so that two of them cannot both see `SIG_DFL`.
static INSTALL: Mutex<()> = Mutex::new(());

/// A signal handler installed with `SA_SIGINFO`.
pub type Handler = extern "C" fn(c_int, *mut siginfo_t, *mut c_void);

/// A handler and the flags it is installed with.
pub struct HandlerSpec {
    /// The function the kernel calls.
    pub handler: Handler,
    /// The `sa_flags` it is installed with (`SA_SIGINFO` and others).
    pub flags: c_int,
}

/// Ours: copy registers and stack. `SA_ONSTACK` runs it on the thread's
/// alternate signal stack, which every sampled thread has and which is big
/// enough for it (`alt_stack.rs`), so it works even when the thread hangs
/// near the end of its own stack. `SA_RESTART` restarts the system calls
/// that can be restarted; it cannot help timed ones, which is why a thread
/// blocked in the kernel is never signalled (`blocked.rs`).
pub(super) const COPY_HANDLER: HandlerSpec = HandlerSpec {
    handler: on_copy_signal,
    flags: libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK,
};

pub(super) fn default_signal() -> i32 {
    libc::SIGRTMIN() + 5
}

pub(super) fn describe_signal(signal: i32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let min = libc::SIGRTMIN();
    if (min..=libc::SIGRTMAX()).contains(&signal) {
        write!(f, "SIGRTMIN+{} (signal {signal})", signal - min)
    } else if signal == libc::SIGPROF {
        write!(f, "SIGPROF (signal {signal})")
    } else {
        write!(f, "signal {signal}")
    }
}

/// Installs `spec` for `signal`, unless something other than `SIG_DFL`,
/// `SIG_IGN` or `spec` itself handles it.
pub fn install_handler(signal: SampleSignal, spec: &HandlerSpec) -> Result<(), SamplerError> {
    let raw = signal.raw();
    if raw == libc::SIGPROF {
        return Err(SamplerError::ProfilingSignal);
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if !(min..=max).contains(&raw) {
        return Err(SamplerError::NotRealTime { signal, min, max });
    }
    let _installing = INSTALL.lock().unwrap_or_else(PoisonError::into_inner);
    let install_error = |source| SamplerError::Install { signal, source };
    let current = sys::current_handler(raw).map_err(install_error)?;
    if current == spec.handler as usize {
        return Ok(());
    }
    if current != libc::SIG_DFL && current != libc::SIG_IGN {
        return Err(SamplerError::ForeignHandler { signal });
    }
    // Every real-time signal waits while one of our handlers runs: a second
    // sampling signal (ours, late, or the reference sampler's) must not nest
    // inside a handler that runs on the alternate signal stack.
    sys::set_handler(raw, spec.handler, spec.flags).map_err(install_error)
}

/// Whether `spec` still handles `signal`: sending it after someone replaced
/// our handler with `SIG_DFL` would kill the process.
pub(super) fn still_installed(signal: SampleSignal, spec: &HandlerSpec) -> bool {
    sys::current_handler(signal.raw()).ok() == Some(spec.handler as usize)
}

/// Blocks `signal` on the calling thread, so that samples of it time out.
/// For tests of that case.
#[cfg(any(test, feature = "test-util"))]
pub fn block_sample_signal_on_this_thread(signal: &SampleSignal) -> io::Result<()> {
    sys::set_blocked(signal.raw(), libc::SIG_BLOCK)
}

/// Undoes [`block_sample_signal_on_this_thread`]: the signals that queued
/// meanwhile are delivered now.
#[cfg(any(test, feature = "test-util"))]
pub fn unblock_sample_signal_on_this_thread(signal: &SampleSignal) -> io::Result<()> {
    sys::set_blocked(signal.raw(), libc::SIG_UNBLOCK)
}

/// Installs a handler that does nothing for `signal`, standing for a
/// foreign library's. For tests of [`Sampler::install`](crate::test_util::Sampler::install)'s refusal.
#[cfg(feature = "test-util")]
pub fn install_foreign_handler_for_tests(signal: SampleSignal) -> Result<(), SamplerError> {
    extern "C" fn foreign(_: c_int, _: *mut siginfo_t, _: *mut c_void) {}
    install_handler(
        signal,
        &HandlerSpec {
            handler: foreign,
            flags: libc::SA_SIGINFO,
        },
    )
}
