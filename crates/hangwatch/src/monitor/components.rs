//! The monitor's view of each component, and what one look at it decides.
//!
//! Everything here lives on the monitor's thread. A component's cell is the
//! only thing shared, and it is only read here, except for `alerted`, where
//! the monitor marks the activity it saw under way or alerted on, so that
//! the component records when it ends (see `cell.rs`).
//!
//! # Every level that was due
//!
//! A look raises each level an activity's length has reached: normally the
//! transient alert at the transient deadline and the permanent one at the
//! permanent deadline. A look that comes late (the monitor waited for a CPU)
//! may find an activity past both deadlines, and raises both, in order,
//! marked `late`. One that finds a marked activity already over knows its
//! exact length from the end the component recorded, and raises the levels
//! that length reached (late, without a stack: the hang is over) before the
//! `Ended` alert, whose `worst` is always the highest level the hang's own
//! length reached. An activity no look ever saw (it began and ended while
//! the monitor could not run) leaves no trace to report.
//!
//! Nothing here allocates on the way to an alert: names are `&'static str`
//! or shared, the outbox's room is reserved when a component registers.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::alert::{Alert, AlertKind, HangLevel};
use crate::annotation;
use crate::cell::{self, ActivityCell};
use crate::clock::Clock;
use crate::component::{with_static_name, ComponentId, ExitSignal, ProgressProbe};
use crate::messages::Registration;
use crate::monitor::outbox::{Capture, Outbox};
use crate::monitor::pauses::Pauses;
use crate::stack::sampler::SampleTarget;
use crate::stack::NoStack;
use crate::stats::{ComponentState, ComponentStats};

/// One watched component.
pub(crate) struct Component {
    key: u64,
    pub(crate) id: ComponentId,
    thread: Option<Arc<str>>,
    cell: Arc<ActivityCell>,
    /// Timeouts, in stamps.
    transient: u64,
    permanent: u64,
    pub(crate) exit_signal: Option<ExitSignal>,
    /// How to sample its thread (`None`: stacks are off).
    stack_target: Option<Result<Arc<SampleTarget>, NoStack>>,
    /// Whether transient alerts carry a stack too.
    stack_on_transient: bool,
    /// Its work done within the current activity, if it told us how to
    /// read it (`Handle::watch_progress`).
    progress: Option<ProgressProbe>,
    /// The state word at the latest look.
    seen: u64,
    /// An activity under way when checks were turned on: never reported.
    ignored: u64,
    /// The activity the latest look saw under way, with the level it has
    /// raised so far.
    tracked: Option<Tracked>,
    transient_alerts: u64,
    permanent_alerts: u64,
    ended_hangs: u64,
    longest_hang: u64,
}

/// An activity a look saw under way: for a component whose progress we
/// read, its latest stretch without progress.
struct Tracked {
    word: u64,
    /// When the activity began, or the look that last saw its progress move.
    start: u64,
    /// Its progress count at that look (0 without a probe).
    done: u64,
    /// The highest level it has raised an alert for (`None`: none yet).
    level: Option<HangLevel>,
}

impl Tracked {
    fn hang_level(&self) -> Option<HangLevel> {
        self.level
    }
}

/// What one look at a component found.
pub(crate) struct Look {
    /// Its state word changed since the previous look.
    pub(crate) changed: bool,
    /// When it next needs looking at: its next timeout, if it is active.
    pub(crate) deadline: Option<u64>,
    /// The start of its current activity, if it is active.
    pub(crate) active_since: Option<u64>,
}

/// How many times per transient timeout the monitor looks at an active
/// component whose progress it reads.
const PROGRESS_LOOKS_PER_TRANSIENT: u64 = 10;

/// The components, in registration order.
#[derive(Default)]
pub(crate) struct Components {
    list: Vec<Component>,
}

impl Components {
    pub(crate) fn add(
        &mut self,
        registration: Registration,
        clock: &Clock,
        stack_on_transient: bool,
    ) -> &mut Component {
        let Registration {
            key,
            id,
            cell,
            timeouts,
            exit_signal,
            thread,
            stack_target,
        } = registration;
        self.list.push(Component {
            key,
            id: with_static_name(id),
            thread: thread.map(Arc::from),
            cell,
            transient: clock.to_stamps(timeouts.transient()),
            permanent: clock.to_stamps(timeouts.permanent()),
            exit_signal,
            stack_target,
            stack_on_transient,
            progress: None,
            seen: 0,
            ignored: 0,
            tracked: None,
            transient_alerts: 0,
            permanent_alerts: 0,
            ended_hangs: 0,
            longest_hang: 0,
        });
        self.list.last_mut().expect("just pushed")
    }

