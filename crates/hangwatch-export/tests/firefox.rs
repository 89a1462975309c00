//! The Firefox Profiler profile has the structure the viewer reads: meta,
//! threads named after components, samples whose stacks resolve to the
//! function names given, at the right times, and hang markers with their data.

mod common;

use std::time::UNIX_EPOCH;

use common::*;
use hangwatch_export::firefox;
use serde_json::Value;

/// One thread of the profile JSON, with lookups through its tables.
struct Thread<'a>(&'a Value);

impl Thread<'_> {
    fn string(&self, index: &Value) -> &str {
        let index = index.as_u64().expect("a string index") as usize;
        self.0["stringArray"][index].as_str().expect("a string")
    }

    /// The function names of stack `index`, outermost first, walking the
    /// stack table's prefixes and resolving frame -> func -> name -> string.
    fn stack_names(&self, index: &Value) -> Vec<String> {
        let stacks = &self.0["stackTable"];
        let length = stacks["length"].as_u64().unwrap();
        let mut names = Vec::new();
        let mut index = index.clone();
        while let Some(i) = index.as_u64() {
            assert!(i < length, "stack {i} outside the stack table ({length})");
            let frame = &stacks["frame"][i as usize];
            let func = &self.0["frameTable"]["func"][frame.as_u64().unwrap() as usize];
            let name = &self.0["funcTable"]["name"][func.as_u64().unwrap() as usize];
            names.push(self.string(name).to_owned());
            index = stacks["prefix"][i as usize].clone();
        }
        names.reverse();
        names
    }

    /// Every sample: its absolute time in ms since the Unix epoch, and its
    /// stack's names, outermost first.
    fn samples(&self, start_ms: f64) -> Vec<(f64, Vec<String>)> {
        let samples = &self.0["samples"];
        let length = samples["length"].as_u64().unwrap() as usize;
        let mut time = start_ms;
        (0..length)
            .map(|i| {
                time += samples["timeDeltas"][i].as_f64().unwrap();
                (time, self.stack_names(&samples["stack"][i]))
            })
            .collect()
    }

    /// Every marker: name, data, start and end (ms since the reference).
    fn markers(&self) -> Vec<(&str, &Value, f64, f64)> {
        let markers = &self.0["markers"];
        let length = markers["length"].as_u64().unwrap() as usize;
        (0..length)
            .map(|i| {
                (
                    self.string(&markers["name"][i]),
                    &markers["data"][i],
                    markers["startTime"][i].as_f64().unwrap(),
                    markers["endTime"][i].as_f64().unwrap(),
                )
            })
            .collect()
    }
}

fn thread<'a>(profile: &'a Value, name: &str) -> Thread<'a> {
    let threads = profile["threads"].as_array().unwrap();
    let found: Vec<&Value> = threads.iter().filter(|t| t["name"] == name).collect();
    assert_eq!(found.len(), 1, "threads named {name}: {threads:#?}");
    Thread(found[0])
}

fn names(stack: &[&str]) -> Vec<String> {
    stack.iter().rev().map(|name| name.to_string()).collect()
}

fn unix_ms(time: std::time::SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1e3
}

#[test]
fn a_profile_becomes_one_process_with_a_thread_per_component() {
    let profile = profile();
    let json = firefox::from_profile("browser", 4242, &profile)
        .to_json()
        .unwrap();
    let value: Value = serde_json::from_str(&json).unwrap();

    let meta = &value["meta"];
    assert!(meta["version"].is_number(), "{meta}");
    assert!(meta["preprocessedProfileVersion"].is_number(), "{meta}");
    assert_eq!(meta["product"], "browser");
    assert_eq!(meta["interval"], 10.0);
    assert_eq!(meta["symbolicated"], true);
    let start_ms = meta["startTime"].as_f64().unwrap();
    assert!((start_ms - unix_ms(profile.start)).abs() < 1e-3);

    let threads = value["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 3);
    for thread in threads {
        assert_eq!(thread["processName"], "browser");
        assert_eq!(thread["pid"], "4242");
        assert_eq!(thread["isMainThread"], false);
    }

    for expected in &profile.threads {
        let thread = thread(&value, &expected.component.to_string());
        assert_eq!(thread.0["tid"], expected.tid.to_string());
        let samples = thread.samples(start_ms);
        assert_eq!(samples.len(), expected.samples.len());
        for ((time, stack), sample) in samples.iter().zip(&expected.samples) {
            let want = unix_ms(profile.start + sample.time);
            assert!((time - want).abs() < 1e-3, "sample at {time}, want {want}");
            let mut want: Vec<String> = profile
                .frames_of(sample)
                .map(|frame| frame.name().into_owned())
                .collect();
            want.reverse();
            assert_eq!(stack, &want);
        }
    }
    let layout = thread(&value, "layout#1");
    let samples = layout.samples(start_ms);
    assert_eq!(samples[0].1, names(LAYOUT_STACK));
    assert_eq!(samples[4].1, names(PAINT_STACK));
}

#[test]
fn hangs_are_interval_markers_with_level_annotation_and_duration() {
    let profile = profile();
    let value: Value = serde_json::from_str(
        &firefox::from_profile("browser", 1, &profile)
            .to_json()
            .unwrap(),
    )
    .unwrap();

    let layout = thread(&value, "layout#1");
    let markers = layout.markers();
    assert_eq!(markers.len(), 1);
    let (name, data, start, end) = markers[0];
    assert_eq!(name, "Hang: permanent");
    assert_eq!(data["type"], "HangwatchHang");
    assert_eq!(layout.string(&data["level"]), "permanent");
    assert_eq!(layout.string(&data["status"]), "ended");
    assert_eq!(data["annotation"], "reflow");
    assert_eq!(data["duration"], 1600.0);
    // Relative to the reference, which is the profile's start here.
    assert!((start - 100.0).abs() < 1e-6, "{start}");
    assert!((end - 1700.0).abs() < 1e-6, "{end}");

    let script = thread(&value, "script#1");
    let (name, data, _, _) = script.markers()[0];
    assert_eq!(name, "Hang: transient");
    assert_eq!(script.string(&data["status"]), "ongoing");
    assert_eq!(data["annotation"], "(none)");

    // The schema that tells the viewer how to show those fields.
    let schemas = value["meta"]["markerSchema"].as_array().unwrap();
    let schema = schemas
        .iter()
        .find(|s| s["name"] == "HangwatchHang")
        .expect("a schema for hang markers");
    let keys: Vec<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["level", "annotation", "status", "duration"]);
    assert_eq!(schema["fields"][3]["format"], "duration");
}

