//! Capture: the registers and a bounded copy of the stack of another thread,
//! taken by that thread itself in a signal handler, with a timeout.
//!
//! # How a sample is taken
//!
//! ```text
//!   sampling thread (the monitor)             sampled thread
//!   -----------------------------             --------------
//!   slot: IDLE -> REQUESTED(ticket)
//!   rt_tgsigqueueinfo(tid, signal,
//!                     value = slot+ticket) -> handler runs (SA_ONSTACK):
//!                                               checks the value, claims the slot:
//!                                                 REQUESTED(ticket) -> CLAIMED(ticket)
//!                                               copies ip/sp/fp(/lr) from the ucontext
//!                                               and [sp, min(sp + limit, stack end))
//!                                               into the slot's preallocated buffer
//!                                               CLAIMED -> DONE (+ futex wake
//!                                               if the sampler sleeps)
//!   polls, then futex-waits, at most timeout <- returns: the thread goes on
//!   copies the buffer out into a Vec
//!   slot: DONE -> IDLE
//! ```
//!
//! The hung thread is interrupted for as long as the copy takes (a few
//! microseconds for a typical stack) and never waits for the monitor. All
//! the work that needs memory, locks or time — allocation, unwinding,
//! symbolication — happens later on other threads, from the plain bytes in a
//! [`RawSample`].
//!
//! # Invariants
//!
//! - **A handler never touches memory that can go away.** The slots live in a
//!   process-wide static table; a slot's buffer is freed only while no
//!   request is outstanding on it, and a handler may write it only after it
//!   claimed a request whose ticket is still current.
//! - **A late handler does nothing.** A sampler that gives up takes its
//!   request back (`REQUESTED -> IDLE`) before it returns; a handler that
//!   runs afterwards cannot claim it. If the handler had already claimed it,
//!   the slot stays claimed, and nobody reads or reuses the buffer until the
//!   handler says it is done.
//! - **The sampler never waits forever.** Every wait — for its turn on a
//!   target, for a handler still busy with an earlier request, for the reply —
//!   ends at the deadline given to [`Sampler::sample`].
//! - **The handler does not allocate, lock, panic or unwrap**, and restores
//!   `errno`. It makes only async-signal-safe calls: `clock_gettime` (in the
//!   vDSO), `memcpy`, and `futex(FUTEX_WAKE)` when the sampler sleeps. It
//!   checks the sender's pid and its own tid against values recorded
//!   beforehand rather than asking the kernel: each system call would cost
//!   more than the copy of a typical stack.
//!
//! [`RawSample::pause_ns`] runs from the handler's entry to the publication
//! of its copy. What follows is the return, and, only when the sampler
//! stopped polling and went to sleep (it polls for 50 µs first), a futex
//! wake of a few microseconds.
//!
//! The platform code is in `linux.rs` (Linux on x86-64 and aarch64) and
//! `unsupported.rs` (everything else: [`Sampler::sample`] returns
//! [`NoStack::Unsupported`] with the reason).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use hangwatch::stack::sampler::{SampleSignal, SampleTarget, Sampler, DEFAULT_COPY_LIMIT};
//!
//! let sampler = Sampler::install(SampleSignal::default())?;
//! // Created on the thread to sample, then handed to the monitor.
//! let target = SampleTarget::current_thread(DEFAULT_COPY_LIMIT)?;
//! match sampler.sample(&target, Duration::from_millis(50)) {
//!     Ok(sample) => assert!(!sample.stack.is_empty()),
//!     Err(no_stack) => println!("no stack: {no_stack:?}"),
//! }
//! # Ok::<(), hangwatch::stack::sampler::SamplerError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::stack::{NoStack, RawSample};

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod linux;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
use linux as platform;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub use linux::{
    block_sample_signal_on_this_thread, install_foreign_handler_for_tests,
    unblock_sample_signal_on_this_thread,
};

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod unsupported;
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
use unsupported as platform;

#[cfg(all(
    feature = "reference-samplers",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod reference;
#[cfg(all(
    feature = "reference-samplers",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub use reference::{ReferenceSample, ReferenceSampler};

/// How many bytes of a thread's stack the monitor copies by default: 256 KiB.
pub const DEFAULT_COPY_LIMIT: usize = 256 * 1024;

/// Takes samples of threads that made themselves a [`SampleTarget`].
///
/// Cheap to copy; every copy uses the same process-wide handler.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    signal: SampleSignal,
}

impl Sampler {
    /// Installs our handler for `signal` (process-wide). Idempotent for the
    /// same signal.
    ///
    /// Refuses if another handler already owns that signal (anything other
    /// than `SIG_DFL`, `SIG_IGN` or ours), if the signal is `SIGPROF`, or if
    /// it is not a real-time signal: each error says what to do instead.
    pub fn install(signal: SampleSignal) -> Result<Sampler, SamplerError> {
        platform::install(signal)?;
        Ok(Sampler { signal })
    }

    /// The signal this sampler sends.
    pub fn signal(&self) -> SampleSignal {
        self.signal
    }

    /// Samples `target`: sends it the signal with `rt_tgsigqueueinfo` and
    /// waits at most `timeout` for its handler to copy its registers and
    /// stack.
    ///
    /// - [`NoStack::Timeout`]: the thread did not answer in time (it blocks
    ///   the signal, it is stopped, or it has not taken the last few signals
    ///   sent to it yet, in which case no new one is queued and this returns
    ///   at once);
    /// - [`NoStack::ThreadGone`]: the thread has exited;
    /// - [`NoStack::Disabled`]: someone replaced our handler for the signal
    ///   (sending it then could kill the process), or sending failed;
    /// - [`NoStack::Unsupported`]: this platform has no sampler.
    ///
    /// Calls on different targets run in parallel; calls on the same target
    /// take turns, each within its own timeout. Call it from an ordinary
    /// thread, not from a signal handler (it allocates the sample).
    pub fn sample(&self, target: &SampleTarget, timeout: Duration) -> Result<RawSample, NoStack> {
        self.sample_at_most(target, usize::MAX, timeout)
    }

