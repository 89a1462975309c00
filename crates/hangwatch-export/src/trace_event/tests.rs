//! The trace read back as JSON: tracks, samples as nested slices, hangs.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use hangwatch::{
    Alert, AlertKind, ComponentId, Frame, HangLevel, HangMarker, Profile, ProfiledThread, Stack,
};
use serde_json::Value;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A stack of `names`, innermost first.
fn stack(names: &[&str]) -> Stack {
    let frame = |name: &&str| Frame {
        function: Some((*name).into()),
        ..Frame::default()
    };
    Stack {
        frames: names.iter().map(frame).collect(),
        ..Stack::default()
    }
}

const REFLOW: &[&str] = &["syscall", "myapp::layout::reflow", "myapp::layout::run"];
const IDLE: &[&str] = &["syscall", "myapp::layout::wait", "myapp::layout::run"];

/// A layout thread sampled every 10 ms from 0: idle twice, stuck in reflow
/// five times (in a permanent hang from 20 ms to 70 ms), idle again; and a
/// script thread with no samples.
fn profile(start_ms: u64) -> Profile {
    let mut profile = Profile::new(UNIX_EPOCH + ms(1_000_000 + start_ms), ms(10));
    let stacks = [IDLE, IDLE, REFLOW, REFLOW, REFLOW, REFLOW, REFLOW, IDLE];
    let samples = stacks
        .iter()
        .enumerate()
        .map(|(i, names)| profile.sample(ms(10 * i as u64), &stack(names)))
        .collect();
    profile.threads = vec![
        ProfiledThread {
            component: ComponentId::new("layout", 1),
            thread: Some("layout".into()),
            tid: 102,
            samples,
            hangs: vec![HangMarker {
                start: ms(20),
                duration: ms(50),
                level: HangLevel::Permanent,
                annotation: Some("reflow".into()),
                ended: true,
            }],
        },
        ProfiledThread {
            component: ComponentId::new("script", 1),
            thread: Some("script".into()),
            tid: 101,
            samples: Vec::new(),
            hangs: Vec::new(),
        },
    ];
    profile
}

fn parse(trace: &Trace) -> Vec<Value> {
    let json = trace.to_json().unwrap();
    let value: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["displayTimeUnit"], "ms");
    value["traceEvents"].as_array().unwrap().clone()
}

/// The metadata event `name` of `pid` (and `tid`, for threads): its `args`.
fn metadata<'a>(events: &'a [Value], name: &str, pid: u64, tid: Option<u64>) -> &'a Value {
    let found = events.iter().find(|event| {
        event["ph"] == "M"
            && event["name"] == name
            && event["pid"] == pid
            && tid.is_none_or(|tid| event["tid"] == tid)
    });
    &found.unwrap_or_else(|| panic!("no {name} for {pid}/{tid:?} in {events:?}"))["args"]
}

