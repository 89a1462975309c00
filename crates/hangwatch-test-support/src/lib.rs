//! Waiting in tests: [`eventually`] polls a condition until a deadline, and
//! a test that waits for something that never happens fails with what it
//! waited for and what it saw last, instead of hanging the test run.
//!
//! A crate of its own (a dev-dependency of the crates whose tests wait)
//! rather than a copy in each crate's `tests/common`; it depends on nothing,
//! so that any crate's tests can use it.
//!
//! # Invariants
//!
//! - [`eventually`] returns as soon as a look satisfies the condition, and
//!   never later than one look after its deadline: it panics then.
//! - It looks at least once, even with a zero deadline, and sleeps briefly
//!   between looks, so that what it polls (a monitor, a hub, `/proc`) is not
//!   flooded with requests.
//! - Nothing is formatted unless it fails.

use std::fmt::{Debug, Write};
use std::time::{Duration, Instant};

/// How long [`eventually`] sleeps between two looks: short next to every
/// deadline and timeout the tests wait on, long enough that a poll loop is
/// no busy loop.
const BETWEEN_LOOKS: Duration = Duration::from_millis(1);

/// The most of the last value seen that a failure message shows: a stack
/// copy or a long log would bury the message itself.
const SHOWN_CHARS: usize = 2_000;

/// Looks with `look` until `done` accepts what it saw, and returns that;
/// panics if `within` passes first, naming what was `awaited` and the last
/// value seen.
///
/// ```
/// # use std::time::Duration;
/// # use hangwatch_test_support::eventually;
/// let mut polls = 0;
/// let seen = eventually(Duration::from_secs(10), "three polls", || {
///     polls += 1;
///     polls
/// }, |&polls| polls >= 3);
/// assert_eq!(seen, 3);
/// ```
#[track_caller]
pub fn eventually<V: Debug>(
    within: Duration,
    awaited: &str,
    mut look: impl FnMut() -> V,
    mut done: impl FnMut(&V) -> bool,
) -> V {
    let deadline = Instant::now() + within;
    loop {
        let seen = look();
        if done(&seen) {
            return seen;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} waiting for {awaited}; last seen: {}",
                shown(&seen)
            );
        }
        std::thread::sleep(BETWEEN_LOOKS);
    }
}

/// `value`'s `Debug` text, cut at [`SHOWN_CHARS`].
fn shown(value: &impl Debug) -> String {
    let mut text = String::new();
    let _ = write!(text, "{value:?}");
    if let Some((cut, _)) = text.char_indices().nth(SHOWN_CHARS) {
        text.truncate(cut);
        text.push_str("… (cut)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_that_is_done() {
        let mut next = 0;
        let seen = eventually(
            Duration::from_secs(10),
            "a count of 5",
            || {
                next += 1;
                next
            },
            |&n| n == 5,
        );
        assert_eq!(seen, 5);
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible; last seen: 7")]
    fn says_what_it_waited_for_and_saw_last() {
        eventually(Duration::from_millis(20), "the impossible", || 7, |_| false);
    }

    #[test]
    fn cuts_a_long_last_value() {
        let long = "x".repeat(SHOWN_CHARS * 2);
        let text = shown(&long);
        assert!(text.len() < SHOWN_CHARS + 20, "{}", text.len());
        assert!(text.ends_with("… (cut)"));
    }
}