    /// Like [`sample`](Sampler::sample), copying at most `max_bytes` of the
    /// stack (and never more than the target's buffer): profiling takes many
    /// small samples where a hang takes one large one.
    pub fn sample_at_most(
        &self,
        target: &SampleTarget,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<RawSample, NoStack> {
        platform::sample(self.signal, &target.inner, max_bytes, timeout)
    }

    /// Asks `target` for a sample of at most `max_bytes` of its stack and
    /// returns at once, so that many threads can be asked in parallel and
    /// answered while the caller does other work. Fails with
    /// [`NoStack::Timeout`] if another caller holds the target's turn.
    pub fn request(
        &self,
        target: &Arc<SampleTarget>,
        max_bytes: usize,
    ) -> Result<PendingSample, NoStack> {
        let request = platform::request(self.signal, &target.inner, max_bytes)?;
        Ok(PendingSample {
            request,
            _target: target.clone(),
        })
    }
}

/// A sample asked for with [`Sampler::request`] and not yet taken.
/// Dropping it gives the request up; a handler that runs later does
/// nothing.
#[derive(Debug)]
pub struct PendingSample {
    request: platform::Request,
    /// The slot's buffer lives as long as its target.
    _target: Arc<SampleTarget>,
}

impl PendingSample {
    /// Whether the thread has answered, so that [`wait`](PendingSample::wait)
    /// returns at once.
    pub fn is_answered(&self) -> bool {
        self.request.is_answered()
    }

    /// Waits at most `timeout` for the answer (zero: take it if it is
    /// there), or gives up, with the errors of [`Sampler::sample`].
    pub fn wait(self, timeout: Duration) -> Result<RawSample, NoStack> {
        platform::finish(self.request, timeout)
    }
}

/// The signal a [`Sampler`] uses: a real-time signal that nothing else in
/// the process handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleSignal(i32);

impl SampleSignal {
    /// The signal with this number. It is checked by [`Sampler::install`].
    pub const fn new(signal: i32) -> SampleSignal {
        SampleSignal(signal)
    }

    /// The signal's number.
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl Default for SampleSignal {
    /// `SIGRTMIN+5`, clear of the first few real-time signals, which other
    /// libraries tend to take. (Meaningless where there is no sampler.)
    fn default() -> SampleSignal {
        SampleSignal(platform::default_signal())
    }
}

impl fmt::Display for SampleSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        platform::describe_signal(self.0, f)
    }
}

/// A thread that can be sampled: its id, its stack bounds and a slot with a
/// preallocated buffer for the copy of its stack.
///
/// Create it on the thread to be sampled, then hand it to whoever samples.
/// Dropping it frees the slot (its buffer stays reserved while a handler may
/// still be writing to it). When the thread exits, samples of it return
/// [`NoStack::ThreadGone`].
#[derive(Debug)]
pub struct SampleTarget {
    inner: platform::Target,
}

impl SampleTarget {
    /// Records the calling thread's id and stack bounds and preallocates a
    /// slot with room for `copy_limit` bytes of stack (at most the whole
    /// stack). [`DEFAULT_COPY_LIMIT`] suits most programs.
    pub fn current_thread(copy_limit: usize) -> Result<SampleTarget, SamplerError> {
        Ok(SampleTarget {
            inner: platform::Target::current_thread(copy_limit)?,
        })
    }

    /// The thread's OS id.
    pub fn tid(&self) -> u32 {
        self.inner.tid()
    }
}

/// Why a sampler could not be installed or a target created.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// `SIGPROF` belongs to profilers.
    #[error(
        "SIGPROF is left to profilers (perf, pprof-rs, gperftools); use a real-time signal such \
         as SampleSignal::default()"
    )]
    ProfilingSignal,
    /// Only real-time signals queue and carry a value.
    #[error(
        "{signal} is not a real-time signal; use SampleSignal::default() or SampleSignal::new(n) \
         with n from SIGRTMIN ({min}) to SIGRTMAX ({max})"
    )]
    NotRealTime {
        /// The signal given.
        signal: SampleSignal,
        /// The first real-time signal.
        min: i32,
        /// The last real-time signal.
        max: i32,
    },
    /// Something else in the process already handles this signal.
    #[error(
        "{signal} already has a handler that this sampler did not install (the program, a \
         library or hangwatch's other sampler uses it); pick a free real-time signal with \
         SampleSignal::new(n), or switch stack sampling off"
    )]
    ForeignHandler {
        /// The signal given.
        signal: SampleSignal,
    },
    /// `sigaction` failed.
    #[error("could not install the handler for {signal}: {source}")]
    Install {
        /// The signal given.
        signal: SampleSignal,
        /// What the system said.
        source: std::io::Error,
    },
    /// `pthread_getattr_np` failed.
    #[error("could not read the calling thread's stack bounds: {0}")]
    StackBounds(#[source] std::io::Error),
    /// Every slot of the process-wide table holds a live target.
    #[error(
        "all {limit} sample slots are in use; drop the SampleTarget of each thread you stop \
         sampling"
    )]
    TooManyTargets {
        /// How many targets can live at once.
        limit: usize,
    },
    /// The thread is running its thread-local destructors, so its exit could
    /// not be watched.
    #[error(
        "the calling thread is exiting (SampleTarget::current_thread was called from a \
         thread-local destructor); create the target earlier in the thread's life"
    )]
    ThreadExiting,
}
