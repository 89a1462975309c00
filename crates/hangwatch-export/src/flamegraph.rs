//! Flamegraph SVGs, drawn by [inferno] from [collapsed stacks](crate::collapsed).
//!
//! Each box is a frame, as wide as the share of stacks that passed through
//! it; callers sit below their callees, so the widest towers are where the
//! hung threads spent their time. Open the SVG in a browser: a click zooms
//! into a frame, and *Search* (or Ctrl-F) highlights every frame whose name
//! matches, with the share of stacks it covers.
//!
//! # Invariants
//!
//! - The SVG is one well-formed XML document, with the title given, 1200
//!   pixels wide.
//! - Every frame that is drawn carries its full name in its `<title>` (the
//!   tooltip, and what the search matches), however narrow its box, with its
//!   weight in the unit given (`ms`, `samples`); so a hung function can
//!   always be found by name. Frames narrower than 0.1 % of the width are not
//!   drawn, as in every flamegraph.
//! - **A name that does not fit its box keeps the function's own name.**
//!   Rust paths are long (`hangwatch::demo::child::read_from_slow_socket`,
//!   45 characters, is 320 pixels of 12-pixel monospace) and a hung thread's
//!   tower is often a tenth of the graph, so most names must be shortened.
//!   inferno cuts them at the right, which keeps the crate and module and
//!   drops the function (`hangwatch::demo::chi..`), and its script, when it
//!   redraws, cuts at the left in the middle of a path
//!   (`..ild::read_from_slow_socket`). Here a name that does not fit loses
//!   whole leading path segments first (`..child::read_from_slow_socket`,
//!   then `read_from_slow_socket`), and is cut only if its last segment alone
//!   does not fit. The graph has a fixed width, so that the script does not
//!   redraw these labels when it loads (it still does after a zoom, from the
//!   full names).
//! - Colours come from a hash of each frame's name, so the same input always
//!   gives the same SVG and a function keeps its colour from one graph to the
//!   next.
//! - There must be at least one stack: an empty input is an error
//!   ([`ExportError::NoStacks`]) rather than an empty picture.
//! - What only parsed collapsed text can bring is drawn too, rather than
//!   failing, breaking the XML or being misread:
//!   - a character XML cannot hold (a control character other than tab,
//!     U+FFFE, U+FFFF) is drawn as U+FFFD;
//!   - an outermost frame starting with `#` (inferno skips a line starting
//!     with `# ` as a comment) gets a fullwidth `＃` instead;
//!   - an innermost frame ending in a space and a number (which inferno
//!     would take for a second, differential count) gets a no-break space
//!     for that space;
//!   - counts whose sum would overflow inferno's 64-bit sample counter are
//!     all divided by one factor, each kept at 1 or more, so the widths stay
//!     in proportion and every stack still shows.
//!
//! # Example
//!
//! ```
//! use hangwatch_export::{collapsed, flamegraph};
//!
//! let stacks = collapsed::parse("main;layout::run;layout::reflow 3\nmain;script::eval 1\n")?;
//! let svg = flamegraph::to_svg(&stacks, "Hangs", "samples")?;
//! assert!(svg.contains("layout::reflow"));
//! assert!(svg.contains("Hangs"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [inferno]: https://docs.rs/inferno

use std::borrow::Cow;
use std::io::Write;

use inferno::flamegraph::{self as inferno_flamegraph, Options};

use crate::collapsed::Collapsed;
use crate::error::ExportError;

mod labels;

/// The graph's width in pixels: inferno's default.
const WIDTH: usize = 1200;

/// The flamegraph of `stacks` as SVG text, titled `title`; `unit` says what
/// the stacks' weights count (`ms`, `samples`), as the tooltips show it.
pub fn to_svg(stacks: &Collapsed, title: &str, unit: &str) -> Result<String, ExportError> {
    if stacks.is_empty() {
        return Err(ExportError::NoStacks);
    }
    let mut options = Options::default();
    options.title = title.to_owned();
    options.count_name = unit.to_owned();
    options.hash = true;
    // A fixed width: a fluid graph's script redraws every label when it
    // loads, with its own cut.
    options.image_width = Some(WIDTH);
    let lines = drawable(stacks).to_string();
    let mut svg = Vec::new();
    inferno_flamegraph::from_lines(&mut options, lines.lines(), &mut svg)?;
    // inferno writes UTF-8 only.
    Ok(labels::refit(&String::from_utf8_lossy(&svg)))
}

/// Writes the flamegraph of `stacks` to `out` as SVG (see [`to_svg`]).
pub fn write(
    stacks: &Collapsed,
    title: &str,
    unit: &str,
    mut out: impl Write,
) -> Result<(), ExportError> {
    out.write_all(to_svg(stacks, title, unit)?.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What inferno is given: `stacks` with every frame name [`xml_safe`] and
/// each stack [`unambiguous`], and, if the sum of the counts would come near
/// `u64::MAX` (inferno adds them up in a `u64`, which panics or wraps past
/// it), every count divided by one factor and kept at 1 or more.
fn drawable(stacks: &Collapsed) -> Collapsed {
    // Half the range leaves room for the counts rounded up to 1.
    let room = u128::from(u64::MAX / 2);
    let sum: u128 = stacks.stacks().map(|(_, count)| u128::from(count)).sum();
    let factor = sum.div_ceil(room).max(1);
    let mut drawable = Collapsed::default();
    for (frames, count) in stacks.stacks() {
        let count = u64::try_from(u128::from(count) / factor).unwrap_or(u64::MAX);
        let mut names: Vec<String> = frames.iter().map(|n| xml_safe(n).into_owned()).collect();
        unambiguous(&mut names);
        drawable.add(names, count.max(1));
    }
    drawable
}

/// Makes one stack's names (outermost first) read by inferno as they are:
/// it skips a line starting with `# ` as a comment, and takes a number after
/// the last space of a line, before its count, for a differential count.
fn unambiguous(names: &mut [String]) {
    if let Some(outermost) = names.first_mut() {
        if outermost.starts_with('#') {
            outermost.replace_range(..1, "\u{ff03}");
        }
    }
    if let Some(innermost) = names.last_mut() {
        if let Some(space) = innermost.rfind(' ') {
            let tail = &innermost[space + 1..];
            if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '.') {
                innermost.replace_range(space..=space, "\u{a0}");
            }
        }
    }
}

/// `name` with every character XML 1.0 cannot hold replaced by U+FFFD.
fn xml_safe(name: &str) -> Cow<'_, str> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    if name.chars().all(allowed) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .map(|c| {
                if allowed(c) {
                    c
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })
            .collect(),
    )
}
