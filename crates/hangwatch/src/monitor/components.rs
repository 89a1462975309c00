//! The monitor's view of each component, and what one look at it decides.
//!
//! Everything here lives on the monitor's thread. A component's cell is the
//! only thing shared, and it is only read here, except for `alerted`, which
//! the monitor writes when it raises a hang alert (see `cell.rs`).

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use crate::alert::{Alert, AlertKind, HangLevel};
use crate::annotation;
use crate::cell::{self, ActivityCell};
use crate::clock::Clock;
use crate::component::{ComponentId, ExitSignal};
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
    thread: Option<String>,
    cell: Arc<ActivityCell>,
    /// Timeouts, in stamps.
    transient: u64,
    permanent: u64,
    pub(crate) exit_signal: Option<ExitSignal>,
    /// How to sample its thread (`None`: stacks are off).
    stack_target: Option<Result<Arc<SampleTarget>, NoStack>>,
    /// Whether transient alerts carry a stack too.
    stack_on_transient: bool,
    /// The state word at the latest look.
    seen: u64,
    /// An activity under way when checks were turned on: never reported.
    ignored: u64,
    /// The current activity, once it has raised an alert.
    hang: Option<Hang>,
    transient_alerts: u64,
    permanent_alerts: u64,
    ended_hangs: u64,
    longest_hang: u64,
}

/// An activity that has raised an alert.
struct Hang {
    word: u64,
    start: u64,
    level: HangLevel,
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
            id,
            thread,
            cell,
            transient: clock.to_stamps(timeouts.transient()),
            permanent: clock.to_stamps(timeouts.permanent()),
            exit_signal,
            stack_target,
            stack_on_transient,
            seen: 0,
            ignored: 0,
            hang: None,
            transient_alerts: 0,
            permanent_alerts: 0,
            ended_hangs: 0,
            longest_hang: 0,
        });
        self.list.last_mut().expect("just pushed")
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

impl Component {
    /// Looks at the component at `now`: reports a hang that ended, raises the
    /// alerts that are due, and says when it needs looking at next.
    pub(crate) fn look(
        &mut self,
        now: u64,
        pauses: &Pauses,
        clock: &Clock,
        outbox: &mut Outbox,
    ) -> Look {
        let word = self.cell.load_state();
        let changed = word != self.seen;
        self.seen = word;
        self.report_ended_hang(word, now, pauses, clock, outbox);
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
        let start = cell::start_of(word, now);
        let busy = pauses.active_between(start, now);
        if busy >= self.transient && self.hang.is_none() {
            self.hang = Some(Hang {
                word,
                start,
                level: HangLevel::Transient,
            });
            // Tells the component to time the end of this hang (cell.rs).
            self.cell.alerted.store(word, Ordering::Relaxed);
            self.transient_alerts += 1;
            let alert = self.alert(AlertKind::Transient, word, busy, clock);
            outbox.raise(self.key, alert, self.capture(HangLevel::Transient), now);
        }
        if busy >= self.permanent {
            if let Some(hang) = self
                .hang
                .as_mut()
                .filter(|h| h.level < HangLevel::Permanent)
            {
                hang.level = HangLevel::Permanent;
                self.permanent_alerts += 1;
                let alert = self.alert(AlertKind::Permanent, word, busy, clock);
                outbox.raise(self.key, alert, self.capture(HangLevel::Permanent), now);
            }
        }
        if self.hang.is_some() {
            self.longest_hang = self.longest_hang.max(busy);
        }
        let timeout = match self.hang.as_ref().map(|h| h.level) {
            None => Some(self.transient),
            Some(HangLevel::Transient) => Some(self.permanent),
            Some(HangLevel::Permanent) => None,
        };
        Look {
            changed,
            deadline: timeout.map(|t| start + t + pauses.paused_since(start)),
            active_since: Some(start),
        }
    }

