//! Collapsed stacks round-trip, weigh what the hangs lasted, and agree with
//! the report built from the same alerts.

mod common;

use std::collections::BTreeMap;

use common::*;
use hangwatch_export::collapsed::{self, Prefix};
use hangwatch_export::hangs::hangs;
use hangwatch_export::report::{signature, Report};

/// `innermost_first` as a collapsed line's frames: outermost first.
fn outermost_first(innermost_first: &[&str]) -> Vec<String> {
    innermost_first
        .iter()
        .rev()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn alerts_to_collapsed_and_back_keep_stacks_and_weights() {
    let stacks = collapsed::from_alerts(&alerts(), Prefix::None);
    let text = stacks.to_string();
    let parsed = collapsed::parse(&text).unwrap();
    assert_eq!(parsed, stacks);

    let got: BTreeMap<Vec<String>, u64> = parsed
        .stacks()
        .map(|(frames, count)| (frames.to_vec(), count))
        .collect();
    // Milliseconds: layout's two hangs on the lock (1.6 s and 1.4 s), its
    // ongoing one in paint (1 s so far), script's in eval (1.5 s).
    let expected = BTreeMap::from([
        (outermost_first(LAYOUT_STACK), 3000),
        (outermost_first(PAINT_STACK), 1000),
        (outermost_first(SCRIPT_STACK), 1500),
    ]);
    assert_eq!(got, expected);
    assert_eq!(parsed.total(), 5500);
    // The text is what flamegraph tools read.
    assert!(text.contains(
        "clone3;start_thread;std::sys::backtrace::__rust_begin_short_backtrace;\
         myapp::layout::run;myapp::layout::reflow;std::sync::poison::mutex::Mutex<T>::lock;\
         std::sys::sync::mutex::futex::Mutex::lock_contended;syscall 3000\n"
    ));
}

#[test]
fn the_prefix_keeps_processes_and_components_apart() {
    let mut both = collapsed::from_alerts(&alerts(), Prefix::Process("browser"));
    for (frames, weight) in collapsed::from_alerts(&alerts(), Prefix::Process("editor")).stacks() {
        both.add(frames, weight);
    }
    let roots: BTreeMap<(String, String), u64> = both
        .stacks()
        .map(|(frames, weight)| ((frames[0].clone(), frames[1].clone()), weight))
        .fold(BTreeMap::new(), |mut roots, (root, weight)| {
            *roots.entry(root).or_default() += weight;
            roots
        });
    let expected = |process: &str| {
        [
            ((process.to_owned(), "layout#1".to_owned()), 4000),
            ((process.to_owned(), "script#1".to_owned()), 1500),
        ]
    };
    let mut all = expected("browser").to_vec();
    all.extend(expected("editor"));
    assert_eq!(roots, BTreeMap::from_iter(all));
    assert_eq!(collapsed::parse(&both.to_string()).unwrap(), both);
}

#[test]
fn a_profile_counts_each_sample_optionally_under_its_component() {
    let profile = profile();
    let merged = collapsed::from_profile(&profile, Prefix::None);
    assert_eq!(merged.total(), 9);
    assert_eq!(merged.stacks().count(), 3);

    let rooted = collapsed::from_profile(&profile, Prefix::Component);
    let got: BTreeMap<Vec<String>, u64> = rooted
        .stacks()
        .map(|(frames, count)| (frames.to_vec(), count))
        .collect();
    let under = |root: &str, stack: &[&str]| {
        let mut frames = vec![root.to_owned()];
        frames.extend(outermost_first(stack));
        frames
    };
    let expected = BTreeMap::from([
        (under("layout#1", LAYOUT_STACK), 3),
        (under("layout#1", PAINT_STACK), 2),
        (under("script#1", SCRIPT_STACK), 4),
    ]);
    assert_eq!(got, expected);
    assert_eq!(collapsed::parse(&rooted.to_string()).unwrap(), rooted);
}

#[test]
fn the_collapsed_lines_weigh_what_the_reports_hangs_lasted() {
    let alerts = alerts();
    // Every hang with a stack has exactly one alert with a stack, so each
    // signature's weight is the milliseconds its hangs lasted.
    let mut from_lines: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    let text = collapsed::from_alerts(&alerts, Prefix::None).to_string();
    for (frames, weight) in collapsed::parse(&text).unwrap().stacks() {
        let innermost_first: Vec<&str> = frames.iter().rev().map(String::as_str).collect();
        *from_lines.entry(signature(&innermost_first)).or_default() += weight;
    }

    let mut from_hangs: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for hang in hangs(&alerts) {
        let Some(stack) = &hang.stack else { continue };
        let names: Vec<String> = stack
            .frames
            .iter()
            .map(|frame| frame.name().into_owned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        *from_hangs.entry(signature(&names)).or_default() += hang.duration.as_millis() as u64;
    }
    assert_eq!(from_hangs, from_lines);

    let report = Report::from_alerts(&alerts);
    let signatures: Vec<&Vec<String>> = report
        .components
        .iter()
        .flat_map(|component| &component.groups)
        .map(|group| &group.signature)
        .filter(|signature| !signature.is_empty())
        .collect();
    assert_eq!(signatures.len(), 3);
    assert!(signatures
        .iter()
        .all(|signature| from_lines.contains_key(*signature)));
}

/// Found by the hub's hostile-bytes test: a child's profile whose hang
/// marker ends past the largest `Duration` made `from_profile_hangs` panic
/// ("overflow when adding durations") instead of counting the sample.
#[test]
fn a_hang_marker_that_ends_past_the_largest_duration_counts_to_the_end() {
    let mut profile = profile();
    for hang in &mut profile.threads[0].hangs {
        hang.start = std::time::Duration::from_millis(1);
        hang.duration = std::time::Duration::MAX;
    }
    let hung = collapsed::from_profile_hangs(&profile, Prefix::Component);
    let samples = profile.threads[0].samples.len() as u64;
    assert_eq!(
        hung.stacks()
            .filter(|(frames, _)| frames[0] == "script#1")
            .map(|(_, n)| n)
            .sum::<u64>(),
        samples
    );
}
