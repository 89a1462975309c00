//! Capture: the registers and a bounded copy of the stack of another thread,
//! taken without changing what that thread observes, with a timeout.
//!
//! # Two paths
//!
//! A thread is captured the cheapest way that leaves it undisturbed:
//!
//! - **Blocked in the kernel** (waiting for a lock, a read, a sleep, a
//!   poll: most hangs), it is *read from outside*: its stack pointer and
//!   program counter come from the kernel (`/proc/self/task/TID/syscall`),
//!   its stack is copied with `process_vm_readv`, and the capture is kept
//!   only if the thread did not run meanwhile. No signal: its system call
//!   goes on as if nobody had looked. ([`CaptureMethod::Blocked`](crate::stack::CaptureMethod::Blocked).)
//! - **Running** on a CPU (or ready to), and so not inside a system call,
//!   it is *signalled*: it copies its own registers and stack in a handler,
//!   on an alternate signal stack big enough for it, and returns.
//!   ([`CaptureMethod::Signal`](crate::stack::CaptureMethod::Signal).)
//!
//! ```text
//!   sampling thread                           sampled thread
//!   ---------------                           --------------
//!   /proc/.../syscall: blocked at sp, pc      (in the kernel, untouched)
//!   process_vm_readv [sp, top)
//!   /proc/.../schedstat: did not run -> done
//!
//!   /proc/.../syscall: running
//!   slot: IDLE -> REQUESTED(ticket)
//!   rt_tgsigqueueinfo(tid, signal,
//!                     value = slot+ticket) -> handler (SA_ONSTACK):
//!                                               claims the slot (CAS),
//!                                               copies ip/sp/fp(/lr) and
//!                                               [sp, min(sp + limit, top))
//!                                               into the slot's buffer,
//!                                               publishes DONE
//!   polls, then futex-waits, at most timeout <- returns: the thread goes on
//!   copies the buffer out into a Vec
//! ```
//!
//! All the work that needs memory, locks or time (allocation, unwinding,
//! symbolication) happens later on other threads, from the plain bytes in a
//! [`RawSample`].
//!
//! # Invariants
//!
//! - **A blocked thread is never signalled**, and a capture read from
//!   outside describes one moment: the thread did not run during it.
//! - **The handler runs only where it fits**: on an alternate signal stack
//!   of at least the kernel's signal frame plus what the handler needs. A
//!   thread without one, or with a smaller one, gets one of ours when it
//!   registers; if that fails, it is sampled only while blocked, and a
//!   capture while it runs says why ([`NoStack::Refused`]).
//! - **A handler never touches memory that can go away.** The slots live in
//!   a process-wide static table; a slot's buffer is freed only while no
//!   request is outstanding on it, and a handler may write it only after it
//!   claimed a request whose ticket is still current.
//! - **A late handler does nothing**, and **no thread is locked out**: a
//!   request the thread did not answer in time is taken back and forgotten;
//!   a signal someone else consumed (a `sigtimedwait` on every signal) does
//!   not count against the next request; a thread that blocks the signal is
//!   told apart at once ([`NoStack::SignalBlocked`]) instead of queueing
//!   signals.
//! - **The sampler never waits forever.** Every wait ends at the deadline
//!   given to [`Sampler::sample`].
//! - **The handler does not allocate, lock, panic or unwrap**, restores
//!   `errno`, and copies in assembly that no sanitizer instruments (the stack
//!   it reads holds other frames' poisoned locals).
//!
//! [`RawSample::pause_ns`] is how long the handler ran, from its entry to
//! the publication of its copy (zero for a thread read while blocked, which
//! is not paused at all).
//!
//! # Platforms
//!
//! The portable code here talks to one platform module through the
//! `Platform` trait: `linux/` (x86-64 and aarch64), and `unsupported.rs`
//! for everything else, where [`Sampler::sample`] returns
//! [`NoStack::Unsupported`] with the reason. A macOS sampler would suspend
//! the thread (`thread_suspend`), read its registers (`thread_get_state`)
//! and copy its stack (`mach_vm_read_overwrite`), then resume it; a Windows
//! one `SuspendThread`, `GetThreadContext`, `ReadProcessMemory`,
//! `ResumeThread`. Both stop the thread from outside, so neither can make a
//! system call fail the way a signal handler does.
//!
//! An example of its use by hand is in `test_util`'s documentation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
#[cfg(any(test, feature = "test-util"))]
use std::time::Instant;

