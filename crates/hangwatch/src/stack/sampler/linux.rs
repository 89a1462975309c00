//! The Linux sampler (x86-64 and aarch64): a static slot table, a
//! compare-and-swap handshake per slot, `rt_tgsigqueueinfo` to ask, a futex
//! to wait for the answer.
//!
//! # The slot table
//!
//! [`TABLE`] is a static array of [`Slot`]s: it is never freed, so any value
//! a signal carries decodes, at worst, to a slot that is no longer about this
//! request, never to freed memory. A [`Target`] leases one slot for its
//! lifetime and records there its thread's tid, its stack bounds and a
//! buffer of `copy_limit` bytes, allocated (not touched: the pages a copy
//! needs are faulted in by the first copy) when the target is created.
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
//! - **Bounded queue.** Real-time signals queue, and count against the
//!   user's `RLIMIT_SIGPENDING`. A thread that blocks the signal would gather
//!   one more queued signal per sample, so the handler notes the newest
//!   ticket delivered, and while [`MAX_UNDELIVERED`] sent signals wait
//!   undelivered, [`sample`] returns [`NoStack::Timeout`] at once instead of
//!   queueing more.
//! - **Exit.** Creating a target registers a thread-local destructor that
//!   marks the lease "exited" and wakes the futex, so a sampler waiting for a
//!   thread that exits returns [`NoStack::ThreadGone`] at once, and no
//!   signal is sent to a tid the system may give to a new thread.
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

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::fmt;
use std::io;
use std::mem::{self, MaybeUninit};
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use libc::{c_int, siginfo_t};

use super::{SampleSignal, SamplerError};
use crate::stack::{NoStack, RawSample, Registers};

/// How many targets can live at once: one per monitored thread, so room for
/// programs with many thousands of threads. A free slot costs ~128 bytes of
/// zeroed static memory, which the kernel maps only once touched.
const SLOTS: usize = 16_384;

/// The process-wide slot table. Static, so never freed.
static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// Serializes installs, so that two of them cannot both see `SIG_DFL`.
static INSTALL: Mutex<()> = Mutex::new(());

/// Numbers leases, so that a stale lease word never matches a newer lease.
static NEXT_LEASE: AtomicU32 = AtomicU32::new(1);

/// Sent signals that may wait undelivered before [`sample`] stops sending.
const MAX_UNDELIVERED: u32 = 4;

// The state word: `ticket << TICKET_SHIFT | WAITING? | phase`.
const PHASE_MASK: u32 = 0b011;
const IDLE: u32 = 0;
const REQUESTED: u32 = 1;
const CLAIMED: u32 = 2;
const DONE: u32 = 3;
/// Set by a sampler about to sleep on the word: whoever ends the phase
/// must wake it. Only ever set on `REQUESTED` and `CLAIMED`.
const WAITING: u32 = 0b100;
const TICKET_SHIFT: u32 = 3;
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
const EXITED: u32 = 1;

/// A signal handler installed with `SA_SIGINFO`.
pub(super) type Handler = extern "C" fn(c_int, *mut siginfo_t, *mut c_void);

/// A handler and the flags it is installed with.
pub(super) struct HandlerSpec {
    pub(super) handler: Handler,
    pub(super) flags: c_int,
}

