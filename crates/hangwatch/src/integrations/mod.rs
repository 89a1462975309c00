//! Monitoring in one line: hangwatch fitted to the event loops and the
//! observability stack a program already uses.
//!
//! Each integration sits behind a cargo feature of its own, and none is on by
//! default. A feature that is off costs nothing: none of its code is compiled
//! and none of its dependencies is built, and the hot path
//! ([`Handle::notify_activity`](crate::Handle::notify_activity) and
//! [`Handle::notify_wait`](crate::Handle::notify_wait)) is the same with or
//! without any of them. The module of each feature that is on is listed at
//! the end of this page; without any, this module holds nothing public.
//!
//! | feature | module | what it does | what it costs when on |
//! |---|---|---|---|
//! | `crossbeam` | `crossbeam` | a loop over crossbeam-channel receivers (`recv`, `select!`) notifies wait before it blocks and activity when a message arrives | one notify pair and one call of your annotate function per message; no dependency beyond crossbeam-channel, which hangwatch uses anyway |
//! | `tokio` | `tokio` | every worker thread of a multi-thread runtime becomes a component; a task that blocks its worker raises alerts with the worker's stack and the task's name or spawn location, and an idle worker takes over the blocked one's I/O driver | a notify per worker park and unpark; with instrumented tasks, a notify pair per poll; with `--cfg tokio_unstable`, a notify pair per poll of every task; tokio (`rt`, `rt-multi-thread`) and pin-project-lite |
//! | `tower` | `tower` | a `tower::Layer` (axum, hyper, tonic) that makes every request's handler an instrumented task annotated `"{METHOD} {route}"` (`GET /users/{id}`), the route taken from axum's matched path or a function of yours, bounded in number | per request a thread-local lookup of the label, per poll two notifications; once per label, one lock and one small string never freed; tower-layer, tower-service, http and axum's router core (implies `tokio`) |
//! | `tracing` | `tracing` | every alert is also a `tracing` event with structured fields | one event per alert, on the monitor's thread; the `tracing` crate |
//! | `metrics` | `metrics` | hang counters, a hang-duration histogram, the number of monitored components, dropped alerts and stack samples, through the `metrics` facade | a few recorder calls per alert, registration and stack sample, on the monitor's thread; the `metrics` crate |
//!
//! The `tracing` and `metrics` integrations need no call at all, nor does
//! the tokio integration's driver hand-off: the monitor reports what it does
//! to a list of observers (`monitor/observer.rs`) made once when it starts,
//! and `integrations::observers` puts in that list what the enabled features
//! provide.
//! The monitor names none of them: it tells its observers when a component
//! joins or leaves, when it raises an alert (tokio hands the blocked
//! worker's driver off here, without waiting for the alert's stack), when an
//! alert leaves it or is dropped (`tracing` emits its event, with the
//! stack, and `metrics` counts here), when it samples a stack, and when a
//! look comes late. The `crossbeam`, `tokio` and `tower` integrations are one
//! line where the loop, the runtime or the router is made:
//!
//! ```text
//! // crossbeam: `for msg in &inbox` becomes
//! for msg in handle.event_loop(Msg::annotation).iter(&inbox) { /* ... */ }
//!
//! // tokio: a runtime whose workers are components
//! let runtime = Builder::new_multi_thread().enable_all().watch_workers(&workers).build()?;
//!
//! // tower: every request named by its route (axum: after the routes)
//! let app = Router::new().route("/users/{id}", get(user)).route_layer(RequestLayer::new());
//! ```

use crate::monitor::{Observer, Observers};

#[cfg(feature = "crossbeam")]
pub mod crossbeam;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "tracing")]
pub mod tracing;

/// The observers the enabled features provide, in the order they hear of
/// each event: the one place that decides which integrations watch the
/// monitor (see `monitor/observer.rs`). A new integration that reacts to the
/// monitor's events is its module, with a type implementing
/// [`Observer`](crate::monitor::Observer), and one line here.
pub(crate) fn observers() -> Observers {
    let observers: Vec<Box<dyn Observer>> = vec![
        #[cfg(feature = "tracing")]
        Box::new(self::tracing::AlertEvents),
        #[cfg(feature = "metrics")]
        Box::new(self::metrics::Figures),
        #[cfg(feature = "tokio")]
        Box::new(self::tokio::DriverHandOff),
    ];
    Observers::new(observers)
}
