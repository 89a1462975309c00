//! The flamegraph is well-formed SVG in which hung functions can be found by
//! name.

mod common;

use common::*;
use hangwatch_export::collapsed::{self, Collapsed, Roots};
use hangwatch_export::{flamegraph, ExportError};

/// Parses `svg` as XML and gives the text of every `<title>` and `<text>`.
fn texts(svg: &str) -> Vec<String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(svg, options)
        .unwrap_or_else(|error| panic!("the SVG is not well-formed XML: {error}"));
    assert_eq!(document.root_element().tag_name().name(), "svg");
    document
        .descendants()
        .filter(|node| matches!(node.tag_name().name(), "title" | "text"))
        .filter_map(|node| node.text())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_svg_is_well_formed_and_names_the_hung_functions() {
    let stacks = collapsed::from_alerts(&alerts());
    let svg = flamegraph::to_svg(&stacks, "Hangs of <myapp> & co").unwrap();
    let texts = texts(&svg);
    assert!(
        texts.iter().any(|t| t == "Hangs of <myapp> & co"),
        "no title in {texts:?}"
    );
    // Each frame's tooltip starts with its full name, whatever its width.
    for name in [
        "myapp::layout::reflow",
        "myapp::script::eval",
        "<myapp::dom::Node as core::ops::drop::Drop>::drop",
        "libmyapp_gfx.so+0x1f00",
    ] {
        assert!(
            texts.iter().any(|t| t.starts_with(&format!("{name} ("))),
            "{name} is not in the SVG's text: {texts:?}"
        );
    }
}

#[test]
fn a_profile_with_component_roots_keeps_threads_apart() {
    let stacks = collapsed::from_profile(&profile(), Roots::Component);
    let texts = texts(&flamegraph::to_svg(&stacks, "Profile").unwrap());
    for root in ["layout#1 (", "script#1 ("] {
        assert!(
            texts.iter().any(|t| t.starts_with(root)),
            "{root}: {texts:?}"
        );
    }
}

#[test]
fn the_same_stacks_give_the_same_svg() {
    let stacks = collapsed::from_alerts(&alerts());
    assert_eq!(
        flamegraph::to_svg(&stacks, "Hangs").unwrap(),
        flamegraph::to_svg(&stacks, "Hangs").unwrap()
    );
}

#[test]
fn no_stacks_is_an_error_that_says_why() {
    let error = flamegraph::to_svg(&Collapsed::default(), "Hangs").unwrap_err();
    assert!(matches!(error, ExportError::NoStacks));
    assert!(error.to_string().contains("permanent alerts"), "{error}");
}

/// Found by the hostile-input tests (`collapsed_lines`): counts whose sum
/// overflows a `u64` made inferno panic ("attempt to add with overflow") in
/// debug builds.
#[test]
fn counts_that_overflow_when_added_are_scaled_down() {
    let stacks = collapsed::parse(&format!(
        "main;huge {}\nmain;small 3\nmain;tiny 1\n",
        u64::MAX
    ))
    .unwrap();
    let texts = texts(&flamegraph::to_svg(&stacks, "Huge").unwrap());
    assert!(
        texts.iter().any(|t| t.starts_with("huge (")),
        "no huge frame in {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("main (")),
        "no main frame in {texts:?}"
    );
}

/// Found by the hostile-input tests (`collapsed_lines`): a control character
/// in a parsed frame name went into the SVG as it was, which is not
/// well-formed XML.
#[test]
fn characters_xml_cannot_hold_are_replaced() {
    let stacks = collapsed::parse("main;bell\u{7}here;\u{fffe} 2\nmain;ok 1\n").unwrap();
    let texts = texts(&flamegraph::to_svg(&stacks, "Odd").unwrap());
    assert!(
        texts.iter().any(|t| t.starts_with("bell\u{fffd}here (")),
        "no bell frame in {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("\u{fffd} (")),
        "no replaced frame in {texts:?}"
    );
}

/// Found by libFuzzer (`collapsed_lines`): a stack whose outermost frame
/// starts with `# ` was skipped by inferno as a comment, and with no other
/// stack the flamegraph failed ("No stack counts found"). Found next to it
/// in inferno's parser: a number after a space at the end of the innermost
/// frame was read as a second, differential count and cut off the name.
#[test]
fn names_inferno_would_misread_are_drawn_as_they_are() {
    let stacks = collapsed::parse("# main;run 3\n").unwrap();
    let drawn = texts(&flamegraph::to_svg(&stacks, "Comment").unwrap());
    assert!(
        drawn.iter().any(|t| t.starts_with("\u{ff03} main (")),
        "no outermost frame in {drawn:?}"
    );

    let stacks = collapsed::parse("main;frame 12 3\n").unwrap();
    let texts = texts(&flamegraph::to_svg(&stacks, "Count").unwrap());
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("frame\u{a0}12 (3 stacks")),
        "no innermost frame in {texts:?}"
    );
}
