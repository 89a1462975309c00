//! The pause rule: time the monitor could not have watched is not hang time.
//!
//! When the whole process is stopped (SIGSTOP, a debugger, a suspended
//! laptop) or the monitor's thread is not scheduled, the monitor wakes up late
//! and every activity looks much older than it is. Gecko drops gaps longer
//! than twice the planned wait; Chromium ignores the scopes that were live
//! across an oversleep. Our rule:
//!
//! > If the monitor looks more than `threshold` later than it planned to, the
//! > whole span since its previous look is a *pause*, and no activity is
//! > charged for time inside a pause.
//!
//! "Planned" is the timer the monitor set, or, if earlier, the first deadline
//! of an activity it has not seen yet: the component relied on the
//! monitor's promise, or woke it, to be looked at by then (`schedule.rs`).
//! That second case catches a process stopped right after a component woke
//! an idle monitor, before the monitor ran.
//!
//! The monitor cannot tell when inside that span the pause began, so it gives
//! the benefit of the doubt to the component: a hang that was real during the
//! span is reported later by at most the monitor's planned sleep, while a
//! paused process never raises an alert it did not earn while running.
//!
//! Spans are kept only while some activity that began before their end is
//! still being watched, so the log stays a handful of entries long.

/// The pauses that still matter, in stamps, oldest first, disjoint.
#[derive(Debug)]
pub(crate) struct Pauses {
    threshold: u64,
    spans: Vec<(u64, u64)>,
    /// Pauses seen over the monitor's life.
    pub(crate) count: u64,
    /// Stamps covered by those pauses.
    pub(crate) total: u64,
}

impl Pauses {
    pub(crate) fn new(threshold: u64) -> Pauses {
        Pauses {
            threshold,
            spans: Vec::new(),
            count: 0,
            total: 0,
        }
    }

    /// Applies the rule to a look at `now`, which was due at `planned` (if the
    /// monitor had set a timer) and follows a look at `previous`.
    pub(crate) fn observe(&mut self, previous: u64, planned: Option<u64>, now: u64) {
        let late = planned.is_some_and(|planned| now > planned.saturating_add(self.threshold));
        if late && now > previous {
            self.spans.push((previous, now));
            self.count += 1;
            self.total += now - previous;
        }
    }

    /// Stamps in `[start, end]` outside every pause.
    pub(crate) fn active_between(&self, start: u64, end: u64) -> u64 {
        let paused: u64 = self
            .spans
            .iter()
            .map(|&(from, to)| to.min(end).saturating_sub(from.max(start)))
            .sum();
        end.saturating_sub(start).saturating_sub(paused)
    }

    /// Stamps after `start` inside a pause: how far an activity's deadlines
    /// move back.
    pub(crate) fn paused_since(&self, start: u64) -> u64 {
        self.spans
            .iter()
            .map(|&(from, to)| to.saturating_sub(from.max(start)))
            .sum()
    }

    /// Forgets pauses that ended before `oldest_start`, the start of the oldest
    /// activity still watched (or now, if none is).
    pub(crate) fn forget_before(&mut self, oldest_start: u64) {
        self.spans.retain(|&(_, to)| to > oldest_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_on_time_look_is_not_a_pause() {
        let mut pauses = Pauses::new(100);
        pauses.observe(0, Some(1_000), 1_050);
        pauses.observe(1_050, None, 50_000);
        assert_eq!(pauses.count, 0);
        assert_eq!(pauses.active_between(0, 50_000), 50_000);
    }

    #[test]
    fn a_late_look_excludes_everything_since_the_previous_look() {
        let mut pauses = Pauses::new(100);
        // Looked at 1000, planned to look at 2000, woke at 9000.
        pauses.observe(1_000, Some(2_000), 9_000);
        assert_eq!((pauses.count, pauses.total), (1, 8_000));
        // An activity since 500 was busy 500 stamps before the pause and 1000 after.
        assert_eq!(pauses.active_between(500, 10_000), 1_500);
        // One that began inside the pause is charged only from its end.
        assert_eq!(pauses.active_between(4_000, 9_500), 500);
        // Its deadlines move back by the part of the pause after its start.
        assert_eq!(pauses.paused_since(500), 8_000);
        assert_eq!(pauses.paused_since(4_000), 5_000);
        assert_eq!(pauses.paused_since(9_500), 0);
    }

    #[test]
    fn old_pauses_are_forgotten_once_no_activity_spans_them() {
        let mut pauses = Pauses::new(10);
        pauses.observe(0, Some(10), 100);
        pauses.observe(200, Some(210), 300);
        pauses.forget_before(150);
        assert_eq!(pauses.paused_since(0), 100);
        assert_eq!((pauses.count, pauses.total), (2, 200));
    }
}
