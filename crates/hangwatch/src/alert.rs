//! What the monitor tells the program.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::component::ComponentId;
use crate::stack::{NoStack, Stack};

/// How far a hang has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangLevel {
    /// Busy past the transient timeout.
    Transient,
    /// Busy past the permanent timeout.
    Permanent,
}

/// What an alert says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum AlertKind {
    /// The activity has lasted longer than the transient timeout. Raised once per activity.
    Transient,
    /// The activity has lasted longer than the permanent timeout. Raised once per activity.
    Permanent,
    /// An activity that raised an alert is over: the component went back to
    /// waiting or started a new activity. `duration` is the hang's total length.
    Ended {
        /// The highest level the hang reached.
        worst: HangLevel,
    },
    /// The component's thread exited without unregistering. The monitor stops
    /// watching it; this is not a hang.
    ThreadExited,
    /// The stack of this component's earlier `of` alert, which left before
    /// its stack was ready (its `no_stack` said `follows`, or it carried only
    /// raw addresses). Every other field is that alert's (its `time`,
    /// `started_ns`, `raised_ns`, `duration`), but the stack: the
    /// symbolicated one, or the reason there is none.
    Stack {
        /// The level of the alert this completes.
        of: HangLevel,
    },
}

/// One alert from the monitor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Alert {
    /// The component this is about.
    pub component: ComponentId,
    /// What happened.
    #[serde(flatten)]
    pub kind: AlertKind,
    /// What the component said it was doing when the activity started.
    pub annotation: Option<Cow<'static, str>>,
    /// How long the component has been busy (for `Ended`, how long it was),
    /// not counting time the monitor judged to be a pause of the process.
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    /// The name of the component's thread, if it has one.
    pub thread: Option<Arc<str>>,
    /// When the monitor raised the alert.
    #[serde(rename = "time_unix_ms", with = "unix_millis")]
    pub time: SystemTime,
    /// When the activity began, in nanoseconds on hangwatch's monotonic
    /// clock ([`monotonic_ns`](crate::monotonic_ns)); `None` for
    /// `ThreadExited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ns: Option<u64>,
    /// When the monitor raised the alert, on the same clock: with
    /// `started_ns` and the component's timeouts, how late it was.
    #[serde(default)]
    pub raised_ns: u64,
    /// Raised more than the pause threshold after the deadline it is about:
    /// the monitor could not look in time (a loaded machine), and the hang
    /// may have ended by then (a late `Permanent` then carries no stack).
    /// `duration` and `started_ns` are exact either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// Where the hung thread was: on permanent alerts (and transient ones,
    /// if asked for), when it could be sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Stack>,
    /// Why an alert that should carry a stack does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_stack: Option<NoStack>,
}

impl Alert {
    /// An alert of `kind` about `component`, raised at `time` for a hang of
    /// `duration`, with nothing else known: no annotation, thread, clock
    /// readings or stack. For whoever builds alerts outside a monitor (a
    /// hub, a replay, a test), who then sets the public fields it knows.
    pub fn new(
        component: ComponentId,
        kind: AlertKind,
        duration: Duration,
        time: SystemTime,
    ) -> Alert {
        Alert {
            component,
            kind,
            annotation: None,
            duration,
            thread: None,
            time,
            started_ns: None,
            raised_ns: 0,
            late: false,
            stack: None,
            no_stack: None,
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            AlertKind::Transient => "transient hang",
            AlertKind::Permanent => "PERMANENT hang",
            AlertKind::Ended { .. } => "hang ended",
            AlertKind::ThreadExited => "thread exited without unregistering",
            AlertKind::Stack {
                of: HangLevel::Transient,
            } => "stack of the transient hang",
            AlertKind::Stack {
                of: HangLevel::Permanent,
            } => "stack of the PERMANENT hang",
        };
        write!(f, "{}: {what}", self.component)?;
        if let Some(annotation) = &self.annotation {
            write!(f, " in {annotation:?}")?;
        }
        match self.kind {
            AlertKind::ThreadExited | AlertKind::Stack { .. } => {}
            AlertKind::Ended { worst } => {
                let worst = match worst {
                    HangLevel::Transient => "transient",
                    HangLevel::Permanent => "permanent",
                };
                write!(f, " after {:.1?} (reached {worst})", self.duration)?;
            }
            _ => write!(f, ", busy for {:.1?}", self.duration)?,
        }
        if self.late {
            f.write_str(" (raised late)")?;
        }
        if let Some(thread) = &self.thread {
            write!(f, " [thread {thread}]")?;
        }
        if let Some(stack) = &self.stack {
            write!(f, "\n{stack}")?;
        }
        if let Some(no_stack) = &self.no_stack {
            write!(f, "\n    (no stack: {no_stack})")?;
        }
        Ok(())
    }
}

/// A duration as fractional milliseconds, the unit people read hang lengths in.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(duration.as_secs_f64() * 1e3)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1e3).map_err(serde::de::Error::custom)
    }
}

/// A wall-clock time as fractional milliseconds since the Unix epoch.
pub(crate) mod unix_millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        s.serialize_f64(since.as_secs_f64() * 1e3)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = f64::deserialize(d)?;
        let since = Duration::try_from_secs_f64(ms / 1e3).map_err(serde::de::Error::custom)?;
        UNIX_EPOCH.checked_add(since).ok_or_else(|| {
            serde::de::Error::custom(format!("time {ms} ms after 1970 is out of range"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_round_trips_through_json_with_stable_names() {
        let alert = Alert {
            component: ComponentId::new("layout", 2),
            kind: AlertKind::Ended {
                worst: HangLevel::Permanent,
            },
            annotation: Some("reflow".into()),
            duration: Duration::from_millis(1500),
            thread: Some("layout-2".into()),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            started_ns: Some(1_000),
            raised_ns: 1_501_000_000,
            late: false,
            stack: None,
            no_stack: Some(NoStack::Timeout),
        };
        let json = serde_json::to_value(&alert).unwrap();
        assert_eq!(json["kind"], "ended");
        assert_eq!(json["worst"], "permanent");
        assert_eq!(json["component"]["name"], "layout");
        assert_eq!(json["duration_ms"], 1500.0);
        assert_eq!(json["time_unix_ms"], 1_700_000_000_000.0);
        assert_eq!(json["no_stack"]["reason"], "timeout");
        assert!(json.get("stack").is_none());
        assert_eq!(json["started_ns"], 1_000);
        assert_eq!(json["raised_ns"], 1_501_000_000u64);
        assert!(json.get("late").is_none(), "only a late alert says so");
        let back: Alert = serde_json::from_value(json).unwrap();
        assert_eq!(back, alert);
    }

    #[test]
    fn an_absurd_time_is_an_error_not_a_panic() {
        let line = r#"{"component":{"name":"a","number":1},"kind":"transient","annotation":null,
            "duration_ms":1.0,"thread":null,"time_unix_ms":1e22}"#;
        let error = serde_json::from_str::<Alert>(line).unwrap_err();
        assert!(error.to_string().contains("out of range"), "{error}");
    }
}
