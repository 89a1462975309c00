//! The driver of the hostile-input tests, which run in `cargo test` without
//! libFuzzer: every file of a fuzz target's committed corpus, then
//! deterministic mutants of them, go to the target's check. The mutations are bit flips, odd bytes, truncation,
//! cut ranges, random insertions, repeats, splices of two inputs, huge and
//! odd numbers in place of digits, deep nesting, and plain random bytes; the
//! same corpus and seed give the same inputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// The committed corpus of fuzz target `target`, from a crate of the
/// workspace.
pub fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fuzz/corpus/{target}"))
}

/// Feeds every file of `target`'s corpus to `check`, the well-formed ones
/// (named `ok-*`) first to `well_formed` too, then `count` mutants of them
/// from a generator seeded with `seed`; says how long it took.
pub fn hostile(
    target: &str,
    count: usize,
    seed: u64,
    check: fn(&[u8]),
    well_formed: fn(&str, &[u8]),
) {
    let started = Instant::now();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus(target))
        .expect("the fuzz corpus is in the repository")
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    for (name, bytes) in &files {
        if name.starts_with("ok-") {
            well_formed(name, bytes);
        }
        check(bytes);
    }
    let inputs: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    for mutant in mutants(&inputs, count, seed) {
        check(&mutant);
    }
    eprintln!(
        "{target}: {} corpus files and {count} mutants in {:.1?}",
        inputs.len(),
        started.elapsed()
    );
}

/// Numbers that parsers and conversions choke on, to put where digits were.
const ODD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1e309",
    "-1e309",
    "1e-400",
    "1e22",
    "9.3e21",
    "1.8446744073709552e22",
    "1.8446744073709551e22",
    "9.223372036854776e21",
    "9223372036854775807000",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "99999999999999999999999999999999",
    "0.000000001",
    "1.5e-7",
    "NaN",
    "1.",
];

/// Bytes that mean something to JSON lines, collapsed stacks or postcard.
const ODD_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0xc0, 0xed, b'"', b'\\', b'{', b'}', b'[', b']', b':',
    b',', b';', b' ', b'\n', b'\r', b'\t',
];

/// `count` mutants of `seeds` (each one to three mutations of a seed picked
/// at random), from a generator seeded with `seed`.
fn mutants(seeds: &[Vec<u8>], count: usize, seed: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    assert!(!seeds.is_empty(), "no seeds to mutate");
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count).map(move |_| {
        let mut input = seeds[rng.usize(..seeds.len())].clone();
        for _ in 0..rng.usize(1..=3) {
            mutate(&mut rng, &mut input, seeds);
        }
        input
    })
}

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = input.len();
    match rng.u8(..10) {
        // Flip a few bits.
        0 if len > 0 => {
            for _ in 0..rng.usize(1..=4) {
                let at = rng.usize(..len);
                input[at] ^= 1 << rng.u8(..8);
            }
        }
        // Overwrite a few bytes with odd ones.
        1 if len > 0 => {
            for _ in 0..rng.usize(1..=4) {
                let at = rng.usize(..len);
                input[at] = ODD_BYTES[rng.usize(..ODD_BYTES.len())];
            }
        }
        // Truncate, as a process killed mid-write would.
        2 => input.truncate(rng.usize(..=len)),
        // Cut out a range.
        3 if len > 0 => {
            let start = rng.usize(..len);
            let end = rng.usize(start..=len);
            input.drain(start..end);
        }
        // Insert random bytes.
        4 => {
            let at = rng.usize(..=len);
            let bytes: Vec<u8> = (0..rng.usize(1..=16)).map(|_| rng.u8(..)).collect();
            input.splice(at..at, bytes);
        }
        // Repeat a range many times.
        5 if len > 0 => {
            let start = rng.usize(..len);
            let end = rng.usize(start + 1..=len.min(start + 64));
            let repeated = input[start..end].repeat(rng.usize(2..=64));
            input.splice(end..end, repeated);
        }
        // Splice: this one's head, another seed's tail.
        6 => {
            let other = &seeds[rng.usize(..seeds.len())];
            let tail = other[rng.usize(..=other.len())..].to_vec();
            input.truncate(rng.usize(..=len));
            input.extend_from_slice(&tail);
        }
        // A huge or odd number where digits were.
        7 => {
            let digits: Vec<usize> = (0..len).filter(|&i| input[i].is_ascii_digit()).collect();
            let number = ODD_NUMBERS[rng.usize(..ODD_NUMBERS.len())].as_bytes();
            if digits.is_empty() {
                let at = rng.usize(..=len);
                input.splice(at..at, number.iter().copied());
            } else {
                let start = digits[rng.usize(..digits.len())];
                let end = (start..len)
                    .find(|&i| !input[i].is_ascii_digit())
                    .unwrap_or(len);
                input.splice(start..end, number.iter().copied());
            }
        }
        // Deep nesting.
        8 => {
            let at = rng.usize(..=len);
            let depth = rng.usize(1..=600);
            let (open, close): (&[u8], &[u8]) = match rng.u8(..3) {
                0 => (b"[", b"]"),
                1 => (b"{\"a\":", b"}"),
                _ => (b"\"stack\":{\"frames\":[", b"]}"),
            };
            let mut nested = open.repeat(depth);
            if rng.bool() {
                nested.extend_from_slice(&close.repeat(depth));
            }
            input.splice(at..at, nested);
        }
        // Nothing but random bytes.
        _ => {
            *input = (0..rng.usize(..=256)).map(|_| rng.u8(..)).collect();
        }
    }
}
