//! The flamegraph is well-formed SVG in which hung functions can be found by
//! name.

mod common;

use common::*;
use hangwatch_export::collapsed::{self, Collapsed, Prefix};
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
    let stacks = collapsed::from_alerts(&alerts(), Prefix::None);
    let svg = flamegraph::to_svg(&stacks, "Hangs of <myapp> & co", "ms").unwrap();
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
    let stacks = collapsed::from_profile(&profile(), Prefix::Component);
    let texts = texts(&flamegraph::to_svg(&stacks, "Profile", "ms").unwrap());
    for root in ["layout#1 (", "script#1 ("] {
        assert!(
            texts.iter().any(|t| t.starts_with(root)),
            "{root}: {texts:?}"
        );
    }
}

#[test]
fn the_same_stacks_give_the_same_svg() {
    let stacks = collapsed::from_alerts(&alerts(), Prefix::None);
    assert_eq!(
        flamegraph::to_svg(&stacks, "Hangs", "ms").unwrap(),
        flamegraph::to_svg(&stacks, "Hangs", "ms").unwrap()
    );
}

#[test]
fn no_stacks_is_an_error_that_says_why() {
    let error = flamegraph::to_svg(&Collapsed::default(), "Hangs", "ms").unwrap_err();
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
    let texts = texts(&flamegraph::to_svg(&stacks, "Huge", "ms").unwrap());
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
    let texts = texts(&flamegraph::to_svg(&stacks, "Odd", "ms").unwrap());
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
    let drawn = texts(&flamegraph::to_svg(&stacks, "Comment", "ms").unwrap());
    assert!(
        drawn.iter().any(|t| t.starts_with("\u{ff03} main (")),
        "no outermost frame in {drawn:?}"
    );

    let stacks = collapsed::parse("main;frame 12 3\n").unwrap();
    let texts = texts(&flamegraph::to_svg(&stacks, "Count", "ms").unwrap());
    assert!(
        texts.iter().any(|t| t.starts_with("frame\u{a0}12 (3 ms")),
        "no innermost frame in {texts:?}"
    );
}

/// The bug of issue 15: in the demo's flamegraph each hung thread's tower is
/// a tenth of the graph or so, too narrow for a function's whole path, and
/// its label showed the path's start (`hangwatch::demo::chi..`, inferno) or
/// a cut in its middle (`..ild::read_from_slow_socket`, its script). The
/// label keeps the function's own name; the tooltip keeps the whole path.
#[test]
fn a_hung_functions_own_name_is_readable_when_its_path_does_not_fit() {
    let stacks = collapsed::parse(
        "child-0;network#0;hangwatch::demo::child::hang_in;\
         hangwatch::demo::child::read_from_slow_socket;recv 130\n\
         child-0;layout#0;hangwatch::demo::child::hang_in;\
         hangwatch::demo::child::reflow_stuck_on_lock;syscall 160\n\
         child-1;layout#1;main 710\n",
    )
    .unwrap();
    let svg = flamegraph::to_svg(&stacks, "Hangs", "samples").unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(&svg, options).unwrap();
    let label = |function: &str| -> String {
        let title = format!("hangwatch::demo::child::{function} (");
        let group = document
            .descendants()
            .filter(|node| node.has_tag_name("g"))
            .find(|group| {
                group.children().any(|c| {
                    c.has_tag_name("title") && c.text().is_some_and(|t| t.starts_with(&title))
                })
            })
            .unwrap_or_else(|| panic!("no frame titled {title}"));
        let text = group.children().find(|c| c.has_tag_name("text")).unwrap();
        text.text().unwrap_or_default().to_owned()
    };
    // 13 % and 16 % of 1200 pixels: 22 and 27 characters.
    assert_eq!(label("read_from_slow_socket"), "read_from_slow_socket");
    assert_eq!(label("reflow_stuck_on_lock"), "..reflow_stuck_on_lock");
    assert_eq!(label("hang_in"), "..demo::child::hang_in");
    // Names that fit are as they were.
    assert!(svg.contains(">child-0</text>"), "{svg}");
}
