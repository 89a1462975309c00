//! The monitor's promise of when it will look next, and the rule that tells a
//! component whether it must wake the monitor.
//!
//! The monitor publishes `next_look`, a stamp by which it promises to look at
//! every component again. A component that becomes active at `now` with a
//! transient timeout `T` wakes the monitor only if `now + T < next_look`, that
//! is, only if the monitor would look too late to catch its first deadline.
//! Otherwise the monitor finds the activity at its next look and then sleeps
//! until the exact deadline.
//!
//! Why no activity is missed: the component stores its state word and then
//! loads `next_look`; the monitor stores `next_look` and then loads every
//! state word. All four accesses are `SeqCst`, so in their single total order
//! either the monitor's load sees the component's word, or the component's
//! load sees the promise that the monitor stored before looking (or a later
//! one). In the first case the monitor knows the deadline. In the second, the
//! component compares its deadline with a promise that is still in force, and
//! wakes the monitor if the promise is too late. `monitor/mod.rs` explains
//! which promises the monitor stores, and when.
//!
//! On x86-64 the component's side costs one `xchg` (the `SeqCst` store) and a
//! plain load; the monitor pays nothing extra for its loads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// `next_look` when the monitor has nothing to look at: every new activity
/// wakes it.
pub(crate) const NEVER: u64 = u64::MAX;

/// Written by the monitor (and by `Control` for `enabled`), read by components.
pub(crate) struct Schedule {
    next_look: CachePadded<AtomicU64>,
    enabled: CachePadded<AtomicBool>,
}

impl Schedule {
    pub(crate) fn new(enabled: bool) -> Schedule {
        Schedule {
            next_look: CachePadded::new(AtomicU64::new(NEVER)),
            enabled: CachePadded::new(AtomicBool::new(enabled)),
        }
    }

    /// The monitor promises to look again by `stamp`.
    pub(crate) fn promise(&self, stamp: u64) {
        self.next_look.store(stamp, Ordering::SeqCst);
    }

    /// Whether the monitor would look only after `deadline`. Called by a
    /// component right after its `SeqCst` store of its new state.
    #[inline(always)]
    pub(crate) fn looks_after(&self, deadline: u64) -> bool {
        deadline < self.next_look.load(Ordering::SeqCst)
    }

    #[inline(always)]
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
    }
}
