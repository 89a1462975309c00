//! Traces in the Chrome [Trace Event Format], for [Perfetto UI],
//! `chrome://tracing` and [speedscope].
//!
//! The file is the format's JSON object form, `{"traceEvents": [...]}`. Open
//! it at <https://ui.perfetto.dev> or in `chrome://tracing` (a timeline per
//! process and thread, the hangs as slices with their fields, the stacks
//! under them), or at <https://www.speedscope.app> (one profile per thread;
//! *Time Order* shows the stacks in time, *Left Heavy* and *Sandwich* where
//! the time went, by function).
//!
//! # Why this form of the format
//!
//! The format has two ways to put stacks in a trace: a `stackFrames` table
//! with `samples`, and complete events (`"ph": "X"`). Perfetto does not read
//! the first (its JSON importer ignores `samples`), and speedscope, given
//! both, reads only the samples and drops every other event; complete events
//! are read by all three viewers. So the samples are drawn as complete
//! events, one per frame, as a flame chart in time: the frames a thread's
//! consecutive samples share are one event, as long as the thread stayed
//! there. The trace is nothing but complete events and the metadata events
//! that name processes and threads (`"ph": "M"`), the part of the format
//! that speedscope imports.
//!
//! # What goes where
//!
//! | hangwatch | trace |
//! |---|---|
//! | a process (the name and pid given) | a `process_name` metadata event, with `process_sort_index` in the order given |
//! | a [`ProfiledThread`] (a component) | a thread of its process: a `thread_name` metadata event named after the component (`layout#1`), its tid the thread's OS id, `thread_sort_index` in the profile's order |
//! | a run of [`ProfileSample`]s | one complete event per frame, outermost first and outermost lowest; named as [`Frame::name`] says, category `program` for the program's frames and `runtime` for the rest ([`is_program_frame_name`]); no `args` (speedscope would add them to the name) |
//! | a [`HangMarker`] | a complete event named `Hang: permanent in "reflow"` (`Hang: transient` when it has no annotation), category `hang`, with `args` `level`, `annotation` (null when none), `status` (`ended` or `ongoing`) and `duration_ms`; the frames sampled during the hang nest under it |
//!
//! Alerts without a profile become a profile first
//! ([`profile_from_alerts`](crate::hangs::profile_from_alerts)): each alert's stack is a sample at the alert's
//! time, each hang a marker.
//!
//! # Time
//!
//! `ts` and `dur` are whole microseconds from the earliest start of the
//! processes given that have threads (`otherData.start_unix_ms` says when,
//! in milliseconds since the Unix epoch); processes line up on one
//! timeline. A sample stands for the time until its thread's next sample
//! when that comes within ten sampling intervals (ticks come late on a
//! loaded machine), else for one interval; one taken in a hang stands no
//! longer than the hang, which ended when its thread left the activity. A
//! profile without an interval
//! (one made from alerts) has a sample stand until the next one or the end
//! of the hang it was taken in, whichever is first (1 ms if it is in no
//! hang, and an ongoing hang is drawn 1 ms past its latest alert, where its
//! latest stack was seen): a stack is drawn from when it was seen, not
//! before.
//!
//! # Invariants
//!
//! - The events of one thread nest: two either do not overlap or one holds
//!   the other. A sample's time is cut where a hang starts or ends; a hang
//!   that a profile says began before the one before it ended is drawn from
//!   that end (its `duration_ms` stays what the profile says). The frames
//!   right after a hang begin 1 µs after it ends, so that no frame ends
//!   where another of the same name begins (which speedscope misreads).
//! - Every thread has a tid of its own in its process: a tid of 0 (alerts
//!   carry none) or one taken by an earlier component is replaced by the
//!   smallest number from 1 that no thread of the process has. Likewise a
//!   pid of 0 (not known) or one an earlier process has is replaced by the
//!   smallest number from 1 that no process has.
//! - Events are ordered by process, thread, start, then depth; the same
//!   input always gives the same text.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use hangwatch::{Frame, Stack};
//! use hangwatch::{ComponentId, HangLevel, HangMarker, Profile, ProfiledThread};
//! use hangwatch_export::trace_event;
//!
//! let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut profile = Profile::new(start, Duration::from_millis(10));
//! let frame = |name: &str| Frame { function: Some(name.into()), ..Frame::default() };
//! let stuck = Stack { frames: vec![frame("myapp::reflow"), frame("myapp::run")], ..Stack::default() };
//! let samples = (0..3).map(|i| profile.sample(Duration::from_millis(10 * i), &stuck)).collect();
//! profile.threads = vec![ProfiledThread {
//!     component: ComponentId::new("layout", 1),
//!     thread: Some("layout".into()),
//!     tid: 4243,
//!     samples,
//!     hangs: vec![HangMarker {
//!         start: Duration::ZERO,
//!         duration: Duration::from_millis(30),
//!         level: HangLevel::Permanent,
//!         annotation: Some("reflow".into()),
//!         ended: true,
//!     }],
//! }];
//! let json = trace_event::from_profile("browser", 4242, &profile).to_json()?;
//! let trace: serde_json::Value = serde_json::from_str(&json)?;
//! let events = trace["traceEvents"].as_array().unwrap();
//! let named = |name: &str| events.iter().find(|e| e["name"] == name).unwrap();
//! assert_eq!(named("thread_name")["args"]["name"], "layout#1");
//! assert_eq!(named("Hang: permanent in \"reflow\"")["dur"], 30_000);
//! // Three samples in one place: one event per frame, under the hang.
//! assert_eq!(named("myapp::reflow")["dur"], 30_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [Trace Event Format]: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
//! [Perfetto UI]: https://ui.perfetto.dev
//! [speedscope]: https://www.speedscope.app
//! [`ProfileSample`]: hangwatch::ProfileSample
//! [`Frame::name`]: hangwatch::Frame::name
//! [`is_program_frame_name`]: hangwatch::is_program_frame_name

