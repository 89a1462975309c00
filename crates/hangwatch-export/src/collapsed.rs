//! Collapsed stacks: the input of flamegraph tools.
//!
//! One line per distinct stack: its frames from the outermost (the thread's
//! entry point) to the innermost, separated by `;`, then a space and how many
//! times the stack was seen:
//!
//! ```text
//! std::thread::Builder::spawn_unchecked_::{{closure}};myapp::layout::run;myapp::layout::reflow;std::sync::Mutex<T>::lock 3
//! myapp::script::run;myapp::script::eval 1
//! ```
//!
//! This is the format of Brendan Gregg's `stackcollapse-*` scripts, which
//! `flamegraph.pl`, inferno, speedscope and others read.
//!
//! # Invariants
//!
//! - Frames are named as [`frame_name`] says; an
//!   inlined call is a frame of its own.
//! - A frame name never contains `;` or a line break: a `;` in a name (Rust's
//!   `[u8; 4]`) is written `:`, a line break a space; whitespace at either
//!   end is trimmed, and an empty name is written `??`. Parsing gives back
//!   names as written.
//! - Each stack appears once, with the sum of its counts; lines are sorted
//!   by their frames, so the same input always gives the same text. Counts
//!   are positive integers; a stack with no frames is left out.
//! - A stack whose copy was truncated starts at its outermost frame that was
//!   captured.
//!
//! # Sources
//!
//! - [`from_alerts`]: each alert that carries a stack counts 1.
//! - [`from_profile`]: each sample counts 1; with [`Roots::Component`] every
//!   stack gets its component's name (`layout#1`) as its root frame, which
//!   keeps threads apart in a flamegraph.
//!
//! # Example
//!
//! ```
//! use hangwatch::stack::{Frame, Stack};
//! use hangwatch_export::collapsed::{self, Collapsed};
//!
//! let frame = |name: &str| Frame { function: Some(name.into()), ..Frame::default() };
//! // Innermost first, as hangwatch records stacks.
//! let stack = Stack { frames: vec![frame("myapp::reflow"), frame("myapp::run")], ..Stack::default() };
//!
//! let mut stacks = Collapsed::default();
//! stacks.add_stack(None, &stack);
//! stacks.add_stack(None, &stack);
//! let text = stacks.to_string();
//! assert_eq!(text, "myapp::run;myapp::reflow 2\n");
//! assert_eq!(collapsed::parse(&text)?, stacks);
//! # Ok::<(), hangwatch_export::LineError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use hangwatch::stack::Stack;
use hangwatch::{Alert, Profile, ProfileSample, ProfiledThread};

use crate::error::{ExportError, LineError};
use crate::frames::frame_name;

/// Whether [`from_profile`] roots each stack at its component's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// Stacks start at their outermost frame; all threads merge.
    None,
    /// Each stack starts with a frame named after its component (`layout#1`).
    Component,
}

/// Distinct stacks, outermost frame first, with how often each was seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collapsed {
    counts: BTreeMap<Vec<String>, u64>,
}

impl Collapsed {
    /// Counts `frames` (outermost first) `count` more times. Names are made
    /// safe for the format (see the [module docs](self)); an empty stack or a
    /// zero count changes nothing.
    pub fn add<S: AsRef<str>>(&mut self, frames: impl IntoIterator<Item = S>, count: u64) {
        let frames: Vec<String> = frames.into_iter().map(|f| sanitize(f.as_ref())).collect();
        if frames.is_empty() || count == 0 {
            return;
        }
        let total = self.counts.entry(frames).or_default();
        *total = total.saturating_add(count);
    }

    /// Counts a hangwatch [`Stack`] (innermost frame first) once, under a
    /// root frame named `root` if one is given.
    pub fn add_stack(&mut self, root: Option<&str>, stack: &Stack) {
        if stack.frames.is_empty() {
            return;
        }
        let frames = stack.frames.iter().rev().map(frame_name);
        self.add(root.map(str::to_owned).into_iter().chain(frames), 1);
    }

    /// The stacks (outermost frame first) and their counts, sorted by frames.
    pub fn stacks(&self) -> impl Iterator<Item = (&[String], u64)> + '_ {
        self.counts
            .iter()
            .map(|(frames, count)| (frames.as_slice(), *count))
    }

    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.counts
            .values()
            .fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// Whether there is no stack at all.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

impl fmt::Display for Collapsed {
    /// The collapsed lines, each ending with `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (frames, count) in self.stacks() {
            writeln!(f, "{} {count}", frames.join(";"))?;
        }
        Ok(())
    }
}

