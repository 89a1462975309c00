//! The signal path's slot table and handshake: a static table of slots, a
//! compare-and-swap handshake per slot, `rt_tgsigqueueinfo` to ask, a futex
//! to wait for the answer.
//!
//! # The slot table
//!
//! [`TABLE`] is a static array of [`Slot`]s: it is never freed, so any value
//! a signal carries decodes, at worst, to a slot that is no longer about this
//! request, never to freed memory. A [`Lease`] holds one slot for its
//! lifetime and records there its thread's tid, its stack bounds and a
//! buffer of `copy_limit` bytes, allocated (not touched: the pages a copy
//! needs are faulted in by the first copy) when the lease is made.
//!
//! # The handshake
//!
//! Each slot has one 32-bit state word, also the futex word: a 29-bit
//! *ticket* that numbers the requests made on the slot, a [`WAITING`] bit
//! and a 2-bit *phase*.
//!
//! ```text
//!            sampler                  handler                  handler
//!   IDLE(t) --------> REQUESTED(t+1) --------> CLAIMED(t+1) ---------> DONE(t+1)
//!      ^     send        |   claim (CAS)                copy, publish      |
//!      |                 |                                                 |
//!      +-----------------+ give up (CAS): the late handler cannot claim    |
//!      +-------------------------------------------------------------------+
//!                              sampler: copy out, then IDLE
//! ```
//!
//! - Only a sampler that holds the slot's turn (a small futex lock, so that
//!   two callers sampling one target take turns) moves the slot out of
//!   `IDLE`, `REQUESTED` (giving up) and `DONE`. Only a handler moves it out
//!   of `CLAIMED`.
//! - The signal's value carries the slot index and the exact `REQUESTED`
//!   word. The handler claims with a compare-and-swap from that word: it
//!   succeeds only for the request now outstanding. A handler that runs
//!   after the sampler gave up, or a duplicate, finds another word and
//!   returns without touching anything.
//! - **Waking.** The sampler polls the word for [`SPIN`] (the answer usually
//!   comes within it), then sets [`WAITING`] and sleeps on the futex. The
//!   handler publishes `DONE` with a swap, and makes the `FUTEX_WAKE` system
//!   call only if that swap found [`WAITING`]: in the common case the
//!   thread returns right after publishing. Setting the bit and publishing
//!   are both read-modify-writes of the same word, so a wake-up is never
//!   lost.
//! - The buffer and the result fields belong to the handler between its
//!   claim and `DONE`, and to the sampler otherwise. The sampler reads them
//!   only in `DONE`; the handler writes them only in `CLAIMED`. The `Release`
//!   swap to `DONE` and the sampler's `Acquire` load make the copy visible.
//! - Tickets wrap after 2^29 requests on one slot. A signal held pending
//!   across a whole wrap could match a newer request; the handler's checks
//!   below (its tid, the stack bounds) keep even that from reading memory it
//!   should not, and it then hands the request back.
//! - **Timeout while claimed.** When the deadline passes, the sampler tries
//!   `REQUESTED -> IDLE` (with or without [`WAITING`]). If a handler has
//!   claimed the request meanwhile, the sampler returns [`NoStack::Timeout`]
//!   and leaves the slot `CLAIMED`: the handler still owns the buffer. The next call waits (within its own
//!   deadline) for that handler's `DONE`, discards the stale result, and
//!   only then makes a new request. A dropped target whose slot is still
//!   claimed leaves its buffer with the slot; a new target takes that slot
//!   only once it is quiet again, and frees the old buffer then.
//! - **Bounded queue, no lock-out.** Real-time signals queue, and count
//!   against the user's `RLIMIT_SIGPENDING`. The handler notes the newest
//!   ticket delivered; when a signal sent earlier has not reached a handler,
//!   the sampler asks the kernel (`SigPnd`, `SigBlk` in the thread's
//!   `status`) before it sends another. Still pending and blocked: the
//!   thread blocks the signal, and [`NoStack::SignalBlocked`] comes back at
//!   once, nothing queued. No longer pending: someone else took it (a
//!   `sigtimedwait` on every signal), so it is forgotten and the request
//!   goes out. Pending but not blocked (the thread has not run since): at
//!   most [`MAX_UNDELIVERED`] wait before requests time out at once.
//! - **Exit.** Creating a target registers a thread-local destructor that
//!   marks the lease "exited" and wakes the futex, so a sampler waiting for a
//!   thread that exits returns [`NoStack::ThreadGone`] at once, and no
//!   signal is sent to a tid the system may give to a new thread.
//!
//! `loom` checks the handshake's state word (`loom_models` below, run by
//! `.ci/run`): a sampler that waits gets its own request's complete sample;
//! one that gives up leaves the slot to a handler that claimed, and a
//! handler that comes after it gave up claims nothing and writes nothing,
//! so the next request's sample is that request's alone.
//!
//! # Why the copy reads only mapped memory
//!
//! The handler copies from the interrupted stack pointer upward, clipped to
//! the bounds that `pthread_getattr_np` gave the thread when it created its
//! target, and only when it has checked that it runs on that very thread
//! (the tid the thread recorded in a thread-local equals the slot's tid,
//! and the thread has not exited) and that the stack pointer lies within
//! those bounds. Memory between a thread's
//! stack pointer and the top of its stack is mapped while the thread runs.
//! When the stack pointer lies elsewhere (the thread runs on another stack:
//! a coroutine, a `stacker` segment, an alternate signal stack), nothing is
//! copied and the sample says `truncated`.

