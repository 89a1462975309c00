//! The cell through which a component tells the monitor what it is doing.
//!
//! Each component owns one cell. Its state is a single atomic word that only
//! the component's thread writes and that the monitor reads when it looks:
//!
//! ```text
//!  63                                 17 16            1   0
//! +-------------------------------------+---------------+---+
//! |  start of the activity (47 bits of  |  label number | A |
//! |  the clock's stamp, see clock.rs)   |   (16 bits)   |   |
//! +-------------------------------------+---------------+---+
//! ```
//!
//! `A` is set while the component is active. `notify_activity` stores a new
//! word with `A` set; `notify_wait` stores the same word with `A` cleared. One
//! word means one store on the hot path and no torn reads: the monitor sees
//! either the old activity or the new one, never a start from one and a label
//! from the other. The word also identifies the activity: two activities of
//! one component that start in the same stamp (tens of nanoseconds) with the
//! same label are indistinguishable, which changes no hang by more than a
//! stamp.
//!
//! 47 bits of stamps wrap after months; the monitor rebuilds the full start by
//! assuming the activity began less than one wrap ago, which holds because it
//! looks at every active component at least once per transient timeout.
//!
//! Two more fields serve the rare path where a watched activity *ends*. The
//! monitor stores a *mark* in `alerted`: the word of an activity it raised an
//! alert on, or, for an activity it merely saw under way, that word with the
//! active bit cleared. The component compares the mark with its own word at
//! its next notification (one load of a line it already owns); if it matches
//! either way it records the end stamp in `ended`, and for an alerted
//! activity it also wakes the monitor, so that the `Ended` alert is prompt
//! (a component that read the mark just before the monitor stored it does
//! not ring: the monitor's look once per transient timeout at a hang past
//! its last level finds that end, see `schedule.rs`'s loom models).
//! Either way the activity's length is exact: a monitor that looks late (its
//! thread waited for a CPU) still knows how long an activity it saw lasted,
//! and raises every alert its length earned. The monitor marks at most one
//! activity per component per look, so the clock read this costs the
//! component is rare. `alerted` is the only field the monitor writes.

use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;
#[cfg(hangwatch_loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64};
// `loom`'s atomics when the wake rule is modelled (`schedule.rs`).
#[cfg(not(hangwatch_loom))]
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::annotation::LabelId;

const ACTIVE: u64 = 1;
const LABEL_SHIFT: u32 = 1;
const LABEL_MASK: u64 = 0xffff << LABEL_SHIFT;
const START_SHIFT: u32 = 17;
const START_BITS: u32 = 64 - START_SHIFT;
const START_MASK: u64 = (1 << START_BITS) - 1;

/// The word a component publishes when it starts an activity.
#[inline(always)]
pub(crate) fn active_word(start: u64, label: LabelId) -> u64 {
    (start << START_SHIFT) | ((label as u64) << LABEL_SHIFT) | ACTIVE
}

/// The word a component publishes when it goes back to waiting.
#[inline(always)]
pub(crate) fn waiting_word(word: u64) -> u64 {
    word & !ACTIVE
}

#[inline(always)]
pub(crate) fn is_active(word: u64) -> bool {
    word & ACTIVE != 0
}

pub(crate) fn label_of(word: u64) -> LabelId {
    ((word & LABEL_MASK) >> LABEL_SHIFT) as LabelId
}

/// The mark the monitor stores for an activity it saw under way but did not
/// alert on: the component then records its end without waking the monitor.
pub(crate) fn watch_mark(word: u64) -> u64 {
    waiting_word(word)
}

/// Whether `mark` asks the component whose current activity is `word` to
/// record the end: it was alerted on (`Some(true)`: wake the monitor too) or
/// watched (`Some(false)`).
#[inline(always)]
fn marked(mark: u64, word: u64) -> Option<bool> {
    (is_active(word) && mark | ACTIVE == word).then_some(mark == word)
}

/// The full start stamp of the activity in `word`, given a recent `now`.
/// The start may be a little *after* `now` (the monitor read the clock,
/// then the component stored a newer word): the low bits are read as the
/// nearer of the stamp before `now` and the one after it, so that such a
/// start is not taken for one a whole wrap ago.
pub(crate) fn start_of(word: u64, now: u64) -> u64 {
    let low = word >> START_SHIFT;
    let behind = now.wrapping_sub(low) & START_MASK;
    if behind > START_MASK / 2 {
        now.wrapping_add(low.wrapping_sub(now) & START_MASK)
    } else {
        now.wrapping_sub(behind)
    }
}

