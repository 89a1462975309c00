//! A worker's progress, as tokio's own counters show it: what lets the
//! monitor tell a busy worker, which keeps finishing polls, from a hung one,
//! stuck in a single poll, without the worker doing anything more per poll.
//!
//! The worker stores its count when an activity begins; the monitor's probe
//! (see [`Handle::watch_progress`](crate::Handle::watch_progress)) reads how
//! far the count has moved since. Both are relaxed atomics: the monitor
//! reads the start only after the activity's word, which the worker stores
//! after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A worker's progress, as tokio's own counters show it: the busy time it
/// has published and its parks. Tokio publishes a worker's counters each
/// time it parks and every `event_interval` polls (61 unless the runtime's
/// builder says otherwise), from the worker's own thread, so the monitor
/// sees a busy worker's count move, and a worker stuck in one poll's count
/// stand still, without the worker doing anything more per poll.
pub(super) struct Progress {
    metrics: ::tokio::runtime::RuntimeMetrics,
    index: usize,
    /// The count when the current activity began.
    at_start: Arc<AtomicU64>,
}

impl Progress {
    pub(super) fn new(metrics: ::tokio::runtime::RuntimeMetrics, index: usize) -> Progress {
        Progress {
            metrics,
            index,
            at_start: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn start_activity(&self) {
        self.at_start
            .store(count(&self.metrics, self.index), Ordering::Relaxed);
    }

    /// What the monitor calls: the count's change since the activity began.
    pub(super) fn probe(&self) -> impl Fn() -> u64 + Send + 'static {
        let (metrics, index, at_start) = (self.metrics.clone(), self.index, self.at_start.clone());
        move || count(&metrics, index).wrapping_sub(at_start.load(Ordering::Relaxed))
    }
}

/// Worker `index`'s published busy nanoseconds plus its parks: it moves
/// whenever the worker publishes after doing anything.
fn count(metrics: &::tokio::runtime::RuntimeMetrics, index: usize) -> u64 {
    (metrics.worker_total_busy_duration(index).as_nanos() as u64)
        .wrapping_add(metrics.worker_park_unpark_count(index))
}