use std::cell::RefCell;
use std::fmt;
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::blocked::{self, SignalState};
use super::handler::{PROCESS_ID, THIS_TID};
use super::install::{self, HandlerSpec};
use super::sys::{self, futex_wait, futex_wake};
use crate::stack::sampler::{SampleSignal, SamplerError};
use crate::stack::{CaptureMethod, NoStack, RawSample, Registers};

/// How many targets can live at once: one per monitored thread, so room for
/// programs with many thousands of threads. A free slot costs ~128 bytes of
/// zeroed static memory, which the kernel maps only once touched.
const SLOTS: usize = 16_384;

/// The process-wide slot table. Static, so never freed.
pub(super) static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// Numbers leases, so that a stale lease word never matches a newer lease.
static NEXT_LEASE: AtomicU32 = AtomicU32::new(1);

/// Sent signals that may wait undelivered before [`sample`] stops sending.
const MAX_UNDELIVERED: u32 = 4;

// The state word: `ticket << TICKET_SHIFT | WAITING? | phase`.
pub(super) const PHASE_MASK: u32 = 0b011;
const IDLE: u32 = 0;
pub(super) const REQUESTED: u32 = 1;
pub(super) const CLAIMED: u32 = 2;
pub(super) const DONE: u32 = 3;
/// Set by a sampler about to sleep on the word: whoever ends the phase
/// must wake it. Only ever set on `REQUESTED` and `CLAIMED`.
pub(super) const WAITING: u32 = 0b100;
pub(super) const TICKET_SHIFT: u32 = 3;
const TICKET_MASK: u32 = u32::MAX >> TICKET_SHIFT;

/// The state word of `ticket` in `phase`, without [`WAITING`].
const fn word(ticket: u32, phase: u32) -> u32 {
    ticket << TICKET_SHIFT | phase
}

/// How long a sampler polls for the answer before it sleeps on the futex.
/// Most answers come within it, and then the handler has nobody to wake: it
/// returns right after publishing. (A futex wake from the handler costs the
/// sampled thread several microseconds, more than a typical copy.) Plain
/// polling: yielding instead lets the scheduler starve the sampler.
const SPIN: Duration = Duration::from_micros(50);

/// The lease word's bit set when the thread has exited.
pub(super) const EXITED: u32 = 1;

