//! One layer for every request: a tower middleware that makes each request's
//! handler an instrumented task annotated with its method and route
//! (feature `tower`).
//!
//! With the [`tokio`](super::tokio) integration watching a runtime's workers,
//! a handler that blocks its worker is caught whatever it is, but the alert
//! can only say `tokio worker: running tasks`. Adding a [`RequestLayer`] to
//! the server's service stack names it: every poll of a request's response
//! future (its handler, and whatever the layer wraps) is an activity
//! annotated `"{METHOD} {route}"`, such as `GET /users/{id}`, and timed
//! exactly from the poll's start, as with [`instrument_named`].
//!
//! ```
//! use std::time::Duration;
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use hangwatch::integrations::tokio::{BuilderExt, WorkerMonitor};
//! use hangwatch::integrations::tower::RequestLayer;
//! use hangwatch::{AlertKind, Monitor, Timeouts};
//! use tower_service::Service;
//!
//! let Monitor { register, alerts, .. } = Monitor::builder().stacks(false).start()?;
//! let workers = WorkerMonitor::new(
//!     &register,
//!     "http-worker",
//!     Timeouts::new(Duration::from_millis(50), Duration::from_secs(1)),
//! )?;
//! let runtime = tokio::runtime::Builder::new_multi_thread()
//!     .worker_threads(2)
//!     .enable_all()
//!     .watch_workers(&workers)
//!     .build()?;
//! # while workers.registered() < 2 { std::thread::sleep(Duration::from_millis(1)); }
//!
//! // The one line: `.route_layer(RequestLayer::new())`, after the routes.
//! let mut app = Router::new()
//!     .route("/users/{id}", get(|| async {
//!         std::thread::sleep(Duration::from_millis(150)); // the bug
//!     }))
//!     .route_layer(RequestLayer::new());
//!
//! // Served here without a socket: one request, on a worker.
//! let request = Request::get("/users/7").body(Body::empty())?;
//! let response = runtime.block_on(runtime.spawn(async move {
//!     std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx)).await?;
//!     app.call(request).await
//! }))??;
//! assert!(response.status().is_success());
//!
//! let alert = alerts.recv()?;
//! assert_eq!(alert.kind, AlertKind::Transient);
//! // The route, not the concrete path `/users/7`.
//! assert_eq!(alert.annotation.as_deref(), Some("GET /users/{id}"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Which route
//!
//! A label is made once per distinct text and never freed (see
//! [`Annotation::intern`]), so the route must come from a bounded set: the
//! route *template*, never the concrete path with its ids. The route is the
//! first of:
//!
//! 1. what the function given to [`RequestLayer::route_with`] returns for the
//!    request's head, if it returns `Some`;
//! 2. axum's matched route, the `axum::extract::MatchedPath` request
//!    extension (axum 0.8), such as `/users/{id}`;
//! 3. [`UNMATCHED`]: a request with no known route is labelled
//!    `GET <unmatched>`, whatever its path.
//!
//! A route longer than 256 bytes is cut there. On top of that, each layer
//! (with its clones) makes at most [`DEFAULT_MAX_LABELS`] distinct labels
//! (see [`RequestLayer::max_labels`]); requests past that are labelled
//! [`OVERFLOW`].
//!
//! - **axum**: add the layer with `Router::route_layer` after the routes, as
//!   above: axum then runs it per route, once the route is matched, so it
//!   sees `MatchedPath`. (`Router::layer` also runs per route, and runs the
//!   fallback through it too, as `<unmatched>`.) A layer wrapped around the
//!   finished `Router` from outside, such as a `tower::ServiceBuilder` given
//!   to `axum::serve`, runs before routing and sees no route.
//! - **tonic**: gRPC paths are already templates (`/pkg.Service/Method`), so
//!   take the path itself:
//!   `RequestLayer::new().route_with(|head| Some(head.uri.path()))`, and add
//!   it with `Server::builder().layer(...)`. A client can send any path, but
//!   the per-layer cap bounds what that costs.
//! - **hyper** (and any other tower HTTP stack): the layer is a plain
//!   `tower::Layer` for services of `http::Request<B>`, for any body `B` and
//!   any response; give hyper the layered service through hyper-util's
//!   `TowerToHyperService`. Without a router, tell it the route with
//!   `route_with`.
//!
//! # What it catches, and what it costs
//!
//! - *Catches* a poll of a request's handler that blocks its worker (a
//!   blocking call, a lock, a CPU loop), named by the request's method and
//!   route, on a worker that a [`WorkerMonitor`](super::tokio::WorkerMonitor)
//!   watches; elsewhere the layer only labels the future. The worker's
//!   activity goes back to `tokio worker: running tasks`, its clock
//!   restarted, when each poll returns, so a slow request that awaits (a
//!   database, a timer) is not a hang, and neither is a busy server.
//!   What the layered service does in `call` itself, before it returns its
//!   future, is not inside the activity (axum's handlers do their work in
//!   the future).
//! - *Costs* per request a thread-local hash lookup of the label (the text
//!   `"{METHOD} {route}"` written into a reused per-thread buffer, so no
//!   allocation once a thread has seen the label), then per poll of the
//!   response future what an instrumented task costs: a thread-local lookup
//!   and two notifications. The first time a thread sees a label, the layer's
//!   own read-write lock, and once per label in the layer, the process-wide
//!   lock of [`Annotation::intern`] and one small string that is never
//!   freed. Each thread keeps at most the cap of labels per layer.
//! - *Dependencies*: `tower-layer`, `tower-service` and `http` (which every
//!   tower HTTP stack already builds), and axum's router core with its
//!   `matched-path` feature only (no server, no extractors of bodies), for
//!   the `MatchedPath` type.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use ::http::request::Parts;
use ::http::{Extensions, Method, Request};
use ::tower_layer::Layer;
use ::tower_service::Service;

