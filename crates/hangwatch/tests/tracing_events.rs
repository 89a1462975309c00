//! The tracing integration (feature `tracing`): every alert is also an event
//! with target `hangwatch`, at WARN (transient), ERROR (permanent) or INFO
//! (ended, thread exited), with structured fields, captured here by a test
//! subscriber layer installed as the global default.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{mpsc, Mutex, OnceLock};

use common::{expect_alert, ms};
use hangwatch::{AlertKind, ComponentId, HangLevel, Monitor, Timeouts};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One captured event.
#[derive(Clone, Debug)]
struct Captured {
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Keeps every event it sees.
struct Collect;

impl<S: Subscriber> Layer<S> for Collect {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        events().lock().unwrap().push(Captured {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields: fields.0,
        });
    }
}

fn events() -> &'static Mutex<Vec<Captured>> {
    static EVENTS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());
    &EVENTS
}

/// Installs the collecting subscriber as the global default, once: the
/// monitor emits from its own thread, which has no scoped subscriber.
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Collect))
            .expect("no other global subscriber in this test binary");
    });
}

/// The events about `component` (`name#number`), in order.
fn events_about(component: &str) -> Vec<Captured> {
    events()
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.field("component") == Some(component))
        .cloned()
        .collect()
}

#[inline(never)]
fn stuck_in_a_traced_function(released: &mpsc::Receiver<()>) {
    let _ = std::hint::black_box(released).recv();
}

#[test]
fn each_alert_is_an_event_with_its_level_and_fields() {
    install();
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .symbolicate_deadline(common::GENEROUS)
        .start()
        .unwrap();
    let id = ComponentId::new("traced", 1);
    let (release, released) = mpsc::channel::<()>();
    let hung = {
        let register = register.clone();
        let id = id.clone();
        std::thread::Builder::new()
            .name("traced-thread".into())
            .spawn(move || {
                let handle = register
                    .register_component(id, Timeouts::new(ms(50), ms(200)), None)
                    .unwrap();
                let _busy = handle.activity("parse");
                stuck_in_a_traced_function(&released);
            })
            .unwrap()
    };
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

    // The events left the monitor before the alerts did.
    let seen = events_about("traced#1");
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let (transient, permanent, end) = (&seen[0], &seen[1], &seen[2]);
    for event in &seen {
        assert_eq!(event.target, "hangwatch");
        assert_eq!(event.field("annotation"), Some("parse"));
        assert_eq!(event.field("thread"), Some("traced-thread"));
        assert!(event.field("duration_ms").is_some(), "{event:?}");
    }

    assert_eq!(transient.level, Level::WARN);
    assert_eq!(transient.field("kind"), Some("transient"));
    assert_eq!(transient.field("level"), Some("transient"));
    assert_eq!(transient.field("message"), Some("transient hang"));
    assert!(transient.field("top_frame").is_none(), "no stack, no frame");
    let busy: f64 = transient.field("duration_ms").unwrap().parse().unwrap();
    assert!(busy >= 50.0, "{transient:?}");

    assert_eq!(permanent.level, Level::ERROR);
    assert_eq!(permanent.field("kind"), Some("permanent"));
    assert_eq!(permanent.field("level"), Some("permanent"));
    let top = permanent.field("top_frame").unwrap_or_default();
    assert!(
        top.ends_with("stuck_in_a_traced_function"),
        "the top frame should be the test's own function, not std's: {permanent:?}"
    );

    assert_eq!(end.level, Level::INFO);
    assert_eq!(end.field("kind"), Some("ended"));
    assert_eq!(end.field("level"), Some("permanent"));
    let lasted: f64 = end.field("duration_ms").unwrap().parse().unwrap();
    assert!((lasted - ended.duration.as_secs_f64() * 1e3).abs() < 1e-6);
}

#[test]
fn a_thread_that_exits_without_unregistering_is_an_info_event() {
    install();
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("vanished", 7);
    {
        let register = register.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            let handle = register
                .register_component(id, Timeouts::new(ms(50), ms(200)), None)
                .unwrap();
            std::mem::forget(handle);
        })
        .join()
        .unwrap();
    }
    expect_alert(&alerts, &id, AlertKind::ThreadExited);
    let seen = events_about("vanished#7");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].level, Level::INFO);
    assert_eq!(seen[0].field("kind"), Some("thread_exited"));
    assert!(seen[0].field("level").is_none());
    assert_eq!(
        seen[0].field("message"),
        Some("thread exited without unregistering")
    );
}
