//! `hangwatch demo --metrics ADDR`: the hub serves every child's figures for
//! Prometheus, labelled by process.
//!
//! The children's own counters live in their processes; the hub has what
//! crosses to it: every alert, and each child's stats on request. From
//! those it keeps, under the same names as hangwatch's `metrics`
//! integration, with a `process` label: hangs by component and level, hang
//! durations, monitored components, dropped alerts and samples taken. One
//! scrape target then covers the whole program.
//!
//! As in the integration, a component's series exist at zero before its
//! first hang (from the first stats that list it): Prometheus' `rate` and
//! `increase` see a counter's first hang only as a step from a zero it
//! scraped before, and a series born at 1 would never page.

use std::net::SocketAddr;

use hangwatch::integrations::metrics::{
    ALERTS_DROPPED_TOTAL, COMPONENT_LABEL, HANGS_TOTAL, HANG_DURATION_BUCKETS,
    HANG_DURATION_SECONDS, LEVEL_LABEL, MONITORED_COMPONENTS, PROCESS_LABEL, SAMPLES_TOTAL,
};
use hangwatch::{AlertKind, Stats};
use hangwatch_hub::{ChildAlert, ChildInfo};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::ScenarioError;

/// Starts the Prometheus endpoint on `address`.
pub fn serve(address: SocketAddr) -> Result<(), ScenarioError> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(
            Matcher::Full(HANG_DURATION_SECONDS.to_owned()),
            HANG_DURATION_BUCKETS,
        )
        .and_then(|builder| builder.install())
        .map_err(|source| ScenarioError::Metrics { address, source })
}

/// The hang counter of a process's component at `level`.
fn hangs(process: &str, component: &str, level: &'static str) -> metrics::Counter {
    metrics::counter!(HANGS_TOTAL, PROCESS_LABEL => process.to_owned(), COMPONENT_LABEL => component.to_owned(), LEVEL_LABEL => level)
}

/// Makes a process's component's series, at zero, if they are not there.
fn component_seen(process: &str, component: &str) {
    for level in ["transient", "permanent"] {
        hangs(process, component, level).increment(0);
    }
    // Registering the histogram is enough: it is served with empty buckets.
    let _ = metrics::histogram!(HANG_DURATION_SECONDS, PROCESS_LABEL => process.to_owned(), COMPONENT_LABEL => component.to_owned());
}

/// Counts an alert a child raised.
pub fn alert(alert: &ChildAlert) {
    let process = alert.child.name.clone();
    let component = alert.alert.component.name.to_string();
    match alert.alert.kind {
        AlertKind::Transient | AlertKind::Permanent => {
            let level = if alert.alert.kind == AlertKind::Transient {
                // A component first seen here (before any stats listed it)
                // gets its permanent series at zero before it can be due.
                component_seen(&process, &component);
                "transient"
            } else {
                "permanent"
            };
            hangs(&process, &component, level).increment(1);
        }
        AlertKind::Ended { .. } => {
            metrics::histogram!(HANG_DURATION_SECONDS, PROCESS_LABEL => process, COMPONENT_LABEL => component)
                .record(alert.alert.duration.as_secs_f64());
        }
        // `ThreadExited`, `Stack` and kinds newer than this count nowhere.
        _ => {}
    }
}

/// Sets a child's gauges and totals from its stats.
pub fn stats(child: &ChildInfo, stats: &Stats) {
    let process = child.name.clone();
    for component in &stats.components {
        component_seen(&process, &component.id.name);
    }
    metrics::gauge!(MONITORED_COMPONENTS, PROCESS_LABEL => process.clone())
        .set(stats.components.len() as f64);
    metrics::counter!(ALERTS_DROPPED_TOTAL, PROCESS_LABEL => process.clone())
        .absolute(stats.alerts_dropped);
    metrics::counter!(SAMPLES_TOTAL, PROCESS_LABEL => process).absolute(stats.samples);
}
