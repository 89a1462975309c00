//! A command line that never surprises: every command fed bad input —
//! non-numbers, negatives, zero, huge values, `inf`, `nan`, `1e300`, empty
//! strings, missing files, directories given as files, an output that is
//! the input (by its path, a symbolic link or a hard link), unknown flags —
//! and then a few hundred seeded random command lines.
//!
//! What is checked of every run: no panic (no "panicked" on stderr, no
//! exit status 101, no signal); a usage error exits with status 2 before
//! any work, its first line `error: ...` saying what is wrong (clap's
//! following lines, the usage and where to read more, are kept); a bad file
//! exits with status 1, its first line `hangwatch COMMAND: ...` naming the
//! file and what is wrong with it; and an input is never overwritten.
//!
//! No run may start long work: the table's runs are all refused before the
//! demo, soak or bench starts, and every random command line of `demo`,
//! `soak` and `bench` carries one argument clap refuses (at a random place).
//! Each run is killed, and the test failed, if it outlives [`LIMIT`].

use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one run may take: every one of them should end at once.
const LIMIT: Duration = Duration::from_secs(30);

/// What a run did.
struct Outcome {
    /// `None` if a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn first_line(&self) -> &str {
        self.stderr.lines().next().unwrap_or("")
    }

    fn shown(&self, args: &[OsString]) -> String {
        format!(
            "hangwatch {args:?}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `hangwatch args` in `dir`, killing it after [`LIMIT`].
fn run(dir: &Path, args: &[OsString]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hangwatch"))
        .args(args)
        .current_dir(dir)
        .env_remove("DEBUGINFOD_URLS")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hangwatch");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for hangwatch") {
            break status;
        }
        if began.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hangwatch {args:?} ran longer than {LIMIT:?}: it started work instead of \
                 refusing its arguments"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// What holds of every run, whatever its arguments.
fn never_surprising(args: &[OsString], outcome: &Outcome) -> Result<(), String> {
    let problem = |what: &str| Err(format!("{what}: {}", outcome.shown(args)));
    if outcome.stderr.contains("panicked") || outcome.code == Some(101) {
        return problem("a panic");
    }
    let Some(code) = outcome.code else {
        return problem("ended by a signal");
    };
    let first = outcome.first_line();
    match code {
        0 => Ok(()),
        1 if first.starts_with("hangwatch ") && first.len() > "hangwatch x: ".len() => Ok(()),
        1 => problem("a failure whose first line on stderr is not `hangwatch COMMAND: why`"),
        2 if first.starts_with("error: ") && first.len() > "error: ".len() + 8 => {
            if outcome.stdout.is_empty() {
                Ok(())
            } else {
                problem("a usage error that also wrote to stdout")
            }
        }
        2 => problem("a usage error whose first line on stderr is not `error: what is wrong`"),
        _ => problem("an exit status other than 0, 1 and 2"),
    }
}

/// The files the runs are given.
struct Files {
    dir: PathBuf,
}

/// Two alerts as `hangwatch report` reads them.
const GOOD: &str = concat!(
    r#"{"component":{"name":"layout","number":1},"kind":"transient","annotation":"reflow","#,
    r#""duration_ms":250.1,"thread":"layout","time_unix_ms":1700000001250.0,"#,
    r#""started_ns":1000,"raised_ns":250001000}"#,
    "\n",
    r#"{"component":{"name":"layout","number":1},"kind":"ended","worst":"transient","#,
    r#""annotation":"reflow","duration_ms":600.2,"thread":"layout","#,
    r#""time_unix_ms":1700000002600.0,"started_ns":1000,"raised_ns":600201000}"#,
    "\n"
);

impl Files {
    fn make(name: &str) -> Files {
        let dir =
            std::env::temp_dir().join(format!("hangwatch-bad-input-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dir")).expect("create the test's directory");
        std::fs::write(dir.join("good.jsonl"), GOOD).expect("write good.jsonl");
        std::fs::hard_link(dir.join("good.jsonl"), dir.join("hard-link.jsonl"))
            .expect("hard-link good.jsonl");
        std::os::unix::fs::symlink("good.jsonl", dir.join("symlink.jsonl"))
            .expect("symlink good.jsonl");
        std::fs::write(dir.join("garbage.jsonl"), "not JSON\n{\"a\": 1}\n")
            .expect("write garbage.jsonl");
        std::fs::write(dir.join("empty.jsonl"), "").expect("write empty.jsonl");
        std::fs::write(dir.join("afile"), "a file, not a directory\n").expect("write afile");
        Files { dir }
    }

    /// Puts good.jsonl and its hard link back as they were made.
    fn restore(&self) {
        let (good, link) = (
            self.dir.join("good.jsonl"),
            self.dir.join("hard-link.jsonl"),
        );
        let _ = std::fs::remove_file(&good);
        let _ = std::fs::remove_file(&link);
        std::fs::write(&good, GOOD).expect("write good.jsonl again");
        std::fs::hard_link(&good, &link).expect("hard-link good.jsonl again");
    }

    fn good_is_intact(&self) -> Result<(), String> {
        match std::fs::read_to_string(self.dir.join("good.jsonl")) {
            Ok(text) if text == GOOD => Ok(()),
            Ok(text) => Err(format!("good.jsonl was overwritten: {text:?}")),
            Err(error) => Err(format!("good.jsonl is gone: {error}")),
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Values that are no number at all.
const NOT_NUMBERS: [&str; 7] = ["abc", "", " 7", "0x10", "1,5", "seven", "--"];

#[test]
fn bad_arguments_and_bad_files_get_a_clear_refusal() {
    let files = Files::make("table");
    let taken = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let taken_address = taken.local_addr().expect("its address").to_string();

    // (arguments, exit status, what the first line of stderr must contain)
    let mut cases: Vec<(Vec<String>, i32, String)> = Vec::new();
    let mut case = |args: &[&str], code: i32, says: &str| {
        cases.push((
            args.iter().map(|a| (*a).to_owned()).collect(),
            code,
            says.to_owned(),
        ));
    };

    // No command, an unknown one, unknown flags, stray values.
    case(
        &[],
        2,
        "no command given: one of demo, soak, report, symbolicate, bench",
    );
    case(&["bogus"], 2, "unrecognized subcommand 'bogus'");
    case(&[""], 2, "unrecognized subcommand ''");
    case(&["--bogus"], 2, "unexpected argument '--bogus'");
    case(&["help", "bogus"], 2, "unrecognized subcommand 'bogus'");
    for command in ["demo", "soak", "bench", "report", "symbolicate"] {
        case(&[command, "--bogus"], 2, "unexpected argument '--bogus'");
        case(&[command, "-Z"], 2, "unexpected argument '-Z'");
    }
    for command in ["demo", "soak", "bench"] {
        case(&[command, "stray"], 2, "unexpected argument 'stray'");
    }

    // Numbers: the demo's and the soak's seconds and processes, every seed.
    for (command, min_seconds, low, high) in [("demo", "6", "0", "17"), ("soak", "15", "1", "17")] {
        for value in NOT_NUMBERS {
            case(
                &[command, "--seconds", value],
                2,
                &format!("invalid value '{value}' for '--seconds <SECONDS>': not a number"),
            );
        }
        let range = format!("'--seconds <SECONDS>': must be from {min_seconds} to 86400");
        for value in [
            "-5", "0", "5.99", "86400.5", "inf", "-inf", "nan", "NaN", "1e300", "-0",
        ] {
            case(&[command, "--seconds", value], 2, &range);
        }
        case(
            &[command, "--seconds"],
            2,
            "a value is required for '--seconds",
        );
        case(
            &[command, "--seconds", "20", "--seconds", "20"],
            2,
            "cannot be used multiple times",
        );
        for value in [
            low,
            high,
            "-1",
            "4294967296",
            "1e300",
            "nan",
            "inf",
            "abc",
            "",
        ] {
            case(
                &[command, "--processes", value],
                2,
                "'--processes <PROCESSES>'",
            );
        }
    }
    for command in ["demo", "soak", "bench"] {
        for value in [
            "-1",
            "18446744073709551616",
            "1e300",
            "nan",
            "inf",
            "abc",
            "",
        ] {
            case(&[command, "--seed", value], 2, "'--seed <SEED>'");
        }
    }

    // The demo's files and address.
    for value in [
        "nonsense",
        "",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "-1",
    ] {
        case(&["demo", "--metrics", value], 2, "'--metrics <METRICS>'");
    }
    case(&["demo", "--out", ""], 2, "'--out <OUT>'");
    case(
        &["demo", "--out", "afile"],
        1,
        "--out afile is not a directory",
    );
    case(
        &["demo", "--out", "afile/sub"],
        1,
        "cannot create afile/sub",
    );
    case(
        &["demo", "--metrics", &taken_address, "--out", "demo-out"],
        1,
        "cannot serve metrics on",
    );

    // The bench's steps and flags.
    case(&["bench", "--only", ""], 2, "'--only <ONLY>'");
    case(
        &["bench", "--only", "nope"],
        2,
        "invalid value 'nope' for '--only <ONLY>'",
    );
    case(
        &["bench", "--only", "notify,nope"],
        2,
        "invalid value 'nope'",
    );
    case(
        &["bench", "--json=yes"],
        2,
        "unexpected value 'yes' for '--json'",
    );

    // Reports: no file, bad files, outputs onto the input.
    case(
        &["report"],
        2,
        "the required argument <ALERTS> was not given",
    );
    case(&["report", ""], 2, "'<ALERTS>'");
    case(&["report", "missing.jsonl"], 1, "cannot open missing.jsonl");
    case(&["report", "dir"], 1, "hangwatch report: ");
    case(&["report", "empty.jsonl"], 1, "empty.jsonl has no alerts");
    case(
        &["report", "garbage.jsonl"],
        1,
        "garbage.jsonl: skipped line 1",
    );
    case(
        &["report", "good.jsonl", "extra"],
        2,
        "unexpected argument 'extra'",
    );
    for flag in ["--svg", "--firefox", "--collapsed"] {
        for onto in [
            "good.jsonl",
            "./good.jsonl",
            "symlink.jsonl",
            "hard-link.jsonl",
        ] {
            case(
                &["report", "good.jsonl", flag, onto],
                1,
                "is the alerts file it reads",
            );
        }
        case(
            &["report", "good.jsonl", flag, ""],
            2,
            "a value is required",
        );
        case(&["report", "good.jsonl", flag, "dir"], 1, "not written");
        case(
            &["report", "good.jsonl", flag, "missing/out"],
            1,
            "not written",
        );
    }

    // Symbolication: the same.
    case(
        &["symbolicate"],
        2,
        "the required argument <ALERTS> was not given",
    );
    case(&["symbolicate", ""], 2, "'<ALERTS>'");
    case(
        &["symbolicate", "missing.jsonl"],
        1,
        "cannot open missing.jsonl",
    );
    case(&["symbolicate", "dir"], 1, "dir is a directory");
    for onto in [
        "good.jsonl",
        "./good.jsonl",
        "symlink.jsonl",
        "hard-link.jsonl",
    ] {
        case(
            &["symbolicate", "good.jsonl", "-o", onto],
            1,
            "is the input file",
        );
        case(
            &["symbolicate", "symlink.jsonl", "--output", onto],
            1,
            "is the input file",
        );
    }
    case(
        &["symbolicate", "good.jsonl", "-o", ""],
        2,
        "a value is required",
    );
    case(
        &["symbolicate", "good.jsonl", "-o", "dir"],
        1,
        "cannot create dir",
    );
    case(
        &["symbolicate", "good.jsonl", "-o", "missing/out"],
        1,
        "cannot create missing/out",
    );
    case(
        &["symbolicate", "dir", "-o", "out.jsonl"],
        1,
        "dir is a directory",
    );

    let mut problems = Vec::new();
    for (args, code, says) in &cases {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let outcome = run(&files.dir, &args);
        if let Err(problem) = never_surprising(&args, &outcome) {
            problems.push(problem);
        } else if outcome.code != Some(*code) || !outcome.first_line().contains(says.as_str()) {
            problems.push(format!(
                "expected exit {code} and {says:?} in the first line of stderr: {}",
                outcome.shown(&args)
            ));
        }
        if let Err(problem) = files.good_is_intact() {
            problems.push(format!("{problem}, after hangwatch {args:?}"));
            files.restore();
        }
    }
    // A symbolicate that refused to write onto its input left no file
    // behind it either; the garbage file is copied, line by line, and said so.
    let outcome = run(&files.dir, &os(&["symbolicate", "garbage.jsonl"]));
    assert_eq!(
        outcome.code,
        Some(0),
        "{}",
        outcome.shown(&os(&["symbolicate"]))
    );
    assert!(
        outcome
            .stderr
            .contains("garbage.jsonl:1: copied as it is: not JSON"),
        "{}",
        outcome.stderr
    );
    drop(taken);
    assert!(
        problems.is_empty(),
        "{} of {} runs surprised:\n\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n\n")
    );
    eprintln!(
        "bad input: {} runs, each refused as it should be",
        cases.len()
    );
}

/// Arguments for the random command lines.
const FLAGS: [&str; 20] = [
    "--seconds",
    "--processes",
    "--seed",
    "--out",
    "--metrics",
    "--json",
    "--quick",
    "--only",
    "--svg",
    "--firefox",
    "--collapsed",
    "--program",
    "-o",
    "--output",
    "--help",
    "-h",
    "--version",
    "--",
    "-",
    "--no-such-flag",
];

const VALUES: [&str; 25] = [
    "",
    "0",
    "-0",
    "1",
    "2",
    "6",
    "15",
    "16",
    "17",
    "-1",
    "1.5",
    "1e300",
    "-1e300",
    "inf",
    "-inf",
    "nan",
    "18446744073709551616",
    "4294967296",
    "abc",
    "notify",
    "notify,idle",
    "stacks,",
    "127.0.0.1:0",
    "127.0.0.1:9",
    "[::1]:9",
];

/// Files and directories of [`Files`], and paths that are neither.
const PATHS: [&str; 10] = [
    "good.jsonl",
    "symlink.jsonl",
    "hard-link.jsonl",
    "garbage.jsonl",
    "empty.jsonl",
    "missing.jsonl",
    "dir",
    "afile",
    "out/x",
    "-",
];

/// Whether one of `args`' outputs is good.jsonl or a link to it.
fn writes_onto_good(args: &[OsString]) -> bool {
    let outputs = ["--svg", "--firefox", "--collapsed", "-o", "--output"];
    let good = |value: &str| ["good.jsonl", "symlink.jsonl", "hard-link.jsonl"].contains(&value);
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.iter()
        .enumerate()
        .any(|(at, arg)| match arg.split_once('=') {
            Some((flag, value)) => outputs.contains(&flag) && good(value),
            None => outputs.contains(&arg.as_str()) && args.get(at + 1).is_some_and(|v| good(v)),
        })
}

/// An argument `demo`, `soak` and `bench` all refuse, wherever it stands.
const POISON: [&str; 5] = [
    "--no-such-flag",
    "--seconds=nan",
    "--processes=0",
    "--seed=-1",
    "-Z",
];

#[test]
fn random_command_lines_never_panic_and_refuse_clearly() {
    let files = Files::make("random");
    // Seeded, so a failure repeats; another seed explores other lines.
    let seed = std::env::var("HANGWATCH_BAD_INPUT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(15);
    let mut rng = fastrand::Rng::with_seed(seed);
    let commands = [
        "demo",
        "soak",
        "bench",
        "report",
        "symbolicate",
        "help",
        "bogus",
    ];
    let runs = 300;
    let began = Instant::now();
    let mut problems = Vec::new();
    let mut codes = [0usize; 3];
    for _ in 0..runs {
        let command = commands[rng.usize(..commands.len())];
        let mut args = vec![command.to_owned()];
        if ["report", "symbolicate"].contains(&command) && rng.bool() {
            // Mostly an alerts file first, so that more lines get past clap.
            args.push(PATHS[rng.usize(..PATHS.len())].to_owned());
        }
        let own: &[&str] = match command {
            "demo" => &["--seconds", "--processes", "--seed", "--out", "--metrics"],
            "soak" => &["--seconds", "--processes", "--seed"],
            "bench" => &["--json", "--quick", "--seed", "--only"],
            "report" => &["--svg", "--firefox", "--collapsed", "--program"],
            "symbolicate" => &["-o", "--output"],
            _ => &FLAGS,
        };
        let flag = |rng: &mut fastrand::Rng| {
            if rng.u8(0..10) < 7 {
                own[rng.usize(..own.len())]
            } else {
                FLAGS[rng.usize(..FLAGS.len())]
            }
        };
        let value = |rng: &mut fastrand::Rng| {
            if rng.bool() {
                VALUES[rng.usize(..VALUES.len())]
            } else {
                PATHS[rng.usize(..PATHS.len())]
            }
        };
        for _ in 0..rng.usize(0..=6) {
            let arg = match rng.u8(0..10) {
                0..=3 => flag(&mut rng).to_owned(),
                4..=7 => value(&mut rng).to_owned(),
                _ => format!("{}={}", flag(&mut rng), value(&mut rng)),
            };
            args.push(arg);
        }
        if ["demo", "soak", "bench"].contains(&command) {
            let at = rng.usize(1..=args.len());
            args.insert(at, POISON[rng.usize(..POISON.len())].to_owned());
        }
        let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
        let outcome = run(&files.dir, &args);
        if let Err(problem) = never_surprising(&args, &outcome) {
            problems.push(problem);
        } else if ["demo", "soak", "bench"].contains(&command) {
            let helped = args
                .iter()
                .map(|a| a.to_string_lossy())
                .any(|a| a.starts_with("--help") || a.starts_with("-h"));
            if outcome.code != Some(2) && !(helped && outcome.code == Some(0)) {
                problems.push(format!(
                    "a poisoned command line was not refused: {}",
                    outcome.shown(&args)
                ));
            }
        }
        if let Some(code) = outcome.code.and_then(|c| usize::try_from(c).ok()) {
            if let Some(count) = codes.get_mut(code) {
                *count += 1;
            }
        }
        if let Err(problem) = files.good_is_intact() {
            // A command line may ask for an output onto good.jsonl (or a
            // link to it) from another input: that is no surprise. Any
            // other change is. Either way, put it back for the next run.
            if !writes_onto_good(&args) {
                problems.push(format!("{problem}, after hangwatch {args:?}"));
            }
            files.restore();
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {runs} random command lines surprised:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    eprintln!(
        "bad input: {runs} random command lines (seed {seed}) in {:?}: {} exited 0, {} exited 1, \
         {} exited 2",
        began.elapsed(),
        codes[0],
        codes[1],
        codes[2]
    );
}
