//! The pause rule: time the process could not run is not hang time; time the
//! monitor merely waited for a CPU is.
//!
//! When the whole process is stopped (SIGSTOP, a debugger, a suspended
//! laptop, a virtual machine the host did not schedule) the monitor wakes up
//! late and every activity looks much older than it is. But a monitor also
//! wakes up late on a busy machine, because its thread waited on a run queue
//! while other threads had the CPU, and then the hangs it finds are real: the
//! program did not respond for all that time. Gecko drops gaps longer than
//! twice the planned wait, Chromium ignores the scopes live across an
//! oversleep: both erase real hangs on a loaded machine. Our rule:
//!
//! > A look more than `threshold` later than planned is *late*. The kernel's
//! > accounting (`run_time.rs`) says how much of the lateness the monitor's
//! > thread spent running or waiting for a CPU; the rest is *unexplained*.
//! > If the unexplained part is within `threshold`, or the process's other
//! > threads used the CPU for at least half of it, the process was not
//! > stopped: the look was merely *starved* (counted, never charged). Only
//! > otherwise is it a *pause*: the time since the previous look, less what
//! > the monitor's thread spent runnable, counts toward no hang.
//!
//! "Planned" is the timer the monitor set, or, if earlier, the first deadline
//! of an activity it has not seen yet: the component relied on the
//! monitor's promise, or woke it, to be looked at by then (`schedule.rs`).
//! That second case catches a process stopped right after a component woke
//! an idle monitor, before the monitor ran.
//!
//! What each case yields:
//!
//! | the monitor looked late because | lateness | verdict |
//! |---|---|---|
//! | its thread waited for a CPU (a loaded machine) | explained | starved: hangs keep their whole length |
//! | its thread was held in an exit signal (the monitor times them) | explained | starved |
//! | its thread alone was held up otherwise while the process ran | unexplained, process busy | starved |
//! | the process was stopped (SIGSTOP, ptrace, a debugger) | unexplained, process idle | pause |
//! | the system was suspended, the VM was not scheduled | unexplained, process idle | pause |
//! | no accounting (not Linux, no `/proc`) | unknown | pause, as if stopped |
//!
//! The monitor cannot tell when inside that span a pause began, so it gives
//! the benefit of the doubt to the component: a hang that was real during the
//! span is reported later by at most the monitor's planned sleep, while a
//! paused process never raises an alert it did not earn while running.
//!
//! Spans are kept only while some activity that began before their end is
//! still being watched, so the log stays a handful of entries long.

use crate::clock::Clock;
use crate::monitor::run_time::RunTimes;

/// What the kernel says the monitor's thread and its process did since the
/// previous look, in stamps.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Evidence {
    /// The monitor's thread was on a CPU or waiting for one.
    pub(crate) runnable: u64,
    /// Every thread of the process together was on a CPU.
    pub(crate) process_cpu: u64,
}

impl Evidence {
    /// The evidence between the kernel's accounting at the previous look
    /// (`then`) and at this one (`now`). `held` is the stamps the monitor's
    /// thread spent in exit signals meanwhile: it counts as runnable, since
    /// the program held the thread; the process was not stopped.
    pub(crate) fn between(then: RunTimes, now: RunTimes, held: u64, clock: &Clock) -> Evidence {
        Evidence {
            runnable: clock.to_stamps(now.thread_runnable.saturating_sub(then.thread_runnable))
                + held,
            process_cpu: clock.to_stamps(now.process_cpu.saturating_sub(then.process_cpu)),
        }
    }
}

/// What the rule made of one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// On time (within the threshold).
    OnTime,
    /// Late, but the process could run: nothing is forgiven.
    Starved,
    /// Late because the process could not run: a pause was recorded.
    Paused,
}

/// The pauses that still matter, in stamps, oldest first, disjoint.
#[derive(Debug)]
pub(crate) struct Pauses {
    threshold: u64,
    spans: Vec<(u64, u64)>,
    /// Pauses seen over the monitor's life.
    pub(crate) count: u64,
    /// Stamps covered by those pauses.
    pub(crate) total: u64,
    /// Late looks that were not pauses.
    pub(crate) starved_count: u64,
    /// Stamps by which those looks were late.
    pub(crate) starved_total: u64,
}

impl Pauses {
    pub(crate) fn new(threshold: u64) -> Pauses {
        Pauses {
            threshold,
            spans: Vec::new(),
            count: 0,
            total: 0,
            starved_count: 0,
            starved_total: 0,
        }
    }

