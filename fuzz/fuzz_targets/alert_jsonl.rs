//! Fuzz target `alert_jsonl`: alert JSON lines, as `hangwatch report` reads
//! them. The check, and what it asserts, is [`hangwatch_fuzz_checks::alerts::check`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz_checks::alerts::check(data));
