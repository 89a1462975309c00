//! Where raised alerts go: straight to the alert channel, or, for an alert
//! that carries a stack, held a short while for its stack.
//!
//! Raising an alert with a stack asks the capture thread for the hung
//! thread's sample and goes on: the monitor does not wait for the thread.
//! The alert waits in its component's queue until the first of:
//!
//! - the symbolicated stack comes back: the alert leaves with it;
//! - the capture or a worker says there is no stack: it leaves with the
//!   reason;
//! - its wait is over ([`Builder::symbolicate_deadline`], 5 ms by default):
//!   it leaves with the unwound stack (raw addresses and module offsets) if
//!   a worker got that far, else with [`NoStack::Follows`]; either way the
//!   symbolicated stack follows, when it comes, in an
//!   [`AlertKind::Stack`] alert naming the level it completes (or with the
//!   reason there is none).
//!
//! So an alert is delivered within that wait of being raised, whatever the
//! thread, the workers, the symbol files or the machine's load do, and no
//! stack is lost for being slow. A warm stack takes well under a
//! millisecond, so on a quiet machine alerts carry their stacks; the first
//! one of a process (its symbol tables loading), or one on a loaded
//! machine, follows. Alerts of one component leave in the order they were
//! raised: an `Ended` raised while that component's `Permanent` waits for
//! its stack waits behind it (a `Stack` alert may come after the `Ended`).
//! Alerts of other components do not wait.
//!
//! Nothing here allocates while an alert is raised or leaves: each
//! registered component's queue is made when it registers, the job tables
//! keep their room, and a `Stack` alert copies only shared names.
//!
//! [`Builder::symbolicate_deadline`]: crate::Builder::symbolicate_deadline

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::alert::{Alert, AlertKind, HangLevel};
use crate::monitor::stacks::Stacks;
use crate::monitor::AlertSink;
use crate::stack::sampler::SampleTarget;
use crate::stack::{NoStack, Stack};

/// Whether and how to attach a stack to an alert.
pub(crate) enum Capture {
    /// This alert carries no stack.
    No,
    /// Sample this thread.
    Thread(Arc<SampleTarget>),
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
    /// The unwound stack, once a worker has it: what goes out if the
    /// deadline passes before the symbolicated one comes.
    unwound: Option<Stack>,
}

/// One component's alerts waiting to leave.
#[derive(Default)]
struct Queue {
    held: VecDeque<Held>,
    /// The component is gone: drop the queue once it is empty.
    retired: bool,
}

/// How many alerts a component's queue has room for without growing: a
/// transient and a permanent alert waiting for their stacks, the `Ended`
/// behind them, and one more.
const QUEUE_ROOM: usize = 4;

/// An alert that left before its stack was ready: what the `Stack` alert
/// that completes it says.
struct Following {
    /// The delivered alert, without its stack.
    header: Alert,
    of: HangLevel,
    /// Past this stamp a stack that has not come is given up, so that the
    /// table cannot grow without end.
    until: u64,
}

pub(crate) struct Outbox {
    sink: AlertSink,
    stacks: Option<Stacks>,
    /// Per component key, from its registration.
    queues: HashMap<u64, Queue>,
    /// Which component key each stack job of a held alert belongs to.
    jobs: HashMap<u64, u64>,
    /// Stack jobs of alerts that left without their stacks.
    following: HashMap<u64, Following>,
    /// While profiling: the `Ended` alerts raised, for the profile's hang
    /// markers, with their component keys.
    ended_hangs: Option<Vec<(u64, Alert)>>,
}

impl Outbox {
    pub(crate) fn new(sink: AlertSink, stacks: Option<Stacks>) -> Outbox {
        Outbox {
            sink,
            stacks,
            queues: HashMap::new(),
            jobs: HashMap::with_capacity(64),
            following: HashMap::with_capacity(64),
            ended_hangs: None,
        }
    }

    /// The stack stages, if stacks are on.
    pub(crate) fn stacks(&mut self) -> Option<&mut Stacks> {
        self.stacks.as_mut()
    }

    pub(crate) fn has_stacks(&self) -> bool {
        self.stacks.is_some()
    }

    /// Makes room for a newly registered component's alerts.
    pub(crate) fn add(&mut self, key: u64) {
        self.queues.insert(
            key,
            Queue {
                held: VecDeque::with_capacity(QUEUE_ROOM),
                retired: false,
            },
        );
    }