mod timeline;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hangwatch::{Alert, HangMarker, Profile, ProfiledThread};
use serde::Serialize;

use crate::error::ExportError;
use crate::hangs::Process;

/// Gathers processes, then builds one trace of them all.
#[derive(Clone, Debug, Default)]
pub struct Builder<'a> {
    processes: Vec<Process<'a>>,
}

impl<'a> Builder<'a> {
    /// A builder with no process yet.
    pub fn new() -> Builder<'a> {
        Builder::default()
    }

    /// Adds a process named `name` with id `pid` (0 if not known), with the
    /// threads, samples and hangs of `profile`.
    pub fn profile(mut self, name: impl Into<String>, pid: u32, profile: &'a Profile) -> Self {
        self.processes.push(Process::of_profile(name, pid, profile));
        self
    }

    /// Adds a process named `name` with id `pid` (0 if not known), with what
    /// `alerts` say (see [`profile_from_alerts`](crate::hangs::profile_from_alerts)).
    pub fn alerts(mut self, name: impl Into<String>, pid: u32, alerts: &[Alert]) -> Self {
        self.processes.push(Process::of_alerts(name, pid, alerts));
        self
    }

    /// The trace of every process added.
    pub fn build(&self) -> Trace {
        // A process without threads has nothing on the timeline (and one
        // made from no alerts says it started in 1970).
        let reference = self
            .processes
            .iter()
            .filter(|process| !process.profile.threads.is_empty())
            .map(|process| process.profile.start)
            .min()
            .unwrap_or(UNIX_EPOCH);
        let pids = own_ids(self.processes.iter().map(|process| process.pid));
        let mut events = Vec::new();
        for (index, (process, pid)) in self.processes.iter().zip(pids).enumerate() {
            events.push(Event::metadata(
                "process_name",
                pid,
                0,
                Args::name(&process.name),
            ));
            events.push(Event::metadata(
                "process_sort_index",
                pid,
                0,
                Args::sort(index),
            ));
            let profile = &process.profile;
            let offset = profile.start.duration_since(reference).unwrap_or_default();
            let tids = own_ids(profile.threads.iter().map(|thread| thread.tid));
            for (index, (thread, tid)) in profile.threads.iter().zip(tids).enumerate() {
                let name = thread.component.to_string();
                events.push(Event::metadata("thread_name", pid, tid, Args::name(&name)));
                events.push(Event::metadata(
                    "thread_sort_index",
                    pid,
                    tid,
                    Args::sort(index),
                ));
                events.extend(thread_events(pid, tid, offset, profile, thread));
            }
        }
        Trace {
            events,
            start: reference,
        }
    }
}

/// A trace of one process, from `profile`.
pub fn from_profile(process: &str, pid: u32, profile: &Profile) -> Trace {
    Builder::new().profile(process, pid, profile).build()
}

/// A trace of one process, from `alerts` (see [`profile_from_alerts`](crate::hangs::profile_from_alerts)).
pub fn from_alerts(process: &str, pid: u32, alerts: &[Alert]) -> Trace {
    Builder::new().alerts(process, pid, alerts).build()
}

/// A trace, ready to be written as JSON.
#[derive(Clone, Debug)]
pub struct Trace {
    events: Vec<Event>,
    start: SystemTime,
}

impl Trace {
    /// The trace as JSON text.
    pub fn to_json(&self) -> Result<String, ExportError> {
        Ok(serde_json::to_string(&self.file())?)
    }