/// One entry of [`TABLE`].
///
/// The state word has a cache line to itself: the sampler polls it while the
/// handler copies, and a handler whose stores to the result fields kept
/// losing their line to those polls would pause its thread several times as
/// long.
#[repr(C)]
pub(super) struct Slot {
    /// `ticket << TICKET_SHIFT | WAITING? | phase`; the futex word samplers
    /// wait on.
    pub(super) state: CachePadded<AtomicU32>,
    /// The newest ticket whose signal reached a handler, late or not.
    pub(super) delivered: AtomicU32,
    /// The ticket of the last signal sent. Sampler side only.
    pub(super) sent: AtomicU32,
    /// Whose turn it is to sample this slot: a futex lock (0 free, 1 taken,
    /// 2 taken with waiters).
    pub(super) turn: AtomicU32,
    /// 0 when free, else `lease id << 1`, with [`EXITED`] once the thread
    /// has exited.
    pub(super) lease: AtomicU32,
    // Written by the lease holder while no request is outstanding.
    pub(super) tid: AtomicU32,
    pub(super) stack_low: AtomicUsize,
    pub(super) stack_high: AtomicUsize,
    pub(super) buffer: AtomicPtr<u8>,
    pub(super) capacity: AtomicUsize,
    /// The most bytes the outstanding request wants copied. Written by the
    /// sampler before each request.
    pub(super) limit: AtomicUsize,
    // Written by the handler while `CLAIMED`.
    pub(super) registers: [AtomicU64; 4],
    pub(super) copied: AtomicUsize,
    pub(super) truncated: AtomicBool,
    pub(super) pause_ns: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            state: CachePadded::new(AtomicU32::new(0)),
            delivered: AtomicU32::new(0),
            sent: AtomicU32::new(0),
            turn: AtomicU32::new(0),
            lease: AtomicU32::new(0),
            tid: AtomicU32::new(0),
            stack_low: AtomicUsize::new(0),
            stack_high: AtomicUsize::new(0),
            buffer: AtomicPtr::new(ptr::null_mut()),
            capacity: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
            registers: [const { AtomicU64::new(0) }; 4],
            copied: AtomicUsize::new(0),
            truncated: AtomicBool::new(false),
            pause_ns: AtomicU64::new(0),
        }
    }

    /// Brings the slot to `IDLE` unless a handler owns it: takes back an
    /// outstanding request, discards a result nobody collected. Returns the
    /// idle ticket, or `None` while a handler is copying. Call it holding the
    /// slot's turn or its lease with no sampler around.
    fn quiesce(&self) -> Option<u32> {
        let mut state = self.state.load(Acquire);
        loop {
            let ticket = state >> TICKET_SHIFT;
            if state & PHASE_MASK == IDLE {
                return Some(ticket);
            }
            if state & PHASE_MASK == CLAIMED {
                return None;
            }
            // REQUESTED or DONE -> IDLE
            match self
                .state
                .compare_exchange(state, word(ticket, IDLE), AcqRel, Acquire)
            {
                Ok(_) => return Some(ticket),
                Err(now) => state = now,
            }
        }
    }

    /// Waits while `keep_waiting(state)` (given without [`WAITING`]) and the
    /// deadline has not passed; returns the last state seen, without
    /// [`WAITING`]. Polls for [`SPIN`], then sleeps on the futex, having set
    /// [`WAITING`] so that the handler (or an exiting thread) wakes it.
    fn wait(&self, deadline: &Deadline, keep_waiting: impl FnMut(u32) -> bool) -> u32 {
        self.wait_after(SPIN, deadline, keep_waiting)
    }

    /// [`Slot::wait`], polling for `spin` before it sleeps.
    fn wait_after(
        &self,
        spin: Duration,
        deadline: &Deadline,
        mut keep_waiting: impl FnMut(u32) -> bool,
    ) -> u32 {
        let started = Instant::now();
        loop {
            let state = self.state.load(Acquire);
            if !keep_waiting(state & !WAITING) {
                return state & !WAITING;
            }
            let Some(left) = deadline.remaining() else {
                return state & !WAITING;
            };
            if started.elapsed() < spin {
                std::hint::spin_loop();
                continue;
            }
            if state & PHASE_MASK != IDLE
                && state & PHASE_MASK != DONE
                && state & WAITING == 0
                && self
                    .state
                    .compare_exchange(state, state | WAITING, Relaxed, Relaxed)
                    .is_err()
            {
                continue;
            }
            futex_wait(&self.state, state | WAITING, left);
        }
    }

    /// Takes back the outstanding request `requested` unless a handler has
    /// claimed it: `Ok` if taken back, else the state now.
    fn take_back(&self, requested: u32) -> Result<u32, u32> {
        let idle = requested & !PHASE_MASK | IDLE;
        self.state.fetch_update(AcqRel, Acquire, |state| {
            (state & !WAITING == requested).then_some(idle)
        })
    }

    /// Frees the buffer. Only with no request outstanding: nobody can claim.
    fn free_buffer(&self) {
        let buffer = self.buffer.swap(ptr::null_mut(), Relaxed);
        let capacity = self.capacity.swap(0, Relaxed);
        if !buffer.is_null() {
            // SAFETY: `buffer` and `capacity` came from `Box::into_raw` of a
            // `Box<[u8]>` in `lease_slot`, and were swapped out above, so
            // this is the only free. No handler can hold it: handlers write
            // only after claiming a request, and none is outstanding.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(buffer, capacity)) });
        }
    }

    /// Called by the thread-local destructor of the thread that leased the
    /// slot as `lease`. The wake ends a sampler's wait at once; one that
    /// checked the lease just before and then went to sleep finds out at its
    /// deadline instead.
    fn mark_exited(&self, lease: u32) {
        if self
            .lease
            .compare_exchange(lease, lease | EXITED, AcqRel, Relaxed)
            .is_ok()
        {
            futex_wake(&self.state);
        }
    }

    /// Records that the signal for `ticket` reached a handler, unless a newer
    /// one did. Signal-safe: atomics only.
    pub(super) fn note_delivered(&self, ticket: u32) {
        let _ = self.delivered.fetch_update(Release, Relaxed, |newest| {
            let ahead = ticket.wrapping_sub(newest) & TICKET_MASK;
            (ahead != 0 && ahead <= TICKET_MASK / 2).then_some(ticket)
        });
    }

    /// Counts every signal sent as delivered: for signals someone else took.
    fn forget_undelivered(&self) {
        self.delivered.store(self.sent.load(Relaxed), Release);
    }

    /// How many sent signals have not reached a handler yet.
    fn undelivered(&self) -> u32 {
        let behind = self
            .sent
            .load(Relaxed)
            .wrapping_sub(self.delivered.load(Acquire))
            & TICKET_MASK;
        // "Delivered ahead of sent" only comes from a forged value: ignore it.
        if behind > TICKET_MASK / 2 {
            0
        } else {
            behind
        }
    }

    /// The sampler's exclusive turn on this slot, if it comes before the
    /// deadline.
    fn take_turn(&self, deadline: &Deadline) -> Option<Turn<'_>> {
        if self.turn.compare_exchange(0, 1, Acquire, Relaxed).is_ok() {
            return Some(Turn(&self.turn));
        }
        loop {
            if self.turn.swap(2, Acquire) == 0 {
                return Some(Turn(&self.turn));
            }
            futex_wait(&self.turn, 2, deadline.remaining()?);
        }
    }
}

