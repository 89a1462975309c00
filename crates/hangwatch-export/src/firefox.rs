//! Profiles for the [Firefox Profiler](https://profiler.firefox.com), in its
//! *processed* format, written with [`fxprof-processed-profile`].
//!
//! Load the JSON file at <https://profiler.firefox.com> ("Load a profile from
//! file"); nothing is uploaded unless you ask. You get a timeline per
//! component with its samples and its hangs, a call tree and a flame graph
//! of the samples, and a marker table of the hangs.
//!
//! # What goes where
//!
//! | hangwatch | Firefox Profiler |
//! |---|---|
//! | a program (or, later, each child process) | a process, with the name and pid given |
//! | a [`ProfiledThread`] (a component) | a thread named after the component: `script#1` |
//! | a [`ProfileSample`] | a sample at `Profile::start + sample.time`, with its stack |
//! | a [`Frame`] | a frame and function named as [`Frame::name`](hangwatch::Frame::name) says; the program's frames in the *Program* category (blue), runtime and library ones in *Runtime* (grey) (see [`Frame::is_programs`](hangwatch::Frame::is_programs)) |
//! | a [`HangMarker`] | an interval marker from `start` to `start + duration` named `Hang: transient` or `Hang: permanent`, in the *Hang* category (red), with the fields `level`, `annotation`, `status` (`ended` or `ongoing`) and `duration` |
//!
//! Alerts without a profile become a profile first
//! ([`profile_from_alerts`](crate::hangs::profile_from_alerts)): each alert with a stack is a sample at the
//! alert's time, and each hang (an `ended` alert, or a hang still going at
//! the last alert) a marker.
//!
//! # Invariants
//!
//! - Times are relative to one reference, the earliest start of all the
//!   processes given, so processes line up on one timeline.
//! - Frames are labels with their names: the profile is symbolicated and the
//!   viewer asks no symbol server. The format of this crate version has no
//!   file and line for label frames, so those are not in the profile.
//! - hangwatch does not measure CPU time; the format wants it per sample, so
//!   each sample claims the wall time since its thread's previous sample (the
//!   sampling interval for the first), which draws the activity graph as if
//!   no CPU figures were given.
//! - A profile whose sampling interval is zero (one made from alerts) says
//!   1 ms instead, since the viewer divides by it.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use hangwatch::{ComponentId, HangLevel, HangMarker, Profile, ProfiledThread};
//! use hangwatch_export::firefox;
//!
//! let mut profile = Profile::new(
//!     SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
//!     Duration::from_millis(1),
//! );
//! profile.duration = Duration::from_secs(2);
//! profile.threads = vec![ProfiledThread {
//!         component: ComponentId::new("layout", 1),
//!         thread: Some("layout".into()),
//!         tid: 4242,
//!         samples: Vec::new(),
//!         hangs: vec![HangMarker {
//!             start: Duration::from_millis(200),
//!             duration: Duration::from_millis(1600),
//!             level: HangLevel::Permanent,
//!             annotation: Some("reflow".into()),
//!             ended: true,
//!         }],
//!     }];
//! // One process now; `Builder` takes more.
//! let json = firefox::Builder::new("browser")
//!     .profile("browser", 4242, &profile)
//!     .build()
//!     .to_json()?;
//! let value: serde_json::Value = serde_json::from_str(&json)?;
//! assert_eq!(value["threads"][0]["name"], "layout#1");
//! assert_eq!(value["threads"][0]["processName"], "browser");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`fxprof-processed-profile`]: https://docs.rs/fxprof-processed-profile

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fx::{
    CategoryColor, CategoryHandle, CpuDelta, FrameFlags, FrameInfo, MarkerFieldFlags,
    MarkerFieldFormat, MarkerLocations, MarkerTiming, ReferenceTimestamp, SamplingInterval,
    StaticSchemaMarker, StaticSchemaMarkerField, StringHandle, Timestamp,
};
use fxprof_processed_profile as fx;
use hangwatch::{Alert, Frame, HangLevel, HangMarker, Profile, ProfileSample, ProfiledThread};

use crate::error::ExportError;
use crate::hangs::Process;

/// Gathers processes, then builds one Firefox Profiler profile of them all.
#[derive(Clone, Debug)]
pub struct Builder<'a> {
    product: String,
    processes: Vec<Process<'a>>,
}