    /// Writes the trace to `out` as JSON.
    pub fn write(&self, mut out: impl Write) -> Result<(), ExportError> {
        serde_json::to_writer(&mut out, &self.file())?;
        out.flush()?;
        Ok(())
    }

    fn file(&self) -> File<'_> {
        let since_epoch = self.start.duration_since(UNIX_EPOCH).unwrap_or_default();
        File {
            trace_events: &self.events,
            display_time_unit: "ms",
            other_data: OtherData {
                producer: "hangwatch",
                start_unix_ms: since_epoch.as_secs_f64() * 1e3,
            },
        }
    }
}

/// The JSON object form of the format.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct File<'a> {
    trace_events: &'a [Event],
    display_time_unit: &'static str,
    other_data: OtherData,
}

#[derive(Serialize)]
struct OtherData {
    producer: &'static str,
    start_unix_ms: f64,
}

/// One event: metadata (`M`) or complete (`X`).
#[derive(Clone, Debug, Serialize)]
struct Event {
    name: String,
    ph: &'static str,
    pid: u32,
    tid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<Args>,
}

impl Event {
    fn metadata(name: &str, pid: u32, tid: u32, args: Args) -> Event {
        Event {
            name: name.to_owned(),
            ph: "M",
            pid,
            tid,
            ts: None,
            dur: None,
            cat: None,
            args: Some(args),
        }
    }
}

/// The `args` of an event.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
enum Args {
    Name {
        name: String,
    },
    Sort {
        sort_index: usize,
    },
    Hang {
        level: &'static str,
        annotation: Option<String>,
        status: &'static str,
        duration_ms: f64,
    },
}

impl Args {
    fn name(name: &str) -> Args {
        Args::Name {
            name: name.to_owned(),
        }
    }

    fn sort(sort_index: usize) -> Args {
        Args::Sort { sort_index }
    }

    fn hang(hang: &HangMarker) -> Args {
        Args::Hang {
            level: level(hang),
            annotation: hang.annotation.clone(),
            status: if hang.ended { "ended" } else { "ongoing" },
            // Whole microseconds: what the trace's times hold.
            duration_ms: micros(hang.duration) as f64 / 1e3,
        }
    }
}

fn level(hang: &HangMarker) -> &'static str {
    match hang.level {
        hangwatch::HangLevel::Transient => "transient",
        hangwatch::HangLevel::Permanent => "permanent",
    }
}

/// A hang's slice name: `Hang: permanent in "reflow"`.
fn hang_name(hang: &HangMarker) -> String {
    match &hang.annotation {
        Some(annotation) => format!("Hang: {} in {annotation:?}", level(hang)),
        None => format!("Hang: {}", level(hang)),
    }
}

/// `ids` with each 0 or repeated one replaced by the smallest number from 1
/// that none of them is and no earlier replacement took.
fn own_ids(ids: impl Iterator<Item = u32> + Clone) -> Vec<u32> {
    let mut taken: BTreeSet<u32> = ids.clone().filter(|&id| id != 0).collect();
    let mut seen = BTreeSet::new();
    let mut next = 1;
    ids.map(|id| {
        if id != 0 && seen.insert(id) {
            return id;
        }
        while taken.contains(&next) {
            next += 1;
        }
        taken.insert(next);
        seen.insert(next);
        next
    })
    .collect()
}

/// The complete events of `thread` (of a process with id `pid`, its thread
/// given `tid`), whose times count from `offset` after the trace's start:
/// its hangs and its samples, ordered by start, then depth.
fn thread_events(
    pid: u32,
    tid: u32,
    offset: Duration,
    profile: &Profile,
    thread: &ProfiledThread,
) -> Vec<Event> {
    let slices = timeline::slices(profile, thread);
    let mut events: Vec<(usize, Event)> = slices
        .into_iter()
        .filter_map(|slice| {
            let ts = micros(offset.saturating_add(slice.start));
            let dur = micros(offset.saturating_add(slice.end)).saturating_sub(ts);
            let (name, cat, args) = match slice.what {
                timeline::What::Hang(hang) => (hang_name(hang), "hang", Some(Args::hang(hang))),
                // A frame shorter than a microsecond says nothing.
                timeline::What::Frame { .. } if dur == 0 => return None,
                timeline::What::Frame { name, program } => {
                    (name, if program { "program" } else { "runtime" }, None)
                }
            };
            let event = Event {
                name,
                ph: "X",
                pid,
                tid,
                ts: Some(ts),
                dur: Some(dur),
                cat: Some(cat),
                args,
            };
            Some((slice.depth, event))
        })
        .collect();
    events.sort_by_key(|(depth, event)| (event.ts, *depth, event.dur));
    events.into_iter().map(|(_, event)| event).collect()
}

/// Whole microseconds of `time`.
fn micros(time: Duration) -> u64 {
    u64::try_from(time.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