    /// The threshold, in stamps.
    pub(crate) fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Applies the rule to a look at `now`, which was due at `planned` (if the
    /// monitor had set a timer) and follows a look at `previous`; `evidence`
    /// is the kernel's accounting since that look, if it could be read.
    pub(crate) fn observe(
        &mut self,
        previous: u64,
        planned: Option<u64>,
        now: u64,
        evidence: Option<Evidence>,
    ) -> Verdict {
        let Some(late) = planned
            .map(|planned| now.saturating_sub(planned))
            .filter(|&late| late > self.threshold && now > previous)
        else {
            return Verdict::OnTime;
        };
        let runnable = evidence.map_or(0, |e| e.runnable);
        if let Some(evidence) = evidence {
            let unexplained = late.saturating_sub(evidence.runnable);
            if unexplained <= self.threshold || evidence.process_cpu >= unexplained / 2 {
                self.starved_count += 1;
                self.starved_total += late;
                return Verdict::Starved;
            }
        }
        let paused = (now - previous).saturating_sub(runnable);
        self.spans.push((now - paused, now));
        self.count += 1;
        self.total += paused;
        Verdict::Paused
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_on_time_look_is_not_a_pause() {
        let mut pauses = Pauses::new(100);
        pauses.observe(0, Some(1_000), 1_050, None);
        pauses.observe(1_050, None, 50_000, None);
        assert_eq!(pauses.count, 0);
        assert_eq!(pauses.active_between(0, 50_000), 50_000);
    }

    #[test]
    fn a_late_look_excludes_everything_since_the_previous_look() {
        let mut pauses = Pauses::new(100);
        // Looked at 1000, planned to look at 2000, woke at 9000.
        pauses.observe(1_000, Some(2_000), 9_000, None);
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
    fn a_monitor_that_waited_for_a_cpu_was_starved_not_paused() {
        let mut pauses = Pauses::new(100);
        // Planned at 2000, looked at 9000, runnable for 6950 of the 7000.
        let starved = Evidence {
            runnable: 6_950,
            process_cpu: 0,
        };
        let verdict = pauses.observe(1_000, Some(2_000), 9_000, Some(starved));
        assert_eq!(verdict, Verdict::Starved);
        assert_eq!((pauses.count, pauses.starved_count), (0, 1));
        assert_eq!(pauses.starved_total, 7_000);
        assert_eq!(pauses.active_between(500, 10_000), 9_500);
    }

    #[test]
    fn a_monitor_held_up_while_the_process_ran_was_not_paused() {
        let mut pauses = Pauses::new(100);
        let held = Evidence {
            runnable: 10,
            process_cpu: 4_000,
        };
        let verdict = pauses.observe(1_000, Some(2_000), 9_000, Some(held));
        assert_eq!(verdict, Verdict::Starved);
        assert_eq!(pauses.count, 0);
    }

    #[test]
    fn a_stopped_process_is_paused_for_all_but_the_time_it_could_run() {
        let mut pauses = Pauses::new(100);
        let stopped = Evidence {
            runnable: 300,
            process_cpu: 50,
        };
        let verdict = pauses.observe(1_000, Some(2_000), 9_000, Some(stopped));
        assert_eq!(verdict, Verdict::Paused);
        assert_eq!((pauses.count, pauses.total), (1, 7_700));
        assert_eq!(pauses.active_between(1_000, 9_000), 300);
        // A little lateness the monitor could not account for is no pause.
        let verdict = pauses.observe(
            9_000,
            Some(10_000),
            10_300,
            Some(Evidence {
                runnable: 250,
                process_cpu: 0,
            }),
        );
        assert_eq!(verdict, Verdict::Starved);
    }

    /// The kernel's figures as the monitor reads them, in milliseconds.
    fn run_times(thread_runnable: u64, process_cpu: u64) -> RunTimes {
        RunTimes {
            thread_runnable: Duration::from_millis(thread_runnable),
            process_cpu: Duration::from_millis(process_cpu),
        }
    }

    /// The verdict on a look planned at 200 ms and made at `now` (ms), after
    /// one at 100 ms, given the figures read at both looks and the time
    /// spent in exit signals between them.
    fn verdict(now: u64, then: RunTimes, at_now: RunTimes, held: u64) -> (Verdict, Pauses) {
        // One stamp is a millisecond; 20 ms late is still on time.
        let clock = Clock::with_ns_per_stamp(1_000_000.0);
        let mut pauses = Pauses::new(20);
        let evidence = Evidence::between(then, at_now, held, &clock);
        (pauses.observe(100, Some(200), now, Some(evidence)), pauses)
    }

    #[test]
    fn the_kernels_figures_tell_a_stopped_process_from_a_starved_monitor_and_an_on_time_look() {
        let then = run_times(5_000, 9_000);
        // On time: 15 ms late, whatever the figures say.
        let (on_time, _) = verdict(215, then, then, 0);
        assert_eq!(on_time, Verdict::OnTime);
        // 800 ms late, of which the monitor's thread was runnable (waiting
        // on the run queue) for 790: starved, nothing forgiven.
        let (starved, pauses) = verdict(1_000, then, run_times(5_790, 9_000), 0);
        assert_eq!(starved, Verdict::Starved);
        assert_eq!((pauses.starved_count, pauses.starved_total), (1, 800));
        assert_eq!(pauses.active_between(0, 1_000), 1_000);
        // 800 ms late, the thread not runnable, no CPU used by the process:
        // stopped. The whole gap since the previous look is paused.
        let (paused, pauses) = verdict(1_000, then, then, 0);
        assert_eq!(paused, Verdict::Paused);
        assert_eq!((pauses.count, pauses.total), (1, 900));
        assert_eq!(pauses.active_between(0, 1_000), 100);
        // The same gap, but the monitor was held in exit signals for it.
        let (held, _) = verdict(1_000, then, then, 790);
        assert_eq!(held, Verdict::Starved);
        // The same gap while the process's other threads ran.
        let (busy, _) = verdict(1_000, then, run_times(5_000, 9_400), 0);
        assert_eq!(busy, Verdict::Starved);
    }

    #[test]
    fn old_pauses_are_forgotten_once_no_activity_spans_them() {
        let mut pauses = Pauses::new(10);
        pauses.observe(0, Some(10), 100, None);
        pauses.observe(200, Some(210), 300, None);
        pauses.forget_before(150);
        assert_eq!(pauses.paused_since(0), 100);
        assert_eq!((pauses.count, pauses.total), (2, 200));
    }
}