impl<'a> Builder<'a> {
    /// A builder for a profile of `product`: the program, as the viewer's
    /// title shows it.
    pub fn new(product: impl Into<String>) -> Builder<'a> {
        Builder {
            product: product.into(),
            processes: Vec::new(),
        }
    }

    /// Adds a process named `name` with id `pid`, with the threads,
    /// samples and hangs of `profile`.
    pub fn profile(mut self, name: impl Into<String>, pid: u32, profile: &'a Profile) -> Self {
        self.processes.push(Process::of_profile(name, pid, profile));
        self
    }

    /// Adds a process named `name` with id `pid`, with what `alerts` say
    /// (see [`profile_from_alerts`](crate::hangs::profile_from_alerts)).
    pub fn alerts(mut self, name: impl Into<String>, pid: u32, alerts: &[Alert]) -> Self {
        self.processes.push(Process::of_alerts(name, pid, alerts));
        self
    }

    /// The profile of every process added.
    pub fn build(&self) -> FirefoxProfile {
        let reference = self
            .processes
            .iter()
            .map(|process| process.profile.start)
            .min()
            .unwrap_or(UNIX_EPOCH);
        let interval = self
            .processes
            .iter()
            .map(|process| process.profile.interval)
            .find(|interval| !interval.is_zero())
            .unwrap_or(Duration::from_millis(1));
        // A time before 1970 (a clock gone wrong) is said to be 1970, where
        // `from_system_time` would panic; times stay relative to `reference`.
        let since_epoch = reference.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut profile = fx::Profile::new(
            &self.product,
            ReferenceTimestamp::from_duration_since_unix_epoch(since_epoch),
            SamplingInterval::from(interval),
        );
        profile.set_symbolicated(true);
        let mut writer = Writer {
            categories: Categories {
                program: profile.add_category("Program", CategoryColor::Blue),
                runtime: profile.add_category("Runtime", CategoryColor::Gray),
                hang: profile.add_category("Hang", CategoryColor::Red),
            },
            profile,
            reference,
            interval,
        };
        for process in &self.processes {
            writer.add_process(process);
        }
        FirefoxProfile(writer.profile)
    }
}

/// A profile of one program with one process, from `profile`.
pub fn from_profile(program: &str, pid: u32, profile: &Profile) -> FirefoxProfile {
    Builder::new(program).profile(program, pid, profile).build()
}

/// A profile of one program with one process, from `alerts` (see
/// [`profile_from_alerts`](crate::hangs::profile_from_alerts)).
pub fn from_alerts(program: &str, pid: u32, alerts: &[Alert]) -> FirefoxProfile {
    Builder::new(program).alerts(program, pid, alerts).build()
}

/// A Firefox Profiler profile, ready to be written as JSON.
#[derive(Debug)]
pub struct FirefoxProfile(fx::Profile);

impl FirefoxProfile {
    /// The profile as JSON text.
    pub fn to_json(&self) -> Result<String, ExportError> {
        Ok(serde_json::to_string(&self.0)?)
    }

    /// Writes the profile to `out` as JSON.
    pub fn write(&self, mut out: impl Write) -> Result<(), ExportError> {
        serde_json::to_writer(&mut out, &self.0)?;
        out.flush()?;
        Ok(())
    }
}

/// The categories frames and markers are filed under.
struct Categories {
    program: CategoryHandle,
    runtime: CategoryHandle,
    hang: CategoryHandle,
}

/// What adding processes to the profile needs at hand.
struct Writer {
    profile: fx::Profile,
    categories: Categories,
    reference: SystemTime,
    interval: Duration,
}

impl Writer {
    fn add_process(&mut self, process: &Process<'_>) {
        let start = process.profile.start;
        let offset = start.duration_since(self.reference).unwrap_or_default();
        let handle = self
            .profile
            .add_process(&process.name, process.pid, timestamp(offset));
        for thread in &process.profile.threads {
            self.add_thread(handle, offset, &process.profile, thread);
        }
    }

    /// Adds `thread`, whose times count from `offset` after the reference.
    fn add_thread(
        &mut self,
        process: fx::ProcessHandle,
        offset: Duration,
        profile: &Profile,
        thread: &ProfiledThread,
    ) {
        let handle = self
            .profile
            .add_thread(process, thread.tid, timestamp(offset), false);
        self.profile
            .set_thread_name(handle, &thread.component.to_string());
        self.profile
            .set_thread_show_markers_in_timeline(handle, true);
        let mut previous = None;
        for sample in &thread.samples {
            let cpu = previous.map_or(self.interval, |p| sample.time.saturating_sub(p));
            previous = Some(sample.time);
            self.add_sample(handle, offset, profile, sample, cpu);
        }
        for hang in &thread.hangs {
            self.add_hang(handle, offset, hang);
        }
    }

