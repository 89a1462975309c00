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
//!
//! `loom` checks the rule over every interleaving of a component that starts
//! an activity and a monitor that looks, then plans to sleep for ever or
//! past the activity's deadline: the look sees the activity, or the check
//! after the second promise does, or the component rings; and the end of a
//! hang the monitor alerted on rings too (`loom_models` below, run by
//! `.ci/run`).

use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;
#[cfg(hangwatch_loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64};
// `loom`'s atomics when the wake rule is modelled (see `loom_models`).
#[cfg(not(hangwatch_loom))]
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::cell::ActivityCell;

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

    /// The monitor promises to look again by `stamp`. It then loads the
    /// state words.
    pub(crate) fn promise(&self, stamp: u64) {
        self.next_look.store(stamp, Ordering::SeqCst);
        store_then_load();
    }

    /// A component's side of the rule, as `Handle::notify_activity` runs it:
    /// ends the activity in `last` (recording its end if the monitor marked
    /// it), publishes `word`, an activity begun at `now`, and returns
    /// whether to wake the monitor: it alerted on the activity that ended,
    /// or its promise comes after the new activity's first deadline
    /// (`now + transient`).
    #[inline(always)]
    pub(crate) fn publish_activity(
        &self,
        cell: &ActivityCell,
        last: u64,
        word: u64,
        now: u64,
        transient: u64,
    ) -> bool {
        let hang_ended = cell.record_end(last, || now);
        // SeqCst: pairs with the monitor's promise (see the module docs).
        cell.state.store(word, Ordering::SeqCst);
        store_then_load();
        hang_ended || self.looks_after(now + transient)
    }

    /// Whether the monitor would look only after `deadline`. Called by a
    /// component right after its `SeqCst` store of its new state.
    #[inline(always)]
    fn looks_after(&self, deadline: u64) -> bool {
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

/// Between a `SeqCst` store and a `SeqCst` load of another word, on either
/// side of the rule: nothing at all, except in a loom model. Loom regards
/// `SeqCst` loads and stores as `AcqRel` (its README; loom#180), which
/// drops the single total order the argument above relies on, and reports
/// lost wake-ups that cannot happen; a `SeqCst` fence, which loom does
/// model, restores that order there.
#[inline(always)]
fn store_then_load() {
    #[cfg(hangwatch_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

#[cfg(hangwatch_loom)]
mod loom_models {
    //! The wake rule over every interleaving of one component and the
    //! monitor. The component's side is the real code
    //! (`Schedule::publish_activity`, `ActivityCell::publish_wait`), on the
    //! real cell and schedule with loom's atomics, and it rings the real
    //! doorbell. The monitor's side is the smallest faithful extraction of
    //! `Monitor::look` and `Monitor::promise` (`monitor/mod.rs`), which need
    //! a whole monitor: promise `now` plus the shortest transient timeout,
    //! read the cell, then promise the next look and read the cell again.

    use loom::sync::Arc;

    use super::*;
    use crate::cell::{self, ActivityCell};
    use crate::doorbell::Doorbell;

    const TRANSIENT: u64 = 50;
    const LABEL: crate::annotation::LabelId = 1;

    /// The monitor looks at 100 and will sleep until `next`; a component
    /// starts an activity at 110, so its first deadline, 160, is after the
    /// promise of that look (150) and before `next`. The monitor must see
    /// the activity at its look, or at its check after the second promise,
    /// or be woken for it: a lost ring leaves it parked for ever, which
    /// loom reports.
    fn a_new_activity_is_seen_or_wakes_the_monitor(next: u64) {
        let (look, start) = (100, 110);
        let schedule = Arc::new(Schedule::new(true));
        let cell = Arc::new(ActivityCell::default());
        let bell = Arc::new(Doorbell::default());
        {
            let (schedule, cell, bell) = (schedule.clone(), cell.clone(), bell.clone());
            // Not joined: see `doorbell.rs`'s models.
            loom::thread::spawn(move || {
                let word = cell::active_word(start, LABEL);
                if schedule.publish_activity(&cell, 0, word, start, TRANSIENT) {
                    bell.ring();
                }
            });
        }
        // `Monitor::look`: promise before looking.
        schedule.promise(look + TRANSIENT);
        let seen = cell.load_state();
        if cell::is_active(seen) {
            return;
        }
        // `Monitor::promise`, putting the promise back: promise, then check.
        schedule.promise(next);
        if cell.load_state() != seen {
            return;
        }
        // Asleep until `next`, too late for the activity's deadline.
        assert!(bell.wait(None));
        assert!(
            cell::is_active(cell.load_state()),
            "a ring without its activity"
        );
    }

    #[test]
    fn an_activity_begun_while_the_monitor_plans_to_sleep_for_ever_wakes_it() {
        loom::model(|| a_new_activity_is_seen_or_wakes_the_monitor(NEVER));
    }

    #[test]
    fn an_activity_begun_while_the_monitor_plans_to_look_too_late_wakes_it() {
        loom::model(|| a_new_activity_is_seen_or_wakes_the_monitor(1_000));
    }

    /// The monitor alerted on the activity under way at an earlier look (the
    /// mark is the activity's word) and has nothing left to raise: it
    /// promises never to look and sleeps until woken. The component ending
    /// that activity must be seen by the monitor's check or wake it.
    ///
    /// Not covered, because the wake rule alone does not hold there: a mark
    /// stored by the very look that raises the last level (a late look that
    /// raises both levels at once on an activity an earlier look watched).
    /// A component that read the older watch mark just before, and publishes
    /// its wait just after the monitor's check, records the end but does not
    /// ring. This model found it; the monitor therefore keeps looking, once
    /// per transient timeout, at a hang past its last level
    /// (`Component::look`), and that look reports the end.
    #[test]
    fn the_end_of_an_alerted_hang_is_seen_or_wakes_the_monitor() {
        loom::model(|| {
            let word = cell::active_word(0, LABEL);
            let schedule = Arc::new(Schedule::new(true));
            let cell = Arc::new(ActivityCell::default());
            cell.state.store(word, Ordering::SeqCst);
            cell.alerted.store(word, Ordering::Relaxed);
            let bell = Arc::new(Doorbell::default());
            {
                let (cell, bell) = (cell.clone(), bell.clone());
                loom::thread::spawn(move || {
                    if cell.publish_wait(word, || 400) {
                        bell.ring();
                    }
                });
            }
            schedule.promise(NEVER);
            if cell.load_state() != word {
                return;
            }
            assert!(bell.wait(None));
            assert!(
                !cell::is_active(cell.load_state()),
                "a ring without the end"
            );
            assert_eq!(cell.ended.load(Ordering::Relaxed), 400);
        });
    }
}