    /// The component is gone: its queue goes once its alerts have left.
    pub(crate) fn forget(&mut self, key: u64) {
        if let Some(queue) = self.queues.get_mut(&key) {
            queue.retired = true;
        }
        self.drop_if_done(key);
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
    pub(crate) fn raise(&mut self, key: u64, mut alert: Alert, capture: Capture, now: u64) {
        self.sink
            .observers()
            .report(|observer| observer.alert_raised(&alert));
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
        let Some(stacks) = &mut self.stacks else {
            alert.no_stack = Some(NoStack::Disabled("stack sampling is off".into()));
            return self.send_in_order(key, alert);
        };
        let deadline = now + stacks.hold;
        let Some(id) = stacks.capture_hang(target) else {
            alert.no_stack = Some(NoStack::NotReady);
            return self.send_in_order(key, alert);
        };
        self.jobs.insert(id, key);
        let job = Some(PendingStack {
            id,
            deadline,
            unwound: None,
        });
        self.queue(key).held.push_back(Held { alert, job });
    }

    /// Takes in a worker's stack for an alert: the unwound one (kept in case
    /// time runs out) or the symbolicated one (the alert may leave, or its
    /// `Stack` alert).
    pub(crate) fn stack_done(&mut self, id: u64, stack: Stack, symbolicated: bool) {
        if !symbolicated {
            if let Some(job) = self.held_for(id).and_then(|held| held.job.as_mut()) {
                job.unwound = Some(stack);
            }
            return;
        }
        self.complete(id, Ok(stack));
    }

    /// An alert's stack cannot be had: it leaves with the reason, or its
    /// `Stack` alert does.
    pub(crate) fn stack_missing(&mut self, id: u64, reason: NoStack) {
        self.complete(id, Err(reason));
    }

    /// Whether job `id` is an alert's.
    pub(crate) fn owns(&self, id: u64) -> bool {
        self.jobs.contains_key(&id) || self.following.contains_key(&id)
    }

    fn complete(&mut self, id: u64, stack: Result<Stack, NoStack>) {
        if let Some(following) = self.following.remove(&id) {
            // The alert it completes, word for word, but for its kind.
            let mut alert = following.header;
            alert.kind = AlertKind::Stack { of: following.of };
            match stack {
                Ok(stack) => alert.stack = Some(stack),
                Err(reason) => alert.no_stack = Some(reason),
            }
            return self.sink.send(alert);
        }
        let Some(held) = self.held_for(id) else {
            return;
        };
        let unwound = held.job.take().and_then(|job| job.unwound);
        match (stack, unwound) {
            (Ok(stack), _) => held.alert.stack = Some(stack),
            // No symbols coming, but the raw stack is here.
            (Err(_), Some(unwound)) => held.alert.stack = Some(unwound),
            (Err(reason), None) => held.alert.no_stack = Some(reason),
        }
        self.finish_job(id);
    }

    /// Lets out every alert whose wait for its stack is over; its stack
    /// follows.
    pub(crate) fn expire(&mut self, now: u64) {
        let Outbox {
            queues,
            jobs,
            sink,
            following,
            stacks,
            ..
        } = self;
        let follow_for = stacks.as_ref().map_or(0, |s| s.follow_for);
        for queue in queues.values_mut() {
            for held in queue.held.iter_mut() {
                let Some(job) = held.job.take_if(|job| job.deadline <= now) else {
                    continue;
                };
                jobs.remove(&job.id);
                if let Some(of) = hang_level(held.alert.kind) {
                    // A clone without a stack: shared names, no allocation.
                    following.insert(
                        job.id,
                        Following {
                            header: held.alert.clone(),
                            of,
                            until: now.saturating_add(follow_for),
                        },
                    );
                }
                match job.unwound {
                    Some(stack) => held.alert.stack = Some(stack),
                    None => held.alert.no_stack = Some(NoStack::Follows),
                }
            }
            send_ready(&mut queue.held, sink);
        }
        following.retain(|_, following| following.until > now);
        self.queues
            .retain(|_, queue| !(queue.retired && queue.held.is_empty()));
    }

    /// The earliest deadline among held alerts.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.queues
            .values()
            .flat_map(|queue| &queue.held)
            .filter_map(|held| held.job.as_ref().map(|job| job.deadline))
            .min()
    }

    /// The alert waiting for job `id`, if it still waits.
    fn held_for(&mut self, id: u64) -> Option<&mut Held> {
        // A result for an alert that already left (past its deadline) is dropped.
        let key = *self.jobs.get(&id)?;
        self.queues
            .get_mut(&key)?
            .held
            .iter_mut()
            .find(|held| held.job.as_ref().is_some_and(|job| job.id == id))
    }