/// A component's cell, on its own cache line.
#[derive(Default)]
pub(crate) struct ActivityCell(CachePadded<Fields>);

#[derive(Default)]
pub(crate) struct Fields {
    /// The state word. Written by the component.
    pub(crate) state: AtomicU64,
    /// The end stamp of an activity the monitor marked. Written by the component.
    pub(crate) ended: AtomicU64,
    /// Set by the component's thread as it exits. See `handle.rs`.
    pub(crate) thread_exited: AtomicBool,
    /// Set by the component when it unregisters, before it tells the monitor.
    pub(crate) unregistered: AtomicBool,
    /// The monitor's mark on the activity it last alerted on or watched
    /// (see the module docs). Written by the monitor.
    pub(crate) alerted: AtomicU64,
}

impl std::ops::Deref for ActivityCell {
    type Target = Fields;
    fn deref(&self) -> &Fields {
        &self.0
    }
}

impl ActivityCell {
    /// The state word, as the monitor reads it (see `monitor/mod.rs` for why
    /// this is sequentially consistent).
    pub(crate) fn load_state(&self) -> u64 {
        self.state.load(Ordering::SeqCst)
    }

    /// Called by the component as the activity in `last` (its previous
    /// word) ends: if the monitor marked that activity (it alerted on it, or
    /// saw it under way), records `now()` as its end, for the exact length
    /// of the hang; returns whether the monitor wants waking (it alerted).
    /// The load hits a line the component's thread owns unless the monitor
    /// just wrote it, and the clock is read only for a marked activity.
    #[inline(always)]
    pub(crate) fn record_end(&self, last: u64, now: impl FnOnce() -> u64) -> bool {
        let mark = self.alerted.load(Ordering::Relaxed);
        match marked(mark, last) {
            Some(wake) => {
                self.ended.store(now(), Ordering::Relaxed);
                wake
            }
            None => false,
        }
    }

    /// Called by the component as it goes back to waiting after the
    /// activity in `last`, as `Handle::notify_wait` runs it: records the
    /// end if it was marked, publishes the waiting word, and returns
    /// whether to wake the monitor (it alerted on that activity).
    #[inline(always)]
    pub(crate) fn publish_wait(&self, last: u64, now: impl FnOnce() -> u64) -> bool {
        let hang_ended = self.record_end(last, now);
        self.state.store(waiting_word(last), Ordering::Release);
        hang_ended
    }

    /// Whether the monitor should stop watching this cell.
    pub(crate) fn is_retired(&self) -> bool {
        self.unregistered.load(Ordering::Acquire) || self.thread_exited.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_keeps_its_start_and_label() {
        let start = 123_456_789_012;
        let word = active_word(start, 4321);
        assert!(is_active(word));
        assert_eq!(label_of(word), 4321);
        assert_eq!(start_of(word, start + 10), start);
        let waiting = waiting_word(word);
        assert!(!is_active(waiting));
        assert_eq!(label_of(waiting), 4321);
        assert_eq!(start_of(waiting, start), start);
    }

    #[test]
    fn marks_tell_alerted_from_watched_activities() {
        let word = active_word(1_000, 7);
        assert_eq!(marked(word, word), Some(true));
        assert_eq!(marked(watch_mark(word), word), Some(false));
        assert_eq!(marked(0, word), None);
        assert_eq!(marked(word, waiting_word(word)), None);
        assert_eq!(marked(watch_mark(active_word(1_001, 7)), word), None);
    }

    #[test]
    fn a_start_stamped_just_after_the_monitor_read_the_clock_is_not_a_wrap_ago() {
        let now = 987_654_321_000;
        let word = active_word(now + 5, 1);
        assert_eq!(start_of(word, now), now + 5);
        let later = (7 << START_BITS) - 2;
        assert_eq!(start_of(active_word(later + 3, 1), later), later + 3);
    }

    #[test]
    fn the_start_survives_a_wrap_of_the_low_bits() {
        let start = (5 << START_BITS) - 3;
        let word = active_word(start, 1);
        assert_eq!(start_of(word, start + 1000), start);
        assert_eq!(start_of(word, (5 << START_BITS) + 7), start);
    }
}