    /// Reads the progress of component `key` with `probe` from now on.
    pub(crate) fn watch_progress(&mut self, key: u64, probe: ProgressProbe) {
        if let Some(component) = self.list.iter_mut().find(|c| c.key == key) {
            component.progress = Some(probe);
        }
    }

    /// Forgets a component, dropping its exit signal unused.
    pub(crate) fn remove(&mut self, key: u64) -> Option<Component> {
        // A linear search keeps registration order, which stats promise, and
        // costs nothing on the looks; unregistering is rare.
        let at = self.list.iter().position(|c| c.key == key)?;
        Some(self.list.remove(at))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Component> {
        self.list.iter_mut()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Component> {
        self.list.iter()
    }

    /// Keys of components whose thread exited without unregistering.
    pub(crate) fn exited_threads(&self) -> Vec<u64> {
        self.list
            .iter()
            .filter(|c| {
                c.cell.thread_exited.load(Ordering::Acquire)
                    && !c.cell.unregistered.load(Ordering::Acquire)
            })
            .map(|c| c.key)
            .collect()
    }

    /// The shortest transient timeout, in stamps.
    pub(crate) fn shortest_transient(&self) -> Option<u64> {
        self.list.iter().map(|c| c.transient).min()
    }

    /// The earliest first deadline among activities no look has seen yet.
    /// The monitor promised to look at each of them by then (see
    /// `schedule.rs`); a look much later than that means it was paused.
    pub(crate) fn earliest_unseen_deadline(&self, now: u64) -> Option<u64> {
        self.list
            .iter()
            .filter_map(|c| {
                let word = c.cell.load_state();
                let unseen = cell::is_active(word) && word != c.seen && word != c.ignored;
                unseen.then(|| cell::start_of(word, now) + c.transient)
            })
            .min()
    }

    /// Whether any component's state word differs from what the latest look saw.
    pub(crate) fn any_changed(&self) -> bool {
        self.list.iter().any(|c| c.cell.load_state() != c.seen)
    }
}

/// What a look needs besides the component itself.
pub(crate) struct LookAt<'a> {
    pub(crate) now: u64,
    pub(crate) pauses: &'a Pauses,
    pub(crate) clock: &'a Clock,
    /// How far past its deadline an alert is raised before it counts as late.
    pub(crate) late_after: u64,
}

impl Component {
    /// Looks at the component: reports an activity that ended, raises the
    /// alerts that are due, and says when it needs looking at next.
    pub(crate) fn look(&mut self, at: &LookAt<'_>, outbox: &mut Outbox) -> Look {
        let now = at.now;
        let word = self.cell.load_state();
        let changed = word != self.seen;
        self.seen = word;
        self.report_ended(word, at, outbox);
        let quiet = Look {
            changed,
            deadline: None,
            active_since: None,
        };
        if !cell::is_active(word)
            || word == self.ignored
            || self.cell.unregistered.load(Ordering::Acquire)
        {
            return quiet;
        }
        let done = self.progress.as_ref().map(|probe| probe());
        let tracked = self.tracked.get_or_insert_with(|| Tracked {
            word,
            // Work done before this first look: the stretch without progress
            // can have begun no earlier than now.
            start: match done {
                Some(done) if done != 0 => now,
                _ => cell::start_of(word, now),
            },
            done: done.unwrap_or(0),
            level: None,
        });
        let progressed = done.filter(|&done| done != tracked.done);
        if let Some(done) = progressed {
            self.progressed(word, done, at, outbox);
        }
        let (start, level) = self
            .tracked
            .as_ref()
            .map_or((now, None), |tracked| (tracked.start, tracked.level));
        if level.is_none() && self.cell.alerted.load(Ordering::Relaxed) != cell::watch_mark(word) {
            // Ask the component to record when this activity ends, so that
            // its length is exact even if the next look comes late.
            self.cell
                .alerted
                .store(cell::watch_mark(word), Ordering::Relaxed);
        }
        let busy = at.pauses.active_between(start, now);
        let paused = at.pauses.paused_since(start);
        for (level, timeout) in [
            (HangLevel::Transient, self.transient),
            (HangLevel::Permanent, self.permanent),
        ] {
            if busy < timeout || self.tracked.as_ref().and_then(Tracked::hang_level) >= Some(level)
            {
                continue;
            }
            if level == HangLevel::Transient {
                // Tells the component to time the end of this hang, and to
                // wake us when it comes (cell.rs).
                self.cell.alerted.store(word, Ordering::Relaxed);
            }
            if let Some(tracked) = &mut self.tracked {
                tracked.level = Some(level);
            }
            let late = now > start + timeout + paused + at.late_after;
            self.raise(
                level,
                word,
                start,
                busy,
                late,
                self.capture(level),
                at,
                outbox,
            );
        }
        let level = self.tracked.as_ref().and_then(Tracked::hang_level);
        if level.is_some() {
            self.longest_hang = self.longest_hang.max(busy);
        }
        let mut deadline = Some(match level {
            None => start + self.transient + paused,
            Some(HangLevel::Transient) => start + self.permanent + paused,
            // Past its last level a hang has no deadline left, but its end
            // must still be seen. The component rings when it ends (cell.rs),
            // unless it read the mark before this look stored it and
            // publishes its wait after our re-check (a thread preempted
            // between the two, or a late look that raised both levels at
            // once): then a look every transient timeout finds the end,
            // timed exactly by the component all the same.
            Some(HangLevel::Permanent) => now + self.transient,
        });
        if self.progress.is_some() {
            // Often enough to see a stretch without progress begin and end
            // within a tenth of the transient timeout.
            let soon = now + (self.transient / PROGRESS_LOOKS_PER_TRANSIENT).max(1);
            deadline = Some(deadline.map_or(soon, |deadline| deadline.min(soon)));
        }
        Look {
            changed,
            deadline,
            active_since: Some(start),
        }
    }

