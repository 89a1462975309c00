//! The capture thread: takes every sample the monitor asks for, so that the
//! monitor's loop never waits for a thread to answer.
//!
//! The monitor puts a [`CaptureJob`] into one of two bounded queues (hung
//! threads' samples, which this thread always takes first, and profiling's)
//! with `try_send`, rings this thread's doorbell (`doorbell.rs`) and goes
//! on. Here each job becomes a request
//! ([`Sampler::request`]): a thread blocked in the kernel is read at once,
//! a running one is signalled, and its request waits, with the others, until
//! its handler answers or the capture timeout passes. Between jobs this
//! thread sleeps on the oldest unanswered request (its handler wakes it) for
//! at most [`POLL`], so that an answer is taken the moment it comes and a
//! new hang's job waits at most that long; with none, on its doorbell.
//!
//! A sample is unwound right here (fast and bounded: framehop over the copy)
//! and goes back to the monitor as addresses: a profile's walked sample, or
//! a hang's unwound stack, which also goes to the stack workers to be
//! symbolicated (slow, and kept apart so that it never holds up a profile).
//! What could not be sampled (the thread gone, blocking the signal, not
//! answering in time) or could not be queued goes back to the monitor as
//! [`StackDone::Missing`], so that the alert waiting for it leaves at once.
//!
//! A thread that was woken inside a system call and has not run since
//! cannot be signalled without making that call fail ([`NoStack::Waking`]):
//! a hang's job for it is tried again at each wake-up of this thread until
//! its capture timeout, a profiling job is given up (the next tick asks
//! again).
//!
//! One target has at most one request outstanding: a profiling job for a
//! thread still being asked is answered `Missing` at once, and a hang's job
//! first gives up a profiling request pending on its thread. This thread is
//! the only user of the sampler, so no turn on a target is ever waited for.
//!
//! It allocates (a sample's copy is a `Vec`), so a hung thread that holds the
//! allocator's lock can hold it up; the monitor, which does not wait for it,
//! then sends the alert without a stack when the alert's wait is over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, TryRecvError};

use crate::doorbell::{Doorbell, RingingSender};

use crate::messages::{CaptureJob, StackDone, StackJob, StackWork};
use crate::stack::sampler::{PendingSample, SampleTarget, Sampler};
use crate::stack::symbolize::Symbolizer;
use crate::stack::unwind::Unwinder;
use crate::stack::workers::StackWorkers;
use crate::stack::{NoStack, RawSample};

/// Hung threads' capture jobs that may wait.
const HANG_QUEUE: usize = 64;
/// Profiling's: a few ticks of many threads.
const PROFILE_QUEUE: usize = 256;
/// The longest this thread sleeps while requests are outstanding.
const POLL: Duration = Duration::from_millis(1);

/// The monitor's end of the capture thread's queues. Each send rings the
/// capture thread's doorbell; dropping it rings too, and the thread ends.
pub(crate) struct Capturer {
    hangs: RingingSender<CaptureJob>,
    profiles: RingingSender<CaptureJob>,
}

impl Capturer {
    /// Starts the capture thread. It ends when the `Capturer` is dropped.
    pub(crate) fn start(
        sampler: Sampler,
        timeout: Duration,
        workers: StackWorkers,
        done: RingingSender<StackDone>,
    ) -> std::io::Result<Capturer> {
        let bell = Doorbell::new();
        let (hangs, hang_jobs) = bounded(HANG_QUEUE);
        let (profiles, profile_jobs) = bounded(PROFILE_QUEUE);
        let mut thread = CaptureThread {
            bell: bell.clone(),
            hangs: hang_jobs,
            profiles: profile_jobs,
            sampler,
            timeout,
            workers,
            done,
            unwinder: Unwinder::new(),
            waiting: Vec::new(),
            retries: Vec::new(),
        };
        std::thread::Builder::new()
            .name("hangwatch-capture".to_owned())
            .spawn(move || thread.run())?;
        Ok(Capturer {
            hangs: RingingSender::new(hangs, bell.clone()),
            profiles: RingingSender::new(profiles, bell),
        })
    }