/// A sampler's turn on a slot; passes it on when dropped.
struct Turn<'a>(&'a AtomicU32);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.0.swap(0, Release) == 2 {
            futex_wake(self.0);
        }
    }
}

/// A deadline that a huge timeout turns into "none".
pub(super) struct Deadline(Option<Instant>);

impl Deadline {
    pub(super) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// The time left, or `None` once the deadline has passed.
    fn remaining(&self) -> Option<Duration> {
        match self.0 {
            None => Some(Duration::from_secs(3600)),
            Some(deadline) => deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero()),
        }
    }
}

/// A thread's lease on one slot: what the signal path needs to sample it.
#[derive(Debug)]
pub(in crate::stack::sampler) struct Lease {
    index: usize,
    lease: u32,
    tid: u32,
}

impl Lease {
    /// Leases a slot for the calling thread, `tid`, whose stack is
    /// `[low, high)`, with a buffer for `copy_limit` bytes of it.
    pub(super) fn for_this_thread(
        tid: u32,
        low: usize,
        high: usize,
        copy_limit: usize,
    ) -> Result<Lease, SamplerError> {
        // Written here, on the thread, so that the handler's read of it never
        // has to allocate this thread's TLS block.
        THIS_TID
            .try_with(|this| this.set(tid))
            .map_err(|_| SamplerError::ThreadExiting)?;
        let capacity = copy_limit.min(high - low);
        let (index, lease) = lease_slot(tid, low, high, vec![0; capacity].into_boxed_slice())?;
        let leased = Lease { index, lease, tid };
        // Watch this thread's exit. Entries of leases dropped since are
        // pruned here, so the list stays as long as the live leases.
        EXIT_WATCH
            .try_with(|watch| {
                let mut watched = watch.0.borrow_mut();
                watched.retain(|&(index, lease)| TABLE[index].lease.load(Relaxed) == lease);
                watched.push((index, lease));
            })
            .map_err(|_| SamplerError::ThreadExiting)?;
        Ok(leased)
    }

    pub(super) fn tid(&self) -> u32 {
        self.tid
    }

    pub(super) fn slot(&self) -> &'static Slot {
        &TABLE[self.index]
    }

    /// Whether the thread has exited.
    pub(super) fn exited(&self) -> bool {
        self.slot().lease.load(Acquire) != self.lease
    }

    /// Reads the thread from outside if it is blocked in the kernel: at
    /// most `max_bytes` of its stack, copied into the slot's buffer (which
    /// holding the turn with the slot idle makes ours) and out of it, with
    /// how many times the thread had been put on a CPU.
    /// `Ok(None)` when it is running, or when the kernel does not let us
    /// look: only a signal can sample it then. Waits at most until
    /// `deadline` for its turn.
    pub(super) fn read_blocked(
        &self,
        max_bytes: usize,
        deadline: &Deadline,
    ) -> Result<Option<(RawSample, u64)>, NoStack> {
        let slot = self.slot();
        let Some(_turn) = slot.take_turn(deadline) else {
            return Err(NoStack::Timeout);
        };
        // A handler still busy with an earlier, abandoned request owns the
        // buffer: wait for it to finish.
        slot.wait(deadline, |state| state & PHASE_MASK == CLAIMED);
        if slot.quiesce().is_none() {
            return Err(NoStack::Timeout);
        }
        let capacity = slot.capacity.load(Relaxed).min(max_bytes);
        // SAFETY: we hold the slot's turn and it is idle, so no request is
        // outstanding: no handler can claim it and write the buffer, and no
        // other sampler can use it, until the turn is passed on at the end
        // of this function. `buffer` and `capacity` describe the live
        // `Box<[u8]>` the lease holds (at most `capacity` bytes of it).
        let buffer = unsafe { std::slice::from_raw_parts_mut(slot.buffer.load(Relaxed), capacity) };
        let (low, high) = (slot.stack_low.load(Relaxed), slot.stack_high.load(Relaxed));
        let read = match blocked::read(self.tid, low, high, buffer) {
            Ok(Some(read)) => read,
            Ok(None) | Err(blocked::ReadError::Unavailable) => return Ok(None),
            Err(blocked::ReadError::Gone) => return Err(NoStack::ThreadGone),
        };
        let sp = read.registers.sp as usize;
        let available = if (low..high).contains(&sp) {
            high - sp
        } else {
            usize::MAX
        };
        let sample = RawSample {
            #[cfg(any(test, feature = "test-util"))]
            tid: self.tid,
            registers: read.registers,
            stack_start: read.registers.sp,
            stack: buffer[..read.copied].to_vec(),
            truncated: read.copied < available,
            #[cfg(feature = "test-util")]
            pause_ns: 0,
            method: CaptureMethod::Blocked,
            syscall: read.syscall,
        };
        Ok(Some((sample, read.scheduled)))
    }

    /// The slot's index, for tests.
    #[cfg(test)]
    pub(super) fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let slot = self.slot();
        // No sampler holds `&self` any more. If a handler is still copying,
        // its buffer stays with the slot until the next lease finds it quiet.
        if slot.quiesce().is_some() {
            slot.free_buffer();
        }
        slot.lease.store(0, Release);
    }
}