use super::tokio::{instrument_named, Instrumented};
use crate::annotation::Annotation;

/// How many distinct labels a [`RequestLayer`] makes unless told otherwise.
pub const DEFAULT_MAX_LABELS: usize = 1024;

/// The route of a request whose route is not known: the label is then
/// `"{METHOD} <unmatched>"`.
pub const UNMATCHED: &str = "<unmatched>";

/// The label of requests that would have made a new label past the layer's
/// cap ([`RequestLayer::max_labels`]).
pub const OVERFLOW: Annotation = Annotation::new("<request labels past the layer's cap>");

/// Routes are cut to this many bytes (at a character boundary).
const MAX_ROUTE_LEN: usize = 256;

/// A function from a request's head to its route.
type RouteFn = dyn for<'a> Fn(&'a Parts) -> Option<&'a str> + Send + Sync;

/// A `tower::Layer` that annotates every request's handler with
/// `"{METHOD} {route}"`: see the [module docs](self) for where the route
/// comes from and what it costs.
///
/// Cheap to clone; clones (and the services they make) share their labels
/// and their cap.
#[derive(Clone)]
pub struct RequestLayer {
    labels: Arc<Labels>,
    route: Option<Arc<RouteFn>>,
}

impl RequestLayer {
    /// A layer that takes routes from axum's `MatchedPath` and makes at most
    /// [`DEFAULT_MAX_LABELS`] distinct labels.
    pub fn new() -> RequestLayer {
        RequestLayer {
            labels: Labels::new(DEFAULT_MAX_LABELS),
            route: None,
        }
    }

