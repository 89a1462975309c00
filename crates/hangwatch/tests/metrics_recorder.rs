//! The metrics integration (feature `metrics`): the monitor's counters,
//! gauge and histogram move as components register, hang, end their hangs,
//! get sampled, lose alerts and leave, as seen by `metrics-util`'s
//! debugging recorder installed as the global recorder.

mod common;

use std::collections::BTreeMap;
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};

use common::{expect_alert, ms, Puppet, Step};
use hangwatch::integrations::metrics::{
    ALERTS_DROPPED_TOTAL, HANGS_TOTAL, HANG_DURATION_SECONDS, MONITORED_COMPONENTS, SAMPLES_TOTAL,
};
use hangwatch::{AlertKind, ComponentId, HangLevel, Monitor, Timeouts};
use hangwatch_test_support::eventually;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Everything recorded so far, summed over snapshots (a snapshot hands out
/// what was recorded since the previous one): counters and gauges by
/// `name{label=value,...}`, histograms' values likewise.
#[derive(Default)]
struct Totals {
    values: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Vec<f64>>,
}

impl Totals {
    fn value(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(0.0)
    }
}

struct Recorded {
    snapshotter: Snapshotter,
    totals: Totals,
}

impl Recorded {
    /// Takes in what was recorded since the last call.
    fn update(&mut self) -> &Totals {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.totals.values.entry(name).or_default() += n as f64,
                DebugValue::Gauge(x) => *self.totals.values.entry(name).or_default() += x.0,
                DebugValue::Histogram(xs) => self
                    .totals
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(xs.into_iter().map(|x| x.0)),
            }
        }
        &self.totals
    }
}

/// The global recorder, installed once; holding the guard also keeps the
/// tests of this binary from moving the shared gauge under each other.
fn recorded() -> MutexGuard<'static, Recorded> {
    static RECORDED: OnceLock<Mutex<Recorded>> = OnceLock::new();
    RECORDED
        .get_or_init(|| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            recorder
                .install()
                .expect("no other recorder in this binary");
            Mutex::new(Recorded {
                snapshotter,
                totals: Totals::default(),
            })
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn gauge() -> String {
    format!("{MONITORED_COMPONENTS}{{}}")
}

#[inline(never)]
fn stuck_in_a_metered_function(released: &mpsc::Receiver<()>) {
    let _ = std::hint::black_box(released).recv();
}

#[test]
fn hangs_durations_samples_and_components_are_counted() {
    let mut recorded = recorded();
    let before_components = recorded.update().value(&gauge());
    let before_samples = recorded.update().value(&format!("{SAMPLES_TOTAL}{{}}"));

    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder()
        .symbolicate_deadline(common::GENEROUS)
        .start()
        .unwrap();
    let id = ComponentId::new("metered", 1);
    let (release, released) = mpsc::channel::<()>();
    let (registered, is_registered) = mpsc::channel();
    let hung = {
        let register = register.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            let handle = register
                .register_component(id, Timeouts::new(ms(50), ms(150)), None)
                .unwrap();
            registered.send(()).unwrap();
            let _busy = handle.activity("metered work");
            stuck_in_a_metered_function(&released);
        })
    };
    is_registered.recv().unwrap();
    control.stats().unwrap(); // the monitor has taken the registration in
    assert_eq!(recorded.update().value(&gauge()), before_components + 1.0);

    expect_alert(&alerts, &id, AlertKind::Transient);
    expect_alert(&alerts, &id, AlertKind::Permanent);
    drop(release);
    hung.join().unwrap();
    let ended = expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
    control.stats().unwrap(); // and the unregistration
    let totals = recorded.update();

    let hangs =
        |level: &str| totals.value(&format!("{HANGS_TOTAL}{{component=metered,level={level}}}"));
    assert_eq!(hangs("transient"), 1.0);
    assert_eq!(hangs("permanent"), 1.0);
    let durations = &totals.histograms[&format!("{HANG_DURATION_SECONDS}{{component=metered}}")];
    assert_eq!(durations, &[ended.duration.as_secs_f64()]);
    assert!(durations[0] >= 0.15);
    assert!(
        totals.value(&format!("{SAMPLES_TOTAL}{{}}")) > before_samples,
        "the permanent alert's stack was sampled"
    );
    assert_eq!(totals.value(&gauge()), before_components);
}

#[test]
fn dropped_alerts_exited_threads_and_an_ended_monitor_are_counted() {
    let mut recorded = recorded();
    let dropped_key = format!("{ALERTS_DROPPED_TOTAL}{{}}");
    let before_dropped = recorded.update().value(&dropped_key);
    let before_components = recorded.update().value(&gauge());

    // Room for one alert, and nobody reading: all but the last are dropped.
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder()
        .stacks(false)
        .alert_capacity(1)
        .start()
        .unwrap();
    let puppet = Puppet::spawn(
        &register,
        ComponentId::new("unread", 1),
        ms(30),
        ms(5_000),
        None,
    )
    .unwrap();
    for _ in 0..3 {
        puppet.step(Step::Activity("unread work"));
        std::thread::sleep(ms(80));
        puppet.step(Step::Wait);
    }
    // A thread that exits without unregistering leaves the gauge too.
    let vanished = Puppet::spawn(
        &register,
        ComponentId::new("vanished", 1),
        ms(30),
        ms(5_000),
        None,
    )
    .unwrap();
    vanished.step(Step::ForgetAndExit);
    vanished.join();
    // Wait for the monitor to retire the exited thread.
    let stats = eventually(
        common::GENEROUS,
        "the monitor to retire the exited thread",
        || control.stats().unwrap(),
        |stats| stats.threads_exited == 1,
    );
    assert!(stats.alerts_dropped >= 1, "{stats:?}");
    let totals = recorded.update();
    assert_eq!(
        totals.value(&dropped_key) - before_dropped,
        stats.alerts_dropped as f64
    );
    assert_eq!(
        totals.value(&gauge()),
        before_components + 1.0,
        "the puppet"
    );

    // The components still registered when the monitor ends leave the gauge.
    control.shutdown().unwrap();
    thread.join().unwrap();
    assert_eq!(recorded.update().value(&gauge()), before_components);
    drop((puppet, alerts));
}