/// Makes a frame name safe for the format: no `;`, no line break, no
/// whitespace at either end, not empty.
fn sanitize(name: &str) -> String {
    match name.trim() {
        "" => "??".to_owned(),
        name => name.replace(';', ":").replace(['\n', '\r'], " "),
    }
}

/// The stacks of `alerts`: each alert that carries a stack counts 1, a
/// stack that followed its alert instead of the alert's own
/// ([`stacks_of`](crate::hangs::stacks_of)).
pub fn from_alerts(alerts: &[Alert]) -> Collapsed {
    let mut collapsed = Collapsed::default();
    for (_, stack) in crate::hangs::stacks_of(alerts) {
        collapsed.add_stack(None, stack);
    }
    collapsed
}

/// The stacks of `profile`'s samples: each sample counts 1, under its
/// component's name if `roots` asks for it.
pub fn from_profile(profile: &Profile, roots: Roots) -> Collapsed {
    from_samples(profile, roots, |_, _| true)
}

/// The stacks of `profile`'s samples taken while their thread was hung (in
/// one of its hang markers): where threads spend their hangs.
pub fn from_profile_hangs(profile: &Profile, roots: Roots) -> Collapsed {
    from_samples(profile, roots, |thread, sample| {
        thread.hangs.iter().any(|hang| {
            // Saturating: a profile from another process may say anything.
            let end = hang.start.saturating_add(hang.duration);
            (hang.start..=end).contains(&sample.time)
        })
    })
}

fn from_samples(
    profile: &Profile,
    roots: Roots,
    keep: impl Fn(&ProfiledThread, &ProfileSample) -> bool,
) -> Collapsed {
    let mut collapsed = Collapsed::default();
    for thread in &profile.threads {
        let root = match roots {
            Roots::None => None,
            Roots::Component => Some(thread.component.to_string()),
        };
        for sample in thread.samples.iter().filter(|sample| keep(thread, sample)) {
            collapsed.add_stack(root.as_deref(), &profile.stack_of(sample));
        }
    }
    collapsed
}

/// Parses collapsed lines (blank lines are skipped), or says which line is
/// malformed and how.
pub fn parse(text: &str) -> Result<Collapsed, LineError> {
    let mut collapsed = Collapsed::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let error = |message: String| LineError {
            line: index + 1,
            message,
        };
        let Some((stack, count)) = line.rsplit_once(' ') else {
            return Err(error(
                "expected frames separated by `;`, a space, then a count".into(),
            ));
        };
        let count: u64 = count.parse().map_err(|_| {
            error(format!(
                "expected a count (a whole number) after the last space, found {count:?}"
            ))
        })?;
        let frames: Vec<&str> = stack.split(';').collect();
        if let Some(position) = frames.iter().position(|frame| frame.trim().is_empty()) {
            return Err(error(format!(
                "frame {} is empty; frames are separated by a single `;`",
                position + 1
            )));
        }
        collapsed.add(frames, count);
    }
    Ok(collapsed)
}

/// Writes `collapsed` to `out` as collapsed lines.
pub fn write(collapsed: &Collapsed, mut out: impl Write) -> Result<(), ExportError> {
    write!(out, "{collapsed}")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_and_line_breaks_in_names_are_replaced() {
        let mut collapsed = Collapsed::default();
        collapsed.add(["<[u8; 4] as Foo>::bar\nbaz"], 1);
        assert_eq!(collapsed.to_string(), "<[u8: 4] as Foo>::bar baz 1\n");
        assert_eq!(parse(&collapsed.to_string()), Ok(collapsed));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let cases = [
            ("a;b 1\n\nnocount\n", 3, "expected frames"),
            ("a;b x\n", 1, "found \"x\""),
            ("a 1\na;;b 2\n", 2, "frame 2 is empty"),
            ("a;b -1\n", 1, "a whole number"),
        ];
        for (text, line, message) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}");
            assert!(error.message.contains(message), "{error}");
        }
    }

    #[test]
    fn equal_stacks_merge_and_empty_ones_are_left_out() {
        let mut collapsed = parse("a;b 1\na;b 2\nc 1\n").unwrap();
        collapsed.add(Vec::<String>::new(), 5);
        collapsed.add(["c"], 0);
        assert_eq!(collapsed.to_string(), "a;b 3\nc 1\n");
        assert_eq!(collapsed.total(), 4);
    }
}
