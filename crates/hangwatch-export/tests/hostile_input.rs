//! Hostile input, without libFuzzer: every seed of the `alert_jsonl` and
//! `collapsed_lines` fuzz corpora (`fuzz/corpus/`), and deterministic
//! mutants of them, go through the fuzz targets' own checks (the
//! `hangwatch-fuzz-checks` crate, driven by its `smoke` module); none may
//! panic, and the well-formed seeds must read without an error.
//!
//! The seeds are made here, with the real serializers, by the ignored test
//! `write_the_corpus` (`cargo test -p hangwatch-export --test hostile_input
//! -- --ignored`); once committed they stay as they are, so the well-formed
//! ones also check that files written by earlier versions still read. Other
//! files in the corpus (inputs found by fuzzing) are fed as they are.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use hangwatch::{Alert, AlertKind, Frame, NoStack};
use hangwatch_export::collapsed::{Collapsed, Prefix};
use hangwatch_export::jsonl;
use hangwatch_fuzz_checks::{alerts, collapsed, smoke};

/// Mutants of the alert lines: about 3 s in a debug build (each goes
/// through reading, the round trip, the report, the Firefox profile and the
/// flamegraph).
const ALERT_MUTANTS: usize = 6_000;

/// Mutants of the collapsed lines: about 3 s in a debug build (nearly all
/// of them parse, and are drawn).
const COLLAPSED_MUTANTS: usize = 5_000;

fn lines(alerts: &[Alert]) -> Vec<u8> {
    jsonl::to_string(alerts).unwrap().into_bytes()
}

/// The `alert_jsonl` seeds: `ok-` ones as `hangwatch` writes them, the
/// others broken in the ways a file of alerts can be.
fn alert_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use AlertKind::{Permanent, ThreadExited, Transient};
    let all = alerts();
    let hang = lines(&all[..4]);
    let mut odd = alert(script(), Permanent, 100, 1000, "", Some(PAINT_STACK));
    odd.annotation = Some("\"quoted\"; semi;colons\nand a line break, ünïcødé 🦀".into());
    odd.thread = None;
    if let Some(stack) = &mut odd.stack {
        stack.truncated = true;
        stack.frames.push(Frame {
            function: Some("<[u8; 4] as myapp::Odd>::f\n".into()),
            ..Frame::default()
        });
    }
    let mut unsupported = alert(network(), Permanent, 200, 1000, "fetch", None);
    unsupported.no_stack = Some(NoStack::Unsupported("no sampler for this platform".into()));
    let mut far = alert(layout(), Transient, 0, 0, "reflow", None);
    far.time = UNIX_EPOCH + Duration::from_secs(1 << 40);
    far.duration = Duration::from_secs(1 << 40);
    far.annotation = None;
    let mut torn = lines(&all[..2]);
    torn.truncate(torn.len() - 40);
    torn.extend_from_slice(b"\n\n   \n");
    torn.extend(lines(&all[2..3]));
    vec![
        ("ok-transient.jsonl", lines(&all[..1])),
        ("ok-hang-with-stack.jsonl", hang.clone()),
        ("ok-a-run.jsonl", lines(&all)),
        (
            "ok-odd-names-and-no-stack.jsonl",
            lines(&[
                odd,
                unsupported,
                alert(network(), ThreadExited, 300, 0, "fetch", None),
            ]),
        ),
        ("ok-far-future.jsonl", lines(&[far])),
        ("torn-line.jsonl", torn),
        ("not-utf8.jsonl", {
            let mut bytes = hang;
            bytes[30] = 0xff;
            bytes
        }),
        (
            "huge-numbers.jsonl",
            br#"{"component":{"name":"a","number":18446744073709551616},"kind":"transient","annotation":null,"duration_ms":1e309,"thread":null,"time_unix_ms":-1}
{"component":{"name":"a","number":1},"kind":"ended","worst":"permanent","annotation":null,"duration_ms":1.8446744073709552e22,"thread":null,"time_unix_ms":1e22}
{"component":{"name":"a","number":1},"kind":"permanent","annotation":null,"duration_ms":1,"thread":null,"time_unix_ms":1,"stack":{"frames":[{"address":18446744073709551615,"module":null,"module_offset":null,"function":null,"file":null,"line":4294967296,"inlined":false}],"truncated":false}}
{"component":{"name":"a","number":1},"kind":"transient","annotation":null,"duration_ms":18446744073709549568000,"thread":null,"time_unix_ms":9223372036854774784000}
{"component":{"name":"a","number":1},"kind":"transient","annotation":null,"duration_ms":1.844674407370955e22,"thread":null,"time_unix_ms":9.223372036854775e21}
"#
            .to_vec(),
        ),
        ("deep-nesting.jsonl", {
            let mut bytes = br#"{"component":{"name":"a","number":1},"kind":"transient","annotation":"#.to_vec();
            bytes.extend_from_slice(&b"[".repeat(1_000));
            bytes.push(b'\n');
            bytes
        }),
        (
            "wrong-shapes.jsonl",
            br#"{}
[]
null
"just a string"
{"component":"layout#1","kind":"transient","annotation":null,"duration_ms":1,"thread":null,"time_unix_ms":1}
{"component":{"name":"a","number":1},"kind":"sideways","annotation":null,"duration_ms":1,"thread":null,"time_unix_ms":1}
{"component":{"name":"a","number":1},"kind":"permanent","annotation":null,"duration_ms":1,"thread":null,"time_unix_ms":1,"no_stack":{"reason":"unsupported"}}
{"component":{"name":"a","number":1},"kind":"transient","kind":"ended","annotation":null,"duration_ms":1,"thread":null,"time_unix_ms":1}
"#
            .to_vec(),
        ),
    ]
}

