//! Collapsed stacks: the input of flamegraph tools.
//!
//! One line per distinct stack: its frames from the outermost to the
//! innermost, separated by `;`, then a space and its weight:
//!
//! ```text
//! browser;layout#1;std::thread::Builder::spawn_unchecked_::{{closure}};myapp::layout::run;myapp::layout::reflow;std::sync::Mutex<T>::lock 1600
//! browser;script#1;myapp::script::run;myapp::script::eval 450
//! ```
//!
//! This is the format of Brendan Gregg's `stackcollapse-*` scripts, which
//! `flamegraph.pl`, inferno, speedscope and others read.
//!
//! # Prefix: stacks keep their place
//!
//! With [`Prefix::Process`] (what `hangwatch report` writes unless told
//! `--no-prefix`) each stack starts with two frames that say where it was
//! taken: the process's name, then the component's (`layout#1`); so a
//! flamegraph keeps processes and threads apart, and two programs' stacks
//! can be put in one file. [`Prefix::Component`] puts the component alone,
//! [`Prefix::None`] nothing: all threads merge.
//!
//! # Weights
//!
//! - [`from_alerts`]: **milliseconds of hang time**. Each hang's duration is
//!   shared among the stacks its alerts carry, as
//!   [`weighted_stacks`](crate::hangs::weighted_stacks) says: a stack stands
//!   from its alert until the next stack of the hang (the first one also
//!   from the hang's start), the last one until the hang ended; a stack that
//!   followed its alert counts instead of the alert's own. Each weight is
//!   rounded to whole milliseconds, and is at least 1, so a hang of 1.6 s
//!   seen in one place weighs 1600.
//! - [`from_profile`] and [`from_profile_hangs`]: **samples**. Each sample
//!   counts 1.
//!
//! # Invariants
//!
//! - Frames are named as [`Frame::name`](hangwatch::Frame::name) says; an
//!   inlined call is a frame of its own.
//! - A frame name never contains `;` or a line break: a `;` in a name (Rust's
//!   `[u8; 4]`) is written `:`, a line break a space; whitespace at either
//!   end is trimmed, and an empty name is written `??`. Parsing gives back
//!   names as written. Prefix frames (process and component names) are made
//!   safe the same way.
//! - Each stack appears once, with the sum of its weights; lines are sorted
//!   by their frames, so the same input always gives the same text. Weights
//!   are positive integers; a stack with no frames of its own is left out.
//! - A stack whose copy was truncated starts (after the prefix) at its
//!   outermost frame that was captured.
//!
//! # Example
//!
//! ```
//! use hangwatch::{Frame, Stack};
//! use hangwatch_export::collapsed::{self, Collapsed};
//!
//! let frame = |name: &str| Frame { function: Some(name.into()), ..Frame::default() };
//! // Innermost first, as hangwatch records stacks.
//! let stack = Stack { frames: vec![frame("myapp::reflow"), frame("myapp::run")], ..Stack::default() };
//!
//! let mut stacks = Collapsed::default();
//! stacks.add_stack(&["browser", "layout#1"], &stack, 1000);
//! stacks.add_stack(&["browser", "layout#1"], &stack, 600);
//! let text = stacks.to_string();
//! assert_eq!(text, "browser;layout#1;myapp::run;myapp::reflow 1600\n");
//! assert_eq!(collapsed::parse(&text)?, stacks);
//! # Ok::<(), hangwatch_export::LineError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::time::Duration;

use hangwatch::{Alert, ComponentId, Profile, ProfileSample, ProfiledThread, Stack};

use crate::error::{ExportError, LineError};

/// The frames put before each stack's own (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix<'a> {
    /// Stacks start at their outermost frame; all threads merge.
    None,
    /// Each stack starts with a frame named after its component (`layout#1`).
    Component,
    /// Each stack starts with a frame named after its process (the name
    /// given), then one named after its component.
    Process(&'a str),
}

