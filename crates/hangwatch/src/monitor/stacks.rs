//! The monitor's handle on the stack stages: the sampler it captures with,
//! the workers it hands raw samples to, and the numbering of their jobs.
//!
//! Shared (by `Rc`: everything here lives on the monitor's thread) by the
//! outbox, which captures hung threads, and the profiler, which captures
//! every thread at a rate. Answers come back on the `stacks` channel of the
//! monitor's inbox, and the monitor routes each to whoever owns its job id.
//!
//! The profiler's requests are kept here, not in the profiler: a request
//! holds the sampler's turn on its thread until it is taken, and the
//! monitor must not wait for that turn to capture a hung thread, since only
//! the monitor itself could give it back. A capture therefore first gives up
//! a profiling request pending on the same thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::messages::{StackJob, StackWork};
use crate::stack::sampler::{PendingSample, SampleTarget, Sampler};
use crate::stack::workers::StackWorkers;
use crate::stack::{NoStack, RawSample};

pub(crate) struct Stacks {
    pub(crate) sampler: Sampler,
    pub(crate) workers: StackWorkers,
    /// How long a capture may wait for the thread's handler.
    pub(crate) capture_timeout: Duration,
    /// How long a hang alert may wait for symbolication, in stamps.
    pub(crate) symbolicate_deadline: u64,
    next_job: Cell<u64>,
    /// Samples taken so far (hang captures and profiling answers).
    pub(crate) taken: Cell<u64>,
    /// Profiling requests not yet taken, by target (its address, which is
    /// stable while the request holds the target).
    pending: RefCell<HashMap<usize, PendingSample>>,
}

impl Stacks {
    pub(crate) fn new(
        sampler: Sampler,
        workers: StackWorkers,
        capture_timeout: Duration,
        symbolicate_deadline: u64,
    ) -> Stacks {
        Stacks {
            sampler,
            workers,
            capture_timeout,
            symbolicate_deadline,
            next_job: Cell::new(0),
            taken: Cell::new(0),
            pending: RefCell::new(HashMap::new()),
        }
    }

    /// Copies `target`'s registers and its whole preallocated slice of stack,
    /// waiting at most the capture timeout.
    pub(crate) fn capture(&self, target: &Arc<SampleTarget>) -> Result<RawSample, NoStack> {
        // Frees the turn a profiling request may hold on this thread.
        self.pending.borrow_mut().remove(&address(target));
        let sample = self.sampler.sample(target, self.capture_timeout);
        self.count(&sample);
        sample
    }

    /// Asks `target` for at most `max_bytes` of its stack, without waiting;
    /// [`Stacks::answer`] takes the answer.
    pub(crate) fn request(
        &self,
        target: &Arc<SampleTarget>,
        max_bytes: usize,
    ) -> Result<(), NoStack> {
        let request = self.sampler.request(target, max_bytes)?;
        self.pending.borrow_mut().insert(address(target), request);
        Ok(())
    }

    /// The answer to `target`'s request: `None` while it is pending (unless
    /// `give_up`, which takes what is there or gives the request up);
    /// `Some(Err(NoStack::Timeout))` if there is no request any more (a
    /// capture took its place).
    pub(crate) fn answer(
        &self,
        target: &Arc<SampleTarget>,
        give_up: bool,
    ) -> Option<Result<RawSample, NoStack>> {
        let mut pending = self.pending.borrow_mut();
        let key = address(target);
        match pending.get(&key) {
            None => Some(Err(NoStack::Timeout)),
            Some(request) if !request.is_answered() && !give_up => None,
            Some(_) => pending.remove(&key).map(|request| {
                let sample = request.wait(Duration::ZERO);
                self.count(&sample);
                sample
            }),
        }
    }

    /// Counts a sample taken.
    fn count(&self, sample: &Result<RawSample, NoStack>) {
        if sample.is_ok() {
            self.taken.set(self.taken.get() + 1);
            #[cfg(feature = "metrics")]
            crate::integrations::metrics::sample_taken();
        }
    }

    /// Gives up every profiling request.
    pub(crate) fn forget_requests(&self) {
        self.pending.borrow_mut().clear();
    }

    /// Hands `work` to the workers and returns its job id, or `None` if
    /// they are all busy and their queue is full.
    pub(crate) fn submit(&self, work: StackWork) -> Option<u64> {
        let id = self.next_job.get();
        self.next_job.set(id + 1);
        self.workers.submit(StackJob { id, work }).ok().map(|()| id)
    }
}

fn address(target: &Arc<SampleTarget>) -> usize {
    Arc::as_ptr(target) as usize
}
