//! The monitor's figures through the `metrics` facade (feature `metrics`).
//!
//! With the feature on, the monitor records these through whatever recorder
//! the program installed (`metrics-exporter-prometheus`, say): this module
//! is one of the monitor's observers (see `monitor/observer.rs`), told when
//! alerts leave the monitor or are dropped, components join and leave it,
//! stacks are sampled and looks come late:
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | [`hangwatch_hangs_total`](HANGS_TOTAL) | counter | `component`, `level` | hang alerts raised: `level="transient"` counts every hang (each one raises a transient alert first), `level="permanent"` those that went on past the permanent timeout |
//! | [`hangwatch_hang_duration_seconds`](HANG_DURATION_SECONDS) | histogram | `component` | how long each hang lasted, recorded when it ends |
//! | [`hangwatch_monitored_components`](MONITORED_COMPONENTS) | gauge | | components registered now |
//! | [`hangwatch_alerts_dropped_total`](ALERTS_DROPPED_TOTAL) | counter | | alerts dropped because nobody read the alert channel: a health signal, which should stay at zero |
//! | [`hangwatch_samples_total`](SAMPLES_TOTAL) | counter | | stacks sampled: for hang alerts that carry a stack, and while profiling |
//! | [`hangwatch_starved_looks_total`](STARVED_LOOKS_TOTAL) | counter | | looks the monitor made much later than planned although the process could run (its thread waited for a CPU): a health signal; hangs keep their whole length, but alerts come late |
//! | [`hangwatch_pauses_total`](PAUSES_TOTAL) | counter | | times the process could not run (stopped, suspended) and that time was charged to no hang |
//!
//! The `component` label is the component's *name* (`layout`, not
//! `layout#1`), so that the number of series stays bounded however many
//! components of one kind come and go. The names are constants here, for
//! whoever serves or relays them; call [`describe`] once to give them units
//! and help texts, and use [`HANG_DURATION_BUCKETS`] as the histogram's
//! buckets if your exporter asks for some.
//!
//! Install the recorder before starting the monitor: the gauge counts
//! registrations up and down, so one installed later would miss the
//! components registered before it.
//!
//! ```
//! use std::time::Duration;
//! use hangwatch::integrations::metrics::{describe, HANG_DURATION_BUCKETS, HANG_DURATION_SECONDS};
//! use hangwatch::{ComponentId, Monitor, Timeouts};
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//!
//! // First the recorder (here one we render ourselves; use
//! // `.with_http_listener(addr).install()?` to serve them over HTTP) ...
//! let prometheus = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Full(HANG_DURATION_SECONDS.into()), HANG_DURATION_BUCKETS)?
//!     .install_recorder()?;
//! describe();
//!
//! // ... then the monitor.
//! let Monitor { register, control, .. } = Monitor::builder().stacks(false).start()?;
//! let _handle = register.register_component(
//!     ComponentId::new("ui", 1),
//!     Timeouts::new(Duration::from_millis(100), Duration::from_secs(1)),
//!     None,
//! )?;
//! control.stats()?; // the monitor has taken the registration in
//! let page = prometheus.render();
//! assert!(page.contains("hangwatch_monitored_components 1"), "{page}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Cost:** a few recorder calls per alert, per registration and per stack
//! sample, all on the monitor's thread (with the Prometheus recorder, an
//! atomic add each); none on the hot path. A component's series are made
//! once, when the first component of its name registers, so that counting
//! an alert allocates nothing: a hung thread that holds the allocator's
//! lock cannot hold up its own alert here. Without an installed recorder
//! each call is a load and a branch.

use std::cell::RefCell;
use std::collections::HashMap;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};

use crate::alert::{Alert, AlertKind};
use crate::component::ComponentId;
use crate::monitor::Observer;

/// Counter of hang alerts, labelled [`COMPONENT_LABEL`] and [`LEVEL_LABEL`].
pub const HANGS_TOTAL: &str = "hangwatch_hangs_total";
/// Histogram of ended hangs' durations in seconds, labelled [`COMPONENT_LABEL`].
pub const HANG_DURATION_SECONDS: &str = "hangwatch_hang_duration_seconds";
/// Gauge of the components registered now.
pub const MONITORED_COMPONENTS: &str = "hangwatch_monitored_components";
/// Counter of alerts dropped because the alert channel was full.
pub const ALERTS_DROPPED_TOTAL: &str = "hangwatch_alerts_dropped_total";
/// Counter of stacks sampled.
pub const SAMPLES_TOTAL: &str = "hangwatch_samples_total";
/// Counter of late looks of a monitor whose process could run.
pub const STARVED_LOOKS_TOTAL: &str = "hangwatch_starved_looks_total";
/// Counter of pauses: the process could not run.
pub const PAUSES_TOTAL: &str = "hangwatch_pauses_total";