/// Leases a free, quiet slot to the calling thread.
fn lease_slot(
    tid: u32,
    low: usize,
    high: usize,
    buffer: Box<[u8]>,
) -> Result<(usize, u32), SamplerError> {
    let id = NEXT_LEASE.fetch_add(1, Relaxed) & (u32::MAX >> 1);
    let lease = id.max(1) << 1;
    for (index, slot) in TABLE.iter().enumerate() {
        if slot
            .lease
            .compare_exchange(0, lease, Acquire, Relaxed)
            .is_err()
        {
            continue;
        }
        let Some(ticket) = slot.quiesce() else {
            // A handler for a dropped target is still copying into the old
            // buffer: leave this slot to it.
            slot.lease.store(0, Release);
            continue;
        };
        slot.free_buffer();
        slot.tid.store(tid, Relaxed);
        slot.stack_low.store(low, Relaxed);
        slot.stack_high.store(high, Relaxed);
        slot.capacity.store(buffer.len(), Relaxed);
        slot.buffer
            .store(Box::into_raw(buffer).cast::<u8>(), Relaxed);
        slot.sent.store(ticket, Relaxed);
        slot.delivered.store(ticket, Relaxed);
        return Ok((index, lease));
    }
    Err(SamplerError::TooManyTargets { limit: SLOTS })
}

thread_local! {
    /// The leases of the targets created on this thread, marked exited when
    /// the thread ends.
    static EXIT_WATCH: ExitWatch = const { ExitWatch(RefCell::new(Vec::new())) };
}

struct ExitWatch(RefCell<Vec<(usize, u32)>>);

impl Drop for ExitWatch {
    fn drop(&mut self) {
        for &(index, lease) in self.0.get_mut().iter() {
            TABLE[index].mark_exited(lease);
        }
    }
}

/// Asks `lease`'s thread to run `spec.handler` and waits for the result.
#[cfg(any(test, feature = "test-util"))]
pub(in crate::stack::sampler) fn sample_with(
    signal: SampleSignal,
    spec: &HandlerSpec,
    lease: &Lease,
    max_bytes: usize,
    timeout: Duration,
) -> Result<RawSample, NoStack> {
    let deadline = Deadline::after(timeout);
    request_with(signal, spec, lease, max_bytes, &deadline)?.finish(&deadline)
}

/// Asks `lease`'s thread to run `spec.handler`, without waiting for the
/// answer. Waits, at most until `deadline`, only for its turn on the slot
/// and for a handler still busy with an abandoned request.
pub(super) fn request_with(
    signal: SampleSignal,
    spec: &HandlerSpec,
    lease: &Lease,
    max_bytes: usize,
    deadline: &Deadline,
) -> Result<Request, NoStack> {
    let slot = lease.slot();
    if lease.exited() {
        return Err(NoStack::ThreadGone);
    }
    if !install::still_installed(signal, spec) {
        return Err(NoStack::Disabled(format!(
            "the handler for {signal} was replaced by another one; hangwatch no longer receives it"
        )));
    }
    let Some(turn) = slot.take_turn(deadline) else {
        return Err(NoStack::Timeout);
    };
    // A handler still busy with an earlier, abandoned request owns the
    // buffer: wait for it to finish.
    slot.wait(deadline, |state| state & PHASE_MASK == CLAIMED);
    let Some(idle) = slot.quiesce() else {
        return Err(NoStack::Timeout);
    };
    let undelivered = slot.undelivered();
    if undelivered > 0 {
        match blocked::signal_state(lease.tid, signal.raw()) {
            Ok(SignalState { pending: false, .. }) => slot.forget_undelivered(),
            Ok(SignalState { blocked: true, .. }) => return Err(NoStack::SignalBlocked),
            _ if undelivered >= MAX_UNDELIVERED => return Err(NoStack::Timeout),
            _ => {}
        }
    }

    let request = Request {
        slot,
        tid: lease.tid,
        lease: lease.lease,
        ticket: (idle + 1) & TICKET_MASK,
        _turn: turn,
    };
    // Holding the turn with the slot idle, nobody else writes the state or
    // the limit; the `Release` store of the request publishes both.
    slot.limit.store(max_bytes, Relaxed);
    slot.state.store(request.word(REQUESTED), Release);
    slot.sent.store(request.ticket, Relaxed);
    let pid = sys::getpid();
    PROCESS_ID.store(pid, Relaxed);
    let value = lease.index << 32 | request.word(REQUESTED) as usize;
    if let Err(error) = sys::queue_signal(pid, lease.tid, signal.raw(), value) {
        return Err(match error.raw_os_error() {
            Some(libc::ESRCH) => NoStack::ThreadGone,
            // The queue is full: the thread takes no signals.
            Some(libc::EAGAIN) => NoStack::Timeout,
            _ => NoStack::Disabled(format!("could not send {signal}: {error}")),
        });
    }
    Ok(request)
}