impl Prefix<'_> {
    /// The prefix frames of a stack of `component`, outermost first.
    fn frames(&self, component: &ComponentId) -> Vec<String> {
        match self {
            Prefix::None => Vec::new(),
            Prefix::Component => vec![component.to_string()],
            Prefix::Process(process) => vec![(*process).to_owned(), component.to_string()],
        }
    }
}

/// Distinct stacks, outermost frame first, each with its weight (see
/// [Weights](self#weights)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collapsed {
    counts: BTreeMap<Vec<String>, u64>,
}

impl Collapsed {
    /// Adds `count` to the weight of `frames` (outermost first). Names are
    /// made safe for the format (see the [module docs](self)); an empty stack
    /// or a zero count changes nothing.
    pub fn add<S: AsRef<str>>(&mut self, frames: impl IntoIterator<Item = S>, count: u64) {
        let frames: Vec<String> = frames.into_iter().map(|f| sanitize(f.as_ref())).collect();
        if frames.is_empty() || count == 0 {
            return;
        }
        let total = self.counts.entry(frames).or_default();
        *total = total.saturating_add(count);
    }

    /// Adds `weight` to a hangwatch [`Stack`] (innermost frame first), under
    /// the `prefix` frames (outermost first). A stack with no frames of its
    /// own changes nothing.
    pub fn add_stack<S: AsRef<str>>(&mut self, prefix: &[S], stack: &Stack, weight: u64) {
        if stack.frames.is_empty() {
            return;
        }
        let prefix = prefix.iter().map(|name| name.as_ref().to_owned());
        let frames = stack
            .frames
            .iter()
            .rev()
            .map(|frame| frame.name().into_owned());
        self.add(prefix.chain(frames), weight);
    }

    /// The stacks (outermost frame first) and their weights, sorted by frames.
    pub fn stacks(&self) -> impl Iterator<Item = (&[String], u64)> + '_ {
        self.counts
            .iter()
            .map(|(frames, count)| (frames.as_slice(), *count))
    }

    /// The sum of all weights.
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

/// The stacks of `alerts`, each weighing the milliseconds of hang time it
/// stands for (see [Weights](self#weights)), under `prefix`.
pub fn from_alerts(alerts: &[Alert], prefix: Prefix<'_>) -> Collapsed {
    let mut collapsed = Collapsed::default();
    for (alert, stack, time) in crate::hangs::weighted_stacks(alerts) {
        let prefix = prefix.frames(&alert.component);
        collapsed.add_stack(&prefix, stack, milliseconds(time));
    }
    collapsed
}

/// `time` in whole milliseconds, rounded, and at least 1.
fn milliseconds(time: Duration) -> u64 {
    let rounded = time.as_micros().saturating_add(500) / 1000;
    u64::try_from(rounded).unwrap_or(u64::MAX).max(1)
}

/// The stacks of `profile`'s samples: each sample counts 1, under `prefix`.
pub fn from_profile(profile: &Profile, prefix: Prefix<'_>) -> Collapsed {
    from_samples(profile, prefix, |_, _| true)
}

/// The stacks of `profile`'s samples taken while their thread was hung (in
/// one of its hang markers): where threads spend their hangs. Each sample
/// counts 1, under `prefix`.
pub fn from_profile_hangs(profile: &Profile, prefix: Prefix<'_>) -> Collapsed {
    from_samples(profile, prefix, |thread, sample| {
        thread.hangs.iter().any(|hang| {
            // Saturating: a profile from another process may say anything.
            let end = hang.start.saturating_add(hang.duration);
            (hang.start..=end).contains(&sample.time)
        })
    })
}

