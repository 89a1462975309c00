//! Frame labels that keep the function's own name.
//!
//! inferno writes each frame of a flamegraph as
//!
//! ```text
//! <g><title>NAME (WEIGHT UNIT, SHARE%)</title><rect .../><text x=".." y="..">LABEL</text></g>
//! ```
//!
//! where LABEL is NAME if it fits the box, else as many characters as fit:
//! NAME's first ones and `..`, or nothing if not even three fit. [`refit`]
//! replaces each LABEL that inferno cut by [`shorten`]'s label for NAME, no
//! longer than inferno's; every other part of the SVG is left as it is, and
//! so is a frame it cannot read.
//!
//! # Shortening
//!
//! A Rust path is cut at its `::` separators that are outside any `<...>`,
//! `(...)` or `[...]` (so `<std::sync::Mutex<T> as Drop>::drop` splits only
//! before `drop`), and a segment such as `{{closure}}` stays with the one
//! before it. The label is the longest tail of whole segments that fits after
//! `..` (`..child::read_from_slow_socket`); else the last segment alone
//! (`read_from_slow_socket`), the function's own name; else that segment's
//! first characters and `..`. A name with no such separator (a C symbol,
//! `libc.so.6+0x1234`) is cut as inferno cuts it.

use std::borrow::Cow;

/// The frame groups' start, as inferno writes it.
const FRAME: &str = "<g><title>";

/// `svg` (as inferno writes it) with every label that inferno cut shortened
/// as [`shorten`] says.
pub fn refit(svg: &str) -> String {
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    while let Some(at) = rest.find(FRAME) {
        let (before, frame) = rest.split_at(at);
        out.push_str(before);
        let Some(end) = frame.find("</g>") else {
            rest = frame;
            break;
        };
        let (group, after) = frame.split_at(end);
        match refit_frame(group) {
            Some(refitted) => out.push_str(&refitted),
            None => out.push_str(group),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// One frame group (up to its `</g>`) with its label shortened, or `None`
/// if inferno did not cut it (or the group is not as expected).
fn refit_frame(group: &str) -> Option<String> {
    let title_end = group.find("</title>")?;
    let title = unescape(group.get(FRAME.len()..title_end)?);
    // The title is NAME, a space, and the weight in parentheses.
    let (name, _) = title.rsplit_once(" (")?;
    let text = title_end + group[title_end..].find("<text")?;
    let label_start = text + group[text..].find('>')? + 1;
    let label_end = label_start + group[label_start..].find("</text>")?;
    let label = unescape(&group[label_start..label_end]);
    if !label.ends_with("..") || label == name {
        return None;
    }
    let shortened = shorten(name, label.chars().count());
    Some(format!(
        "{}{}{}",
        &group[..label_start],
        escape(&shortened),
        &group[label_end..]
    ))
}

/// The label for a frame named `name` in a box that holds `room`
/// characters (see the [module docs](self)).
pub fn shorten(name: &str, room: usize) -> String {
    if name.chars().count() <= room {
        return name.to_owned();
    }
    let tails = tails(name);
    for &at in &tails {
        let tail = &name[at..];
        if tail.chars().count() + 2 <= room {
            return format!("..{tail}");
        }
    }
    let own = tails.last().map_or(name, |&at| &name[at..]);
    if own.chars().count() <= room {
        return own.to_owned();
    }
    if room < 3 {
        return String::new();
    }
    let mut cut: String = own.chars().take(room - 2).collect();
    cut.push_str("..");
    cut
}

/// Where each tail of whole path segments of `name` starts, longest first:
/// after each `::` outside brackets, except before a `{{...}}` segment.
fn tails(name: &str) -> Vec<usize> {
    let bytes = name.as_bytes();
    let mut depth = 0usize;
    let mut tails = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' | b'(' | b'[' => depth += 1,
            // `->` in a function type closes nothing.
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' | b')' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                let at = i + 2;
                if at < bytes.len() && !name[at..].starts_with("{{") {
                    tails.push(at);
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    tails
}

/// `text` with the five entities XML writers use replaced by their
/// characters.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `text` with the characters XML text must not hold as they are replaced
/// by entities, as inferno writes them.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKET: &str = "hangwatch::demo::child::read_from_slow_socket";

    #[test]
    fn leading_segments_go_before_the_functions_own_name() {
        assert_eq!(shorten(SOCKET, 45), SOCKET);
        assert_eq!(shorten(SOCKET, 30), "..child::read_from_slow_socket");
        assert_eq!(shorten(SOCKET, 29), "..read_from_slow_socket");
        // Its own name alone, without the dots that would not fit.
        assert_eq!(shorten(SOCKET, 22), "read_from_slow_socket");
        assert_eq!(shorten(SOCKET, 10), "read_fro..");
        assert_eq!(shorten(SOCKET, 2), "");
    }

    #[test]
    fn brackets_and_closures_keep_their_segments_together() {
        let lock = "<std::sys::sync::mutex::futex::Mutex>::lock_contended";
        assert_eq!(shorten(lock, 20), "..lock_contended");
        let closure = "hangwatch::demo::child::spawn_loop::{{closure}}";
        assert_eq!(shorten(closure, 26), "..spawn_loop::{{closure}}");
        assert_eq!(shorten(closure, 20), "spawn_loop::{{clos..");
        let function_type = "<fn() -> i32 as myapp::Task>::run";
        assert_eq!(shorten(function_type, 8), "..run");
        // No separator outside brackets: cut as inferno cuts.
        assert_eq!(shorten("libc.so.6+0x1098eb", 8), "libc.s..");
    }

    #[test]
    fn only_labels_inferno_cut_are_redone_and_entities_survive() {
        let frame = |title: &str, label: &str| {
            format!(
                "<g><title>{title}</title><rect x=\"0%\" width=\"5%\"/>\
                 <text x=\"0.25%\" y=\"10\">{label}</text></g>"
            )
        };
        let svg = format!(
            "<svg>{}{}{}</svg>",
            // 30 characters of room.
            frame(
                &format!("{SOCKET} (128 ms, 13.05%)"),
                "hangwatch::demo::child::read.."
            ),
            frame("main (3 ms, 100%)", "main"),
            frame(
                "&lt;myapp::Doc as core::ops::Drop&gt;::drop (1 ms, 1%)",
                "&lt;myapp::D.."
            ),
        );
        let refitted = refit(&svg);
        assert!(
            refitted.contains(">..child::read_from_slow_socket</text>"),
            "{refitted}"
        );
        assert!(refitted.contains(">main</text>"), "{refitted}");
        assert!(refitted.contains(">..drop</text>"), "{refitted}");
        assert!(refitted.contains("&lt;myapp::Doc as core::ops::Drop&gt;::drop (1 ms"));
        // Anything else goes through as it was.
        assert_eq!(refit("<svg><g><title>torn"), "<svg><g><title>torn");
    }
}
