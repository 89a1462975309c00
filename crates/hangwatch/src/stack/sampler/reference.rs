//! A reference sampler that unwinds *inside* the signal handler, the way
//! pprof-rs does by default: `backtrace::trace_unsynchronized` walks the
//! interrupted thread's frames while it waits in the handler.
//!
//! It exists only so that `hangwatch bench` can put the pause it inflicts on
//! the sampled thread next to the pause of [`super::Sampler`], which copies
//! registers and a stack slice and leaves unwinding to another thread. Do
//! not use it to watch a program: unwinding in a signal handler is not
//! async-signal-safe. The unwinder walks the loaded modules under the
//! dynamic loader's lock and may allocate the first time it meets a module,
//! so a thread interrupted while it holds that lock, or the allocator's,
//! deadlocks in the handler.
//!
//! It shares the slot table and the handshake of the Linux sampler (see
//! `linux/slots.rs`): the same claim, the same timeouts, the same safety for late
//! handlers. What differs is the handler's work, and how it is installed:
//! like pprof-rs, with `SA_SIGINFO | SA_RESTART` but without `SA_ONSTACK`,
//! so the unwinder runs on the thread's own stack rather than on a small
//! alternate one. The pause is measured the same way, from the handler's
//! entry until it publishes its result.

use std::ffi::c_void;
use std::time::Duration;

use libc::{c_int, siginfo_t};

use super::linux::{self, Claim, HandlerSpec, SavedErrno};
use super::{SampleSignal, SampleTarget, SamplerError};
use crate::stack::NoStack;

const REFERENCE_HANDLER: HandlerSpec = HandlerSpec {
    handler: on_reference_signal,
    flags: libc::SA_SIGINFO | libc::SA_RESTART,
};

/// Samples by unwinding in the signal handler. For benchmarks only; see the
/// module documentation.
#[derive(Clone, Copy, Debug)]
pub struct ReferenceSampler {
    signal: SampleSignal,
}

/// What a [`ReferenceSampler`] got from a thread.
#[derive(Clone, Debug)]
pub struct ReferenceSample {
    /// The sampled thread's OS id.
    pub tid: u32,
    /// The instruction pointers of the frames, innermost first, starting
    /// with the handler's own frames.
    pub frames: Vec<u64>,
    /// The target's buffer (8 bytes a frame) filled up before the unwinder
    /// reached the outermost frame.
    pub truncated: bool,
    /// How long the thread spent in the handler, from entry to exit.
    pub pause_ns: u64,
}

impl ReferenceSampler {
    /// Installs the unwinding handler for `signal`, which must differ from
    /// the signal of any [`super::Sampler`]. Refuses like
    /// [`super::Sampler::install`].
    pub fn install(signal: SampleSignal) -> Result<ReferenceSampler, SamplerError> {
        linux::install_handler(signal, &REFERENCE_HANDLER)?;
        Ok(ReferenceSampler { signal })
    }

    /// Samples `target` by having its thread unwind itself in the handler,
    /// waiting at most `timeout`. Errors as [`super::Sampler::sample`].
    pub fn sample(
        &self,
        target: &SampleTarget,
        timeout: Duration,
    ) -> Result<ReferenceSample, NoStack> {
        let raw = linux::sample_with(
            self.signal,
            &REFERENCE_HANDLER,
            &target.inner.lease,
            usize::MAX,
            timeout,
        )?;
        Ok(ReferenceSample {
            tid: raw.tid,
            frames: raw
                .stack
                .chunks_exact(8)
                .map(|bytes| u64::from_ne_bytes(bytes.try_into().unwrap_or_default()))
                .collect(),
            truncated: raw.truncated,
            pause_ns: raw.pause_ns,
        })
    }
}

/// Claims the request like ours, then unwinds the interrupted thread into
/// the slot's buffer.
extern "C" fn on_reference_signal(_: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let entered = linux::monotonic_ns();
    let errno = SavedErrno::save();
    // SAFETY: the kernel passes this `SA_SIGINFO` handler its `siginfo_t`.
    if let Some(mut claim) = unsafe { Claim::accept(info) } {
        // SAFETY: and its `ucontext_t`.
        let registers = unsafe { linux::interrupted_registers(context) };
        let (mut frames, mut truncated) = (0, false);
        let mut slots = claim.buffer().chunks_exact_mut(8);
        // SAFETY: `trace_unsynchronized` requires that no other thread
        // unwinds through `backtrace` at the same time. Like pprof-rs, we
        // accept that risk (and the lock and allocation hazards above): this
        // sampler exists to measure exactly that approach.
        unsafe {
            backtrace::trace_unsynchronized(|frame| match slots.next() {
                Some(slot) => {
                    let ip = (frame.ip() as u64).to_ne_bytes();
                    for (byte, value) in slot.iter_mut().zip(ip) {
                        *byte = value;
                    }
                    frames += 1;
                    true
                }
                None => {
                    truncated = true;
                    false
                }
            })
        };
        claim.finish(registers, frames * 8, truncated, entered);
    }
    errno.restore();
}
