//! A doorbell: how a thread that owns receivers (the monitor, the capture
//! thread) sleeps until a sender wants it, without spinning.
//!
//! The owner sleeps on one [`Doorbell`]; every sender to it is a
//! [`RingingSender`], which sends on its channel and then rings. The owner
//! wakes, takes what is in its channels with `try_recv`, and goes back to
//! sleep. A `crossbeam_channel::Select` would do the same job, but it spins
//! and yields before it parks, on every wait: at a profiling rate of 1 kHz
//! that was most of the monitor's CPU. Here a wait is one atomic swap, and a
//! sleep is `std::thread::park`, a futex on Linux.
//!
//! The bell is one word, `IDLE`, `RUNG` or `ASLEEP`:
//!
//! - `ring` swaps in `RUNG`; only if it took `ASLEEP` does it unpark the
//!   owner (a system call). Rings while the owner is awake cost one swap and
//!   fold into one.
//! - `wait` swaps in `IDLE`; if that took `RUNG`, a ring came since the last
//!   wait and it returns at once. Otherwise it moves `IDLE` to `ASLEEP` with a
//!   compare-and-swap (which fails only if a ring just came: it returns) and
//!   parks until the word is no longer `ASLEEP` or the timeout passes, then
//!   takes the word back to `IDLE`.
//!
//! No ring is lost: a ring's swap comes either before the owner's
//! compare-and-swap, which then fails, or after it, when it sees `ASLEEP` and
//! unparks the owner (an unpark before the park makes the park return). No
//! message is missed: a sender sends before it rings (release), and the owner
//! reads the ring (acquire) before it takes from its channels, so it finds
//! every message whose ring it consumed. A stale unpark only makes a park
//! return early; the owner parks again while the word says `ASLEEP`.
//!
//! A channel's disconnection rings too: a `RingingSender` rings as it is
//! dropped, after its sender is gone (fields drop in order), so the owner
//! wakes to find the channel closed.
//!
//! `loom` checks that no ring is lost and that a consumed ring shows its
//! message, over every interleaving of an owner and one ringer, and of an
//! owner and two ringers with up to three preemptions (`RUSTFLAGS="--cfg
//! hangwatch_loom" cargo test -p hangwatch --lib loom_models`, run by
//! `.ci/run`). A wait that stored `ASLEEP` without the compare-and-swap
//! loses a ring there.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendError, Sender, TrySendError};

use self::sync::{park, park_timeout, AtomicU8, Owner};

const IDLE: u8 = 0;
const RUNG: u8 = 1;
const ASLEEP: u8 = 2;

/// What one thread sleeps on. Only that thread waits; anyone rings.
#[derive(Default)]
pub(crate) struct Doorbell {
    state: AtomicU8,
    /// The thread that waits, known from its first wait.
    owner: Owner,
}

impl Doorbell {
    pub(crate) fn new() -> Arc<Doorbell> {
        Arc::new(Doorbell::default())
    }

    /// Wakes the owner, or makes its next wait return at once.
    pub(crate) fn ring(&self) {
        if self.state.swap(RUNG, Ordering::AcqRel) == ASLEEP {
            // Set before the owner stored `ASLEEP`, which this swap read.
            self.owner.unpark();
        }
    }

    /// Sleeps until a ring (one since the previous wait counts) or until
    /// `timeout` passes (forever if `None`); returns whether it rang. Called
    /// by the owner only.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        if self.state.swap(IDLE, Ordering::Acquire) == RUNG {
            return true;
        }
        // A timeout too long for the clock is no timeout.
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        self.owner.set_to_current();
        if self
            .state
            .compare_exchange(IDLE, ASLEEP, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            while self.state.load(Ordering::Acquire) == ASLEEP {
                match deadline {
                    None => park(),
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        park_timeout(left);
                    }
                }
            }
        }
        self.state.swap(IDLE, Ordering::Acquire) == RUNG
    }
}

/// A sender whose every send rings its receiver's doorbell, as does its drop.
pub(crate) struct RingingSender<T> {
    sender: Sender<T>,
    // Dropped after `sender`, so the owner wakes to a closed channel.
    bell: RingOnDrop,
}

struct RingOnDrop(Arc<Doorbell>);

impl Drop for RingOnDrop {
    fn drop(&mut self) {
        self.0.ring();
    }
}

impl<T> Clone for RingingSender<T> {
    fn clone(&self) -> Self {
        RingingSender {
            sender: self.sender.clone(),
            bell: RingOnDrop(self.bell.0.clone()),
        }
    }
}

impl<T> RingingSender<T> {
    pub(crate) fn new(sender: Sender<T>, bell: Arc<Doorbell>) -> RingingSender<T> {
        RingingSender {
            sender,
            bell: RingOnDrop(bell),
        }
    }

    pub(crate) fn send(&self, message: T) -> Result<(), SendError<T>> {
        let sent = self.sender.send(message);
        self.bell.0.ring();
        sent
    }

    /// Sends without ringing: the owner takes the message when it next
    /// wakes for something else (it wakes on time by itself).
    pub(crate) fn send_quietly(&self, message: T) -> Result<(), SendError<T>> {
        self.sender.send(message)
    }