/// Ours: copy registers and stack. `SA_ONSTACK` lets it run on the thread's
/// alternate signal stack (Rust threads have one), so it works even when the
/// thread hangs near the end of its stack; `SA_RESTART` restarts the
/// interrupted system calls that can be restarted (`read`, `futex` waits).
const COPY_HANDLER: HandlerSpec = HandlerSpec {
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

pub(super) fn install(signal: SampleSignal) -> Result<(), SamplerError> {
    install_handler(signal, &COPY_HANDLER)
}

pub(super) fn sample(
    signal: SampleSignal,
    target: &Target,
    max_bytes: usize,
    timeout: Duration,
) -> Result<RawSample, NoStack> {
    sample_with(signal, &COPY_HANDLER, target, max_bytes, timeout)
}

/// Sends a request for a sample without waiting for anything.
pub(super) fn request(
    signal: SampleSignal,
    target: &Target,
    max_bytes: usize,
) -> Result<Request, NoStack> {
    let now = Deadline::after(Duration::ZERO);
    request_with(signal, &COPY_HANDLER, target, max_bytes, &now)
}

/// Waits for `request`'s answer at most `timeout`.
pub(super) fn finish(request: Request, timeout: Duration) -> Result<RawSample, NoStack> {
    request.finish(&Deadline::after(timeout))
}

/// Installs `spec` for `signal`, unless something other than `SIG_DFL`,
/// `SIG_IGN` or `spec` itself handles it.
pub(super) fn install_handler(
    signal: SampleSignal,
    spec: &HandlerSpec,
) -> Result<(), SamplerError> {
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
    let current = current_handler(raw).map_err(install_error)?;
    if current == spec.handler as usize {
        return Ok(());
    }
    if current != libc::SIG_DFL && current != libc::SIG_IGN {
        return Err(SamplerError::ForeignHandler { signal });
    }
    // SAFETY: `sigaction` is plain data for which all zeroes is a valid
    // value (no handler, no flags, empty mask).
    let mut action: libc::sigaction = unsafe { mem::zeroed() };
    action.sa_sigaction = spec.handler as usize;
    action.sa_flags = spec.flags;
    // Every real-time signal waits while one of our handlers runs: a second
    // sampling signal (ours, late, or the reference sampler's) must not nest
    // inside a handler that runs on the small alternate signal stack, where
    // an unwinding handler would overflow it.
    // SAFETY: `sa_mask` is a `sigset_t` we own; `sigemptyset` and `sigaddset`
    // only write it, with signal numbers in range.
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        for blocked in min..=max {
            libc::sigaddset(&mut action.sa_mask, blocked);
        }
    }
    // SAFETY: `action` is initialized and `spec.handler` has the signature
    // the kernel calls for `SA_SIGINFO`; a null old action is allowed.
    if unsafe { libc::sigaction(raw, &action, ptr::null_mut()) } != 0 {
        return Err(install_error(io::Error::last_os_error()));
    }
    Ok(())
}

