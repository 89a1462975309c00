//! The monitor's handle on the stack stages: the capture thread it asks for
//! samples, the workers that unwind and symbolicate them, and the numbering
//! of their jobs. Owned by the outbox; the profiler borrows it at its ticks.
//!
//! Every request is a `try_send` into a bounded queue: the monitor never
//! waits for a capture. Answers come back on the `stacks` channel of the
//! monitor's inbox, and the monitor routes each to whoever owns its job id.

use std::sync::Arc;

use crate::messages::{CaptureJob, StackJob, StackWork};
use crate::stack::capture::Capturer;
use crate::stack::sampler::SampleTarget;
use crate::stack::workers::StackWorkers;

pub(crate) struct Stacks {
    capturer: Capturer,
    workers: StackWorkers,
    /// How long a hang alert may wait for its stack, in stamps.
    pub(crate) hold: u64,
    /// How long after that its stack may still follow, in stamps.
    pub(crate) follow_for: u64,
    next_job: u64,
}

impl Stacks {
    pub(crate) fn new(
        capturer: Capturer,
        workers: StackWorkers,
        hold: u64,
        follow_for: u64,
    ) -> Stacks {
        Stacks {
            capturer,
            workers,
            hold,
            follow_for,
            next_job: 0,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_job += 1;
        self.next_job
    }

    /// Asks for a hung thread's whole preallocated slice of stack; `None` if
    /// the capture queue is full.
    pub(crate) fn capture_hang(&mut self, target: Arc<SampleTarget>) -> Option<u64> {
        let id = self.next_id();
        let job = CaptureJob {
            id,
            target,
            max_bytes: usize::MAX,
        };
        self.capturer.hang(job).ok().map(|()| id)
    }

    /// Asks for a profile sample of at most `max_bytes` of stack.
    pub(crate) fn capture_profile(
        &mut self,
        target: Arc<SampleTarget>,
        max_bytes: usize,
    ) -> Option<u64> {
        let id = self.next_id();
        let job = CaptureJob {
            id,
            target,
            max_bytes,
        };
        self.capturer.profile(job).ok().map(|()| id)
    }

    /// Hands a profile's addresses to the workers to symbolicate.
    pub(crate) fn symbolize(&mut self, addresses: Vec<u64>) -> Option<u64> {
        let id = self.next_id();
        let work = StackWork::Symbolize(addresses);
        self.workers.submit(StackJob { id, work }).ok().map(|()| id)
    }
}
