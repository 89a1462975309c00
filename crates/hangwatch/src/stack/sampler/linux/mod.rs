//! The Linux sampler (x86-64 and aarch64): read a blocked thread from
//! outside, signal a running one.
//!
//! | file           | job                                                      |
//! |----------------|----------------------------------------------------------|
//! | `mod.rs`       | the [`Platform`] implementation: which path a capture takes |
//! | `blocked.rs`   | the path without a signal: `/proc` and `process_vm_readv` |
//! | `slots.rs`     | the signal path's static slot table and handshake         |
//! | `handler.rs`   | the signal handler and its uninstrumented copy            |
//! | `alt_stack.rs` | the rule that the handler runs only where it fits         |
//! | `install.rs`   | installing the handler without taking another's signal    |
//! | `sys.rs`       | every system call, wrapped once                           |
//! | `syscalls.rs`  | names of the system calls threads are found blocked in    |
//!
//! A capture first asks the kernel whether the thread is blocked. If it is,
//! it is read from outside and never signalled. If it is running (and so
//! not inside a system call a handler could interrupt), it is signalled,
//! unless its alternate signal stack could not be made big enough for the
//! handler. One race remains: a thread seen running may enter a system call
//! between that look and the signal's arrival, and a timed call then fails
//! with `EINTR`. `hangwatch bench` counts how often (`eintr_per_1k_profiled_calls`).

mod alt_stack;
mod blocked;
mod handler;
mod install;
mod slots;
mod sys;
mod syscalls;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(feature = "test-util")]
pub(super) use self::slots::sample_with;
#[cfg(feature = "test-util")]
pub use self::{
    handler::{interrupted_registers, Claim},
    install::{
        block_sample_signal_on_this_thread, install_foreign_handler_for_tests, install_handler,
        unblock_sample_signal_on_this_thread, Handler, HandlerSpec,
    },
    sys::{monotonic_ns, SavedErrno},
};
use super::{Platform, SampleSignal, Sampler, SamplerError};
use crate::stack::{NoStack, RawSample};
use slots::Deadline;

/// The Linux implementation of [`Platform`].
pub(super) struct Linux;

/// A thread that can be sampled.
#[derive(Debug)]
pub(super) struct Thread {
    pub(in crate::stack::sampler) lease: slots::Lease,
    /// Why this thread must not be signalled, if it must not: it is then
    /// sampled only while blocked.
    no_signal: Option<String>,
    /// How many times it had been put on a CPU when a capture last found it
    /// blocked; [`NOT_BLOCKED`] if the last capture found it running.
    blocked_at: AtomicU64,
}

const NOT_BLOCKED: u64 = u64::MAX;

/// How long a thread seen blocked at its previous capture, and running now,
/// is watched closely to block again: a thread looping on blocking calls is
/// back in one within microseconds.
const SETTLE: Duration = Duration::from_micros(200);
/// How often it is looked at meanwhile.
const SETTLE_STEP: Duration = Duration::from_micros(20);
/// How long it is watched in all for a sign that it runs: a thread on a CPU
/// has its time there brought up to date at every scheduler tick (4 ms at
/// the lowest common rate).
const TICK_WATCH: Duration = Duration::from_millis(5);
/// How often it is looked at after [`SETTLE`].
const TICK_STEP: Duration = Duration::from_micros(500);

/// A capture asked for: read already, or waiting for the handler.
#[derive(Debug)]
pub(super) enum Request {
    Read(RawSample),
    Signal(slots::Request),
}

/// Reads `thread` if it is blocked; `Ok(None)` if it is running and may be
/// signalled.
///
/// A thread that a capture found blocked last time, and that runs now, was
/// most likely woken inside a system call, and a signal before it has left
/// the call would make the call fail. So it is watched (with the cheap look
/// alone, sleeping between looks so as not to take the CPU it may be waiting
/// for) until it blocks again, as a loop of blocking calls does within
/// microseconds, and read then; it is signalled only once the kernel's
/// accounting shows it running (put on a CPU since it was last seen blocked,
/// and advancing during the watch: its time on a CPU moves at least every
/// scheduler tick). One still waiting for a CPU after [`TICK_WATCH`] is not
/// signalled ([`NoStack::Waking`]). A thread whose last capture found it
/// running (a busy one) is signalled at once.
fn read_or_settle(
    thread: &Thread,
    max_bytes: usize,
    deadline: &Deadline,
) -> Result<Option<RawSample>, NoStack> {
    let tid = thread.lease.tid();
    let blocked_at = thread.blocked_at.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut seen_running = None;
    loop {
        if let Some((sample, scheduled)) = thread.lease.read_blocked(max_bytes, deadline)? {
            thread.blocked_at.store(scheduled, Ordering::Relaxed);
            return Ok(Some(sample));
        }
        if blocked_at == NOT_BLOCKED {
            return Ok(None);
        }
        let runs = blocked::runs(tid).map_err(gone_or_timeout)?;
        let first = *seen_running.get_or_insert(runs);
        if runs.count != blocked_at && runs != first {
            // On a CPU since it was blocked, and moving now: busy.
            thread.blocked_at.store(NOT_BLOCKED, Ordering::Relaxed);
            return Ok(None);
        }
        let waited = started.elapsed();
        if waited >= TICK_WATCH {
            return Err(NoStack::Waking);
        }
        let step = if waited < SETTLE {
            SETTLE_STEP
        } else {
            TICK_STEP
        };
        match blocked::state(tid) {
            Ok(blocked::State::Running) => std::thread::sleep(step),
            Ok(blocked::State::Blocked { .. }) => {}
            Err(blocked::ReadError::Gone) => return Err(NoStack::ThreadGone),
            // No way to tell: the signal is the only way left.
            Err(blocked::ReadError::Unavailable) => return Ok(None),
        }
    }
}