/// The address of the handler now installed for `signal` (or `SIG_DFL`,
/// `SIG_IGN`).
fn current_handler(signal: c_int) -> io::Result<usize> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is writable.
    if unsafe { libc::sigaction(signal, ptr::null(), old.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed, then filled in by a successful `sigaction`.
    Ok(unsafe { old.assume_init() }.sa_sigaction)
}

/// Blocks `signal` on the calling thread, so that samples of it time out.
/// For tests of that case.
#[doc(hidden)]
pub fn block_sample_signal_on_this_thread(signal: &SampleSignal) -> io::Result<()> {
    set_blocked(signal.raw(), libc::SIG_BLOCK)
}

/// Undoes [`block_sample_signal_on_this_thread`]: the signals that queued
/// meanwhile are delivered now.
#[doc(hidden)]
pub fn unblock_sample_signal_on_this_thread(signal: &SampleSignal) -> io::Result<()> {
    set_blocked(signal.raw(), libc::SIG_UNBLOCK)
}

fn set_blocked(signal: c_int, how: c_int) -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initializes the set; `sigaddset` and
    // `pthread_sigmask` get valid pointers to it, and a null old mask is
    // allowed.
    let result = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        if libc::sigaddset(set.as_mut_ptr(), signal) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::pthread_sigmask(how, set.as_ptr(), ptr::null_mut())
    };
    match result {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

/// Installs a handler that does nothing for `signal`, standing for a
/// foreign library's. For tests of [`super::Sampler::install`]'s refusal.
#[doc(hidden)]
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

/// One entry of [`TABLE`].
///
/// The state word has a cache line to itself: the sampler polls it while the
/// handler copies, and a handler whose stores to the result fields kept
/// losing their line to those polls would pause its thread several times as
/// long.
#[repr(C)]
struct Slot {
    /// `ticket << TICKET_SHIFT | WAITING? | phase`; the futex word samplers
    /// wait on.
    state: CachePadded<AtomicU32>,
    /// The newest ticket whose signal reached a handler, late or not.
    delivered: AtomicU32,
    /// The ticket of the last signal sent. Sampler side only.
    sent: AtomicU32,
    /// Whose turn it is to sample this slot: a futex lock (0 free, 1 taken,
    /// 2 taken with waiters).
    turn: AtomicU32,
    /// 0 when free, else `lease id << 1`, with [`EXITED`] once the thread
    /// has exited.
    lease: AtomicU32,
    // Written by the lease holder while no request is outstanding.
    tid: AtomicU32,
    stack_low: AtomicUsize,
    stack_high: AtomicUsize,
    buffer: AtomicPtr<u8>,
    capacity: AtomicUsize,
    /// The most bytes the outstanding request wants copied. Written by the
    /// sampler before each request.
    limit: AtomicUsize,
    // Written by the handler while `CLAIMED`.
    registers: [AtomicU64; 4],
    copied: AtomicUsize,
    truncated: AtomicBool,
    pause_ns: AtomicU64,
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
    fn wait(&self, deadline: &Deadline, mut keep_waiting: impl FnMut(u32) -> bool) -> u32 {
        let started = Instant::now();
        loop {
            let state = self.state.load(Acquire);
            if !keep_waiting(state & !WAITING) {
                return state & !WAITING;
            }
            let Some(left) = deadline.remaining() else {
                return state & !WAITING;
            };
            if started.elapsed() < SPIN {
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
    fn note_delivered(&self, ticket: u32) {
        let _ = self.delivered.fetch_update(Release, Relaxed, |newest| {
            let ahead = ticket.wrapping_sub(newest) & TICKET_MASK;
            (ahead != 0 && ahead <= TICKET_MASK / 2).then_some(ticket)
        });
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

/// The platform half of [`super::SampleTarget`]: a lease on one slot.
#[derive(Debug)]
pub(super) struct Target {
    index: usize,
    lease: u32,
    tid: u32,
}

impl Target {
    pub(super) fn current_thread(copy_limit: usize) -> Result<Target, SamplerError> {
        let tid = gettid();
        // Written here, on the thread, so that the handler's read of it never
        // has to allocate this thread's TLS block.
        THIS_TID
            .try_with(|this| this.set(tid))
            .map_err(|_| SamplerError::ThreadExiting)?;
        let (low, high) = stack_bounds().map_err(SamplerError::StackBounds)?;
        let capacity = copy_limit.min(high - low);
        let (index, lease) = lease_slot(tid, low, high, vec![0; capacity].into_boxed_slice())?;
        let target = Target { index, lease, tid };
        // Watch this thread's exit. Entries of targets dropped since are
        // pruned here, so the list stays as long as the live targets.
        EXIT_WATCH
            .try_with(|watch| {
                let mut watched = watch.0.borrow_mut();
                watched.retain(|&(index, lease)| TABLE[index].lease.load(Relaxed) == lease);
                watched.push((index, lease));
            })
            .map_err(|_| SamplerError::ThreadExiting)?;
        Ok(target)
    }

    pub(super) fn tid(&self) -> u32 {
        self.tid
    }

    fn slot(&self) -> &'static Slot {
        &TABLE[self.index]
    }

    fn exited(&self) -> bool {
        self.slot().lease.load(Acquire) != self.lease
    }
}

impl Drop for Target {
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
    /// This thread's tid, once it has created a target (0 before): the
    /// handler's check that it runs on the slot's thread, without the
    /// `gettid` system call. Const-initialized and without a destructor, so
    /// reading it is a plain load, safe in a signal handler.
    static THIS_TID: Cell<u32> = const { Cell::new(0) };
}

/// This process's id, as of the latest signal sent: what the handler checks
/// `si_pid` against. Written by `send` before each signal, so it is right in
/// a forked child too.
static PROCESS_ID: AtomicI32 = AtomicI32::new(0);

struct ExitWatch(RefCell<Vec<(usize, u32)>>);

impl Drop for ExitWatch {
    fn drop(&mut self) {
        for &(index, lease) in self.0.get_mut().iter() {
            TABLE[index].mark_exited(lease);
        }
    }
}

/// Asks `target`'s thread to run `spec.handler` and waits for the result.
pub(super) fn sample_with(
    signal: SampleSignal,
    spec: &HandlerSpec,
    target: &Target,
    max_bytes: usize,
    timeout: Duration,
) -> Result<RawSample, NoStack> {
    let deadline = Deadline::after(timeout);
    request_with(signal, spec, target, max_bytes, &deadline)?.finish(&deadline)
}

/// Asks `target`'s thread to run `spec.handler`, without waiting for the
/// answer. Waits, at most until `deadline`, only for its turn on the slot
/// and for a handler still busy with an abandoned request.
pub(super) fn request_with(
    signal: SampleSignal,
    spec: &HandlerSpec,
    target: &Target,
    max_bytes: usize,
    deadline: &Deadline,
) -> Result<Request, NoStack> {
    let slot = target.slot();
    if target.exited() {
        return Err(NoStack::ThreadGone);
    }
    // Sending a signal whose handler was replaced by SIG_DFL would kill the
    // process.
    if current_handler(signal.raw()).ok() != Some(spec.handler as usize) {
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
    if slot.undelivered() >= MAX_UNDELIVERED {
        return Err(NoStack::Timeout);
    }

    let request = Request {
        slot,
        tid: target.tid,
        lease: target.lease,
        ticket: (idle + 1) & TICKET_MASK,
        _turn: turn,
    };
    // Holding the turn with the slot idle, nobody else writes the state or
    // the limit; the `Release` store of the request publishes both.
    slot.limit.store(max_bytes, Relaxed);
    slot.state.store(request.word(REQUESTED), Release);
    slot.sent.store(request.ticket, Relaxed);
    if let Err(error) = send(signal, target.tid, target.index, request.word(REQUESTED)) {
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
pub(super) struct Request {
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
            tid: self.tid,
            registers: Registers { ip, sp, fp, lr },
            stack_start: sp,
            stack,
            truncated: slot.truncated.load(Relaxed),
            pause_ns: slot.pause_ns.load(Relaxed),
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

/// The kernel's `siginfo_t` for `SI_QUEUE` on 64-bit Linux: the common
/// header, then `_rt`'s pid, uid and value, padded to 128 bytes.
#[repr(C)]
struct QueuedSignalInfo {
    signo: c_int,
    errno: c_int,
    code: c_int,
    pad: c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: usize,
    rest: [u64; 12],
}

const _: () = assert!(mem::size_of::<QueuedSignalInfo>() == mem::size_of::<siginfo_t>());

/// Queues `signal` to thread `tid` of this process, with a value that names
/// the slot and the request.
fn send(signal: SampleSignal, tid: u32, index: usize, requested: u32) -> io::Result<()> {
    // SAFETY: `getpid` and `getuid` cannot fail.
    let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
    PROCESS_ID.store(pid, Relaxed);
    let info = QueuedSignalInfo {
        signo: signal.raw(),
        errno: 0,
        code: libc::SI_QUEUE,
        pad: 0,
        pid,
        uid,
        value: index << 32 | requested as usize,
        rest: [0; 12],
    };
    // SAFETY: `info` has the layout the kernel reads (checked against
    // `siginfo_t`'s size above) and outlives the call. SI_QUEUE is a code a
    // process may send to its own threads.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid as libc::pid_t,
            signal.raw(),
            &info as *const QueuedSignalInfo,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A request a handler has claimed: until [`Claim::finish`], the slot's
/// buffer and result fields are the handler's alone.
pub(super) struct Claim {
    slot: &'static Slot,
    claimed: u32,
}

impl Claim {
    /// Claims the request that the signal described by `info` carries, if it
    /// is ours, still outstanding, and addressed to the calling thread.
    /// Signal-safe.
    ///
    /// # Safety
    ///
    /// `info` is null or points to the `siginfo_t` the kernel passed to a
    /// signal handler installed with `SA_SIGINFO`.
    pub(super) unsafe fn accept(info: *const siginfo_t) -> Option<Claim> {
        // SAFETY: the caller promises `info` is null or valid.
        let info = unsafe { info.as_ref() }?;
        // No system call here: the sender recorded our pid (`send`), and a
        // system call costs more than the whole copy of a typical stack.
        let pid = PROCESS_ID.load(Relaxed);
        // SAFETY: for SI_QUEUE the kernel fills the `_rt` member, which these
        // accessors read; we check the code first.
        if info.si_code != libc::SI_QUEUE || unsafe { info.si_pid() } != pid {
            return None;
        }
        // SAFETY: as above.
        let value = unsafe { info.si_value() }.sival_ptr as usize;
        let requested = value as u32;
        let slot = TABLE.get(value >> 32)?;
        if requested & (PHASE_MASK | WAITING) != REQUESTED {
            return None;
        }
        slot.note_delivered(requested >> TICKET_SHIFT);
        let claimed = requested & !PHASE_MASK | CLAIMED;
        // Claim it, keeping the sampler's WAITING bit.
        slot.state
            .fetch_update(Acquire, Relaxed, |state| {
                (state & !WAITING == requested).then_some(state & WAITING | claimed)
            })
            .ok()?;
        // The request stands while it is claimed, so its lease does too.
        let lease = slot.lease.load(Acquire);
        let this_thread = THIS_TID.try_with(Cell::get).unwrap_or(0);
        if slot.tid.load(Relaxed) != this_thread || lease & EXITED != 0 || lease == 0 {
            // Not the thread that recorded the slot's stack bounds (a forged
            // value, or a ticket that wrapped around): hand the request back.
            let _ = slot
                .state
                .fetch_update(Release, Relaxed, |state| Some(state & WAITING | requested));
            return None;
        }
        Some(Claim { slot, claimed })
    }

    /// The slot's buffer, ours until [`Claim::finish`].
    pub(super) fn buffer(&mut self) -> &mut [u8] {
        let buffer = self.slot.buffer.load(Relaxed);
        let capacity = self.slot.capacity.load(Relaxed);
        // SAFETY: the claim makes this handler the buffer's only user until
        // `finish` (the sampler reads it only in `DONE`, and frees it only
        // when no request is outstanding); `&mut self` keeps this borrow
        // unique, and `buffer`, `capacity` describe a live `Box<[u8]>`.
        unsafe { std::slice::from_raw_parts_mut(buffer, capacity) }
    }

    /// Copies the interrupted stack, from `sp` upward, clipped to the
    /// thread's stack and the buffer. Returns the bytes copied and whether
    /// the copy stopped before the end of the stack.
    fn copy_stack(&mut self, sp: u64) -> (usize, bool) {
        let (low, high) = (
            self.slot.stack_low.load(Relaxed),
            self.slot.stack_high.load(Relaxed),
        );
        let sp = sp as usize;
        if sp < low || sp >= high {
            return (0, true);
        }
        let available = high - sp;
        let limit = self.slot.limit.load(Relaxed);
        let buffer = self.buffer();
        let copied = available.min(buffer.len()).min(limit);
        // SAFETY: `[sp, sp + copied)` lies within `[low, high)`, the stack of
        // the thread running this handler (`accept` checked its tid), from
        // its stack pointer to its top: mapped while the thread lives. Those
        // bytes belong to this thread's interrupted frames, which cannot run
        // while the handler does. The buffer is ours (see `buffer`) and does
        // not overlap a stack.
        unsafe { copy_to_sampler(sp as *const u8, buffer.as_mut_ptr(), copied) };
        (copied, copied < available)
    }

    /// Publishes the result and wakes the sampler if it sleeps. `entered` is
    /// the handler's entry time from [`monotonic_ns`]; the pause recorded
    /// runs from there to the publication. Signal-safe.
    pub(super) fn finish(self, registers: Registers, copied: usize, truncated: bool, entered: u64) {
        let slot = self.slot;
        let Registers { ip, sp, fp, lr } = registers;
        for (field, value) in slot.registers.iter().zip([ip, sp, fp, lr]) {
            field.store(value, Relaxed);
        }
        slot.copied.store(copied, Relaxed);
        slot.truncated.store(truncated, Relaxed);
        slot.pause_ns
            .store(monotonic_ns().wrapping_sub(entered), Relaxed);
        let waiting = slot.state.swap(self.claimed | DONE, Release) & WAITING;
        // After `DONE` the slot may be reused at once: only touch the static
        // futex word from here on, and only if the sampler sleeps on it.
        if waiting != 0 {
            futex_wake(&slot.state);
        }
    }
}

/// Copies `len` bytes from `src` to `dst`, which another thread will read.
///
/// The buffer was last read by the sampler, usually on another CPU, so its
/// lines sit in that CPU's cache; ordinary stores would have to fetch each
/// line before overwriting it, and the sampled thread would wait for every
/// fetch (measured: the handler took 2.4 µs instead of 0.6 µs for a 6 KiB
/// stack when the two threads ran on different CPUs). Non-temporal stores
/// write whole lines without fetching them.
///
/// # Safety
///
/// As for `ptr::copy_nonoverlapping`: `src` readable and `dst` writable for
/// `len` bytes, not overlapping.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_to_sampler(src: *const u8, dst: *mut u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let head = dst.align_offset(16).min(len);
    let body_end = head + (len - head) / 16 * 16;
    // SAFETY: the caller's promise covers `[0, len)`, and every range below
    // lies within it; the streamed addresses are 16-byte aligned, which
    // `_mm_stream_si128` requires; SSE2 is part of x86-64.
    unsafe {
        ptr::copy_nonoverlapping(src, dst, head);
        let mut at = head;
        while at < body_end {
            let value = _mm_loadu_si128(src.add(at).cast::<__m128i>());
            _mm_stream_si128(dst.add(at).cast::<__m128i>(), value);
            at += 16;
        }
        ptr::copy_nonoverlapping(src.add(body_end), dst.add(body_end), len - body_end);
        // Orders the streamed stores before the publication that follows.
        _mm_sfence();
    }
}

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
///
/// As for `ptr::copy_nonoverlapping`.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_to_sampler(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's promise.
    unsafe { ptr::copy_nonoverlapping(src, dst, len) }
}

/// Our handler: claim, copy, publish, return.
extern "C" fn on_copy_signal(_: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let entered = monotonic_ns();
    let errno = SavedErrno::save();
    // SAFETY: the kernel passes this `SA_SIGINFO` handler its `siginfo_t`.
    if let Some(mut claim) = unsafe { Claim::accept(info) } {
        // SAFETY: and its `ucontext_t`.
        let registers = unsafe { interrupted_registers(context) };
        let (copied, truncated) = claim.copy_stack(registers.sp);
        claim.finish(registers, copied, truncated, entered);
    }
    errno.restore();
}

/// The registers of the interrupted code.
///
/// # Safety
///
/// `context` is the `ucontext_t` the kernel passed to a signal handler.
pub(super) unsafe fn interrupted_registers(context: *mut c_void) -> Registers {
    // SAFETY: the caller promises a valid `ucontext_t` (or null).
    let Some(context) = (unsafe { context.cast::<libc::ucontext_t>().as_ref() }) else {
        return Registers::default();
    };
    let machine = &context.uc_mcontext;
    #[cfg(target_arch = "x86_64")]
    {
        let register = |index: c_int| {
            machine
                .gregs
                .get(index as usize)
                .map_or(0, |&value| value as u64)
        };
        Registers {
            ip: register(libc::REG_RIP),
            sp: register(libc::REG_RSP),
            fp: register(libc::REG_RBP),
            lr: 0,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        Registers {
            ip: machine.pc,
            sp: machine.sp,
            fp: machine.regs[29],
            lr: machine.regs[30],
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds. Signal-safe.
pub(super) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` is async-signal-safe and writes only `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(now.tv_nsec as u64)
}

/// The interrupted code's `errno`, restored before the handler returns.
pub(super) struct SavedErrno(c_int);

impl SavedErrno {
    pub(super) fn save() -> SavedErrno {
        // SAFETY: `__errno_location` returns this thread's errno, always valid.
        SavedErrno(unsafe { *libc::__errno_location() })
    }

    pub(super) fn restore(self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

fn gettid() -> u32 {
    // SAFETY: `gettid` takes no arguments, cannot fail and is
    // async-signal-safe.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The calling thread's stack, `[low, high)`.
fn stack_bounds() -> io::Result<(usize, usize)> {
    let mut attributes = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `pthread_getattr_np` initializes `attributes` when it succeeds.
    let result = unsafe { libc::pthread_getattr_np(libc::pthread_self(), attributes.as_mut_ptr()) };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    let (mut low, mut size) = (ptr::null_mut(), 0);
    // SAFETY: `attributes` was initialized above, and is destroyed once.
    let result = unsafe {
        let result = libc::pthread_attr_getstack(attributes.as_ptr(), &mut low, &mut size);
        libc::pthread_attr_destroy(attributes.as_mut_ptr());
        result
    };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    let low = low as usize;
    Ok((low, low.saturating_add(size)))
}

/// Sleeps while `*word == expected`, at most `timeout`; may wake early.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 32-bit atomic; the kernel reads it
    // and the timeout, and writes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &timeout as *const libc::timespec,
        )
    };
}

/// Wakes every waiter on `word`. Signal-safe.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE only uses
    // its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    #[test]
    fn the_value_we_queue_reads_back_through_libc() {
        let info = QueuedSignalInfo {
            signo: 40,
            errno: 0,
            code: libc::SI_QUEUE,
            pad: 0,
            pid: 1234,
            uid: 56,
            value: 7 << 32 | 0x1234_5671,
            rest: [0; 12],
        };
        // SAFETY: same size (asserted above), and `siginfo_t` is plain data
        // whose alignment `QueuedSignalInfo` (8) satisfies.
        let read = unsafe { &*(&info as *const QueuedSignalInfo).cast::<siginfo_t>() };
        assert_eq!(read.si_signo, 40);
        assert_eq!(read.si_code, libc::SI_QUEUE);
        // SAFETY: the `_rt` member is the one we filled.
        unsafe {
            assert_eq!(read.si_pid(), 1234);
            assert_eq!(read.si_uid(), 56);
            assert_eq!(read.si_value().sival_ptr as usize, 7 << 32 | 0x1234_5671);
        }
    }

    /// A sampler gives up while the handler (played here by the test) holds
    /// the claim: it must leave the buffer alone, the next sampler must wait
    /// for the handler, a new lease must not take the slot, and once the
    /// handler is done the target samples normally again.
    #[test]
    fn timeout_while_claimed_leaves_the_buffer_to_the_handler() {
        let signal = SampleSignal::default();
        install(signal).unwrap();
        // The real signal stays queued while we play the handler.
        block_sample_signal_on_this_thread(&signal).unwrap();
        let target = Target::current_thread(4096).unwrap();
        let slot = target.slot();

        let claim = thread::scope(|scope| {
            let sampler =
                scope.spawn(|| sample(signal, &target, usize::MAX, Duration::from_millis(300)));
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
            let claim = Claim { slot, claimed };
            assert_eq!(sampler.join().unwrap().unwrap_err(), NoStack::Timeout);
            let state = slot.state.load(Acquire);
            assert_eq!(state & !WAITING, claimed, "the claim still stands");
            claim
        });

        // The next sampler waits for the handler, within its own deadline.
        let started = Instant::now();
        let late = thread::scope(|scope| {
            scope
                .spawn(|| sample(signal, &target, usize::MAX, Duration::from_millis(100)))
                .join()
                .unwrap()
        });
        assert_eq!(late.unwrap_err(), NoStack::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(100));

        // A new lease passes over the claimed slot of a dropped target.
        let index = target.index;
        drop(target);
        let other = Target::current_thread(4096).unwrap();
        assert_ne!(other.index, index);

        // The handler finishes; a new lease may take the slot, and the
        // queued signals, now stale, do nothing when delivered.
        claim.finish(Registers::default(), 0, false, monotonic_ns());
        assert_eq!(slot.quiesce().map(|_| ()), Some(()));
        unblock_sample_signal_on_this_thread(&signal).unwrap();
        assert_eq!(slot.state.load(Acquire) & PHASE_MASK, IDLE);

        // This thread samples normally again (from another thread).
        let (sent, received) = mpsc::channel();
        thread::scope(|scope| {
            scope.spawn(|| sent.send(sample(signal, &other, usize::MAX, Duration::from_secs(10))));
        });
        let sample = received.recv().unwrap().unwrap();
        assert_eq!(sample.tid, gettid());
        assert!(!sample.stack.is_empty());
    }
}
