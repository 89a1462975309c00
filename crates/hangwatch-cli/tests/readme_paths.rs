//! Every file README.md points at is there.
//!
//! - `path:line` references anywhere (the demo's stack frames among them,
//!   whose paths begin with the build machine's checkout): the file exists
//!   and has that many lines, and when the reference is a frame
//!   (`... FUNCTION at PATH:LINE`) the line is inside that function.
//! - Paths in inline code (`crates/hangwatch-bench/src/servo.rs`,
//!   `scripts/ci-under-load`, each word of a command such as `cargo install
//!   --path crates/hangwatch-cli`): one that starts at a top-level entry of
//!   the repository must exist as written; a shorter one
//!   (`hangwatch/tests/pause.rs`, `monitor/run_time.rs`, `sampler/`, a bare
//!   `loaded.rs`) must be the end of some file's or directory's path.
//! - Relative link targets (`![...](docs/demo-flamegraph.svg)`).
//! - The "Layout" block: each crate and directory it lists at its left
//!   edge, each file under it, the paths in its descriptions; and every
//!   crate under `crates/` is listed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file and directory of the repository (directories with a trailing
/// `/`), relative to its root, without `.git` and build outputs.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if [".git", "target"].contains(&name.as_str()) {
                continue;
            }
            let path = dir.join(&name);
            let shown = path.to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.insert(format!("{shown}/"));
                pending.push(path);
            } else {
                found.insert(shown);
            }
        }
    }
    found
}

/// One thing README points at, and where.
struct Reference {
    line: usize,
    text: String,
}

/// Checks README's references; each problem with its README line.
struct Checker {
    root: PathBuf,
    tree: BTreeSet<String>,
    top: BTreeSet<String>,
    problems: Vec<String>,
    checked: usize,
}

impl Checker {
    fn new() -> Checker {
        let root = root();
        let tree = tree(&root);
        let top = tree
            .iter()
            .map(|path| {
                path.split_once('/')
                    .map_or(path.as_str(), |(first, _)| first)
                    .to_owned()
            })
            .collect();
        Checker {
            root,
            tree,
            top,
            problems: Vec::new(),
            checked: 0,
        }
    }

    fn problem(&mut self, at: &Reference, what: String) {
        self.problems
            .push(format!("README.md:{}: `{}`: {what}", at.line, at.text));
    }

    /// Whether `word` (already stripped) starts at a top-level entry.
    fn starts_at_top(&self, word: &str) -> bool {
        let first = word.split('/').next().unwrap_or(word);
        word.contains('/') && self.top.contains(first)
    }

    /// A path written from the repository's root must exist as written.
    fn exact(&mut self, at: &Reference, path: &str) {
        self.checked += 1;
        let full = self.root.join(path);
        let exists = if path.ends_with('/') {
            full.is_dir()
        } else {
            full.exists()
        };
        if !exists {
            self.problem(at, format!("no {path} in the repository"));
        }
    }

    /// A shorter path must end some path of the repository.
    fn suffix(&mut self, at: &Reference, path: &str) {
        self.checked += 1;
        let tail = format!("/{path}");
        if !self.tree.iter().any(|p| p == path || p.ends_with(&tail)) {
            self.problem(at, format!("no file or directory ends with {path}"));
        }
    }

    /// A word of inline code or of the layout: checked if it is a path.
    fn word(&mut self, at: &Reference, word: &str) {
        let word = word.trim_matches(|c: char| "()[],;:\"'".contains(c));
        let looks_like_path = !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
            && !word.starts_with("./")
            && !word.starts_with("../");
        if !looks_like_path || word.starts_with('/') {
            return;
        }
        if self.starts_at_top(word) {
            self.exact(at, word);
        } else if word.starts_with('.') {
            // A name such as `.debug/`: not this repository's.
        } else {
            // `monitor/run_time.rs`, `sampler/`, a bare `loaded.rs`.
            let shortened = if word.contains('/') {
                word.ends_with('/') || has_source_extension(word)
            } else {
                word.ends_with(".rs")
            };
            if shortened {
                self.suffix(at, word);
            }
        }
    }

    /// `path:line` somewhere in README's line `at`.
    fn path_line(&mut self, at: &Reference, whole_line: &str, path: &str, number: usize) {
        // The repository's part of a path from another checkout.
        let parts: Vec<&str> = path.split('/').collect();
        let Some(start) = parts
            .iter()
            .position(|part| self.top.contains(*part) && !part.is_empty())
        else {
            return; // Not ours: the standard library's, libc's.
        };
        let path = parts[start..].join("/");
        self.checked += 1;
        let Ok(text) = std::fs::read_to_string(self.root.join(&path)) else {
            self.problem(at, format!("no file {path}"));
            return;
        };
        let lines: Vec<&str> = text.lines().collect();
        if number == 0 || number > lines.len() {
            self.problem(
                at,
                format!("{path} has {} lines, not {number}", lines.len()),
            );
            return;
        }
        // A frame: "FUNCTION at PATH:LINE". Its line is in that function.
        let Some(function) = whole_line
            .split_once(&format!(" at {}", at.text))
            .and_then(|(before, _)| before.split_whitespace().last())
        else {
            return;
        };
        let name = function.rsplit("::").next().unwrap_or(function);
        let enclosing = lines[..number]
            .iter()
            .rev()
            .find_map(|line| fn_name(line))
            .unwrap_or("");
        if enclosing != name {
            self.problem(
                at,
                format!(
                    "line {number} of {path} is in fn {enclosing:?}, not in {function}: \
                     the line moved"
                ),
            );
        }
    }
}

