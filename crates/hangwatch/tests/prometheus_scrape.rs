//! The metrics integration served to Prometheus (feature `metrics`): the
//! exporter of `examples/prometheus.rs` on a free loopback port, scraped
//! over HTTP while a component hangs twice; the series appear, and move.

mod common;

#[allow(dead_code)]
#[path = "../examples/prometheus.rs"]
mod prometheus;

use std::sync::mpsc;
use std::time::Duration;

use common::{expect_alert, ms};
use hangwatch::integrations::metrics::{
    ALERTS_DROPPED_TOTAL, HANGS_TOTAL, HANG_DURATION_SECONDS, MONITORED_COMPONENTS, SAMPLES_TOTAL,
};
use hangwatch::{AlertKind, ComponentId, HangLevel, Monitor, Timeouts};
use prometheus::series_value;

#[inline(never)]
fn stuck_while_scraped(released: &mpsc::Receiver<()>) {
    let _ = std::hint::black_box(released).recv();
}

#[test]
fn the_scraped_series_appear_and_move_with_each_hang() {
    let addr = prometheus::free_loopback_addr().unwrap();
    prometheus::install_exporter(addr).unwrap();
    prometheus::wait_for_exporter(addr).unwrap();

    // Before anything happens: the series without labels, at zero.
    let page = prometheus::scrape(addr).unwrap();
    assert_eq!(
        series_value(&page, ALERTS_DROPPED_TOTAL),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        series_value(&page, MONITORED_COMPONENTS),
        Some(0.0),
        "{page}"
    );
    let transient = format!(r#"{HANGS_TOTAL}{{component="scraped",level="transient"}}"#);
    let permanent = format!(r#"{HANGS_TOTAL}{{component="scraped",level="permanent"}}"#);
    let count = format!(r#"{HANG_DURATION_SECONDS}_count{{component="scraped"}}"#);
    let within_a_minute =
        format!(r#"{HANG_DURATION_SECONDS}_bucket{{component="scraped",le="60"}}"#);
    assert_eq!(
        series_value(&page, &transient),
        None,
        "no hang yet:\n{page}"
    );

    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder()
        .symbolicate_deadline(Duration::from_secs(10))
        .start()
        .unwrap();
    let id = ComponentId::new("scraped", 1);
    let (step, steps) = mpsc::channel::<mpsc::Receiver<()>>();
    let component = {
        let register = register.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            let handle = register
                .register_component(id, Timeouts::new(ms(50), ms(150)), None)
                .unwrap();
            // Each receiver is one hang, over when its sender is dropped.
            for released in steps {
                let _busy = handle.activity("scraped work");
                stuck_while_scraped(&released);
            }
        })
    };
    control.stats().unwrap();

    let mut samples = 0.0;
    for hang in 1..=2 {
        let (release, released) = mpsc::channel();
        step.send(released).unwrap();
        expect_alert(&alerts, &id, AlertKind::Transient);
        expect_alert(&alerts, &id, AlertKind::Permanent);
        drop(release);
        expect_alert(
            &alerts,
            &id,
            AlertKind::Ended {
                worst: HangLevel::Permanent,
            },
        );

        let page = prometheus::scrape(addr).unwrap();
        let n = f64::from(hang);
        assert_eq!(
            series_value(&page, MONITORED_COMPONENTS),
            Some(1.0),
            "{page}"
        );
        assert_eq!(series_value(&page, &transient), Some(n), "{page}");
        assert_eq!(series_value(&page, &permanent), Some(n), "{page}");
        assert_eq!(series_value(&page, &count), Some(n), "{page}");
        assert_eq!(series_value(&page, &within_a_minute), Some(n), "{page}");
        let sampled = series_value(&page, SAMPLES_TOTAL).unwrap_or_default();
        assert!(
            sampled > samples,
            "each permanent alert samples a stack:\n{page}"
        );
        samples = sampled;
        assert_eq!(
            series_value(&page, ALERTS_DROPPED_TOTAL),
            Some(0.0),
            "{page}"
        );
    }

    drop(step);
    component.join().unwrap();
    control.stats().unwrap();
    let page = prometheus::scrape(addr).unwrap();
    assert_eq!(
        series_value(&page, MONITORED_COMPONENTS),
        Some(0.0),
        "{page}"
    );
}
