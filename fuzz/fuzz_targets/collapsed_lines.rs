//! Fuzz target `collapsed_lines`: collapsed stack lines, and their
//! flamegraph. The check, and what it asserts, is
//! [`hangwatch_fuzz::collapsed::check`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::collapsed::check(data));