    /// Raises the `Ended` alert if the activity that raised alerts is no
    /// longer the one in `word`.
    fn report_ended_hang(
        &mut self,
        word: u64,
        now: u64,
        pauses: &Pauses,
        clock: &Clock,
        outbox: &mut Outbox,
    ) {
        let Some(hang) = self.hang.take_if(|hang| hang.word != word) else {
            return;
        };
        // The component timed the end if it saw our mark in time; otherwise
        // (or if `ended` belongs to an older hang) we saw the end just now.
        let ended = self.cell.ended.load(Ordering::Relaxed);
        let end = if (hang.start..=now).contains(&ended) {
            ended
        } else {
            now
        };
        let duration = pauses.active_between(hang.start, end);
        self.ended_hangs += 1;
        self.longest_hang = self.longest_hang.max(duration);
        let worst = hang.level;
        let alert = self.alert(AlertKind::Ended { worst }, hang.word, duration, clock);
        outbox.raise(self.key, alert, Capture::No, now);
    }

    /// The component unregistered: a hang that ended before that is still
    /// worth a word; one still under way is not reported.
    pub(crate) fn retire(mut self, now: u64, pauses: &Pauses, clock: &Clock, outbox: &mut Outbox) {
        let word = self.cell.load_state();
        self.report_ended_hang(word, now, pauses, clock, outbox);
    }

    /// Turns checks back on: the activity under way now, if any, is not reported.
    pub(crate) fn resume_checks(&mut self) {
        self.seen = self.cell.load_state();
        self.ignored = self.seen;
        self.hang = None;
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
        let hang = self.hang.as_ref()?;
        let annotation = annotation::resolve(cell::label_of(hang.word)).as_str();
        Some((hang.start, hang.level, annotation))
    }

    /// Whether an alert of `level` carries a stack, and how to take it.
    fn capture(&self, level: HangLevel) -> Capture<'_> {
        if level == HangLevel::Transient && !self.stack_on_transient {
            return Capture::No;
        }
        match &self.stack_target {
            None => Capture::Missing(NoStack::Disabled("stack sampling is off".into())),
            Some(Ok(target)) => Capture::Thread(target),
            Some(Err(reason)) => Capture::Missing(reason.clone()),
        }
    }

    fn alert(&self, kind: AlertKind, word: u64, busy: u64, clock: &Clock) -> Alert {
        Alert {
            component: self.id.clone(),
            kind,
            annotation: Some(Cow::Borrowed(
                annotation::resolve(cell::label_of(word)).as_str(),
            )),
            duration: clock.to_duration(busy),
            thread: self.thread.clone(),
            time: SystemTime::now(),
            stack: None,
            no_stack: None,
        }
    }

    /// The notice that the component's thread exited without unregistering.
    pub(crate) fn report_thread_exited(self, now: u64, outbox: &mut Outbox) {
        let alert = Alert {
            component: self.id.clone(),
            kind: AlertKind::ThreadExited,
            annotation: None,
            duration: std::time::Duration::ZERO,
            thread: self.thread.clone(),
            time: SystemTime::now(),
            stack: None,
            no_stack: None,
        };
        outbox.raise(self.key, alert, Capture::No, now);
    }

    pub(crate) fn stats(&self, now: u64, pauses: &Pauses, clock: &Clock) -> ComponentStats {
        let word = self.seen;
        let annotation = || Cow::Borrowed(annotation::resolve(cell::label_of(word)).as_str());
        let busy = || clock.to_duration(pauses.active_between(cell::start_of(word, now), now));
        let state = match &self.hang {
            _ if !cell::is_active(word) || word == self.ignored => ComponentState::Waiting,
            Some(hang) => ComponentState::Hung {
                level: hang.level,
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
            thread: self.thread.clone(),
            transient_alerts: self.transient_alerts,
            permanent_alerts: self.permanent_alerts,
            ended_hangs: self.ended_hangs,
            longest_hang: clock.to_duration(self.longest_hang),
            state,
        }
    }
}