/// The complete events of one thread: (name, ts, dur, cat).
fn slices(events: &[Value], pid: u64, tid: u64) -> Vec<(String, u64, u64, String)> {
    events
        .iter()
        .filter(|event| event["ph"] == "X" && event["pid"] == pid && event["tid"] == tid)
        .map(|event| {
            (
                event["name"].as_str().unwrap().to_owned(),
                event["ts"].as_u64().unwrap(),
                event["dur"].as_u64().unwrap(),
                event["cat"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts that the complete events of every thread nest, and come in the
/// order the module docs promise.
fn assert_nested(events: &[Value]) {
    let mut threads: BTreeMap<(u64, u64), Vec<(u64, u64)>> = BTreeMap::new();
    for event in events.iter().filter(|event| event["ph"] == "X") {
        let key = (
            event["pid"].as_u64().unwrap(),
            event["tid"].as_u64().unwrap(),
        );
        let ts = event["ts"].as_u64().unwrap();
        let end = ts + event["dur"].as_u64().unwrap();
        threads.entry(key).or_default().push((ts, end));
    }
    for (thread, list) in threads {
        let mut open: Vec<(u64, u64)> = Vec::new();
        for (ts, end) in list {
            while open.last().is_some_and(|&(_, open_end)| open_end <= ts) {
                open.pop();
            }
            if let Some(&(parent_ts, parent_end)) = open.last() {
                assert!(
                    parent_ts <= ts && end <= parent_end,
                    "{thread:?}: [{ts}, {end}) overlaps [{parent_ts}, {parent_end})"
                );
            }
            open.push((ts, end));
        }
    }
}

#[test]
fn each_process_and_thread_is_a_named_track() {
    let (first, second) = (profile(0), profile(500));
    let trace = Builder::new()
        .profile("child-0", 4242, &first)
        .profile("child-1", 4343, &second)
        .build();
    let events = parse(&trace);
    assert_eq!(
        metadata(&events, "process_name", 4242, None)["name"],
        "child-0"
    );
    assert_eq!(
        metadata(&events, "process_name", 4343, None)["name"],
        "child-1"
    );
    assert_eq!(
        metadata(&events, "process_sort_index", 4343, None)["sort_index"],
        1
    );
    for pid in [4242, 4343] {
        assert_eq!(
            metadata(&events, "thread_name", pid, Some(102))["name"],
            "layout#1"
        );
        assert_eq!(
            metadata(&events, "thread_name", pid, Some(101))["name"],
            "script#1"
        );
        assert_eq!(
            metadata(&events, "thread_sort_index", pid, Some(101))["sort_index"],
            1
        );
    }
    // One timeline: the second process starts 500 ms after the first.
    let starts = |pid| slices(&events, pid, 102).iter().map(|s| s.1).min().unwrap();
    assert_eq!(starts(4343) - starts(4242), 500_000);
    assert!(slices(&events, 4242, 101).is_empty());
    assert_nested(&events);
}

#[test]
fn samples_in_one_place_are_one_slice_per_frame_nested_in_their_hang() {
    let profile = profile(0);
    let events = parse(&from_profile("browser", 4242, &profile));
    let layout = slices(&events, 4242, 102);
    let find = |name: &str| -> Vec<(u64, u64, String)> {
        layout
            .iter()
            .filter(|slice| slice.0 == name)
            .map(|slice| (slice.1, slice.2, slice.3.clone()))
            .collect()
    };
    // The hang, with its fields.
    assert_eq!(
        find("Hang: permanent in \"reflow\""),
        [(20_000, 50_000, "hang".into())]
    );
    let hang = events.iter().find(|event| event["cat"] == "hang").unwrap();
    assert_eq!(hang["args"]["level"], "permanent");
    assert_eq!(hang["args"]["annotation"], "reflow");
    assert_eq!(hang["args"]["status"], "ended");
    assert_eq!(hang["args"]["duration_ms"], 50.0);
    // Five samples stuck in reflow: one slice, all of the hang; the thread's
    // outer frames are cut where the hang starts and ends.
    assert_eq!(
        find("myapp::layout::reflow"),
        [(20_000, 50_000, "program".into())]
    );
    assert_eq!(
        find("myapp::layout::run"),
        [
            (0, 20_000, "program".into()),
            (20_000, 50_000, "program".into()),
            // 1 µs after the hang (see the module docs).
            (70_001, 9_999, "program".into()),
        ]
    );
    assert_eq!(
        find("syscall")
            .iter()
            .map(|s| (s.0, s.1))
            .collect::<Vec<_>>(),
        [(0, 20_000), (20_000, 50_000), (70_001, 9_999)]
    );
    assert!(find("syscall").iter().all(|slice| slice.2 == "runtime"));
    // Frames carry no args, which speedscope would add to their names.
    assert!(events
        .iter()
        .filter(|event| event["cat"] == "program" || event["cat"] == "runtime")
        .all(|event| event.get("args").is_none()));
    // Ordered by start, then depth: the hang before the frames inside it.
    let order: Vec<&str> = layout
        .iter()
        .filter(|slice| slice.1 == 20_000)
        .map(|slice| slice.0.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "Hang: permanent in \"reflow\"",
            "myapp::layout::run",
            "myapp::layout::reflow",
            "syscall"
        ]
    );
    assert_nested(&events);
}

#[test]
fn alerts_get_tracks_of_their_own_and_stacks_from_when_they_were_seen() {
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let alert = |component: ComponentId, kind, at_ms, duration_ms, names: Option<&[&str]>| {
        let mut alert = Alert::new(component, kind, ms(duration_ms), t0 + ms(at_ms));
        alert.annotation = Some("reflow".into());
        alert.stack = names.map(stack);
        alert
    };
    let (layout, script) = (ComponentId::new("layout", 1), ComponentId::new("script", 1));
    let ended = AlertKind::Ended {
        worst: HangLevel::Permanent,
    };
    let alerts = [
        alert(layout.clone(), AlertKind::Transient, 1150, 150, None),
        alert(script.clone(), AlertKind::Transient, 1200, 150, Some(IDLE)),
        alert(
            layout.clone(),
            AlertKind::Permanent,
            2000,
            1000,
            Some(REFLOW),
        ),
        alert(layout, ended, 2600, 1600, None),
    ];
    let events = parse(&from_alerts("alerts", 0, &alerts));
    // No pid and no tids in alerts: stand-ins, one per component.
    assert_eq!(metadata(&events, "process_name", 1, None)["name"], "alerts");
    assert_eq!(
        metadata(&events, "thread_name", 1, Some(1))["name"],
        "layout#1"
    );
    assert_eq!(
        metadata(&events, "thread_name", 1, Some(2))["name"],
        "script#1"
    );
    // The hang from 1000 ms (the first alert's activity) for 1.6 s; the
    // permanent alert's stack from its alert to the hang's end.
    let layout = slices(&events, 1, 1);
    assert!(layout.contains(&(
        "Hang: permanent in \"reflow\"".into(),
        0,
        1_600_000,
        "hang".into()
    )));
    assert!(layout.contains(&(
        "myapp::layout::reflow".into(),
        1_000_000,
        600_000,
        "program".into()
    )));
    // The ongoing script hang ends at its alert, where its stack was seen:
    // both are drawn 1 ms longer.
    let script = slices(&events, 1, 2);
    assert_eq!(
        script
            .iter()
            .map(|s| (s.0.as_str(), s.1, s.2))
            .take(2)
            .collect::<Vec<_>>(),
        [
            ("Hang: transient in \"reflow\"", 50_000, 151_000),
            ("myapp::layout::run", 200_000, 1_000)
        ]
    );
    assert_nested(&events);
}

#[test]
fn odd_profiles_still_give_nested_tracks_of_their_own() {
    let mut profile = profile(0);
    let layout = &mut profile.threads[0];
    // Samples out of order, and hangs that overlap or never end.
    layout.samples.reverse();
    layout.hangs.push(HangMarker {
        start: ms(10),
        duration: ms(30),
        level: HangLevel::Transient,
        annotation: None,
        ended: false,
    });
    layout.hangs.push(HangMarker {
        start: ms(60),
        duration: Duration::MAX,
        level: HangLevel::Permanent,
        annotation: None,
        ended: false,
    });
    // Two components on one thread, and one with no tid.
    profile.threads[1].tid = 102;
    let mut third = profile.threads[1].clone();
    third.component = ComponentId::new("network", 1);
    third.tid = 0;
    profile.threads.push(third);
    let trace = Builder::new()
        .profile("a", 7, &profile)
        .profile("b", 7, &profile)
        .alerts("c", 0, &[])
        .build();
    let events = parse(&trace);
    assert_nested(&events);
    // Pids 7, then the smallest free ones; tids 102, then 1 and 2.
    for (pid, name) in [(7, "a"), (1, "b"), (2, "c")] {
        assert_eq!(metadata(&events, "process_name", pid, None)["name"], name);
    }
    for (tid, name) in [(102, "layout#1"), (1, "script#1"), (2, "network#1")] {
        assert_eq!(metadata(&events, "thread_name", 7, Some(tid))["name"], name);
    }
    // Hangs by start: the transient one from 10 to 40 ms, then the
    // permanent one that began at 20 ms drawn from 40 ms, the endless one
    // from 70 ms.
    let hangs: Vec<(u64, u64)> = slices(&events, 7, 102)
        .into_iter()
        .filter(|slice| slice.3 == "hang")
        .map(|slice| (slice.1, slice.2))
        .collect();
    assert_eq!(hangs[0], (10_000, 30_000));
    assert_eq!(hangs[1], (40_000, 30_000));
    assert_eq!(hangs[2].0, 70_000);
    // Deterministic.
    assert_eq!(
        trace.to_json().unwrap(),
        Builder::new()
            .profile("a", 7, &profile)
            .profile("b", 7, &profile)
            .alerts("c", 0, &[])
            .build()
            .to_json()
            .unwrap()
    );
}

#[test]
fn ids_of_zero_or_taken_are_replaced_by_the_smallest_free_ones() {
    assert_eq!(own_ids([5, 0, 5, 1, 0].into_iter()), [5, 2, 3, 1, 4]);
    assert_eq!(own_ids([0, 0].into_iter()), [1, 2]);
}

#[test]
fn a_sample_stands_until_the_next_unless_that_is_ten_intervals_away() {
    let mut profile = Profile::new(UNIX_EPOCH + ms(1_000_000), ms(10));
    let samples = [0, 10, 110, 300]
        .into_iter()
        .map(|at| profile.sample(ms(at), &stack(IDLE)))
        .collect();
    profile.threads = vec![ProfiledThread {
        component: ComponentId::new("layout", 1),
        thread: None,
        tid: 7,
        samples,
        hangs: Vec::new(),
    }];
    let events = parse(&from_profile("browser", 1, &profile));
    let runs: Vec<(u64, u64)> = slices(&events, 1, 7)
        .into_iter()
        .filter(|slice| slice.0 == "myapp::layout::run")
        .map(|slice| (slice.1, slice.2))
        .collect();
    // 10 ms, then 100 ms (ten intervals: still the next), then one interval
    // for the sample 190 ms before the next, and one for the last.
    assert_eq!(runs, [(0, 120_000), (300_000, 10_000)]);
}
