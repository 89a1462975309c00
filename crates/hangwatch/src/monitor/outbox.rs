//! Where raised alerts go: straight to the alert channel, or, for an alert
//! that carries a stack, held until its stack is ready.
//!
//! Raising an alert with a stack runs the capture stage right here, on the
//! monitor's thread, because it is short and bounded: the sampler signals the
//! hung thread and waits at most the capture timeout (50 ms by default) for
//! the copy. The raw sample then goes to the stack workers and the alert
//! waits in a per-component queue until one of these happens first:
//!
//! - the symbolicated stack comes back: the alert leaves with it;
//! - the symbolication deadline passes: the alert leaves with the unwound
//!   stack (raw addresses and module offsets) if the worker got that far, or
//!   with the instruction pointer alone if not.
//!
//! Alerts of one component leave in the order they were raised: an `Ended`
//! raised while that component's `Permanent` waits for its stack waits
//! behind it. Alerts of other components do not wait.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use crate::alert::{Alert, AlertKind};
use crate::messages::StackWork;
use crate::monitor::stacks::Stacks;
use crate::monitor::AlertSink;
use crate::stack::sampler::SampleTarget;
use crate::stack::{Frame, NoStack, Stack};

/// Whether and how to attach a stack to an alert.
pub(crate) enum Capture<'a> {
    /// This alert carries no stack.
    No,
    /// Sample this thread.
    Thread(&'a Arc<SampleTarget>),
    /// It should, but cannot.
    Missing(NoStack),
}

struct Held {
    alert: Alert,
    /// The stack job still under way for this alert, if any.
    job: Option<PendingStack>,
}

struct PendingStack {
    id: u64,
    deadline: u64,
    /// What goes out if the deadline passes first.
    fallback: Stack,
}

pub(crate) struct Outbox {
    sink: AlertSink,
    stacks: Option<Rc<Stacks>>,
    /// Alerts waiting, per component key, oldest first. A key is present
    /// only while its queue is not empty.
    held: HashMap<u64, VecDeque<Held>>,
    /// Which component key each stack job belongs to.
    jobs: HashMap<u64, u64>,
    /// While profiling: the `Ended` alerts raised, for the profile's hang
    /// markers, with their component keys.
    ended_hangs: Option<Vec<(u64, Alert)>>,
}

impl Outbox {
    pub(crate) fn new(sink: AlertSink, stacks: Option<Rc<Stacks>>) -> Outbox {
        Outbox {
            sink,
            stacks,
            held: HashMap::new(),
            jobs: HashMap::new(),
            ended_hangs: None,
        }
    }

    /// Starts (or stops, returning them) collecting `Ended` alerts.
    pub(crate) fn collect_ended_hangs(&mut self, on: bool) -> Vec<(u64, Alert)> {
        let collected = self.ended_hangs.take().unwrap_or_default();
        if on {
            self.ended_hangs = Some(Vec::new());
        }
        collected
    }

    /// The `Ended` alerts collected since the last call.
    pub(crate) fn take_ended_hangs(&mut self) -> Vec<(u64, Alert)> {
        self.ended_hangs
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(crate) fn sink(&self) -> &AlertSink {
        &self.sink
    }

    /// Sends `alert` for component `key`, after its stack if `capture` asks
    /// for one.
    pub(crate) fn raise(&mut self, key: u64, mut alert: Alert, capture: Capture<'_>, now: u64) {
        if let (Some(ended), AlertKind::Ended { .. }) = (&mut self.ended_hangs, alert.kind) {
            ended.push((key, alert.clone()));
        }
        let target = match capture {
            Capture::No => return self.send_in_order(key, alert),
            Capture::Missing(reason) => {
                alert.no_stack = Some(reason);
                return self.send_in_order(key, alert);
            }
            Capture::Thread(target) => target,
        };
        let Some(stacks) = &self.stacks else {
            alert.no_stack = Some(NoStack::Disabled("stack sampling is off".into()));
            return self.send_in_order(key, alert);
        };
        let sample = match stacks.capture(target) {
            Ok(sample) => sample,
            Err(reason) => {
                alert.no_stack = Some(reason);
                return self.send_in_order(key, alert);
            }
        };
        let fallback = Stack {
            frames: vec![Frame {
                address: sample.registers.ip,
                ..Frame::default()
            }],
            truncated: true,
            capture: Some(sample.method),
            blocked_in: sample.syscall.map(crate::stack::sampler::describe_syscall),
        };
        let deadline = now + stacks.symbolicate_deadline;
        let Some(id) = stacks.submit(StackWork::Hang(sample)) else {
            alert.stack = Some(fallback);
            return self.send_in_order(key, alert);
        };
        self.jobs.insert(id, key);
        self.held.entry(key).or_default().push_back(Held {
            alert,
            job: Some(PendingStack {
                id,
                deadline,
                fallback,
            }),
        });
    }

    /// Takes in a worker's stack for a held alert: the unwound one (kept as
    /// the fallback) or the symbolicated one (the alert may leave).
    pub(crate) fn stack_done(&mut self, id: u64, stack: Stack, symbolicated: bool) {
        // A result for an alert that already left (past its deadline) is dropped.
        let Some(&key) = self.jobs.get(&id) else {
            return;
        };
        let Some(held) = self.held.get_mut(&key).and_then(|queue| {
            queue
                .iter_mut()
                .find(|h| h.job.as_ref().is_some_and(|j| j.id == id))
        }) else {
            return;
        };
        if symbolicated {
            held.alert.stack = Some(stack);
            held.job = None;
            self.jobs.remove(&id);
            self.flush(key);
        } else if let Some(job) = &mut held.job {
            job.fallback = stack;
        }
    }

    /// Lets out every alert whose symbolication deadline has passed.
    pub(crate) fn expire(&mut self, now: u64) {
        let mut expired_keys = Vec::new();
        for (&key, queue) in &mut self.held {
            for held in queue.iter_mut() {
                if held.job.as_ref().is_some_and(|job| job.deadline <= now) {
                    if let Some(job) = held.job.take() {
                        self.jobs.remove(&job.id);
                        held.alert.stack = Some(job.fallback);
                        expired_keys.push(key);
                    }
                }
            }
        }
        for key in expired_keys {
            self.flush(key);
        }
    }

    /// The earliest symbolication deadline among held alerts.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.held
            .values()
            .flatten()
            .filter_map(|held| held.job.as_ref().map(|job| job.deadline))
            .min()
    }

    fn send_in_order(&mut self, key: u64, alert: Alert) {
        match self.held.get_mut(&key) {
            Some(queue) => queue.push_back(Held { alert, job: None }),
            None => self.sink.send(alert),
        }
    }

    /// Sends the ready alerts at the front of `key`'s queue.
    fn flush(&mut self, key: u64) {
        let Some(queue) = self.held.get_mut(&key) else {
            return;
        };
        while queue.front().is_some_and(|held| held.job.is_none()) {
            if let Some(held) = queue.pop_front() {
                self.sink.send(held.alert);
            }
        }
        if queue.is_empty() {
            self.held.remove(&key);
        }
    }
}
