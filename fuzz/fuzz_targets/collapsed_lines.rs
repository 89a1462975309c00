//! Fuzz target `collapsed_lines`: collapsed stack lines, and their
//! flamegraph. The check, and what it asserts, is
//! [`hangwatch_fuzz_checks::collapsed::check`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz_checks::collapsed::check(data));