/// A request sent and not yet taken: it holds the sampler's turn on the
/// slot. Dropping it gives the request up (a late handler then does
/// nothing) and passes the turn on.
pub(in crate::stack::sampler) struct Request {
    slot: &'static Slot,
    tid: u32,
    lease: u32,
    ticket: u32,
    _turn: Turn<'static>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("tid", &self.tid)
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl Request {
    fn word(&self, phase: u32) -> u32 {
        word(self.ticket, phase)
    }

    fn exited(&self) -> bool {
        self.slot.lease.load(Acquire) != self.lease
    }

    /// Whether the handler has answered.
    pub(super) fn is_answered(&self) -> bool {
        self.slot.state.load(Acquire) & !WAITING == self.word(DONE)
    }

    /// Waits for the answer until `deadline`, keeping the request; returns
    /// whether it came.
    /// Sleeps at once, without polling first: whoever waits for many
    /// requests must not spend a CPU that the threads it asked may need.
    pub(super) fn await_answer(&self, deadline: &Deadline) -> bool {
        let (requested, claimed) = (self.word(REQUESTED), self.word(CLAIMED));
        let state = self.slot.wait_after(Duration::ZERO, deadline, |state| {
            (state == requested || state == claimed) && !self.exited()
        });
        state == self.word(DONE)
    }

    /// Waits for the answer until `deadline`, then takes it, or gives up.
    pub(super) fn finish(self, deadline: &Deadline) -> Result<RawSample, NoStack> {
        let (requested, claimed, done) =
            (self.word(REQUESTED), self.word(CLAIMED), self.word(DONE));
        let slot = self.slot;
        let state = slot.wait(deadline, |state| {
            (state == requested || state == claimed) && !self.exited()
        });
        // Unless it is done, take the request back, so that a late handler
        // does nothing; if a handler has claimed it, that handler owns the
        // buffer until it is done, and the next call waits for it. (It may
        // have finished just now.)
        if state != done && slot.take_back(requested) != Err(done) {
            return Err(if self.exited() {
                NoStack::ThreadGone
            } else {
                NoStack::Timeout
            });
        }

        let copied = slot.copied.load(Relaxed);
        // SAFETY: the slot is `DONE` and we hold its turn: the handler that
        // wrote the buffer has finished (its `Release` swap to `DONE` pairs
        // with our `Acquire` load), and no handler can write it again before
        // a new request. The buffer lives as long as the target's lease,
        // which the caller keeps alive while a request is outstanding (the
        // public `PendingSample` holds the target), and `copied` never
        // exceeds its capacity.
        let stack =
            unsafe { std::slice::from_raw_parts(slot.buffer.load(Relaxed), copied) }.to_vec();
        let [ip, sp, fp, lr] = slot
            .registers
            .each_ref()
            .map(|register| register.load(Relaxed));
        let sample = RawSample {
            #[cfg(any(test, feature = "test-util"))]
            tid: self.tid,
            registers: Registers { ip, sp, fp, lr },
            stack_start: sp,
            stack,
            truncated: slot.truncated.load(Relaxed),
            #[cfg(feature = "test-util")]
            pause_ns: slot.pause_ns.load(Relaxed),
            method: CaptureMethod::Signal,
            syscall: None,
        };
        slot.state.store(self.word(IDLE), Release);
        Ok(sample)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // A request still outstanding is taken back; one answered and not
        // taken is returned to idle; one already taken is idle, and this
        // does nothing. A claimed one stays with its handler.
        let _ = self.slot.take_back(self.word(REQUESTED));
        let done = self.word(DONE);
        let _ = self
            .slot
            .state
            .compare_exchange(done, self.word(IDLE), AcqRel, Acquire);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;
    use crate::stack::sampler::linux::handler::Claim;
    use crate::stack::sampler::linux::install::{
        block_sample_signal_on_this_thread, install_handler, unblock_sample_signal_on_this_thread,
        COPY_HANDLER,
    };

    fn lease_this_thread() -> Lease {
        let (low, high) = sys::stack_bounds().unwrap();
        Lease::for_this_thread(sys::gettid(), low, high, 4096).unwrap()
    }

    fn sample(
        signal: SampleSignal,
        lease: &Lease,
        timeout: Duration,
    ) -> Result<RawSample, NoStack> {
        sample_with(signal, &COPY_HANDLER, lease, usize::MAX, timeout)
    }

    /// A sampler gives up while the handler (played here by the test) holds
    /// the claim: it must leave the buffer alone, the next sampler must wait
    /// for the handler, a new lease must not take the slot, and once the
    /// handler is done the target samples normally again.
    #[test]
    fn timeout_while_claimed_leaves_the_buffer_to_the_handler() {
        let signal = SampleSignal::default();
        install_handler(signal, &COPY_HANDLER).unwrap();
        // The real signal stays queued while we play the handler.
        block_sample_signal_on_this_thread(&signal).unwrap();
        let target = lease_this_thread();
        let slot = target.slot();

        let claim = thread::scope(|scope| {
            let sampler = scope.spawn(|| sample(signal, &target, Duration::from_millis(300)));
            let requested = loop {
                let state = slot.state.load(Acquire);
                if state & PHASE_MASK == REQUESTED {
                    break state & !WAITING;
                }
                thread::yield_now();
            };
            let claimed = requested & !PHASE_MASK | CLAIMED;
            slot.state
                .fetch_update(Acquire, Relaxed, |state| {
                    (state & !WAITING == requested).then_some(state & WAITING | claimed)
                })
                .unwrap();
            let claim = Claim::for_tests(slot, claimed);
            assert_eq!(sampler.join().unwrap().unwrap_err(), NoStack::Timeout);
            let state = slot.state.load(Acquire);
            assert_eq!(state & !WAITING, claimed, "the claim still stands");
            claim
        });

        // The next sampler waits for the handler, within its own deadline.
        let started = Instant::now();
        let late = thread::scope(|scope| {
            scope
                .spawn(|| sample(signal, &target, Duration::from_millis(100)))
                .join()
                .unwrap()
        });
        assert_eq!(late.unwrap_err(), NoStack::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(100));

        // A new lease passes over the claimed slot of a dropped target.
        let index = target.index();
        drop(target);
        let other = lease_this_thread();
        assert_ne!(other.index(), index);

        // The handler finishes; a new lease may take the slot, and the
        // queued signals, now stale, do nothing when delivered.
        claim.finish(Registers::default(), 0, false, sys::monotonic_ns());
        assert_eq!(slot.quiesce().map(|_| ()), Some(()));
        unblock_sample_signal_on_this_thread(&signal).unwrap();
        assert_eq!(slot.state.load(Acquire) & PHASE_MASK, IDLE);

        // This thread samples normally again (from another thread).
        let (sent, received) = mpsc::channel();
        thread::scope(|scope| {
            scope.spawn(|| sent.send(sample(signal, &other, Duration::from_secs(10))));
        });
        let sample = received.recv().unwrap().unwrap();
        assert_eq!(sample.tid, sys::gettid());
        assert!(!sample.stack.is_empty());
    }
}

#[cfg(hangwatch_loom)]
mod loom_models {
    //! The handshake over every interleaving of a sampler and the sampled
    //! thread's handlers. The slot table is a static of `const`-made `std`
    //! atomics, which loom's cannot be, and its waits are futex calls and
    //! clock deadlines; so this is the smallest faithful extraction of the
    //! state-word protocol: each step below is the real one's atomic
    //! operation on the real word layout ([`word`], the phases), with its
    //! orderings, and names the function it copies. The buffer and result
    //! fields are one `loom` cell, so that loom reports any access that is
    //! not ordered by the handshake. Left out: the [`WAITING`] bit and the
    //! futex (a read-modify-write of the same word either way), the turn
    //! (one sampler here), leases and the delivery count.

    use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicU32;
    use loom::sync::Arc;
    use loom::thread::yield_now;

    use super::{word, CLAIMED, DONE, IDLE, PHASE_MASK, REQUESTED, TICKET_SHIFT, WAITING};

    struct Slot {
        state: AtomicU32,
        /// The buffer and the result fields: the ticket of the request
        /// whose sample they hold.
        sample: UnsafeCell<u32>,
        /// The signals queued to the sampled thread: each request's word,
        /// 0 until it is sent.
        signals: [AtomicU32; 2],
    }

    impl Slot {
        /// `Slot::take_back`.
        fn take_back(&self, requested: u32) -> Result<u32, u32> {
            let idle = requested & !PHASE_MASK | IDLE;
            self.state.fetch_update(AcqRel, Acquire, |state| {
                (state & !WAITING == requested).then_some(idle)
            })
        }

        /// `Slot::quiesce`.
        fn quiesce(&self) -> Option<u32> {
            let mut state = self.state.load(Acquire);
            loop {
                let ticket = state >> TICKET_SHIFT;
                if state & PHASE_MASK == IDLE {
                    return Some(ticket);
                }
                if state & PHASE_MASK == CLAIMED {
                    return None;
                }
                match self
                    .state
                    .compare_exchange(state, word(ticket, IDLE), AcqRel, Acquire)
                {
                    Ok(_) => return Some(ticket),
                    Err(now) => state = now,
                }
            }
        }

        /// `request_with`, from its wait for a handler still busy with an
        /// abandoned request: returns the request's word.
        fn request(&self, n: usize) -> u32 {
            while self.state.load(Acquire) & PHASE_MASK == CLAIMED {
                yield_now();
            }
            let idle = self
                .quiesce()
                .expect("with no request out, no handler can claim");
            let requested = word(idle + 1, REQUESTED);
            self.state.store(requested, Release);
            // `queue_signal`: the signal carries the request's word.
            self.signals[n].store(requested, Release);
            requested
        }

        /// `Request::finish` with a deadline that passes at its first look
        /// (`patient`: one that does not pass): the sample if it was
        /// taken, `None` on a timeout.
        fn finish(&self, requested: u32, patient: bool) -> Option<u32> {
            let ticket = requested >> TICKET_SHIFT;
            let (claimed, done) = (word(ticket, CLAIMED), word(ticket, DONE));
            let mut state = self.state.load(Acquire);
            while patient && (state == requested || state == claimed) {
                yield_now();
                state = self.state.load(Acquire);
            }
            if state != done && self.take_back(requested) != Err(done) {
                return None;
            }
            // SAFETY: the state is `DONE` (seen with Acquire, or handed back
            // by `take_back`), so the handler's write happened before and no
            // handler writes again until the slot is made idle below; loom's
            // cell checks exactly that this read races with no write.
            let sample = self.sample.with(|sample| unsafe { *sample });
            self.state.store(word(ticket, IDLE), Release);
            Some(sample)
        }

        /// The handler for the signal carrying `requested`: `Claim::accept`,
        /// the copy, `Claim::finish`. Returns whether it claimed.
        fn handle(&self, requested: u32) -> bool {
            let claimed = requested & !PHASE_MASK | CLAIMED;
            let claim = self.state.fetch_update(Acquire, Relaxed, |state| {
                (state & !WAITING == requested).then_some(state & WAITING | claimed)
            });
            if claim.is_err() {
                return false;
            }
            // SAFETY: this handler's compare-and-swap moved the state from
            // the request to `CLAIMED`, so no other handler claims it and the
            // sampler reads only after `DONE` below; loom's cell checks that
            // this write races with no read.
            self.sample
                .with_mut(|sample| unsafe { *sample = requested >> TICKET_SHIFT });
            self.state.swap(claimed | DONE, Release);
            true
        }
    }

    /// The sampler asks, gives up at once if `hasty` (else waits for the
    /// answer), then asks again and waits for that answer; the sampled
    /// thread answers each signal in turn, the first perhaps after the
    /// sampler gave up on it. Each sample the sampler reads is complete and
    /// its own request's; a handler claims only the request outstanding.
    fn each_sample_is_its_own_requests(hasty: bool) {
        let slot = Arc::new(Slot {
            state: AtomicU32::new(word(0, IDLE)),
            sample: UnsafeCell::new(0),
            signals: [AtomicU32::new(0), AtomicU32::new(0)],
        });
        let thread = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                let mut claims = [false; 2];
                for (n, claim) in claims.iter_mut().enumerate() {
                    let requested = loop {
                        match slot.signals[n].load(Acquire) {
                            0 => yield_now(),
                            requested => break requested,
                        }
                    };
                    *claim = slot.handle(requested);
                }
                claims
            })
        };
        let first = slot.request(0);
        let taken = slot.finish(first, !hasty);
        assert!(taken.is_none_or(|ticket| ticket == 1));
        let second = slot.request(1);
        assert_eq!(slot.finish(second, true), Some(2), "the second answer");
        let claims = thread.join().unwrap();
        assert!(claims[1], "the outstanding request is claimed");
        if !hasty {
            assert!(
                claims[0] && taken == Some(1),
                "a patient sampler gets its answer"
            );
        }
    }

    #[test]
    fn a_late_handler_never_writes_into_the_next_request() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| each_sample_is_its_own_requests(true));
    }

    #[test]
    fn an_answered_request_hands_its_sample_to_its_sampler_only() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| each_sample_is_its_own_requests(false));
    }
}
