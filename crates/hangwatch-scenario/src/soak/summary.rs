//! The one JSON object `hangwatch soak` prints: its fields are a stable
//! interface (README, "Reliability", documents each), built here from the
//! fleet's figures, the hub's, and the check's outcome.
//!
//! Every count is over the whole run and every child process the soak
//! started (killed ones included, as of their last report). The memory
//! figures are of one process: the one whose resident set grew most
//! between its first reading after warm-up and its last.

use std::time::Duration;

use serde::Serialize;

use super::fleet::{Fleet, WARM_UP};
use crate::check::Outcome;

/// A process's memory may grow at most this much over a soak.
pub const RSS_GROWTH_LIMIT_KIB: i64 = 1024;

/// The soak's figures. See README, "Reliability".
#[derive(Debug, Serialize)]
pub struct Summary {
    /// How long the soak ran, until every child had exited.
    pub seconds: f64,
    /// Children running at any time.
    pub processes: u32,
    /// Child processes started, replacements included.
    pub processes_started: usize,
    /// Notifications made by every child's loops (a killed child's as of its last report).
    pub notifications: u64,
    /// Stacks the children's monitors sampled (each child's last stats).
    pub samples: u64,
    /// Alerts that reached the hub.
    pub alerts: u64,
    /// Alerts the children's monitors dropped, plus events the hub dropped.
    pub alerts_dropped: u64,
    /// Times a child's monitor judged its process paused and charged no hang.
    pub monitor_pauses: u64,
    /// Hangs that ran their course and had to be reported in full.
    pub hangs_injected: usize,
    /// Of those, the ones reported in full and on time.
    pub hangs_detected: usize,
    /// Hangs a kill interrupted: neither detected nor missed.
    pub hangs_cut_short: usize,
    /// `hangs_injected` − `hangs_detected`.
    pub missed_hangs: usize,
    /// Alerts that belong to no injected hang.
    pub false_alerts: usize,
    /// Detected hangs with an alert whose stack does not name the hang's function.
    pub missing_stacks: usize,
    /// The median detection latency (transient deadline to the alert at the hub).
    pub detection_latency_p50_ms: Option<f64>,
    /// The worst detection latency.
    pub worst_detection_latency_ms: Option<f64>,
    /// The worst over hangs that began once their process had warmed up.
    pub worst_warm_detection_latency_ms: Option<f64>,
    /// Profiling windows opened.
    pub profiling_windows: u64,
    /// Profiles that came back.
    pub profiles: u64,
    /// Children killed with SIGKILL.
    pub child_kills: usize,
    /// Kills the hub reported once as a process gone, the replacement connected.
    pub child_crashes_survived: usize,
    /// Children that died unkilled, or did not confirm their exit and leave.
    pub unexpected_exits: usize,
    /// The child whose resident memory grew most after its warm-up.
    pub monitor_rss_process: Option<String>,
    /// Its resident memory at its first reading after warm-up...
    pub monitor_rss_start_kib: Option<u64>,
    /// ...at its last...
    pub monitor_rss_end_kib: Option<u64>,
    /// ...and the difference.
    pub monitor_rss_growth_kib: Option<i64>,
    /// How far apart those readings were.
    pub monitor_rss_seconds: Option<f64>,
    /// Ended early by Ctrl-C: the figures are what was gathered, not judged.
    pub interrupted: bool,
    /// Every condition met (see the soak's module docs).
    pub passed: bool,
}

/// The soak's own counts, beside the fleet and the check.
pub(super) struct Counts {
    /// How long the soak ran, until every child had exited.
    pub ran_for: Duration,
    /// Children running at any time.
    pub processes: u32,
    /// Alerts that reached the hub.
    pub alerts: u64,
    /// Events the hub dropped.
    pub hub_events_dropped: u64,
    /// Profiling windows opened.
    pub profiling_windows: u64,
    /// Profiles that came back.
    pub profiles: u64,
    /// Children that died unkilled, or did not confirm their exit and leave.
    pub unexpected_exits: usize,
}

impl Summary {
    /// The figures of a soak that ran to its end, judged.
    pub(super) fn new(counts: &Counts, fleet: &Fleet, outcome: &Outcome) -> Summary {
        let members = &fleet.members;
        let stats = || members.iter().filter_map(|m| m.stats.as_ref());
        let killed: Vec<_> = members.iter().filter(|m| m.killed).collect();
        // A crash survived: the hub reported the killed process gone once,
        // and its replacement connected.
        let survived = killed
            .iter()
            .filter(|dead| {
                dead.gone_reports == 1
                    && members.iter().any(|m| {
                        m.script.index == dead.script.index
                            && m.script.generation == dead.script.generation + 1
                            && m.connected
                    })
            })
            .count();
        let rss = members
            .iter()
            .filter_map(|m| Some((m, m.rss?)))
            .filter(|(_, rss)| !rss.span.is_zero())
            .max_by_key(|(_, rss)| rss.growth_kib());
        // Every latency; and those of hangs in warm processes (their first
        // alerts wait for the process's symbol tables to load).
        let all: Vec<Duration> = outcome.detections.iter().map(|d| d.latency).collect();
        let warm: Vec<Duration> = outcome
            .detections
            .iter()
            .filter(|d| d.at >= WARM_UP)
            .map(|d| d.latency)
            .collect();
        let mut summary = Summary {
            seconds: round(counts.ran_for.as_secs_f64()),
            processes: counts.processes,
            processes_started: members.len(),
            notifications: members.iter().map(|m| m.notifications).sum(),
            samples: stats().map(|s| s.samples).sum(),
            alerts: counts.alerts,
            alerts_dropped: stats().map(|s| s.alerts_dropped).sum::<u64>()
                + counts.hub_events_dropped,
            monitor_pauses: stats().map(|s| s.pauses).sum(),
            hangs_injected: outcome.injected,
            hangs_detected: outcome.detected,
            hangs_cut_short: outcome.cut_short,
            missed_hangs: outcome.missed(),
            false_alerts: outcome.false_alerts,
            missing_stacks: outcome.missing_stacks,
            detection_latency_p50_ms: percentile(&all, 0.5),
            worst_detection_latency_ms: percentile(&all, 1.0),
            worst_warm_detection_latency_ms: percentile(&warm, 1.0),
            profiling_windows: counts.profiling_windows,
            profiles: counts.profiles,
            child_kills: killed.len(),
            child_crashes_survived: survived,
            unexpected_exits: counts.unexpected_exits,
            monitor_rss_process: rss.map(|(m, _)| m.name()),
            monitor_rss_start_kib: rss.map(|(_, r)| r.start_kib),
            monitor_rss_end_kib: rss.map(|(_, r)| r.end_kib),
            monitor_rss_growth_kib: rss.map(|(_, r)| r.growth_kib()),
            monitor_rss_seconds: rss.map(|(_, r)| round(r.span.as_secs_f64())),
            interrupted: false,
            passed: false,
        };
        summary.passed = summary.missed_hangs == 0
            && summary.false_alerts == 0
            && summary.child_kills >= 1
            && summary.child_crashes_survived == summary.child_kills
            && summary.unexpected_exits == 0
            && summary
                .monitor_rss_growth_kib
                .is_some_and(|g| g < RSS_GROWTH_LIMIT_KIB);
        summary
    }
}

/// The `q` quantile of `latencies` (nearest rank), in milliseconds.
fn percentile(latencies: &[Duration], q: f64) -> Option<f64> {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).map(|l| round(l.as_secs_f64() * 1e3))
}

/// Three decimals are plenty.
fn round(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}
