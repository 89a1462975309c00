//! The tower integration (feature `tower`): with `RequestLayer` on an axum
//! router's routes, a request whose handler blocks its worker raises alerts
//! annotated with its method and matched route, timed as the handler's own
//! poll; and however many distinct paths clients send, a layer makes a
//! bounded number of labels.
//!
//! The server is `examples/tower_axum.rs`, compiled in here, driven with real
//! HTTP requests over loopback.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

mod common;
#[allow(dead_code)]
#[path = "../examples/tower_axum.rs"]
mod tower_axum;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::get;
use axum::Router;
use common::{ms, next_matching, GENEROUS};
use hangwatch::integrations::tokio::WorkerMonitor;
use hangwatch::integrations::tower::{RequestLayer, DEFAULT_MAX_LABELS, OVERFLOW};
use hangwatch::{AlertKind, Monitor, Timeouts};
use tower_layer::Layer;
use tower_service::Service;

#[test]
fn a_blocking_handler_is_named_by_its_route_and_timed_as_its_own_poll() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let workers =
        WorkerMonitor::new(&register, "http-worker", Timeouts::new(ms(100), ms(1000))).unwrap();
    let runtime = tower_axum::runtime(&workers, 2).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = RequestLayer::new();
    runtime.spawn(tower_axum::serve(
        listener,
        tower_axum::app(layer.clone(), ms(300)),
    ));
    assert!(
        tower_axum::wait_for_workers(&workers, 2),
        "{:?}",
        workers.registration_errors()
    );

    let path = format!("/users/{}", tower_axum::SLOW_USER);
    let client = std::thread::spawn(move || tower_axum::http_get(addr, &path));

    // The first alert about a request names the route, not `/users/42`.
    let transient = next_matching(&alerts, "a transient alert for the request", |alert| {
        alert.kind == AlertKind::Transient
            && alert
                .annotation
                .as_deref()
                .is_some_and(|label| label.starts_with("GET /users/"))
    });
    assert_eq!(
        transient.annotation.as_deref(),
        Some("GET /users/{id}"),
        "{transient}"
    );
    assert_eq!(transient.component.name, "http-worker");

    let (status, body) = client.join().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    let slept = tower_axum::slept(&body).unwrap_or_else(|| panic!("no sleep in {body:?}"));
    assert!(slept >= ms(300));

    // The hang is the handler's poll: it began before the handler took its
    // first timestamp and ended after its last, and by no more than a
    // loaded machine's delays.
    let ended = next_matching(&alerts, "the hang's end", |alert| {
        matches!(alert.kind, AlertKind::Ended { .. }) && alert.component == transient.component
    });
    assert_eq!(ended.annotation.as_deref(), Some("GET /users/{id}"));
    assert!(
        ended.duration >= slept,
        "the hang ({:?}) is shorter than the handler's sleep ({slept:?})",
        ended.duration
    );
    assert!(
        ended.duration <= slept + GENEROUS,
        "the hang ({:?}) is far longer than the handler's sleep ({slept:?})",
        ended.duration
    );

    // Two routes were served with the layer: nothing else made a label.
    assert!(layer.label_count() <= 2, "{layer:?}");
    runtime.shutdown_timeout(GENEROUS);
}

/// A service that answers every request at once, so that the label a
/// request got can be read from the future the layer returns.
#[derive(Clone)]
struct Answer;

impl<B> Service<Request<B>> for Answer {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(()))
    }
}

fn get_request(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

#[test]
fn distinct_concrete_paths_make_a_bounded_number_of_labels() {
    // No route known: every path is `GET <unmatched>`.
    let layer = RequestLayer::new();
    let mut service = layer.layer(Answer);
    for n in 0..2_000 {
        let future = service.call(get_request(&format!("/tower-test/unmatched/{n}")));
        assert_eq!(future.label().as_str(), "GET <unmatched>");
    }
    assert_eq!(layer.label_count(), 1);

    // A route function that returns concrete paths (unbounded): capped.
    let layer = RequestLayer::new().route_with(|head| Some(head.uri.path()));
    let mut service = layer.layer(Answer);
    let mut overflowed = 0;
    for n in 0..2_000 {
        let path = format!("/tower-test/concrete/{n}");
        let label = service.call(get_request(&path)).label();
        if label == OVERFLOW {
            overflowed += 1;
        } else {
            assert_eq!(label.as_str(), format!("GET {path}"));
        }
    }
    assert_eq!(layer.label_count(), DEFAULT_MAX_LABELS);
    assert_eq!(overflowed, 2_000 - DEFAULT_MAX_LABELS);
    // From another thread (another per-thread cache), still capped.
    let other = layer.clone();
    std::thread::spawn(move || {
        let mut service = other.layer(Answer);
        let label = service
            .call(get_request("/tower-test/concrete/another"))
            .label();
        assert_eq!(label, OVERFLOW);
        assert_eq!(
            service
                .call(get_request("/tower-test/concrete/7"))
                .label()
                .as_str(),
            "GET /tower-test/concrete/7"
        );
    })
    .join()
    .unwrap();
    assert_eq!(layer.label_count(), DEFAULT_MAX_LABELS);

    // A smaller cap, with other methods counted apart.
    let layer = RequestLayer::new().max_labels(4);
    for method in [Method::GET, Method::POST, Method::PUT] {
        for n in 0..10 {
            let _ = layer.label(&method, Some(&format!("/tower-test/small/{n}")));
        }
    }
    assert_eq!(layer.label_count(), 4);
}

#[test]
fn axum_routes_many_paths_to_one_label_and_the_fallback_to_unmatched() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let routed = RequestLayer::new();
    let everything = RequestLayer::new();
    let mut app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route_layer(routed.clone())
        // `Router::layer` also runs per route, and the fallback through it.
        .layer(everything.clone());
    runtime.block_on(async {
        for n in 0..2_000 {
            let request = Request::get(format!("/users/{n}"))
                .body(Body::empty())
                .unwrap();
            std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx))
                .await
                .unwrap();
            assert!(app.call(request).await.unwrap().status().is_success());
            let request = Request::get(format!("/nowhere/{n}"))
                .body(Body::empty())
                .unwrap();
            std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx))
                .await
                .unwrap();
            assert_eq!(app.call(request).await.unwrap().status(), 404);
        }
    });
    assert_eq!(routed.label_count(), 1);
    assert_eq!(
        routed.label(&Method::GET, Some("/users/{id}")).as_str(),
        "GET /users/{id}"
    );
    // `GET /users/{id}` and `GET <unmatched>`.
    assert_eq!(everything.label_count(), 2, "{everything:?}");
    assert_eq!(routed.label_count(), 1);
}
