//! `hangwatch demo --metrics ADDR`: the hub serves every child's figures for
//! Prometheus, labelled by process.
//!
//! The children's own counters live in their processes; the hub has what
//! crosses to it: every alert, and each child's stats on request. From
//! those it keeps, under the same names as hangwatch's `metrics`
//! integration, with a `process` label: hangs by component and level, hang
//! durations, monitored components, dropped alerts and samples taken. One
//! scrape target then covers the whole program.

use std::net::SocketAddr;

use hangwatch::integrations::metrics::{
    ALERTS_DROPPED_TOTAL, COMPONENT_LABEL, HANGS_TOTAL, HANG_DURATION_BUCKETS,
    HANG_DURATION_SECONDS, LEVEL_LABEL, MONITORED_COMPONENTS, PROCESS_LABEL, SAMPLES_TOTAL,
};
use hangwatch::{AlertKind, Stats};
use hangwatch_hub::{ChildAlert, ChildInfo};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Starts the Prometheus endpoint on `address`.
pub fn serve(address: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(
            Matcher::Full(HANG_DURATION_SECONDS.to_owned()),
            HANG_DURATION_BUCKETS,
        )
        .and_then(|builder| builder.install())
        .map_err(|error| format!("cannot serve metrics on {address}: {error}"))
}

/// Counts an alert a child raised.
pub fn alert(alert: &ChildAlert) {
    let process = alert.child.name.clone();
    let component = alert.alert.component.name.to_string();
    match alert.alert.kind {
        AlertKind::Transient | AlertKind::Permanent => {
            let level = if alert.alert.kind == AlertKind::Transient {
                "transient"
            } else {
                "permanent"
            };
            metrics::counter!(HANGS_TOTAL, PROCESS_LABEL => process, COMPONENT_LABEL => component, LEVEL_LABEL => level)
                .increment(1);
        }
        AlertKind::Ended { .. } => {
            metrics::histogram!(HANG_DURATION_SECONDS, PROCESS_LABEL => process, COMPONENT_LABEL => component)
                .record(alert.alert.duration.as_secs_f64());
        }
        AlertKind::ThreadExited | AlertKind::Stack { .. } => {}
    }
}

/// Sets a child's gauges and totals from its stats.
pub fn stats(child: &ChildInfo, stats: &Stats) {
    let process = child.name.clone();
    metrics::gauge!(MONITORED_COMPONENTS, PROCESS_LABEL => process.clone())
        .set(stats.components.len() as f64);
    metrics::counter!(ALERTS_DROPPED_TOTAL, PROCESS_LABEL => process.clone())
        .absolute(stats.alerts_dropped);
    metrics::counter!(SAMPLES_TOTAL, PROCESS_LABEL => process).absolute(stats.samples);
}