    /// Job `id` is done: send what became ready in its component's queue.
    fn finish_job(&mut self, id: u64) {
        let Some(key) = self.jobs.remove(&id) else {
            return;
        };
        if let Some(queue) = self.queues.get_mut(&key) {
            send_ready(&mut queue.held, &mut self.sink);
        }
        self.drop_if_done(key);
    }

    fn send_in_order(&mut self, key: u64, alert: Alert) {
        match self.queues.get_mut(&key) {
            Some(queue) if !queue.held.is_empty() => {
                queue.held.push_back(Held { alert, job: None })
            }
            _ => self.sink.send(alert),
        }
    }

    /// `key`'s queue; made now for a component the outbox was not told of.
    fn queue(&mut self, key: u64) -> &mut Queue {
        self.queues.entry(key).or_default()
    }

    fn drop_if_done(&mut self, key: u64) {
        if self
            .queues
            .get(&key)
            .is_some_and(|queue| queue.retired && queue.held.is_empty())
        {
            self.queues.remove(&key);
        }
    }
}

/// The level of a hang alert.
fn hang_level(kind: AlertKind) -> Option<HangLevel> {
    match kind {
        AlertKind::Transient => Some(HangLevel::Transient),
        AlertKind::Permanent => Some(HangLevel::Permanent),
        _ => None,
    }
}