fn gone_or_timeout(error: blocked::ReadError) -> NoStack {
    match error {
        blocked::ReadError::Gone => NoStack::ThreadGone,
        blocked::ReadError::Unavailable => NoStack::Timeout,
    }
}

impl Platform for Linux {
    type Thread = Thread;
    type ThreadLease = Option<alt_stack::Lease>;
    type Request = Request;

    fn default_signal() -> i32 {
        install::default_signal()
    }

    fn describe_signal(signal: i32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        install::describe_signal(signal, f)
    }

    fn install(signal: SampleSignal) -> Result<(), SamplerError> {
        install::install_handler(signal, &install::COPY_HANDLER)
    }

    fn current_thread(copy_limit: usize) -> Result<(Thread, Self::ThreadLease), SamplerError> {
        let tid = sys::gettid();
        let (low, high) = sys::stack_bounds().map_err(SamplerError::StackBounds)?;
        let (alt_stack, no_signal) = match alt_stack::ensure() {
            Ok(lease) => (Some(lease), None),
            Err(why) => (None, Some(why)),
        };
        let lease = slots::Lease::for_this_thread(tid, low, high, copy_limit)?;
        let thread = Thread {
            lease,
            no_signal,
            blocked_at: AtomicU64::new(NOT_BLOCKED),
        };
        Ok((thread, alt_stack))
    }

    fn tid(thread: &Thread) -> u32 {
        thread.lease.tid()
    }

    fn request(
        sampler: &Sampler,
        thread: &Thread,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Request, NoStack> {
        if thread.lease.exited() {
            return Err(NoStack::ThreadGone);
        }
        let deadline = Deadline::after(wait);
        if !sampler.signal_only {
            if let Some(sample) = read_or_settle(thread, max_bytes, &deadline)? {
                return Ok(Request::Read(sample));
            }
        }
        if let Some(why) = &thread.no_signal {
            return Err(NoStack::Refused(why.clone()));
        }
        slots::request_with(
            sampler.signal,
            &install::COPY_HANDLER,
            &thread.lease,
            max_bytes,
            &deadline,
        )
        .map(Request::Signal)
    }

    fn is_answered(request: &Request) -> bool {
        match request {
            Request::Read(_) => true,
            Request::Signal(request) => request.is_answered(),
        }
    }

    fn await_answer(request: &Request, timeout: Duration) -> bool {
        match request {
            Request::Read(_) => true,
            Request::Signal(request) => request.await_answer(&Deadline::after(timeout)),
        }
    }

    fn finish(request: Request, timeout: Duration) -> Result<RawSample, NoStack> {
        match request {
            Request::Read(sample) => Ok(sample),
            Request::Signal(request) => request.finish(&Deadline::after(timeout)),
        }
    }

    fn syscall_name(number: u64) -> Option<&'static str> {
        syscalls::name(number)
    }

    fn read_memory(address: u64, buffer: &mut [u8]) -> usize {
        usize::try_from(address)
            .ok()
            .and_then(|address| sys::read_memory(address, buffer).ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    use super::*;
    use crate::stack::sampler::SampleTarget;
    use crate::stack::CaptureMethod;

    /// Fills an alternate stack of `size` bytes with a pattern, makes it the
    /// thread's, samples the thread (running, so by signal) and returns how
    /// many bytes from the top the handler and the kernel's frame used.
    fn stack_used_by_one_sample(size: usize) -> usize {
        const PAINT: u8 = 0xa5;
        let memory: &'static mut [u8] = Box::leak(vec![PAINT; size].into_boxed_slice());
        let base = memory.as_mut_ptr() as usize;
        let (targets, target) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = stop.clone();
        let thread = std::thread::spawn(move || {
            let stack = libc::stack_t {
                ss_sp: base as *mut libc::c_void,
                ss_flags: 0,
                ss_size: size,
            };
            sys::set_alt_stack(&stack).unwrap();
            targets
                .send(SampleTarget::current_thread(4096).unwrap())
                .unwrap();
            while !spinning.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            // AddressSanitizer unmaps the alternate stack it finds at thread
            // exit, taking it for its own: leave none.
            let none = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            sys::set_alt_stack(&none).unwrap();
        });
        let target = target.recv().unwrap();
        let sampler = Sampler::install(SampleSignal::default()).unwrap();
        let sample = loop {
            match sampler.sample(&target, Duration::from_secs(5)) {
                Ok(sample) if sample.method == CaptureMethod::Signal => break sample,
                _ => std::thread::yield_now(),
            }
        };
        assert!(!sample.stack.is_empty());
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        // SAFETY: leaked above, and no thread uses it any more.
        let memory = unsafe { std::slice::from_raw_parts(base as *const u8, size) };
        let untouched = memory.iter().take_while(|&&b| b == PAINT).count();
        size - untouched
    }

    #[test]
    fn the_handler_fits_in_what_the_rule_reserves() {
        // Big enough for any build, so that the rule keeps it.
        let used = stack_used_by_one_sample(64 * 1024);
        let frame = sys::signal_frame_size();
        assert!(used > 0, "the handler ran on the alternate stack");
        assert!(
            used <= alt_stack::required(),
            "one sample used {used} bytes of the alternate stack: the kernel's frame \
             ({frame}) and {} for the handler, more than HANDLER_NEED ({})",
            used.saturating_sub(frame),
            alt_stack::HANDLER_NEED
        );
        eprintln!(
            "one sample used {used} bytes: kernel frame {frame}, handler {}",
            used.saturating_sub(frame)
        );
    }
}
