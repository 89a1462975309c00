//! A reference sampler that unwinds *inside* the signal handler, the way
//! pprof-rs does by default: `backtrace::trace_unsynchronized` walks the
//! interrupted thread's frames while it waits in the handler.
//!
//! It exists only so that `hangwatch bench` can put the pause it inflicts on
//! the sampled thread next to the pause of hangwatch's [`Sampler`], which
//! copies registers and a stack slice and leaves unwinding to another
//! thread. Do not use it to watch a program: unwinding in a signal handler
//! is not async-signal-safe. The unwinder walks the loaded modules under the
//! dynamic loader's lock and may allocate the first time it meets a module,
//! so a thread interrupted while it holds that lock, or the allocator's,
//! deadlocks in the handler.
//!
//! It shares the slot table and the handshake of hangwatch's Linux sampler
//! (through `hangwatch::test_util`): the same claim, the same timeouts, the
//! same safety for late handlers. What differs is the handler's work, and
//! how it is installed: like pprof-rs, with `SA_SIGINFO | SA_RESTART` but
//! without `SA_ONSTACK`, so the unwinder runs on the thread's own stack
//! rather than on a small alternate one. The pause is measured the same
//! way, from the handler's entry until it publishes its result.
//!
//! [`Sampler`]: hangwatch::test_util::Sampler

use std::ffi::c_void;
use std::time::Duration;

use hangwatch::test_util::{
    install_handler, interrupted_registers, signal_safe_monotonic_ns, Claim, HandlerSpec,
    SampleTarget, SavedErrno,
};
use hangwatch::{NoStack, SampleSignal, SamplerError};
use libc::{c_int, siginfo_t};

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
    /// the signal of any hangwatch sampler. Refuses like
    /// `Sampler::install`.
    pub fn install(signal: SampleSignal) -> Result<ReferenceSampler, SamplerError> {
        install_handler(signal, &REFERENCE_HANDLER)?;
        Ok(ReferenceSampler { signal })
    }

    /// Samples `target` by having its thread unwind itself in the handler,
    /// waiting at most `timeout`. Errors as `Sampler::sample`.
    pub fn sample(
        &self,
        target: &SampleTarget,
        timeout: Duration,
    ) -> Result<ReferenceSample, NoStack> {
        let raw =
            target.sample_with_handler(self.signal, &REFERENCE_HANDLER, usize::MAX, timeout)?;
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

/// Claims the request like hangwatch's handler, then unwinds the
/// interrupted thread into the slot's buffer.
extern "C" fn on_reference_signal(_: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let entered = signal_safe_monotonic_ns();
    let errno = SavedErrno::save();
    // SAFETY: the kernel passes this `SA_SIGINFO` handler its `siginfo_t`.
    if let Some(mut claim) = unsafe { Claim::accept(info) } {
        // SAFETY: the kernel passes an `SA_SIGINFO` handler a valid
        // `ucontext_t` of the interrupted thread as its third argument, live
        // until the handler returns.
        let registers = unsafe { interrupted_registers(context) };
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use hangwatch::test_util::{Sampler, DEFAULT_COPY_LIMIT};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn the_reference_sampler_unwinds_in_the_handler() {
        let signal = SampleSignal::new(libc::SIGRTMIN() + 6);
        let reference = ReferenceSampler::install(signal).unwrap();
        // The two samplers cannot share a signal.
        let error = Sampler::install(signal).unwrap_err();
        assert!(
            matches!(error, SamplerError::ForeignHandler { .. }),
            "{error}"
        );

        let (stop, stopped) = mpsc::channel::<()>();
        let (targets, target) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            targets
                .send(SampleTarget::current_thread(DEFAULT_COPY_LIMIT).unwrap())
                .unwrap();
            stopped.recv().unwrap()
        });
        let target = target.recv().unwrap();
        for _ in 0..100 {
            let sample = reference.sample(&target, TIMEOUT).unwrap();
            assert_eq!(sample.tid, target.tid());
            assert!(sample.frames.len() > 3, "{:x?}", sample.frames);
            assert!(sample.pause_ns > 0);
        }
        // hangwatch's own sampler samples the same target too.
        let sampler = Sampler::install(SampleSignal::default()).unwrap();
        for _ in 0..100 {
            assert_eq!(sampler.sample(&target, TIMEOUT).unwrap().tid, target.tid());
        }

        stop.send(()).unwrap();
        thread.join().unwrap();
    }
}