    pub(crate) fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        let sent = self.sender.try_send(message);
        if sent.is_ok() {
            self.bell.0.ring();
        }
        sent
    }

    /// Wakes the owner without sending anything.
    pub(crate) fn ring(&self) {
        self.bell.0.ring();
    }

    pub(crate) fn doorbell(&self) -> &Arc<Doorbell> {
        &self.bell.0
    }
}

/// What the doorbell needs from `std`, or from `loom` when it is modelled.
#[cfg(not(hangwatch_loom))]
mod sync {
    use std::sync::OnceLock;
    use std::thread::Thread;

    pub(super) use std::sync::atomic::AtomicU8;
    pub(super) use std::thread::{park, park_timeout};

    /// The waiting thread, set once.
    #[derive(Default)]
    pub(super) struct Owner(OnceLock<Thread>);

    impl Owner {
        pub(super) fn set_to_current(&self) {
            self.0.get_or_init(std::thread::current);
        }

        pub(super) fn unpark(&self) {
            if let Some(owner) = self.0.get() {
                owner.unpark();
            }
        }
    }
}

#[cfg(hangwatch_loom)]
mod sync {
    use std::sync::OnceLock;

    use loom::thread::Thread;

    pub(super) use loom::sync::atomic::AtomicU8;
    pub(super) use loom::thread::park;

    /// Loom has no timed park; the models never time out.
    pub(super) fn park_timeout(_: std::time::Duration) {
        park();
    }

    /// A plain cell, not one loom tracks: the owner sets it before the
    /// `ASLEEP` that tells a ringer to read it, as in the real one.
    #[derive(Default)]
    pub(super) struct Owner(OnceLock<Thread>);

    impl Owner {
        pub(super) fn set_to_current(&self) {
            self.0.get_or_init(loom::thread::current);
        }

        pub(super) fn unpark(&self) {
            if let Some(owner) = self.0.get() {
                owner.unpark();
            }
        }
    }
}

#[cfg(hangwatch_loom)]
mod loom_models {
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    use super::*;

    /// `ringers` threads each set their message and ring; the owner waits
    /// (without a timeout) until it has seen every message: a lost ring
    /// would leave it parked for ever, which loom reports. Each wait that
    /// says it rang must show at least one message more than the owner had
    /// seen.
    fn owner_sees_every_ring(ringers: usize) {
        let bell = Arc::new(Doorbell::default());
        let messages: Arc<Vec<AtomicBool>> =
            Arc::new((0..ringers).map(|_| AtomicBool::new(false)).collect());
        for n in 0..ringers {
            let (bell, messages) = (bell.clone(), messages.clone());
            // Not joined: a ringer's unpark may come after the owner woke,
            // and loom's `join` would take that stale unpark for its own
            // wake-up. Loom runs every thread to its end anyway.
            loom::thread::spawn(move || {
                messages[n].store(true, Ordering::Relaxed);
                bell.ring();
            });
        }
        let seen = || {
            messages
                .iter()
                .filter(|m| m.load(Ordering::Relaxed))
                .count()
        };
        let mut known = 0;
        while known < ringers {
            let rang = bell.wait(None);
            let now = seen();
            assert!(!rang || now > known, "a ring without its message");
            known = now;
        }
    }

    #[test]
    fn one_ringer() {
        loom::model(|| owner_sees_every_ring(1));
    }

    #[test]
    fn two_ringers() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| owner_sees_every_ring(2));
    }
}

#[cfg(all(test, not(hangwatch_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_ring_before_the_wait_makes_it_return_at_once() {
        let bell = Doorbell::new();
        bell.ring();
        let started = Instant::now();
        assert!(bell.wait(Some(Duration::from_secs(10))));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn many_rings_while_awake_fold_into_one() {
        let bell = Doorbell::new();
        for _ in 0..10 {
            bell.ring();
        }
        assert!(bell.wait(None));
        let started = Instant::now();
        assert!(!bell.wait(Some(Duration::from_millis(30))));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_ring_from_another_thread_wakes_a_sleeper() {
        let bell = Doorbell::new();
        for _ in 0..200 {
            let ringer = {
                let bell = bell.clone();
                std::thread::spawn(move || bell.ring())
            };
            // Without the ring this would never return.
            assert!(bell.wait(None));
            ringer.join().unwrap();
        }
    }

    #[test]
    fn every_message_whose_ring_was_taken_is_found() {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let bell = Doorbell::new();
        let sender = RingingSender::new(sender, bell.clone());
        let total = 20_000u32;
        let producer = std::thread::spawn(move || {
            for n in 0..total {
                sender.send(n).unwrap();
            }
        });
        let mut seen = 0;
        loop {
            assert!(bell.wait(None));
            loop {
                match receiver.try_recv() {
                    Ok(n) => {
                        assert_eq!(n, seen);
                        seen += 1;
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    // The drop's ring woke us to this.
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        producer.join().unwrap();
                        assert_eq!(seen, total);
                        return;
                    }
                }
            }
        }
    }
}