use crate::stack::{NoStack, RawSample};

/// What a platform provides, and all the portable code relies on.
trait Platform {
    /// What is recorded of a thread, on that thread, so that any other can
    /// sample it.
    type Thread: fmt::Debug + Send + Sync;
    /// What that thread keeps while it may be sampled, given back on that
    /// thread when dropped (an alternate signal stack lent to it).
    type ThreadLease: fmt::Debug;
    /// A sample asked for and not yet taken.
    type Request: fmt::Debug + Send;

    /// The signal a sampler uses by default.
    fn default_signal() -> i32;
    fn describe_signal(signal: i32, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Makes `signal` ours, process-wide (see [`Sampler::install`]).
    fn install(signal: SampleSignal) -> Result<(), SamplerError>;
    /// Records the calling thread, with room for `copy_limit` bytes of its
    /// stack.
    fn current_thread(copy_limit: usize)
        -> Result<(Self::Thread, Self::ThreadLease), SamplerError>;
    fn tid(thread: &Self::Thread) -> u32;
    /// Asks `thread` for at most `max_bytes` of its stack: answered at once
    /// when it can be read from outside, else once it has run its handler.
    /// Waits at most `wait` for its turn on the thread.
    fn request(
        sampler: &Sampler,
        thread: &Self::Thread,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Self::Request, NoStack>;
    fn is_answered(request: &Self::Request) -> bool;
    /// Waits at most `timeout` for the answer, keeping the request; returns
    /// whether it came.
    fn await_answer(request: &Self::Request, timeout: Duration) -> bool;
    /// Waits at most `timeout` for the answer, or gives the request up.
    fn finish(request: Self::Request, timeout: Duration) -> Result<RawSample, NoStack>;
    /// The name of system call `number` ([`RawSample::syscall`]), if known.
    fn syscall_name(number: u64) -> Option<&'static str>;
    /// Copies this process's memory at `address` into `buffer` without
    /// faulting on unmapped pages; returns how many bytes it copied.
    fn read_memory(address: u64, buffer: &mut [u8]) -> usize;
}

/// Copies this process's memory at `address` (code, for the unwinder's
/// checks) into `buffer`, stopping at an unmapped page instead of faulting;
/// returns how many bytes it copied (zero where it cannot read).
pub(crate) fn read_own_memory(address: u64, buffer: &mut [u8]) -> usize {
    Native::read_memory(address, buffer)
}

/// How a thread read while blocked in system call `number` is described:
/// its name, or `syscall N`.
pub(crate) fn describe_syscall(number: u64) -> String {
    match Native::syscall_name(number) {
        Some(name) => name.to_owned(),
        None => format!("syscall {number}"),
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod linux;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
type Native = linux::Linux;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[cfg(feature = "test-util")]
pub use linux::{
    block_sample_signal_on_this_thread, install_foreign_handler_for_tests, install_handler,
    interrupted_registers, monotonic_ns, unblock_sample_signal_on_this_thread, Claim, Handler,
    HandlerSpec, SavedErrno,
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
type Native = unsupported::Unsupported;

/// How many bytes of a thread's stack the monitor copies by default: 256 KiB.
pub const DEFAULT_COPY_LIMIT: usize = 256 * 1024;

/// Takes samples of threads that made themselves a [`SampleTarget`].
///
/// Cheap to copy; every copy uses the same process-wide handler.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    signal: SampleSignal,
    signal_only: bool,
}

impl Sampler {
    /// Installs our handler for `signal` (process-wide). Idempotent for the
    /// same signal.
    ///
    /// Refuses if another handler already owns that signal (anything other
    /// than `SIG_DFL`, `SIG_IGN` or ours), if the signal is `SIGPROF`, or if
    /// it is not a real-time signal: each error says what to do instead.
    pub fn install(signal: SampleSignal) -> Result<Sampler, SamplerError> {
        Native::install(signal)?;
        Ok(Sampler {
            signal,
            signal_only: false,
        })
    }

    /// The signal this sampler sends.
    #[cfg(feature = "test-util")]
    pub fn signal(&self) -> SampleSignal {
        self.signal
    }

    /// This sampler, made to signal every thread, blocked or not: the
    /// sampler hangwatch had before it read blocked threads from outside,
    /// kept as the reference `hangwatch bench` measures against. A thread
    /// signalled inside a timed system call sees that call fail with
    /// `EINTR`; do not use it to watch a program.
    #[cfg(feature = "test-util")]
    pub fn signal_only(self) -> Sampler {
        Sampler {
            signal_only: true,
            ..self
        }
    }

    /// Samples `target`, waiting at most `timeout`: reads it from outside
    /// if it is blocked in the kernel, else sends it the signal with
    /// `rt_tgsigqueueinfo` and waits for its handler to copy its registers
    /// and stack.
    ///
    /// - [`NoStack::Timeout`]: the thread did not answer in time (it is
    ///   stopped, or it has not taken the last few signals sent to it yet,
    ///   in which case no new one is queued and this returns at once);
    /// - [`NoStack::SignalBlocked`]: it is running with the signal blocked;
    /// - [`NoStack::Waking`]: it was on its way out of a system call for the
    ///   whole timeout (asked again meanwhile; [`request`](Sampler::request)
    ///   says so at once instead);
    /// - [`NoStack::Refused`]: it is running, and its handler would not fit
    ///   on its alternate signal stack;
    /// - [`NoStack::ThreadGone`]: the thread has exited;
    /// - [`NoStack::Disabled`]: someone replaced our handler for the signal
    ///   (sending it then could kill the process), or sending failed;
    /// - [`NoStack::Unsupported`]: this platform has no sampler.
    ///
    /// Calls on different targets run in parallel; calls on the same target
    /// take turns, each within its own timeout. Call it from an ordinary
    /// thread, not from a signal handler (it allocates the sample).
    #[cfg(any(test, feature = "test-util"))]
    pub fn sample(&self, target: &SampleTarget, timeout: Duration) -> Result<RawSample, NoStack> {
        self.sample_at_most(target, usize::MAX, timeout)
    }

    /// Like [`sample`](Sampler::sample), copying at most `max_bytes` of the
    /// stack (and never more than the target's buffer): profiling takes many
    /// small samples where a hang takes one large one.
    #[cfg(any(test, feature = "test-util"))]
    pub fn sample_at_most(
        &self,
        target: &SampleTarget,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<RawSample, NoStack> {
        let started = Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match Native::request(self, &target.inner, max_bytes, left) {
                Ok(request) => {
                    return Native::finish(request, timeout.saturating_sub(started.elapsed()))
                }
                // On its way out of a system call: ask again once it is out.
                Err(NoStack::Waking) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(reason) => return Err(reason),
            }
        }
    }

    /// Asks `target` for a sample of at most `max_bytes` of its stack and
    /// returns at once, so that many threads can be asked in parallel and
    /// answered while the caller does other work. A blocked thread is read
    /// right here, and its request is answered already. Fails with
    /// [`NoStack::Timeout`] if another caller holds the target's turn.
    pub fn request(
        &self,
        target: &Arc<SampleTarget>,
        max_bytes: usize,
    ) -> Result<PendingSample, NoStack> {
        let request = Native::request(self, &target.inner, max_bytes, Duration::ZERO)?;
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
    request: <Native as Platform>::Request,
    /// The slot's buffer lives as long as its target.
    _target: Arc<SampleTarget>,
}

impl PendingSample {
    /// Whether the thread has answered, so that [`wait`](PendingSample::wait)
    /// returns at once.
    pub fn is_answered(&self) -> bool {
        Native::is_answered(&self.request)
    }

    /// Waits at most `timeout` for the answer without taking it (or giving
    /// the request up): whoever waits for several requests sleeps on one and
    /// is woken the moment it is answered. Returns whether it was.
    pub fn await_answer(&self, timeout: Duration) -> bool {
        Native::await_answer(&self.request, timeout)
    }

    /// Waits at most `timeout` for the answer (zero: take it if it is
    /// there), or gives up, with the errors of [`Sampler::sample`].
    pub fn wait(self, timeout: Duration) -> Result<RawSample, NoStack> {
        Native::finish(self.request, timeout)
    }
}

/// The signal the monitor's stack sampler sends a running thread
/// ([`Builder::stack_signal`](crate::Builder::stack_signal)): a real-time
/// signal that nothing else in the process handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleSignal(i32);

impl SampleSignal {
    /// The signal with this number. It is checked when the monitor starts
    /// ([`Builder::start`](crate::Builder::start) fails with
    /// [`StartError::Sampler`](crate::StartError::Sampler) if it is not
    /// free or not real-time).
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
        SampleSignal(Native::default_signal())
    }
}

impl fmt::Display for SampleSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Native::describe_signal(self.0, f)
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
    inner: <Native as Platform>::Thread,
}

/// What a sampled thread keeps, on that thread, while it may be sampled: an
/// alternate signal stack lent to it, given back when this is dropped (see
/// [`SampleTarget::current_thread_leased`]). Not `Send`.
#[derive(Debug)]
pub struct ThreadLease {
    _inner: <Native as Platform>::ThreadLease,
}

impl SampleTarget {
    /// Records the calling thread's id and stack bounds and preallocates a
    /// slot with room for `copy_limit` bytes of stack (at most the whole
    /// stack). [`DEFAULT_COPY_LIMIT`] suits most programs.
    ///
    /// If the thread's alternate signal stack is missing or too small for
    /// the handler, the thread gets one of hangwatch's for the rest of its
    /// life; [`current_thread_leased`](SampleTarget::current_thread_leased)
    /// gives it back sooner.
    #[cfg(any(test, feature = "test-util"))]
    pub fn current_thread(copy_limit: usize) -> Result<SampleTarget, SamplerError> {
        let (target, lease) = SampleTarget::current_thread_leased(copy_limit)?;
        // The lease's thread-local record frees the stack when the thread
        // exits.
        std::mem::forget(lease);
        Ok(target)
    }

    /// Like [`current_thread`](SampleTarget::current_thread), with the
    /// thread's side of it: drop the [`ThreadLease`] on this thread when it
    /// stops being sampled, and the alternate signal stack it was lent, if
    /// any, is given back (what was there before is put back when the
    /// handler fits on it).
    pub fn current_thread_leased(
        copy_limit: usize,
    ) -> Result<(SampleTarget, ThreadLease), SamplerError> {
        let (inner, lease) = Native::current_thread(copy_limit)?;
        Ok((SampleTarget { inner }, ThreadLease { _inner: lease }))
    }

    /// The thread's OS id.
    pub fn tid(&self) -> u32 {
        Native::tid(&self.inner)
    }

    /// Asks this thread to run `spec`'s handler instead of the sampler's
    /// (installed with [`install_handler`] for `signal`), through the same
    /// slot and handshake, and waits at most `timeout` for what it
    /// published with [`Claim::finish`]: for a sampler whose handler does
    /// other work than copying, such as `hangwatch-bench`'s reference
    /// sampler, which unwinds in it.
    #[cfg(all(
        feature = "test-util",
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub fn sample_with_handler(
        &self,
        signal: SampleSignal,
        spec: &HandlerSpec,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<RawSample, NoStack> {
        linux::sample_with(signal, spec, &self.inner.lease, max_bytes, timeout)
    }
}

/// Why a sampler could not be installed or a target created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