    /// A capturer no thread serves, for unit tests of the monitor's side:
    /// the jobs it queues wait in the returned receivers (hangs, profiles).
    #[cfg(test)]
    pub(crate) fn unserved() -> (Capturer, Receiver<CaptureJob>, Receiver<CaptureJob>) {
        let bell = Doorbell::new();
        let (hangs, hang_jobs) = bounded(HANG_QUEUE);
        let (profiles, profile_jobs) = bounded(PROFILE_QUEUE);
        let capturer = Capturer {
            hangs: RingingSender::new(hangs, bell.clone()),
            profiles: RingingSender::new(profiles, bell),
        };
        (capturer, hang_jobs, profile_jobs)
    }

    /// Queues a hung thread's capture, or hands it back if the queue is full.
    pub(crate) fn hang(&self, job: CaptureJob) -> Result<(), CaptureJob> {
        self.hangs.try_send(job).map_err(|error| error.into_inner())
    }

    /// Queues a profiling capture, or hands it back if the queue is full.
    pub(crate) fn profile(&self, job: CaptureJob) -> Result<(), CaptureJob> {
        self.profiles
            .try_send(job)
            .map_err(|error| error.into_inner())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hang,
    Profile,
}

/// A hang's job to try again: its thread was on its way out of a system
/// call.
struct Retry {
    job: CaptureJob,
    deadline: Instant,
}

/// A request sent and not yet answered.
struct Waiting {
    id: u64,
    kind: Kind,
    target: Arc<SampleTarget>,
    request: PendingSample,
    deadline: Instant,
}

struct CaptureThread {
    /// Rung by the monitor's sends.
    bell: Arc<Doorbell>,
    hangs: Receiver<CaptureJob>,
    profiles: Receiver<CaptureJob>,
    sampler: Sampler,
    timeout: Duration,
    workers: StackWorkers,
    done: RingingSender<StackDone>,
    unwinder: Unwinder,
    /// Oldest first.
    waiting: Vec<Waiting>,
    /// Hangs' jobs to try again.
    retries: Vec<Retry>,
}

/// What the queues gave.
enum Next {
    Job(Kind, CaptureJob),
    Nothing,
    /// The monitor is gone.
    Closed,
}

impl CaptureThread {
    fn run(&mut self) {
        loop {
            // 1. Take one job: wait for it if nothing is outstanding, else
            //    sleep on the oldest request (its handler wakes us), then
            //    take what is there.
            let next = match self.waiting.first() {
                None if self.retries.is_empty() => self.next_job(None),
                None => self.next_job(Some(POLL)),
                Some(oldest) => {
                    let left = oldest.deadline.saturating_duration_since(Instant::now());
                    oldest.request.await_answer(left.min(POLL));
                    self.next_job(Some(Duration::ZERO))
                }
            };
            match next {
                Next::Job(kind, job) => self.start(kind, job),
                Next::Nothing => {}
                Next::Closed => return,
            }
            // 2. Take every job already queued, hangs first.
            while let Some(Next::Job(kind, job)) = self.queued_job() {
                self.start(kind, job);
            }
            // 3. Try again the hangs' threads that were waking, hand on what
            //    was answered, give up what is out of time.
            for Retry { job, deadline } in std::mem::take(&mut self.retries) {
                if Instant::now() >= deadline {
                    self.missing(job.id, Kind::Hang, NoStack::Waking);
                } else {
                    self.start_until(Kind::Hang, job, deadline);
                }
            }
            self.collect();
        }
    }

    /// The next job, a hang's first, waiting at most `timeout` (`None`:
    /// until one comes).
    fn next_job(&self, timeout: Option<Duration>) -> Next {
        if let Some(next) = self.queued_job() {
            return next;
        }
        if timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Next::Nothing;
        }
        // The monitor rings after it queues a job, and as it goes.
        self.bell.wait(timeout);
        self.queued_job().unwrap_or(Next::Nothing)
    }

