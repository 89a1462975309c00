//! The `collapsed_lines` target: bytes parsed as collapsed stacks, then
//! drawn as a flamegraph.

use hangwatch_export::collapsed::{self, Collapsed};
use hangwatch_export::{flamegraph, ExportError};

/// Parses `data` (if it is UTF-8) with [`collapsed::parse`] and asserts:
///
/// - an error names a line of the input;
/// - what parsed is written back and parses to the same stacks, every frame
///   name safe for the format (no `;`, no line break, trimmed, not empty);
/// - its flamegraph is drawn without a panic, as well-formed XML ([`draw`]).
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let stacks = match collapsed::parse(text) {
        Ok(stacks) => stacks,
        Err(error) => {
            assert!(
                error.line >= 1 && error.line <= text.lines().count(),
                "{error}"
            );
            return;
        }
    };
    for (frames, count) in stacks.stacks() {
        assert!(!frames.is_empty() && count > 0);
        for frame in frames {
            assert!(!frame.is_empty() && frame.trim() == frame, "{frame:?}");
            assert!(!frame.contains([';', '\n', '\r']), "{frame:?}");
        }
    }
    let written = stacks.to_string();
    assert_eq!(
        collapsed::parse(&written).as_ref(),
        Ok(&stacks),
        "{written}"
    );
    draw(&stacks);
}

/// Draws the flamegraph of `stacks` and asserts that it is well-formed XML
/// whose root frame counts every stack (when the total is exact in an
/// `f64`, which inferno prints counts through), or that there was nothing to
/// draw.
pub fn draw(stacks: &Collapsed) {
    let svg = match flamegraph::to_svg(stacks, "fuzz", "samples") {
        Ok(svg) => svg,
        Err(ExportError::NoStacks) => return assert!(stacks.is_empty()),
        Err(error) => panic!("the flamegraph failed: {error}"),
    };
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let document = match roxmltree::Document::parse_with_options(&svg, options) {
        Ok(document) => document,
        Err(error) => panic!("the flamegraph is not well-formed XML: {error}"),
    };
    let total = stacks.total();
    if total > 1 << f64::MANTISSA_DIGITS {
        return;
    }
    // The root frame's tooltip, with the total as inferno prints it.
    let digits = total.to_string();
    let grouped: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|group| std::str::from_utf8(group).unwrap_or_default())
        .collect();
    let root = format!("all ({} samples, 100%)", grouped.join(","));
    assert!(
        document
            .descendants()
            .filter(|node| node.has_tag_name("title"))
            .any(|node| node.text() == Some(root.as_str())),
        "no root frame {root:?} in the flamegraph"
    );
}
