//! Alerts that were read (from JSON lines, or from a child) are written back
//! as JSON lines and read again: what hangwatch accepted, it can keep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hangwatch::Alert;
use hangwatch_export::jsonl;

/// Writes `alerts` as JSON lines, reads them back, and asserts that every
/// one comes back, equal but for the rounding of its times to `f64`
/// milliseconds.
pub fn alerts_read_back(alerts: &[Alert]) {
    let text = jsonl::to_string(alerts).expect("alerts that were read can be written");
    let read = jsonl::read(text.as_bytes()).expect("reading from memory does not fail");
    assert!(
        read.errors.is_empty(),
        "alerts written by hangwatch do not read back: {:?}\n{text}",
        read.errors
    );
    assert_eq!(read.alerts.len(), alerts.len(), "{text}");
    for (before, after) in alerts.iter().zip(&read.alerts) {
        let exact = {
            let mut alert = after.clone();
            alert.duration = before.duration;
            alert.time = before.time;
            alert
        };
        assert_eq!(&exact, before, "{text}");
        assert!(
            close(before.duration, after.duration),
            "duration {:?} read back as {:?}",
            before.duration,
            after.duration
        );
        assert!(
            close(since_epoch(before.time), since_epoch(after.time)),
            "time {:?} read back as {:?}",
            before.time,
            after.time
        );
    }
}

/// Within a microsecond, or a part in 10^12 of the larger: what two trips
/// through an `f64` of milliseconds can change.
fn close(a: Duration, b: Duration) -> bool {
    let difference = a.abs_diff(b);
    difference <= Duration::from_micros(1)
        || difference.as_secs_f64() <= a.max(b).as_secs_f64() * 1e-12
}

fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}