    fn add_sample(
        &mut self,
        thread: fx::ThreadHandle,
        offset: Duration,
        profile: &Profile,
        sample: &ProfileSample,
        cpu: Duration,
    ) {
        // Outermost first, as the format builds stacks from their root.
        let mut frames: Vec<&Frame> = profile.frames_of(sample).collect();
        frames.reverse();
        let frames: Vec<FrameInfo> = frames
            .into_iter()
            .map(|frame| {
                let name = frame.name();
                let category = if frame.is_programs() {
                    self.categories.program
                } else {
                    self.categories.runtime
                };
                FrameInfo {
                    frame: fx::Frame::Label(self.profile.intern_string(&name)),
                    category_pair: category.into(),
                    flags: FrameFlags::empty(),
                }
            })
            .collect();
        let stack = self.profile.intern_stack_frames(thread, frames.into_iter());
        self.profile.add_sample(
            thread,
            timestamp(offset.saturating_add(sample.time)),
            stack,
            CpuDelta::from(cpu),
            1,
        );
    }

    fn add_hang(&mut self, thread: fx::ThreadHandle, offset: Duration, hang: &HangMarker) {
        let level = match hang.level {
            HangLevel::Transient => "transient",
            HangLevel::Permanent => "permanent",
        };
        let marker = Hang {
            name: self.profile.intern_string(&format!("Hang: {level}")),
            category: self.categories.hang,
            level: self.profile.intern_string(level),
            annotation: self
                .profile
                .intern_string(hang.annotation.as_deref().unwrap_or("(none)")),
            status: self
                .profile
                .intern_string(if hang.ended { "ended" } else { "ongoing" }),
            duration_ms: hang.duration.as_secs_f64() * 1e3,
        };
        let start = offset.saturating_add(hang.start);
        let timing = MarkerTiming::Interval(
            timestamp(start),
            timestamp(start.saturating_add(hang.duration)),
        );
        self.profile.add_marker(thread, timing, marker);
    }
}

/// A time `since` the profile's reference.
fn timestamp(since: Duration) -> Timestamp {
    Timestamp::from_nanos_since_reference(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// A hang marker's data: what the viewer's tooltip, marker chart and marker
/// table show.
struct Hang {
    name: StringHandle,
    category: CategoryHandle,
    level: StringHandle,
    annotation: StringHandle,
    status: StringHandle,
    duration_ms: f64,
}

impl StaticSchemaMarker for Hang {
    const UNIQUE_MARKER_TYPE_NAME: &'static str = "HangwatchHang";
    const DESCRIPTION: Option<&'static str> =
        Some("A component stayed busy past its hang timeout, as hangwatch reported.");
    const LOCATIONS: MarkerLocations = MarkerLocations::MARKER_CHART
        .union(MarkerLocations::MARKER_TABLE)
        .union(MarkerLocations::TIMELINE_OVERVIEW);
    const CHART_LABEL: Option<&'static str> = Some("{marker.data.annotation}");
    const TOOLTIP_LABEL: Option<&'static str> =
        Some("{marker.name} in {marker.data.annotation}, {marker.data.duration}");
    const TABLE_LABEL: Option<&'static str> =
        Some("{marker.name} in {marker.data.annotation} ({marker.data.status})");
    const FIELDS: &'static [StaticSchemaMarkerField] = &[
        StaticSchemaMarkerField {
            key: "level",
            label: "Level",
            format: MarkerFieldFormat::String,
            flags: MarkerFieldFlags::SEARCHABLE,
        },
        StaticSchemaMarkerField {
            key: "annotation",
            label: "Annotation",
            format: MarkerFieldFormat::SanitizedString,
            flags: MarkerFieldFlags::SEARCHABLE,
        },
        StaticSchemaMarkerField {
            key: "status",
            label: "Status",
            format: MarkerFieldFormat::String,
            flags: MarkerFieldFlags::SEARCHABLE,
        },
        StaticSchemaMarkerField {
            key: "duration",
            label: "Duration",
            format: MarkerFieldFormat::Duration,
            flags: MarkerFieldFlags::empty(),
        },
    ];

    fn name(&self, _profile: &mut fx::Profile) -> StringHandle {
        self.name
    }

    fn category(&self, _profile: &mut fx::Profile) -> CategoryHandle {
        self.category
    }

    /// Indexes are those of `FIELDS`; the string fields are 0 to 2.
    fn string_field_value(&self, field_index: u32) -> StringHandle {
        match field_index {
            0 => self.level,
            1 => self.annotation,
            _ => self.status,
        }
    }

    /// The one number field is the duration, in milliseconds.
    fn number_field_value(&self, _field_index: u32) -> f64 {
        self.duration_ms
    }
}