    /// Takes each request's route from `route` first: it is given the
    /// request's head (method, URI, headers, extensions) and returns the
    /// route, a text of bounded variety such as a route template or a gRPC
    /// method path, or `None` to fall back to axum's `MatchedPath`, then to
    /// [`UNMATCHED`]. Replaces a function given earlier.
    ///
    /// ```
    /// use hangwatch::integrations::tower::RequestLayer;
    ///
    /// // A hand-written router's families of paths.
    /// let layer = RequestLayer::new().route_with(|head| {
    ///     let path = head.uri.path();
    ///     if path.starts_with("/static/") {
    ///         Some("/static/*")
    ///     } else if path == "/" || path == "/health" {
    ///         Some(path)
    ///     } else {
    ///         None // `GET <unmatched>`
    ///     }
    /// });
    /// # let _ = layer;
    /// ```
    pub fn route_with<F>(self, route: F) -> RequestLayer
    where
        F: for<'a> Fn(&'a Parts) -> Option<&'a str> + Send + Sync + 'static,
    {
        RequestLayer {
            route: Some(Arc::new(route)),
            ..self
        }
    }

    /// Makes at most `max` distinct labels (at least 1); a request that would
    /// make another is labelled [`OVERFLOW`]. Starts the layer's labels
    /// afresh, so call it before the layer is used.
    pub fn max_labels(self, max: usize) -> RequestLayer {
        RequestLayer {
            labels: Labels::new(max.max(1)),
            ..self
        }
    }

    /// How many distinct labels this layer (with its clones) has made.
    pub fn label_count(&self) -> usize {
        self.labels.count()
    }

    /// The label of a request with this method and route (`None`: unknown),
    /// made as for a request through the layer, and counted against its cap.
    pub fn label(&self, method: &Method, route: Option<&str>) -> Annotation {
        self.labels.annotation(method, route)
    }

    /// The label of `request`, as [`call`](Service::call) makes it.
    fn label_of<B>(&self, request: Request<B>) -> (Annotation, Request<B>) {
        match &self.route {
            None => {
                let label = self
                    .labels
                    .annotation(request.method(), matched_path(request.extensions()));
                (label, request)
            }
            Some(route) => {
                // Moving the head out and back is a copy of a few words, no
                // allocation, and lets the route function see it whatever
                // the body's type.
                let (parts, body) = request.into_parts();
                let found = route(&parts).or_else(|| matched_path(&parts.extensions));
                let label = self.labels.annotation(&parts.method, found);
                (label, Request::from_parts(parts, body))
            }
        }
    }
}

impl Default for RequestLayer {
    fn default() -> RequestLayer {
        RequestLayer::new()
    }
}

impl fmt::Debug for RequestLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLayer")
            .field("max_labels", &self.labels.max)
            .field("labels", &self.labels.count())
            .field("route_with", &self.route.is_some())
            .finish()
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> RequestService<S> {
        RequestService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service whose every response future is annotated with the request's
/// method and route: made by [`RequestLayer`].
pub struct RequestService<S> {
    inner: S,
    layer: RequestLayer,
}

impl<S> RequestService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for RequestService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (label, request) = self.layer.label_of(request);
        instrument_named(label, self.inner.call(request))
    }
}