#[test]
fn alerts_without_a_profile_become_samples_and_markers() {
    let alerts = alerts();
    let value: Value =
        serde_json::from_str(&firefox::from_alerts("myapp", 7, &alerts).to_json().unwrap())
            .unwrap();
    let start_ms = value["meta"]["startTime"].as_f64().unwrap();
    // The earliest hang began 1 s after t0 (a 150 ms transient at 1.15 s).
    assert!((start_ms - unix_ms(t0() + ms(1000))).abs() < 1e-3);

    let layout = thread(&value, "layout#1");
    let samples = layout.samples(start_ms);
    let expected = [
        (2000, names(LAYOUT_STACK)),
        (6000, names(LAYOUT_STACK)),
        (9000, names(PAINT_STACK)),
    ];
    assert_eq!(samples.len(), expected.len());
    for ((time, stack), (at, names)) in samples.iter().zip(expected) {
        assert!((time - unix_ms(t0() + ms(at))).abs() < 1e-3);
        assert_eq!(stack, &names);
    }
    let markers: Vec<(String, f64, f64, f64)> = layout
        .markers()
        .into_iter()
        .map(|(name, data, start, end)| {
            (
                format!("{name} {}", layout.string(&data["status"])),
                data["duration"].as_f64().unwrap(),
                start,
                end,
            )
        })
        .collect();
    assert_eq!(
        markers,
        [
            ("Hang: permanent ended".to_owned(), 1600.0, 0.0, 1600.0),
            ("Hang: permanent ended".to_owned(), 1400.0, 4000.0, 5400.0),
            ("Hang: permanent ongoing".to_owned(), 1000.0, 7000.0, 8000.0),
        ]
    );

    let script = thread(&value, "script#1");
    assert_eq!(script.samples(start_ms).len(), 1);
    assert_eq!(script.markers().len(), 2);
    let network = thread(&value, "network#1");
    assert!(network.samples(start_ms).is_empty());
    assert!(network.markers().is_empty());
}

#[test]
fn several_processes_share_one_timeline() {
    let profile = profile();
    let alerts = alerts();
    let value: Value = serde_json::from_str(
        &firefox::Builder::new("browser")
            .profile("content", 11, &profile)
            .alerts("gpu", 12, &alerts)
            .build()
            .to_json()
            .unwrap(),
    )
    .unwrap();
    let threads = value["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 6);
    let processes: Vec<(&str, &str)> = threads
        .iter()
        .map(|t| {
            (
                t["processName"].as_str().unwrap(),
                t["pid"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        processes
            .iter()
            .filter(|p| **p == ("content", "11"))
            .count(),
        3
    );
    assert_eq!(processes.iter().filter(|p| **p == ("gpu", "12")).count(), 3);
    // The reference is the earlier start: the profile's, 500 ms after t0,
    // before the alerts' first hang at 1 s.
    let start_ms = value["meta"]["startTime"].as_f64().unwrap();
    assert!((start_ms - unix_ms(profile.start)).abs() < 1e-3);
    let gpu_layout = threads
        .iter()
        .find(|t| t["processName"] == "gpu" && t["name"] == "layout#1")
        .unwrap();
    let first_hang_start = gpu_layout["markers"]["startTime"][0].as_f64().unwrap();
    assert!(
        (first_hang_start - 500.0).abs() < 1e-6,
        "{first_hang_start}"
    );
}

#[test]
fn the_profile_writes_as_the_same_json() {
    let profile = firefox::from_profile("browser", 1, &profile());
    let mut written = Vec::new();
    profile.write(&mut written).unwrap();
    assert_eq!(
        String::from_utf8(written).unwrap(),
        profile.to_json().unwrap()
    );
}

#[test]
fn a_clock_before_1970_does_not_panic() {
    let mut profile = profile();
    profile.start = UNIX_EPOCH - std::time::Duration::from_secs(10);
    let value: Value =
        serde_json::from_str(&firefox::from_profile("p", 1, &profile).to_json().unwrap()).unwrap();
    assert_eq!(value["meta"]["startTime"], 0.0);
    assert_eq!(thread(&value, "layout#1").samples(0.0).len(), 5);
}
