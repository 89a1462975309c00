//! What each fuzz target checks, one module per target, shared with the
//! deterministic hostile-input tests of the crates (which include these
//! files with `#[path]`), so that libFuzzer and `cargo test` feed inputs
//! through the same calls and hold them to the same invariants.
//!
//! Every check takes arbitrary bytes, calls the real parsing or decoding
//! function, then what the program does with what came out, and panics only
//! when an invariant fails.

pub mod alerts;
pub mod collapsed;
pub mod hub;
pub mod round_trip;