fn from_samples(
    profile: &Profile,
    prefix: Prefix<'_>,
    keep: impl Fn(&ProfiledThread, &ProfileSample) -> bool,
) -> Collapsed {
    let mut collapsed = Collapsed::default();
    for thread in &profile.threads {
        let prefix = prefix.frames(&thread.component);
        for sample in thread.samples.iter().filter(|sample| keep(thread, sample)) {
            collapsed.add_stack(&prefix, &profile.stack_of(sample), 1);
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

    use hangwatch::{AlertKind, Frame, HangLevel};
    use std::time::{Duration, UNIX_EPOCH};

    /// An alert of layout#1 `ms` into its hang, with a stack of `names`
    /// (innermost first) if given.
    fn alert(kind: AlertKind, ms: u64, names: Option<&[&str]>) -> Alert {
        let frame = |name: &&str| Frame {
            function: Some((*name).into()),
            ..Frame::default()
        };
        {
            let mut alert = Alert::new(
                ComponentId::new("layout", 1),
                kind,
                Duration::from_millis(ms),
                UNIX_EPOCH + Duration::from_millis(10_000 + ms),
            );
            alert.annotation = Some("reflow".into());
            alert.thread = Some("layout".into());
            alert.started_ns = Some(1);
            alert.stack = names.map(|names| Stack {
                frames: names.iter().map(frame).collect(),
                ..Stack::default()
            });
            alert
        }
    }

    fn reflow_hang() -> Vec<Alert> {
        vec![
            alert(
                AlertKind::Transient,
                150,
                Some(&["myapp::reflow", "myapp::run"]),
            ),
            alert(
                AlertKind::Permanent,
                1000,
                Some(&["syscall", "myapp::reflow", "myapp::run"]),
            ),
            alert(
                AlertKind::Ended {
                    worst: HangLevel::Permanent,
                },
                1600,
                None,
            ),
        ]
    }

    #[test]
    fn process_and_component_come_first_unless_left_out() {
        let alerts = reflow_hang();
        let with = from_alerts(&alerts, Prefix::Process("browser")).to_string();
        assert_eq!(
            with,
            "browser;layout#1;myapp::run;myapp::reflow 1000\n\
             browser;layout#1;myapp::run;myapp::reflow;syscall 600\n"
        );
        let component = from_alerts(&alerts, Prefix::Component).to_string();
        assert!(component.starts_with("layout#1;myapp::run;"), "{component}");
        let none = from_alerts(&alerts, Prefix::None).to_string();
        assert!(none.starts_with("myapp::run;"), "{none}");
        // A process name is made safe for the format like any frame.
        let odd = from_alerts(&alerts, Prefix::Process(" my;app\n")).to_string();
        assert!(odd.starts_with("my:app;layout#1;"), "{odd}");
    }

    #[test]
    fn alerts_weigh_the_milliseconds_of_hang_time_they_stand_for() {
        let mut alerts = reflow_hang();
        // 1600.4 ms in all: the last stack weighs 600 (rounded).
        alerts[2].duration = Duration::from_micros(1_600_400);
        let stacks = from_alerts(&alerts, Prefix::None);
        let weights: Vec<u64> = stacks.stacks().map(|(_, weight)| weight).collect();
        assert_eq!(weights, [1000, 600]);
        assert_eq!(stacks.total(), 1600);

        // A hang seen in one place only: its whole time, at least 1 ms.
        let mut short = reflow_hang();
        short.remove(0);
        short[0].duration = Duration::from_micros(200);
        short[1].duration = Duration::from_micros(300);
        let stacks = from_alerts(&short, Prefix::None);
        assert_eq!(stacks.to_string(), "myapp::run;myapp::reflow;syscall 1\n");
    }

    #[test]
    fn profile_samples_weigh_one_each_under_their_prefix() {
        let stack = reflow_hang()[1].stack.clone().unwrap();
        let mut profile = Profile::new(UNIX_EPOCH, Duration::from_millis(10));
        let samples = (0..3)
            .map(|i| profile.sample(Duration::from_millis(10 * i), &stack))
            .collect();
        profile.threads = vec![ProfiledThread {
            component: ComponentId::new("layout", 1),
            thread: None,
            tid: 7,
            samples,
            hangs: Vec::new(),
        }];
        assert_eq!(
            from_profile(&profile, Prefix::Process("child-0")).to_string(),
            "child-0;layout#1;myapp::run;myapp::reflow;syscall 3\n"
        );
    }
}
