//! The hot path under criterion: a notify pair with a live monitor, and with
//! monitoring switched off.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hangwatch::{ComponentId, Monitor, Timeouts};

fn notify_pair(c: &mut Criterion) {
    let Monitor {
        register, control, ..
    } = Monitor::builder().start().expect("monitor starts");
    let handle = register
        .register_component(
            ComponentId::new("bench", 0),
            Timeouts::new(Duration::from_secs(10), Duration::from_secs(20)),
            None,
        )
        .expect("registers");
    c.bench_function("notify_activity + notify_wait", |b| {
        b.iter(|| {
            handle.notify_activity("bench");
            handle.notify_wait();
        })
    });
    c.bench_function("activity guard", |b| {
        b.iter(|| drop(handle.activity("bench")))
    });
    control.set_enabled(false).expect("monitor running");
    c.bench_function("notify pair, monitoring disabled", |b| {
        b.iter(|| {
            handle.notify_activity("bench");
            handle.notify_wait();
        })
    });
}

criterion_group!(benches, notify_pair);
criterion_main!(benches);
