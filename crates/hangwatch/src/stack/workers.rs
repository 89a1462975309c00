//! The stack workers: threads the monitor owns, which symbolicate stacks off
//! the monitor's loop.
//!
//! Each worker owns its [`Symbolizer`], with its caches, so no cache is
//! shared or locked (with [`Symbolication::Elsewhere`] a worker has no
//! symbolizer: it answers with normalized frames at once). Unwinding is
//! done before, on the capture thread (it is fast and bounded);
//! symbolication can be slow (a cold cache on a large
//! binary reads and parses debug information), and is kept apart so that it
//! never holds up the samples of a profile. For a hung thread's stack a
//! worker answers with the symbolicated stack on the monitor's `stacks`
//! channel; if that is late, the alert has left with the unwound stack and
//! this one follows it. A profile's addresses are symbolicated once, each
//! distinct address once, when profiling stops.
//!
//! There are two job queues, both bounded, and the monitor only ever
//! `try_send`s into them: hung threads' samples, which a worker always takes
//! first, and profiling's work. Profiling many threads in a slow (debug,
//! loaded) process fills its own queue and drops its own samples; it never
//! makes a hang's alert go out without its stack. A full hang queue means an
//! alert goes out with the bare instruction pointer rather than the monitor
//! waiting. Workers end when the monitor drops the queues.

use crossbeam_channel::{bounded, select, Receiver, Sender, TryRecvError, TrySendError};

use crate::doorbell::RingingSender;

use crate::messages::{StackDone, StackJob, StackWork};
use crate::stack::modules::{LiveModules, Modules};
use crate::stack::symbolize::{normalize_address, Symbolizer};
use crate::stack::Symbolication;

/// Hung threads' samples that may wait for a worker.
const HANG_QUEUE: usize = 64;
/// Profiling work that may wait: a few ticks of profiling many threads.
const PROFILE_QUEUE: usize = 256;

#[derive(Clone)]
pub(crate) struct StackWorkers {
    hangs: Sender<StackJob>,
    profiling: Sender<StackJob>,
}

/// A worker's two queues, hangs first.
struct Queues {
    hangs: Receiver<StackJob>,
    profiling: Receiver<StackJob>,
}

impl Queues {
    /// The next job, a hang's if there is one; `None` once the monitor is gone.
    fn next(&self) -> Option<StackJob> {
        match self.hangs.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        select! {
            recv(self.hangs) -> job => job.ok(),
            recv(self.profiling) -> job => job.ok(),
        }
    }
}

impl StackWorkers {
    /// Starts `count` workers that answer on `done`. With `warm` (and
    /// symbolication in the process), each first opens the symbols of the
    /// module hangwatch is linked into (usually the program itself), so
    /// that the first hang's stack is symbolicated as fast as the later
    /// ones.
    pub(crate) fn start(
        count: usize,
        done: &RingingSender<StackDone>,
        symbolication: Symbolication,
        warm: bool,
    ) -> std::io::Result<StackWorkers> {
        let (hangs, hang_queue) = bounded(HANG_QUEUE);
        let (profiling, profile_queue) = bounded(PROFILE_QUEUE);
        for n in 0..count.max(1) {
            let queues = Queues {
                hangs: hang_queue.clone(),
                profiling: profile_queue.clone(),
            };
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("hangwatch-stack-{n}"))
                .spawn(move || work(queues, done, symbolication, warm))?;
        }
        Ok(StackWorkers { hangs, profiling })
    }

    /// Workers that never run, for unit tests of the monitor's side: the
    /// jobs submitted wait in the returned receivers (hangs, profiling).
    #[cfg(test)]
    pub(crate) fn unserved() -> (StackWorkers, Receiver<StackJob>, Receiver<StackJob>) {
        let (hangs, hang_queue) = bounded(HANG_QUEUE);
        let (profiling, profile_queue) = bounded(PROFILE_QUEUE);
        (StackWorkers { hangs, profiling }, hang_queue, profile_queue)
    }

    /// Queues `job` (a hang's in the hang queue, profiling's in the other),
    /// or hands it back if that queue is full.
    pub(crate) fn submit(&self, job: StackJob) -> Result<(), StackJob> {
        let queue = match job.work {
            StackWork::Hang(_) => &self.hangs,
            StackWork::Symbolize(_) => &self.profiling,
        };
        queue.try_send(job).map_err(|error| match error {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

/// How a worker names frames.
enum Namer {
    Symbolizer(Box<Symbolizer>),
    /// Normalized frames only, for symbolication elsewhere.
    Normalizer(LiveModules),
}

fn work(queues: Queues, done: RingingSender<StackDone>, symbolication: Symbolication, warm: bool) {
    let mut namer = match symbolication {
        Symbolication::InProcess => Namer::Symbolizer(Box::default()),
        Symbolication::FunctionNamesInProcess => {
            Namer::Symbolizer(Box::new(Symbolizer::function_names_only()))
        }
        Symbolication::Elsewhere => Namer::Normalizer(LiveModules::new()),
    };
    if let (Namer::Symbolizer(symbolizer), true) = (&mut namer, warm) {
        let here = work as fn(_, _, _, _) as usize as u64;
        if let Some(module) = Modules::load().ok().and_then(|m| m.find(here).cloned()) {
            // Missing symbols only mean a slower first stack.
            let _ = symbolizer.preload(&module);
        }
    }
    while let Some(StackJob { id, work }) = queues.next() {
        let answer = match work {
            StackWork::Hang(unwound) => {
                let stack = match &mut namer {
                    Namer::Symbolizer(symbolizer) => symbolizer.symbolize(&unwound),
                    Namer::Normalizer(_) => Symbolizer::raw(&unwound),
                };
                done.send(StackDone::Symbolized { id, stack })
            }
            StackWork::Symbolize(addresses) => {
                let frames = addresses
                    .into_iter()
                    .map(|address| match &mut namer {
                        Namer::Symbolizer(symbolizer) => symbolizer.symbolize_address(address),
                        Namer::Normalizer(modules) => vec![normalize_address(modules, address)],
                    })
                    .collect();
                done.send(StackDone::Symbols { id, frames })
            }
        };
        if answer.is_err() {
            return;
        }
    }
}