    /// The count of work done moved since the previous look: the stretch
    /// without progress ends here (with an `Ended` alert, if it was a hang),
    /// and a new one begins.
    fn progressed(&mut self, word: u64, done: u64, at: &LookAt<'_>, outbox: &mut Outbox) {
        let Some(tracked) = self.tracked.replace(Tracked {
            word,
            start: at.now,
            done,
            level: None,
        }) else {
            return;
        };
        if tracked.level.is_some() {
            // The activity goes on, busy again: the component need not time
            // its end any more, nor wake us for it.
            self.cell
                .alerted
                .store(cell::watch_mark(word), Ordering::Relaxed);
            self.report_hang_end(tracked, at.now, at, outbox);
        }
    }

    /// Raises a hang alert of `level` about the activity in `word`.
    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        level: HangLevel,
        word: u64,
        start: u64,
        busy: u64,
        late: bool,
        capture: Capture,
        at: &LookAt<'_>,
        outbox: &mut Outbox,
    ) {
        let kind = match level {
            HangLevel::Transient => {
                self.transient_alerts += 1;
                AlertKind::Transient
            }
            HangLevel::Permanent => {
                self.permanent_alerts += 1;
                AlertKind::Permanent
            }
        };
        let mut alert = self.alert(kind, word, busy, at);
        alert.started_ns = Some(at.clock.to_monotonic_ns(start));
        alert.late = late;
        outbox.raise(self.key, alert, capture, at.now);
    }

    /// If the activity a look saw under way is no longer the one in `word`,
    /// reports what its length earned: the levels it reached that no alert
    /// said yet (late, it is over), then `Ended`.
    fn report_ended(&mut self, word: u64, at: &LookAt<'_>, outbox: &mut Outbox) {
        let Some(tracked) = self.tracked.take_if(|tracked| tracked.word != word) else {
            return;
        };
        // The component timed the end if it saw our mark in time; otherwise
        // (or if `ended` belongs to an older activity) we saw the end just
        // now. For an activity we never alerted on, only a timed end says
        // how long it was.
        let ended = self.cell.ended.load(Ordering::Relaxed);
        let end = if (tracked.start..=at.now).contains(&ended) {
            ended
        } else if tracked.level.is_some() {
            at.now
        } else {
            return;
        };
        self.report_hang_end(tracked, end, at, outbox);
    }

    /// Reports what a stretch that ended at `end` earned: the levels it
    /// reached that no alert said yet (late, it is over), then `Ended`.
    fn report_hang_end(
        &mut self,
        tracked: Tracked,
        end: u64,
        at: &LookAt<'_>,
        outbox: &mut Outbox,
    ) {
        let duration = at.pauses.active_between(tracked.start, end);
        let mut worst = tracked.level;
        for (level, timeout) in [
            (HangLevel::Transient, self.transient),
            (HangLevel::Permanent, self.permanent),
        ] {
            if duration >= timeout && worst < Some(level) {
                worst = Some(level);
                let capture = match self.capture(level) {
                    Capture::No => Capture::No,
                    _ => Capture::Missing(NoStack::HangEnded),
                };
                self.raise(
                    level,
                    tracked.word,
                    tracked.start,
                    duration,
                    true,
                    capture,
                    at,
                    outbox,
                );
            }
        }
        let Some(worst) = worst else {
            return;
        };
        self.ended_hangs += 1;
        self.longest_hang = self.longest_hang.max(duration);
        let mut alert = self.alert(AlertKind::Ended { worst }, tracked.word, duration, at);
        alert.started_ns = Some(at.clock.to_monotonic_ns(tracked.start));
        outbox.raise(self.key, alert, Capture::No, at.now);
    }

