//! Instrumented futures: every poll of a wrapped future, on a monitored
//! worker, is an activity annotated with the future's label (its name, or
//! the location it was spawned or wrapped at), and when the poll returns the
//! worker's previous activity goes on, its clock restarted.
//!
//! On a thread that is not a monitored worker the wrapper does nothing but
//! a thread-local lookup. Labels of locations are interned once per
//! location in the program (`Annotation::intern`, the one interner), then
//! found in a per-thread cache, so a spawn takes no lock once its thread has
//! seen its location.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::task::JoinHandle;

use super::workers::with_registered_worker;
use crate::annotation::Annotation;

/// One poll of an instrumented future: an activity with its label, and when
/// it ends, the worker's previous activity again (its clock restarted).
struct PollScope {
    previous: Option<Annotation>,
}

impl PollScope {
    #[inline]
    fn enter(label: Annotation) -> PollScope {
        PollScope {
            previous: with_registered_worker(|worker| worker.set(label)),
        }
    }
}

impl Drop for PollScope {
    #[inline]
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            with_registered_worker(|worker| worker.set(previous));
        }
    }
}

pin_project_lite::pin_project! {
    /// A future whose every poll, on a monitored worker, is an activity
    /// annotated with its label. Made by [`instrument`] and
    /// [`instrument_named`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F> {
        #[pin]
        future: F,
        label: Annotation,
    }
}

impl<F> Instrumented<F> {
    /// The annotation of this future's polls.
    pub fn label(&self) -> Annotation {
        self.label
    }

    /// The wrapped future.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _scope = PollScope::enter(*this.label);
        this.future.poll(cx)
    }
}

impl<F> std::fmt::Debug for Instrumented<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Wraps `future` so that its polls are annotated with the caller's location
/// (`file:line:column`).
#[track_caller]
pub fn instrument<F: Future>(future: F) -> Instrumented<F> {
    Instrumented {
        future,
        label: location_label(Location::caller()),
    }
}

/// Wraps `future` so that its polls are annotated `name`.
pub fn instrument_named<F: Future>(name: impl Into<Annotation>, future: F) -> Instrumented<F> {
    Instrumented {
        future,
        label: name.into(),
    }
}

/// `tokio::spawn`, with the task's polls annotated with the caller's location.
///
/// Like `tokio::spawn`, it must be called within a runtime.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    ::tokio::spawn(instrument(future))
}

/// `tokio::spawn`, with the task's polls annotated `name`.
///
/// Like `tokio::spawn`, it must be called within a runtime.
#[track_caller]
pub fn spawn_named<F>(name: impl Into<Annotation>, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    ::tokio::spawn(instrument_named(name, future))
}

/// The annotation `file:line:column` for a location: interned once per
/// location in the program (`Annotation::intern`), then looked up in a
/// per-thread cache.
pub(super) fn location_label(location: &'static Location<'static>) -> Annotation {
    type Key = (usize, usize, u32, u32);
    thread_local! {
        static SEEN: RefCell<HashMap<Key, Annotation>> = RefCell::new(HashMap::new());
    }
    let file = location.file();
    let key = (
        file.as_ptr() as usize,
        file.len(),
        location.line(),
        location.column(),
    );
    let seen = SEEN
        .try_with(|seen| seen.try_borrow().ok()?.get(&key).copied())
        .ok()
        .flatten();
    if let Some(label) = seen {
        return label;
    }
    let label = Annotation::intern(&location.to_string());
    let _ = SEEN.try_with(|seen| {
        if let Ok(mut seen) = seen.try_borrow_mut() {
            seen.insert(key, label);
        }
    });
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_label_is_made_once_and_reads_file_line_column() {
        let here = Location::caller();
        let first = location_label(here);
        let second = location_label(here);
        assert!(std::ptr::eq(first.as_str(), second.as_str()));
        assert_eq!(
            first.as_str(),
            format!("{}:{}:{}", here.file(), here.line(), here.column())
        );
        let other = std::thread::spawn(move || location_label(here))
            .join()
            .unwrap();
        assert!(std::ptr::eq(first.as_str(), other.as_str()));
    }

    #[test]
    fn instrument_labels_with_the_callers_location() {
        let future = instrument(async {});
        let line = line!() - 1;
        assert!(
            future
                .label()
                .as_str()
                .starts_with(&format!("{}:{line}:", file!())),
            "{:?}",
            future.label()
        );
        assert_eq!(
            instrument_named("named", async {}).label().as_str(),
            "named"
        );
    }

    #[test]
    fn polls_off_a_worker_thread_do_nothing() {
        // Not a tokio worker: the scope finds no worker and restores nothing.
        let scope = PollScope::enter(Annotation::new("not a worker"));
        assert!(scope.previous.is_none());
    }
}
