//! Collapsed stacks round-trip, and agree with the report built from the same
//! alerts.

mod common;

use std::collections::BTreeMap;

use common::*;
use hangwatch_export::collapsed::{self, Roots};
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
fn alerts_to_collapsed_and_back_keep_stacks_and_counts() {
    let stacks = collapsed::from_alerts(&alerts());
    let text = stacks.to_string();
    let parsed = collapsed::parse(&text).unwrap();
    assert_eq!(parsed, stacks);

    let got: BTreeMap<Vec<String>, u64> = parsed
        .stacks()
        .map(|(frames, count)| (frames.to_vec(), count))
        .collect();
    let expected = BTreeMap::from([
        (outermost_first(LAYOUT_STACK), 2),
        (outermost_first(PAINT_STACK), 1),
        (outermost_first(SCRIPT_STACK), 1),
    ]);
    assert_eq!(got, expected);
    assert_eq!(parsed.total(), 4);
    // The text is what flamegraph tools read.
    assert!(text.contains(
        "clone3;start_thread;std::sys::backtrace::__rust_begin_short_backtrace;\
         myapp::layout::run;myapp::layout::reflow;std::sync::poison::mutex::Mutex<T>::lock;\
         std::sys::sync::mutex::futex::Mutex::lock_contended;syscall 2\n"
    ));
}

#[test]
fn a_profile_counts_each_sample_optionally_under_its_component() {
    let profile = profile();
    let merged = collapsed::from_profile(&profile, Roots::None);
    assert_eq!(merged.total(), 9);
    assert_eq!(merged.stacks().count(), 3);

    let rooted = collapsed::from_profile(&profile, Roots::Component);
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
fn the_report_counts_what_the_collapsed_lines_count() {
    let alerts = alerts();
    // Every hang with a stack has exactly one alert with a stack, so the
    // hangs per signature in the report are the collapsed counts per
    // signature.
    let mut from_lines: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let text = collapsed::from_alerts(&alerts).to_string();
    for (frames, count) in collapsed::parse(&text).unwrap().stacks() {
        let innermost_first: Vec<&str> = frames.iter().rev().map(String::as_str).collect();
        *from_lines.entry(signature(&innermost_first)).or_default() += count as usize;
    }

    let report = Report::from_alerts(&alerts);
    let mut from_report: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for component in &report.components {
        for group in component.groups.iter().filter(|g| !g.signature.is_empty()) {
            *from_report.entry(group.signature.clone()).or_default() += group.hangs;
        }
    }
    assert_eq!(from_report, from_lines);
    assert_eq!(from_report.len(), 3);
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
    let hung = collapsed::from_profile_hangs(&profile, Roots::Component);
    let samples = profile.threads[0].samples.len() as u64;
    assert_eq!(
        hung.stacks()
            .filter(|(frames, _)| frames[0] == "script#1")
            .map(|(_, n)| n)
            .sum::<u64>(),
        samples
    );
}
