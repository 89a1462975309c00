//! What each fuzz target checks, one module per target, shared by the fuzz
//! targets (`fuzz/`, a workspace of its own) and the deterministic
//! hostile-input tests of the crates (a dev-dependency), so that libFuzzer
//! and `cargo test` feed inputs through the same calls and hold them to the
//! same invariants. [`smoke`] is the tests' driver: the corpus and its
//! mutants, without libFuzzer.
//!
//! Every check takes arbitrary bytes, calls the real parsing or decoding
//! function, then what the program does with what came out, and panics only
//! when an invariant fails.

pub mod alerts;
pub mod collapsed;
pub mod hub;
pub mod round_trip;
pub mod smoke;
