//! Fuzz target `hub_child_bytes`: the bytes a child sends its hub, as the
//! hub decodes them. The check, and what it asserts, is
//! [`hangwatch_fuzz_checks::hub::check`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz_checks::hub::check(data));
