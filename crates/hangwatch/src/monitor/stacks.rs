//! The monitor's handle on the stack stages: the sampler it captures with,
//! the workers it hands raw samples to, and the numbering of their jobs.
//!
//! Shared (by `Rc`: everything here lives on the monitor's thread) by the
//! outbox, which captures hung threads, and the profiler, which captures
//! every thread at a rate. Answers come back on the `stacks` channel of the
//! monitor's inbox, and the monitor routes each to whoever owns its job id.

use std::cell::Cell;
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
        }
    }

    /// Copies `target`'s registers and its whole preallocated slice of stack,
    /// waiting at most the capture timeout.
    pub(crate) fn capture(&self, target: &SampleTarget) -> Result<RawSample, NoStack> {
        let sample = self.sampler.sample(target, self.capture_timeout);
        #[cfg(feature = "metrics")]
        if sample.is_ok() {
            crate::integrations::metrics::sample_taken();
        }
        sample
    }

    /// Asks `target` for at most `max_bytes` of its stack, without waiting.
    pub(crate) fn request(
        &self,
        target: &Arc<SampleTarget>,
        max_bytes: usize,
    ) -> Result<PendingSample, NoStack> {
        let request = self.sampler.request(target, max_bytes);
        #[cfg(feature = "metrics")]
        if request.is_ok() {
            crate::integrations::metrics::sample_taken();
        }
        request
    }

    /// Hands `work` to the workers and returns its job id, or `None` if
    /// they are all busy and their queue is full.
    pub(crate) fn submit(&self, work: StackWork) -> Option<u64> {
        let id = self.next_job.get();
        self.next_job.set(id + 1);
        self.workers.submit(StackJob { id, work }).ok().map(|()| id)
    }
}