/// Whether `word` ends in an extension of the repository's files.
fn has_source_extension(word: &str) -> bool {
    [
        ".rs", ".toml", ".sh", ".json", ".md", ".svg", ".txt", ".yml", ".yaml",
    ]
    .iter()
    .any(|ext| word.ends_with(ext))
}

/// The name of the function a line of Rust defines, if it does.
fn fn_name(line: &str) -> Option<&str> {
    let (_, after) = line.split_once("fn ")?;
    let before = &line[..line.len() - after.len() - 3];
    let keywords_only = before
        .split_whitespace()
        .all(|word| ["pub", "pub(crate)", "const", "unsafe", "async", "extern"].contains(&word));
    if !keywords_only {
        return None;
    }
    let end = after
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    Some(&after[..end]).filter(|name| !name.is_empty())
}

/// `(path, line)` pairs of the form `path.ext:123` in `line`.
fn path_lines(line: &str) -> Vec<(String, usize)> {
    line.split(|c: char| c.is_whitespace() || "`()[]".contains(c))
        .filter_map(|token| {
            let token = token.trim_end_matches([',', '.', ';']);
            let (path, number) = token.rsplit_once(':')?;
            let number: usize = number.parse().ok()?;
            let file = path.rsplit('/').next()?;
            let extension = file.rsplit_once('.')?.1;
            (extension.starts_with(|c: char| c.is_ascii_alphabetic()) && !path.contains("://"))
                .then(|| (path.to_owned(), number))
        })
        .collect()
}

#[test]
fn every_path_readme_names_is_in_the_repository() {
    let readme = root().join("README.md");
    let text = std::fs::read_to_string(&readme).expect("read README.md");
    let mut checker = Checker::new();
    let mut fenced = false;
    let mut in_layout = false;
    let mut layout_base = String::new();
    let mut layout_crates = BTreeSet::new();
    let mut heading = "";
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if !fenced && line.starts_with('#') {
            heading = line;
        }
        for (path, at_line) in path_lines(line) {
            let at = Reference {
                line: number,
                text: format!("{path}:{at_line}"),
            };
            checker.path_line(&at, line, &path, at_line);
        }
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            in_layout = fenced && heading == "## Layout";
            continue;
        }
        if in_layout {
            // "crates/x   what it is" at the left edge; "  src/y.rs  ..."
            // under it; paths in the descriptions.
            let indent = line.len() - line.trim_start().len();
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let at = Reference {
                line: number,
                text: first.to_owned(),
            };
            match indent {
                0 => {
                    layout_base = first.trim_end_matches('/').to_owned();
                    if let Some(name) = first.strip_prefix("crates/") {
                        layout_crates.insert(name.trim_end_matches('/').to_owned());
                    }
                    checker.exact(&at, first);
                }
                2 => {
                    let path = format!("{layout_base}/{first}");
                    checker.exact(&at, &path);
                }
                _ => checker.word(&at, first),
            }
            for word in words {
                let at = Reference {
                    line: number,
                    text: word.to_owned(),
                };
                checker.word(&at, word);
            }
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code.
        let mut spans = line.split('`');
        spans.next();
        while let Some(code) = spans.next() {
            for word in code.split_whitespace() {
                let at = Reference {
                    line: number,
                    text: code.to_owned(),
                };
                checker.word(&at, word);
            }
            spans.next();
        }
        // Relative links and images.
        for (_, rest) in line.match_indices("](").map(|(i, _)| line.split_at(i + 2)) {
            let target = rest.split(')').next().unwrap_or("");
            let target = target.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let at = Reference {
                line: number,
                text: target.to_owned(),
            };
            checker.exact(&at, target);
        }
    }
    // Every crate of the workspace is in the layout.
    let crates: BTreeSet<String> = checker
        .tree
        .iter()
        .filter_map(|path| path.strip_prefix("crates/"))
        .filter_map(|rest| rest.strip_suffix('/'))
        .filter(|name| !name.contains('/'))
        .map(str::to_owned)
        .collect();
    for missing in crates.difference(&layout_crates) {
        checker.problems.push(format!(
            "README.md: \"## Layout\" does not list crates/{missing}"
        ));
    }
    assert!(
        checker.checked > 50,
        "only {} references found: is README.md's format what this test reads?",
        checker.checked
    );
    assert!(
        checker.problems.is_empty(),
        "README.md points at what is not there:\n{}",
        checker.problems.join("\n")
    );
    eprintln!("README paths: {} references checked", checker.checked);
}

#[test]
fn the_checker_reads_paths_lines_and_functions() {
    assert_eq!(
        path_lines("    #5  0x5 hangwatch::demo::child::reflow at /src/h/crates/a/src/b.rs:305"),
        vec![("/src/h/crates/a/src/b.rs".to_owned(), 305)]
    );
    assert_eq!(
        path_lines("see `crates/x/src/y.rs:12`, and 127.0.0.1:9184"),
        vec![("crates/x/src/y.rs".to_owned(), 12)]
    );
    assert!(path_lines("http://example.com/a.rs:80").is_empty());
    assert_eq!(fn_name("pub(crate) fn start(x: u32) {"), Some("start"));
    assert_eq!(fn_name("    async fn run() {"), Some("run"));
    assert_eq!(fn_name("    let f = |x| x; // fn ignored"), None);
    assert_eq!(
        fn_name("fn hang_in(hang: &InjectedHang) {"),
        Some("hang_in")
    );
}