impl<S: Clone> Clone for RequestService<S> {
    fn clone(&self) -> RequestService<S> {
        RequestService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RequestService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// axum's matched route, if the request went through an axum router.
fn matched_path(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<::axum::extract::MatchedPath>()
        .map(|path| path.as_str())
}

/// `route` cut to [`MAX_ROUTE_LEN`] bytes at a character boundary.
fn bounded(route: &str) -> &str {
    if route.len() <= MAX_ROUTE_LEN {
        return route;
    }
    let mut end = MAX_ROUTE_LEN;
    while !route.is_char_boundary(end) {
        end -= 1;
    }
    &route[..end]
}

/// A layer's labels: shared by its clones, read by every thread on its first
/// sight of a label.
struct Labels {
    /// Tells this layer's entries apart in the per-thread caches.
    id: u64,
    max: usize,
    made: RwLock<HashMap<Box<str>, Annotation>>,
}

/// Per thread: a buffer the label's text is written into, and each layer's
/// labels as this thread has seen them (at most the layer's cap of them).
/// A dropped layer's entries stay until the thread ends: layers are made
/// once per server, not per request.
struct ThreadLabels {
    text: String,
    layers: HashMap<u64, HashMap<Box<str>, Annotation>>,
}

thread_local! {
    static THREAD_LABELS: RefCell<ThreadLabels> = RefCell::new(ThreadLabels {
        text: String::new(),
        layers: HashMap::new(),
    });
}

impl Labels {
    fn new(max: usize) -> Arc<Labels> {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Arc::new(Labels {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            max,
            made: RwLock::new(HashMap::new()),
        })
    }

    fn count(&self) -> usize {
        self.made
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The label `"{method} {route}"`, from this thread's cache, else from
    /// the layer's.
    fn annotation(&self, method: &Method, route: Option<&str>) -> Annotation {
        let route = route.map_or(UNMATCHED, bounded);
        let cached = THREAD_LABELS.try_with(|cache| {
            // Not borrowed only if a route function or a hasher called back
            // into a layer on this thread; then the slow path below.
            let mut cache = cache.try_borrow_mut().ok()?;
            let ThreadLabels { text, layers } = &mut *cache;
            text.clear();
            text.push_str(method.as_str());
            text.push(' ');
            text.push_str(route);
            let seen = layers.entry(self.id).or_default();
            if let Some(&label) = seen.get(text.as_str()) {
                return Some(label);
            }
            let label = self.shared(text);
            if seen.len() < self.max {
                seen.insert(text.as_str().into(), label);
            }
            Some(label)
        });
        match cached {
            Ok(Some(label)) => label,
            _ => self.shared(&format!("{method} {route}")),
        }
    }

    /// The layer's label for `text`, made if it has room for one more.
    fn shared(&self, text: &str) -> Annotation {
        let read = |made: &HashMap<Box<str>, Annotation>| made.get(text).copied();
        if let Some(label) = read(&self.made.read().unwrap_or_else(PoisonError::into_inner)) {
            return label;
        }
        let mut made = self.made.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(label) = read(&made) {
            return label;
        }
        if made.len() >= self.max {
            return OVERFLOW;
        }
        let label = Annotation::intern(text);
        made.insert(text.into(), label);
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_method_and_route_and_made_once() {
        let layer = RequestLayer::new();
        let first = layer.label(&Method::GET, Some("/users/{id}"));
        assert_eq!(first.as_str(), "GET /users/{id}");
        let again = layer.label(&Method::GET, Some("/users/{id}"));
        assert!(std::ptr::eq(first.as_str(), again.as_str()));
        // Another thread, and another layer, find the same interned string.
        let clone = layer.clone();
        let elsewhere = std::thread::spawn(move || clone.label(&Method::GET, Some("/users/{id}")))
            .join()
            .unwrap();
        assert!(std::ptr::eq(first.as_str(), elsewhere.as_str()));
        let other = RequestLayer::new().label(&Method::GET, Some("/users/{id}"));
        assert!(std::ptr::eq(first.as_str(), other.as_str()));
        assert_eq!(
            layer.label(&Method::POST, None).as_str(),
            "POST <unmatched>"
        );
        assert_eq!(layer.label_count(), 2);
    }

    #[test]
    fn the_cap_bounds_labels_and_overflow_is_labelled() {
        let layer = RequestLayer::new().max_labels(3);
        for n in 0..10 {
            let route = format!("/unit-test/cap/{n}");
            let label = layer.label(&Method::GET, Some(&route));
            if n < 3 {
                assert_eq!(label.as_str(), format!("GET {route}"));
            } else {
                assert_eq!(label, OVERFLOW);
            }
        }
        assert_eq!(layer.label_count(), 3);
        // Labels made before the cap was reached still resolve.
        assert_eq!(
            layer.label(&Method::GET, Some("/unit-test/cap/1")).as_str(),
            "GET /unit-test/cap/1"
        );
    }

    #[test]
    fn long_routes_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ROUTE_LEN);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_ROUTE_LEN && cut.len() >= MAX_ROUTE_LEN - 1);
        assert!(long.starts_with(cut));
        assert_eq!(bounded("/short"), "/short");
    }
}
