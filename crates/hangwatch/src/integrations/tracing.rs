//! Every alert as a `tracing` event (feature `tracing`).
//!
//! With the feature on, the monitor emits one event per alert, at the point
//! where every alert leaves it, on the monitor's thread, with target
//! [`TARGET`] (`"hangwatch"`):
//!
//! | alert | level | message |
//! |---|---|---|
//! | transient | `WARN` | `transient hang` |
//! | permanent | `ERROR` | `permanent hang` |
//! | ended | `INFO` | `hang ended` |
//! | thread exited | `INFO` | `thread exited without unregistering` |
//! | the stack of an earlier alert, which left before it | `INFO` | `hang stack` |
//!
//! and these fields (a field whose value is unknown is left out):
//!
//! | field | value |
//! |---|---|
//! | `component` | the component, as `name#number` |
//! | `kind` | `transient`, `permanent`, `ended`, `thread_exited` or `stack`, as in the alert JSON lines |
//! | `level` | the hang level: `transient` or `permanent` (for `ended`, the highest level the hang reached; for `stack`, the level of the alert it completes) |
//! | `annotation` | what the component said it was doing |
//! | `duration_ms` | how long it had been busy (for `ended`, how long the hang lasted), in milliseconds |
//! | `thread` | the component's thread name |
//! | `top_frame` | the name of the innermost frame of the alert's stack that is the program's own code ([`Stack::top_program_frame`](crate::Stack::top_program_frame), the rule the exporters use too) |
//! | `no_stack` | why an alert that should carry a stack does not |
//!
//! Nothing needs calling: the events go to the global default subscriber
//! (the monitor's thread has no scoped one), so install yours with
//! `tracing::subscriber::set_global_default` or your subscriber's `init`, and
//! filter on the `hangwatch` target as usual.
//!
//! **Cost:** one event per alert, built and dispatched on the monitor's
//! thread; a subscriber that is slow to record delays the monitor's next
//! look by as much, so keep it non-blocking (most writers are buffered).
//! Components pay nothing.

use ::tracing::field::display;

use crate::alert::{Alert, AlertKind, HangLevel};
use crate::monitor::Observer;
use crate::stack::{Frame, Stack};

/// The target of hangwatch's events.
pub const TARGET: &str = "hangwatch";

/// The monitor's observer that emits every alert it delivers as an event.
pub(crate) struct AlertEvents;

impl Observer for AlertEvents {
    /// Emits `alert` as an event when it leaves the monitor, with its stack
    /// (the `top_frame` field) if it carries one.
    fn alert_delivered(&self, alert: &Alert) {
        emit(alert);
    }
}

/// Emits `alert` as an event.
fn emit(alert: &Alert) {
    let component = display(&alert.component);
    let annotation = alert.annotation.as_deref();
    let duration_ms = alert.duration.as_secs_f64() * 1e3;
    let thread = alert.thread.as_deref();
    // Named inside each event, so that the name (allocated only for a frame
    // without a function name) is made only for an event a subscriber wants.
    let top_frame = alert.stack.as_ref().and_then(Stack::top_program_frame);
    let no_stack = alert.no_stack.as_ref().map(display);
    // A level per event: tracing fixes an event's level where it is written.
    match alert.kind {
        AlertKind::Transient => ::tracing::warn!(
            target: TARGET,
            component,
            kind = "transient",
            level = "transient",
            annotation,
            duration_ms,
            thread,
            top_frame = top_frame.map(Frame::name).as_deref(),
            no_stack,
            "transient hang"
        ),
        AlertKind::Permanent => ::tracing::error!(
            target: TARGET,
            component,
            kind = "permanent",
            level = "permanent",
            annotation,
            duration_ms,
            thread,
            top_frame = top_frame.map(Frame::name).as_deref(),
            no_stack,
            "permanent hang"
        ),
        AlertKind::Ended { worst } => ::tracing::info!(
            target: TARGET,
            component,
            kind = "ended",
            level = level_name(worst),
            annotation,
            duration_ms,
            thread,
            "hang ended"
        ),
        AlertKind::ThreadExited => ::tracing::info!(
            target: TARGET,
            component,
            kind = "thread_exited",
            annotation,
            thread,
            "thread exited without unregistering"
        ),
        AlertKind::Stack { of } => ::tracing::info!(
            target: TARGET,
            component,
            kind = "stack",
            level = level_name(of),
            annotation,
            duration_ms,
            thread,
            top_frame = top_frame.map(Frame::name).as_deref(),
            no_stack,
            "hang stack"
        ),
    }
}

fn level_name(level: HangLevel) -> &'static str {
    match level {
        HangLevel::Transient => "transient",
        HangLevel::Permanent => "permanent",
    }
}