/// The label holding the component's name.
pub const COMPONENT_LABEL: &str = "component";
/// The label holding the hang level: `transient` or `permanent`.
pub const LEVEL_LABEL: &str = "level";
/// The label a hub relaying other processes' figures puts on them: which
/// process they come from. hangwatch itself never sets it.
pub const PROCESS_LABEL: &str = "process";

/// Histogram buckets for [`HANG_DURATION_SECONDS`], in seconds: from the
/// shortest transient timeouts people use to hangs of minutes.
pub const HANG_DURATION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Gives every metric its unit and help text in the installed recorder, and
/// makes the series without labels appear (at zero) before anything
/// happens, so that `hangwatch_alerts_dropped_total == 0` can be told from
/// a process that exports nothing. Call it once, after installing the
/// recorder.
pub fn describe() {
    describe_counter!(
        HANGS_TOTAL,
        Unit::Count,
        "Hang alerts raised, by component name and level (level=transient counts every hang)."
    );
    describe_histogram!(
        HANG_DURATION_SECONDS,
        Unit::Seconds,
        "How long each hang lasted, recorded when it ended, by component name."
    );
    describe_gauge!(
        MONITORED_COMPONENTS,
        Unit::Count,
        "Components registered with the hang monitor."
    );
    describe_counter!(
        ALERTS_DROPPED_TOTAL,
        Unit::Count,
        "Alerts dropped because nobody read the alert channel; should stay at zero."
    );
    describe_counter!(
        SAMPLES_TOTAL,
        Unit::Count,
        "Stacks of monitored threads sampled by the hang monitor."
    );
    describe_counter!(
        STARVED_LOOKS_TOTAL,
        Unit::Count,
        "Looks the hang monitor made much later than planned although the process could run \
         (its thread waited for a CPU)."
    );
    describe_counter!(
        PAUSES_TOTAL,
        Unit::Count,
        "Times the process could not run (stopped, suspended); that time counts toward no hang."
    );
    counter!(ALERTS_DROPPED_TOTAL).increment(0);
    counter!(SAMPLES_TOTAL).increment(0);
    counter!(STARVED_LOOKS_TOTAL).increment(0);
    counter!(PAUSES_TOTAL).increment(0);
    gauge!(MONITORED_COMPONENTS).increment(0.0);
}

/// The series of one component name, made when the first component of
/// that name registers.
struct Series {
    transient: Counter,
    permanent: Counter,
    durations: Histogram,
}

thread_local! {
    /// Per component name, on the monitor's thread that made them.
    static SERIES: RefCell<HashMap<String, Series>> = RefCell::new(HashMap::new());
}

/// The monitor's observer that records these figures.
pub(crate) struct Figures;

impl Observer for Figures {
    /// Counts the component, and makes the series of its name if none of
    /// that name exists yet, so that counting its alerts allocates nothing.
    fn component_added(&self, id: &ComponentId) {
        gauge!(MONITORED_COMPONENTS).increment(1.0);
        let _ = SERIES.try_with(|series| {
            let mut series = series.borrow_mut();
            if !series.contains_key(id.name.as_ref()) {
                let component = id.name.to_string();
                let level = |level: &'static str| {
                    counter!(HANGS_TOTAL, COMPONENT_LABEL => component.clone(), LEVEL_LABEL => level)
                };
                let made = Series {
                    transient: level("transient"),
                    permanent: level("permanent"),
                    durations: histogram!(HANG_DURATION_SECONDS, COMPONENT_LABEL => component.clone()),
                };
                series.insert(component, made);
            }
        });
    }

    fn component_removed(&self, _id: &ComponentId) {
        gauge!(MONITORED_COMPONENTS).decrement(1.0);
    }

    /// Counts a hang alert, or records an ended hang's duration, through the
    /// series made when its component registered. Counted as it leaves the
    /// monitor, as the alert channel's reader sees it.
    fn alert_delivered(&self, alert: &Alert) {
        let _ = SERIES.try_with(|series| {
            let series = series.borrow();
            let Some(series) = series.get(alert.component.name.as_ref()) else {
                return;
            };
            match alert.kind {
                AlertKind::Transient => series.transient.increment(1),
                AlertKind::Permanent => series.permanent.increment(1),
                AlertKind::Ended { .. } => series.durations.record(alert.duration.as_secs_f64()),
                AlertKind::ThreadExited | AlertKind::Stack { .. } => {}
            }
        });
    }

    fn alert_dropped(&self, _alert: &Alert) {
        counter!(ALERTS_DROPPED_TOTAL).increment(1);
    }

    fn sample_taken(&self) {
        counter!(SAMPLES_TOTAL).increment(1);
    }

    fn look_starved(&self) {
        counter!(STARVED_LOOKS_TOTAL).increment(1);
    }

    fn paused(&self) {
        counter!(PAUSES_TOTAL).increment(1);
    }
}