    /// The component unregistered: a hang that ended before that is still
    /// worth a word; one still under way is not reported.
    pub(crate) fn retire(mut self, at: &LookAt<'_>, outbox: &mut Outbox) {
        let word = self.cell.load_state();
        self.report_ended(word, at, outbox);
        outbox.forget(self.key);
    }

    /// Turns checks back on: the activity under way now, if any, is not reported.
    pub(crate) fn resume_checks(&mut self) {
        self.seen = self.cell.load_state();
        self.ignored = self.seen;
        self.tracked = None;
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    pub(crate) fn thread_name(&self) -> Option<&str> {
        self.thread.as_deref()
    }

    /// How to sample its thread, if that is possible.
    pub(crate) fn sample_target(&self) -> Option<&Arc<SampleTarget>> {
        self.stack_target.as_ref()?.as_ref().ok()
    }

    /// Its state word now.
    pub(crate) fn state_word(&self) -> u64 {
        self.cell.load_state()
    }

    /// The hang under way as of the latest look, if any: its start, level
    /// and annotation.
    pub(crate) fn ongoing_hang(&self) -> Option<(u64, HangLevel, &'static str)> {
        let tracked = self.tracked.as_ref()?;
        let annotation = annotation::resolve(cell::label_of(tracked.word)).as_str();
        Some((tracked.start, tracked.level?, annotation))
    }

    /// Whether an alert of `level` carries a stack, and how to take it.
    fn capture(&self, level: HangLevel) -> Capture {
        if level == HangLevel::Transient && !self.stack_on_transient {
            return Capture::No;
        }
        match &self.stack_target {
            None => Capture::Missing(NoStack::Disabled("stack sampling is off".into())),
            Some(Ok(target)) => Capture::Thread(target.clone()),
            Some(Err(reason)) => Capture::Missing(reason.clone()),
        }
    }

    /// An alert about the activity in `word`, busy for `busy`, raised now.
    fn alert(&self, kind: AlertKind, word: u64, busy: u64, at: &LookAt<'_>) -> Alert {
        Alert {
            component: self.id.clone(),
            kind,
            annotation: Some(Cow::Borrowed(
                annotation::resolve(cell::label_of(word)).as_str(),
            )),
            duration: at.clock.to_duration(busy),
            thread: self.thread.clone(),
            time: SystemTime::now(),
            started_ns: None,
            raised_ns: at.clock.to_monotonic_ns(at.now),
            late: false,
            stack: None,
            no_stack: None,
        }
    }

    /// The notice that the component's thread exited without unregistering.
    pub(crate) fn report_thread_exited(self, at: &LookAt<'_>, outbox: &mut Outbox) {
        let mut alert = self.alert(AlertKind::ThreadExited, 0, 0, at);
        alert.annotation = None;
        alert.duration = Duration::ZERO;
        outbox.raise(self.key, alert, Capture::No, at.now);
        outbox.forget(self.key);
    }

    pub(crate) fn stats(&self, now: u64, pauses: &Pauses, clock: &Clock) -> ComponentStats {
        let word = self.seen;
        let annotation = || Cow::Borrowed(annotation::resolve(cell::label_of(word)).as_str());
        // Since the activity began, or for a component whose progress we
        // read, since the look that last saw it move.
        let start = match &self.tracked {
            Some(tracked) if tracked.word == word => tracked.start,
            _ => cell::start_of(word, now),
        };
        let busy = || clock.to_duration(pauses.active_between(start, now));
        let state = match self.tracked.as_ref().and_then(Tracked::hang_level) {
            _ if !cell::is_active(word) || word == self.ignored => ComponentState::Waiting,
            Some(level) => ComponentState::Hung {
                level,
                annotation: annotation(),
                busy: busy(),
            },
            None => ComponentState::Active {
                annotation: annotation(),
                busy: busy(),
            },
        };
        ComponentStats {
            id: self.id.clone(),
            thread: self.thread.as_deref().map(str::to_owned),
            transient_alerts: self.transient_alerts,
            permanent_alerts: self.permanent_alerts,
            ended_hangs: self.ended_hangs,
            longest_hang: clock.to_duration(self.longest_hang),
            state,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
