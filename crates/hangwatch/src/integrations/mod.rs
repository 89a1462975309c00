//! Monitoring in one line: hangwatch fitted to the event loops and the
//! observability stack a program already uses.
//!
//! Each integration sits behind a cargo feature of its own, and none is on by
//! default. A feature that is off costs nothing: none of its code is compiled
//! and none of its dependencies is built, and the hot path
//! ([`Handle::notify_activity`](crate::Handle::notify_activity) and
//! [`Handle::notify_wait`](crate::Handle::notify_wait)) is the same with or
//! without any of them.
//!
//! | feature | module | what it does | what it costs when on |
//! |---|---|---|---|
//! | `crossbeam` | [`crossbeam`] | a loop over crossbeam-channel receivers (`recv`, `select!`) notifies wait before it blocks and activity when a message arrives | one notify pair and one call of your annotate function per message; no dependency beyond crossbeam-channel, which hangwatch uses anyway |
//! | `tokio` | [`tokio`] | every worker thread of a multi-thread runtime becomes a component; a task that blocks its worker raises alerts with the worker's stack and the task's name or spawn location, and an idle worker takes over the blocked one's I/O driver | a notify per worker park and unpark; with instrumented tasks, a notify pair per poll; with `--cfg tokio_unstable`, a notify pair per poll of every task; tokio (`rt`, `rt-multi-thread`) and pin-project-lite |
//! | `tower` | [`tower`] | a `tower::Layer` (axum, hyper, tonic) that makes every request's handler an instrumented task annotated `"{METHOD} {route}"` (`GET /users/{id}`), the route taken from axum's matched path or a function of yours, bounded in number | per request a thread-local lookup of the label, per poll two notifications; once per label, one lock and one small string never freed; tower-layer, tower-service, http and axum's router core (implies `tokio`) |
//! | `tracing` | [`tracing`] | every alert is also a `tracing` event with structured fields | one event per alert, on the monitor's thread; the `tracing` crate |
//! | `metrics` | [`metrics`] | hang counters, a hang-duration histogram, the number of monitored components, dropped alerts and stack samples, through the `metrics` facade | a few recorder calls per alert, registration and stack sample, on the monitor's thread; the `metrics` crate |
//!
//! The `tracing` and `metrics` integrations need no call at all: with the
//! feature on, the monitor reports through them from the point where every
//! alert leaves it (its alert sink), where components join and leave it,
//! and where it samples a stack. The `crossbeam`, `tokio` and `tower`
//! integrations are one line where the loop, the runtime or the router is
//! made:
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

/// Called by the alert sink with every alert as it leaves the monitor, on
/// the monitor's thread.
#[cfg(any(feature = "tracing", feature = "metrics", feature = "tokio"))]
pub(crate) fn on_alert(alert: &crate::Alert) {
    #[cfg(feature = "tracing")]
    self::tracing::emit(alert);
    #[cfg(feature = "metrics")]
    self::metrics::record_alert(alert);
    #[cfg(feature = "tokio")]
    self::tokio::on_alert(alert);
}