    /// A job already queued, a hang's first; `Closed` once the monitor is
    /// gone.
    fn queued_job(&self) -> Option<Next> {
        match self.hangs.try_recv() {
            Ok(job) => return Some(Next::Job(Kind::Hang, job)),
            Err(TryRecvError::Disconnected) => return Some(Next::Closed),
            Err(TryRecvError::Empty) => {}
        }
        self.profiles
            .try_recv()
            .ok()
            .map(|job| Next::Job(Kind::Profile, job))
    }

    /// Asks the job's thread for its sample.
    fn start(&mut self, kind: Kind, job: CaptureJob) {
        let deadline = Instant::now() + self.timeout;
        self.start_until(kind, job, deadline);
    }

    /// Asks the job's thread for its sample, answered by `deadline`.
    fn start_until(&mut self, kind: Kind, job: CaptureJob, deadline: Instant) {
        let same_target = |w: &Waiting| Arc::ptr_eq(&w.target, &job.target);
        if let Some(at) = self.waiting.iter().position(same_target) {
            if kind == Kind::Profile {
                return self.missing(job.id, kind, NoStack::Timeout);
            }
            // A hang's sample takes the place of a profiling request (a hang
            // has at most one capture under way per activity level, each
            // answered before the next level's).
            let given_up = self.waiting.remove(at);
            self.missing(given_up.id, given_up.kind, NoStack::Timeout);
        }
        match self.sampler.request(&job.target, job.max_bytes) {
            Ok(request) if request.is_answered() => {
                let sample = request.wait(Duration::ZERO);
                self.finish(job.id, kind, sample);
            }
            Ok(request) => self.waiting.push(Waiting {
                id: job.id,
                kind,
                target: job.target,
                request,
                deadline,
            }),
            Err(NoStack::Waking) if kind == Kind::Hang => {
                self.retries.push(Retry { job, deadline })
            }
            Err(reason) => self.missing(job.id, kind, reason),
        }
    }

    /// Finishes the requests that were answered or are out of time.
    fn collect(&mut self) {
        let now = Instant::now();
        let mut at = 0;
        while at < self.waiting.len() {
            let waiting = &self.waiting[at];
            if waiting.request.is_answered() || waiting.deadline <= now {
                let Waiting {
                    id, kind, request, ..
                } = self.waiting.remove(at);
                self.finish(id, kind, request.wait(Duration::ZERO));
            } else {
                at += 1;
            }
        }
    }

    /// Unwinds a sample and hands it on: a profile's addresses to the
    /// monitor; a hang's unwound stack to the monitor and to the workers.
    fn finish(&mut self, id: u64, kind: Kind, sample: Result<RawSample, NoStack>) {
        let sample = match sample {
            Ok(sample) => sample,
            Err(reason) => return self.missing(id, kind, reason),
        };
        let unwound = self.unwinder.unwind(&sample);
        match kind {
            // The monitor takes a profile's samples at its next tick: no
            // need to wake it for them.
            Kind::Profile => {
                let _ = self.done.send_quietly(StackDone::Walked {
                    id,
                    addresses: unwound.frames.iter().map(|f| f.lookup_address()).collect(),
                    truncated: unwound.truncated,
                });
            }
            Kind::Hang => {
                let stack = Symbolizer::raw(&unwound);
                let _ = self.done.send(StackDone::Unwound { id, stack });
                let work = StackWork::Hang(unwound);
                if self.workers.submit(StackJob { id, work }).is_err() {
                    self.missing(id, kind, NoStack::NotReady);
                }
            }
        }
    }

    /// A hang's alert waits for this answer: wake the monitor. A profile's
    /// tick does not.
    fn missing(&self, id: u64, kind: Kind, reason: NoStack) {
        let missing = StackDone::Missing { id, reason };
        let _ = match kind {
            Kind::Hang => self.done.send(missing),
            Kind::Profile => self.done.send_quietly(missing),
        };
    }
}