/// The `collapsed_lines` seeds: `ok-` ones as hangwatch writes collapsed
/// stacks, the others malformed.
fn collapsed_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut awkward = Collapsed::default();
    awkward.add(["  main ", "<[u8; 4] as Foo>::bar\nbaz", "ünïcødé 🦀"], 3);
    awkward.add(["main", "a&b<c>\"d\"'e'"], u64::MAX);
    awkward.add(["main", "a&b<c>\"d\"'e'"], 7);
    vec![
        (
            "ok-from-alerts.folded",
            hangwatch_export::collapsed::from_alerts(&alerts(), Prefix::None)
                .to_string()
                .into_bytes(),
        ),
        (
            "ok-from-a-profile.folded",
            hangwatch_export::collapsed::from_profile(&profile(), Prefix::Component)
                .to_string()
                .into_bytes(),
        ),
        ("ok-awkward-names.folded", awkward.to_string().into_bytes()),
        (
            "malformed.folded",
            b"main;run 1\nno count here\na;;b 2\na;b -1\na;b 18446744073709551616\n;a 1\n a b \n"
                .to_vec(),
        ),
    ]
}

/// Writes `seeds` into the corpus of `target`.
fn write_seeds(target: &str, seeds: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(smoke::corpus(target)).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(smoke::corpus(target).join(name), bytes).unwrap();
    }
}

#[test]
#[ignore = "writes the seeds into fuzz/corpus; run by hand when they change"]
fn write_the_corpus() {
    write_seeds("alert_jsonl", &alert_seeds());
    write_seeds("collapsed_lines", &collapsed_seeds());
}

#[test]
fn alert_lines_survive_hostile_input() {
    smoke::hostile(
        "alert_jsonl",
        ALERT_MUTANTS,
        0x6861_6e67_7761_7463,
        alerts::check,
        |name, bytes| {
            let read = jsonl::read(bytes).unwrap();
            assert!(read.errors.is_empty(), "{name}: {:?}", read.errors);
            assert!(!read.alerts.is_empty(), "{name}");
        },
    );
}

#[test]
fn collapsed_lines_survive_hostile_input() {
    smoke::hostile(
        "collapsed_lines",
        COLLAPSED_MUTANTS,
        0x636f_6c6c_6170_7365,
        collapsed::check,
        |name, bytes| {
            let text = std::str::from_utf8(bytes).unwrap();
            let stacks = hangwatch_export::collapsed::parse(text).unwrap();
            assert!(!stacks.is_empty(), "{name}");
        },
    );
}