/// Sends the ready alerts at the front of `held`.
fn send_ready(held: &mut VecDeque<Held>, sink: &mut AlertSink) {
    while held.front().is_some_and(|held| held.job.is_none()) {
        if let Some(held) = held.pop_front() {
            sink.send(held.alert);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crossbeam_channel::Receiver;

    use super::*;
    use crate::component::ComponentId;
    use crate::messages::CaptureJob;
    use crate::stack::capture::Capturer;
    use crate::stack::workers::StackWorkers;
    use crate::stack::Frame;

    /// How long an alert waits for its stack, and how long after that the
    /// stack may still follow, in stamps.
    const HOLD: u64 = 5;
    const FOLLOW_FOR: u64 = 1_000;

    /// An outbox whose capture requests nobody serves: the test answers them.
    struct Rig {
        outbox: Outbox,
        alerts: Receiver<Alert>,
        captures: Receiver<CaptureJob>,
        target: Arc<SampleTarget>,
    }

    impl Rig {
        fn new() -> Rig {
            let (sender, alerts) = crossbeam_channel::bounded(64);
            let (capturer, captures, _) = Capturer::unserved();
            let (workers, _, _) = StackWorkers::unserved();
            let stacks = Stacks::new(capturer, workers, HOLD, FOLLOW_FOR);
            let mut outbox = Outbox::new(AlertSink::new(sender, alerts.clone()), Some(stacks));
            outbox.add(1);
            outbox.add(2);
            let target = SampleTarget::current_thread(4096).expect("a target for this thread");
            Rig {
                outbox,
                alerts,
                captures,
                target: Arc::new(target),
            }
        }

        /// Raises a `kind` alert of component `key` at `now` that waits for
        /// its stack; returns the capture job's id.
        fn raise_with_stack(&mut self, key: u64, kind: AlertKind, now: u64) -> u64 {
            let capture = Capture::Thread(self.target.clone());
            self.outbox.raise(key, alert(key, kind), capture, now);
            self.captures.try_recv().expect("a capture was asked").id
        }

        fn sent(&self) -> Vec<Alert> {
            self.alerts.try_iter().collect()
        }
    }

    fn alert(key: u64, kind: AlertKind) -> Alert {
        Alert {
            component: ComponentId::new("render", key),
            kind,
            annotation: None,
            duration: Duration::from_millis(300),
            thread: None,
            time: SystemTime::UNIX_EPOCH,
            started_ns: Some(1_000),
            raised_ns: 2_000,
            late: false,
            stack: None,
            no_stack: None,
        }
    }

    fn stack(address: u64) -> Stack {
        Stack {
            frames: vec![Frame {
                address,
                ..Frame::default()
            }],
            ..Stack::default()
        }
    }

    #[test]
    fn an_alert_waits_for_its_stack_until_the_deadline_then_leaves_and_its_stack_follows() {
        let mut rig = Rig::new();
        let job = rig.raise_with_stack(1, AlertKind::Permanent, 100);
        assert_eq!(rig.outbox.next_deadline(), Some(100 + HOLD));
        rig.outbox.expire(100 + HOLD - 1);
        assert!(rig.sent().is_empty(), "held until its deadline");

        rig.outbox.expire(100 + HOLD);
        let sent = rig.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, AlertKind::Permanent);
        assert_eq!(sent[0].no_stack, Some(NoStack::Follows));
        assert_eq!(rig.outbox.next_deadline(), None);
        assert!(rig.outbox.owns(job), "its stack may still follow");

        rig.outbox.stack_done(job, stack(0xabc), true);
        let follows = rig.sent();
        assert_eq!(follows.len(), 1);
        let expected = Alert {
            kind: AlertKind::Stack {
                of: HangLevel::Permanent,
            },
            stack: Some(stack(0xabc)),
            no_stack: None,
            ..sent[0].clone()
        };
        assert_eq!(follows[0], expected, "the delivered alert, with its stack");
        assert!(!rig.outbox.owns(job));
    }

    #[test]
    fn an_alert_whose_stack_comes_in_time_leaves_with_it() {
        let mut rig = Rig::new();
        let job = rig.raise_with_stack(1, AlertKind::Permanent, 100);
        rig.outbox.stack_done(job, stack(0x1), false);
        assert!(rig.sent().is_empty(), "an unwound stack is kept, not sent");
        rig.outbox.stack_done(job, stack(0x2), true);
        let sent = rig.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].stack, Some(stack(0x2)));
        rig.outbox.expire(u64::MAX);
        assert!(rig.sent().is_empty(), "nothing follows");
    }

    #[test]
    fn at_the_deadline_an_unwound_stack_leaves_raw_and_the_symbolicated_one_follows() {
        let mut rig = Rig::new();
        let job = rig.raise_with_stack(1, AlertKind::Transient, 100);
        rig.outbox.stack_done(job, stack(0x1), false);
        rig.outbox.expire(100 + HOLD);
        let sent = rig.sent();
        assert_eq!(
            (sent[0].stack.clone(), sent[0].no_stack.clone()),
            (Some(stack(0x1)), None)
        );
        rig.outbox.stack_missing(job, NoStack::Timeout);
        let follows = rig.sent();
        let of = HangLevel::Transient;
        assert_eq!(follows[0].kind, AlertKind::Stack { of });
        assert_eq!(follows[0].no_stack, Some(NoStack::Timeout));
    }

    #[test]
    fn a_missing_stack_lets_the_alert_leave_at_once_with_the_reason() {
        let mut rig = Rig::new();
        let job = rig.raise_with_stack(1, AlertKind::Permanent, 100);
        rig.outbox.stack_missing(job, NoStack::ThreadGone);
        let sent = rig.sent();
        assert_eq!(sent[0].no_stack, Some(NoStack::ThreadGone));
        assert_eq!(rig.outbox.next_deadline(), None);
    }

    #[test]
    fn a_components_alerts_leave_in_order_and_other_components_do_not_wait() {
        let mut rig = Rig::new();
        let job = rig.raise_with_stack(1, AlertKind::Permanent, 100);
        let ended = AlertKind::Ended {
            worst: HangLevel::Permanent,
        };
        rig.outbox.raise(1, alert(1, ended), Capture::No, 101);
        rig.outbox
            .raise(2, alert(2, AlertKind::Transient), Capture::No, 101);
        let sent = rig.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].component, ComponentId::new("render", 2));

        rig.outbox.stack_done(job, stack(0x3), true);
        let kinds: Vec<AlertKind> = rig.sent().iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::Permanent, ended]);
    }

    #[test]
    fn a_stack_that_never_comes_is_given_up_after_its_follow_window() {
        let mut rig = Rig::new();
        let job = rig.raise_with_stack(1, AlertKind::Permanent, 100);
        rig.outbox.expire(100 + HOLD);
        assert_eq!(rig.sent().len(), 1);
        rig.outbox.expire(100 + HOLD + FOLLOW_FOR - 1);
        assert!(rig.outbox.owns(job));
        rig.outbox.expire(100 + HOLD + FOLLOW_FOR);
        assert!(!rig.outbox.owns(job));
        rig.outbox.stack_done(job, stack(0x4), true);
        assert!(rig.sent().is_empty(), "too late to follow");
    }

    #[test]
    fn a_retired_components_queue_goes_once_its_alerts_have_left() {
        let mut rig = Rig::new();
        let job = rig.raise_with_stack(1, AlertKind::Permanent, 100);
        rig.outbox.forget(1);
        assert!(rig.outbox.queues.contains_key(&1), "an alert still waits");
        rig.outbox.stack_done(job, stack(0x5), true);
        assert_eq!(rig.sent().len(), 1);
        assert!(!rig.outbox.queues.contains_key(&1));
    }
}
