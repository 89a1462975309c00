//! The stack workers: threads the monitor owns, which turn raw samples into
//! stacks off the monitor's loop.
//!
//! Each worker owns its [`Unwinder`] and [`Symbolizer`], with their caches, so
//! no cache is shared or locked. For a hung thread's sample a worker sends two
//! answers back on the monitor's `stacks` channel: the unwound stack with raw
//! addresses and module offsets as soon as it has it, then the symbolicated
//! one. If symbolication is slow (a cold cache on a large binary), the monitor
//! sends the alert with the first and drops the second; a hang is never
//! reported late because of us. A profile sample is only unwound; a profile's
//! addresses are symbolicated once, each distinct address once, when
//! profiling stops.
//!
//! The job queue is bounded and the monitor only ever `try_send`s into it; a
//! full queue means an alert goes out without a stack, or a profile sample is
//! dropped, rather than the monitor waiting. Workers end when the monitor
//! drops the queue.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::messages::{StackDone, StackJob, StackWork};
use crate::stack::symbolize::Symbolizer;
use crate::stack::unwind::Unwinder;

/// Jobs that may wait for a worker before new ones are refused: a few ticks
/// of profiling many threads.
const QUEUE: usize = 256;

pub(crate) struct StackWorkers {
    jobs: Sender<StackJob>,
}

impl StackWorkers {
    /// Starts `count` workers that answer on `done`. With `warm`, each
    /// first reads the symbols of the module hangwatch is linked into
    /// (usually the program itself), so that the first hang's stack is
    /// symbolicated as fast as the later ones.
    pub(crate) fn start(
        count: usize,
        done: &Sender<StackDone>,
        warm: bool,
    ) -> std::io::Result<StackWorkers> {
        let (jobs, queue) = bounded(QUEUE);
        for n in 0..count.max(1) {
            let queue = queue.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("hangwatch-stack-{n}"))
                .spawn(move || work(queue, done, warm))?;
        }
        Ok(StackWorkers { jobs })
    }

    /// Queues `job`, or hands it back if every worker is busy and the queue full.
    pub(crate) fn submit(&self, job: StackJob) -> Result<(), StackJob> {
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

fn work(queue: Receiver<StackJob>, done: Sender<StackDone>, warm: bool) {
    let mut unwinder = Unwinder::new();
    let mut symbolizer = Symbolizer::new();
    if warm {
        let here = work as fn(_, _, _) as usize as u64;
        if let Some(module) = unwinder.modules().find(here) {
            // Missing symbols only mean a slower first stack.
            let _ = symbolizer.preload(module);
        }
    }
    for StackJob { id, work } in queue {
        let answers = match work {
            StackWork::Hang(sample) => {
                let unwound = unwinder.unwind(&sample);
                let raw = Symbolizer::raw(&unwound);
                if done.send(StackDone::Unwound { id, stack: raw }).is_err() {
                    return;
                }
                let stack = symbolizer.symbolize(&unwound);
                done.send(StackDone::Symbolized { id, stack })
            }
            StackWork::ProfileSample(sample) => {
                let unwound = unwinder.unwind(&sample);
                done.send(StackDone::Walked {
                    id,
                    addresses: unwound.frames.iter().map(|f| f.lookup_address()).collect(),
                    truncated: unwound.truncated,
                })
            }
            StackWork::Symbolize(addresses) => {
                let frames = addresses
                    .into_iter()
                    .map(|address| symbolizer.symbolize_address(address))
                    .collect();
                done.send(StackDone::Symbols { id, frames })
            }
        };
        if answers.is_err() {
            return;
        }
    }
}
