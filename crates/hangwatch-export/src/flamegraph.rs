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
//! - The SVG is one well-formed XML document, with the title given.
//! - Every frame that is drawn carries its full name in its `<title>` (the
//!   tooltip, and what the search matches), however narrow its box; so a hung
//!   function can always be found by name. Frames narrower than 0.1 % of the
//!   width are not drawn, as in every flamegraph.
//! - Colours come from a hash of each frame's name, so the same input always
//!   gives the same SVG and a function keeps its colour from one graph to the
//!   next.
//! - There must be at least one stack: an empty input is an error
//!   ([`ExportError::NoStacks`]) rather than an empty picture.
//!
//! # Example
//!
//! ```
//! use hangwatch_export::{collapsed, flamegraph};
//!
//! let stacks = collapsed::parse("main;layout::run;layout::reflow 3\nmain;script::eval 1\n")?;
//! let svg = flamegraph::to_svg(&stacks, "Hangs")?;
//! assert!(svg.contains("layout::reflow"));
//! assert!(svg.contains("Hangs"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [inferno]: https://docs.rs/inferno

use std::io::Write;

use inferno::flamegraph::{self as inferno_flamegraph, Options};

use crate::collapsed::Collapsed;
use crate::error::ExportError;

/// The flamegraph of `stacks` as SVG text, titled `title`.
pub fn to_svg(stacks: &Collapsed, title: &str) -> Result<String, ExportError> {
    let mut svg = Vec::new();
    write(stacks, title, &mut svg)?;
    // inferno writes UTF-8 only.
    Ok(String::from_utf8_lossy(&svg).into_owned())
}

/// Writes the flamegraph of `stacks`, titled `title`, to `out` as SVG.
pub fn write(stacks: &Collapsed, title: &str, mut out: impl Write) -> Result<(), ExportError> {
    if stacks.is_empty() {
        return Err(ExportError::NoStacks);
    }
    let mut options = Options::default();
    options.title = title.to_owned();
    options.count_name = "stacks".to_owned();
    options.hash = true;
    let lines = stacks.to_string();
    inferno_flamegraph::from_lines(&mut options, lines.lines(), &mut out)?;
    out.flush()?;
    Ok(())
}
