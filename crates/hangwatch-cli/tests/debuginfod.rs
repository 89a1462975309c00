//! Debug files from a real debuginfod server (elfutils' `debuginfod`, on
//! loopback) name the frames of a stripped hangwatch: the hub names them as
//! the alerts come in when `DEBUGINFOD_URLS` is set, and `hangwatch
//! symbolicate` names them later in alerts saved without it.
//!
//! The binary is split with binutils' `objcopy`: its debug file goes into a
//! directory only the server reads (its `.gnu_debuglink` names a file that
//! is neither next to the stripped binary nor under `/usr/lib/debug`), so
//! the stripped file, which has no symbol table and no DWARF at all, can
//! only be named through the server.
//!
//! Without `debuginfod` or `objcopy` on `PATH` the test says it skipped,
//! unless `HANGWATCH_REQUIRE_DEBUGINFOD=1` (as in `.ci/run`) makes that a
//! failure.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use object::{Object, ObjectSection};
use serde_json::Value;

/// The functions the demo's permanent hangs are in.
const PERMANENT_FUNCTIONS: [&str; 2] = ["reflow_stuck_on_lock", "read_from_slow_socket"];

/// How long the server may take to index the debug file (a debug build's is
/// large, and the machine may be loaded).
const SERVER_READY: Duration = Duration::from_secs(120);

/// How long one command may take before the test gives up on it.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn a_stripped_binary_is_named_through_a_debuginfod_server_now_and_later() {
    let missing: Vec<&str> = ["debuginfod", "objcopy"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if !missing.is_empty() {
        let required = std::env::var("HANGWATCH_REQUIRE_DEBUGINFOD").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "HANGWATCH_REQUIRE_DEBUGINFOD=1 but {} not on PATH; \
             apt-get install debuginfod binutils",
            missing.join(" and ")
        );
        eprintln!(
            "skipped: {} not installed; apt-get install debuginfod binutils",
            missing.join(" and ")
        );
        return;
    }

    let root =
        std::env::temp_dir().join(format!("hangwatch-debuginfod-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dirs = ["original", "served", "stripped", "db", "logs"];
    for dir in dirs {
        std::fs::create_dir_all(root.join(dir)).expect("create the test's directories");
    }
    let logs = root.join("logs");

    // 1. The binary, split: its debug file where only the server looks, and
    //    a stripped copy that links to it by name.
    let original = root.join("original/hangwatch");
    std::fs::copy(env!("CARGO_BIN_EXE_hangwatch"), &original).expect("copy hangwatch");
    let debug_file = root.join("served/hangwatch.debug");
    let stripped = root.join("stripped/hangwatch");
    run_ok(
        Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&original)
            .arg(&debug_file),
        &logs,
        "objcopy-only-keep-debug",
    );
    run_ok(
        Command::new("objcopy")
            .arg("--strip-all")
            .arg(format!("--add-gnu-debuglink={}", debug_file.display()))
            .arg(&original)
            .arg(&stripped),
        &logs,
        "objcopy-strip",
    );
    std::fs::remove_file(&original).expect("remove the unstripped copy");

    let stripped_facts = elf_facts(&stripped);
    for section in [".symtab", ".debug_info", ".debug_line"] {
        assert!(
            !stripped_facts.sections.iter().any(|s| s == section),
            "{} still has {section}; its sections: {:?}",
            stripped.display(),
            stripped_facts.sections
        );
    }
    assert!(
        stripped_facts
            .sections
            .iter()
            .any(|s| s == ".gnu_debuglink"),
        "{} has no .gnu_debuglink; its sections: {:?}",
        stripped.display(),
        stripped_facts.sections
    );
    let build_id = stripped_facts
        .build_id
        .unwrap_or_else(|| panic!("{} has no GNU build id", stripped.display()));
    let debug_facts = elf_facts(&debug_file);
    assert_eq!(
        debug_facts.build_id.as_deref(),
        Some(build_id.as_str()),
        "the debug file is of another build"
    );
    assert!(
        debug_facts.sections.iter().any(|s| s == ".debug_info"),
        "{} has no .debug_info; its sections: {:?}",
        debug_file.display(),
        debug_facts.sections
    );
    eprintln!(
        "debuginfod test: stripped build {build_id} in {}",
        root.display()
    );

    // 2. A real debuginfod serving the directory with the debug file.
    let mut server = Debuginfod::start(
        &root.join("served"),
        &root.join("db/debuginfod.sqlite"),
        &logs,
    );
    let url = format!("http://127.0.0.1:{}", server.port);
    let waited = server.wait_until_it_serves(&build_id);
    eprintln!("debuginfod test: {url} serves the debug file after {waited:?}");

    // 3. Named as they come: the hub fetches the debug file.
    let out1 = root.join("out1");
    let demo1 = run(
        Command::new(&stripped)
            .args(["demo", "--processes", "1", "--seconds", "6", "--out"])
            .arg(&out1)
            .env("DEBUGINFOD_URLS", &url)
            .env("DEBUGINFOD_CACHE_PATH", root.join("cache1")),
        &logs,
        "demo-with-debuginfod",
    );
    assert!(
        demo1.status.success(),
        "the stripped demo with {url} failed ({}):\n{}\nalerts:\n{}\ndebuginfod log:\n{}",
        demo1.status,
        demo1.text(),
        read_or_why(&out1.join("alerts.jsonl")),
        server.log()
    );
    let alerts1 = read_or_why(&out1.join("alerts.jsonl"));
    let named = named_permanent_frame(&alerts1).unwrap_or_else(|| {
        panic!(
            "no permanent stack names {PERMANENT_FUNCTIONS:?} with file and line:\n{alerts1}\n\
             demo output:\n{}\ndebuginfod log:\n{}",
            demo1.text(),
            server.log()
        )
    });
    assert_eq!(
        named["build_id"].as_str(),
        Some(build_id.as_str()),
        "the named frame is of another build: {named}\nalerts:\n{alerts1}"
    );
    eprintln!("debuginfod test: named through debuginfod: {named}");
    let fetched = files_under(&root.join("cache1"));
    assert!(
        fetched
            .iter()
            .any(|file| file.to_string_lossy().contains(&build_id)),
        "no file of build id {build_id} in DEBUGINFOD_CACHE_PATH: {fetched:?}"
    );

    // 4. Named later: the demo without a server leaves its frames unnamed,
    //    `hangwatch symbolicate` with one names them.
    let out2 = root.join("out2");
    let demo2 = run(
        Command::new(&stripped)
            .args(["demo", "--processes", "1", "--seconds", "6", "--out"])
            .arg(&out2)
            .env_remove("DEBUGINFOD_URLS")
            .env("DEBUGINFOD_CACHE_PATH", root.join("cache-unused")),
        &logs,
        "demo-without-debuginfod",
    );
    eprintln!(
        "debuginfod test: the demo without a server: {}, {:?}",
        demo2.status,
        demo2.stdout.lines().last()
    );
    // Its own check fails (its stacks name no function); its files are
    // written all the same.
    let saved = out2.join("alerts.jsonl");
    let alerts2 = std::fs::read_to_string(&saved).unwrap_or_else(|error| {
        panic!(
            "the demo without a server left no {}: {error}\n{}",
            saved.display(),
            demo2.text()
        )
    });
    assert!(
        named_permanent_frame(&alerts2).is_none() && !names_any(&alerts2),
        "without DEBUGINFOD_URLS a frame was named anyway:\n{alerts2}"
    );
    let frames2 = permanent_frames(&alerts2);
    assert!(
        !frames2.is_empty(),
        "no permanent alert with a stack in:\n{alerts2}\ndemo output:\n{}",
        demo2.text()
    );
    let ours: Vec<&Value> = frames2
        .iter()
        .filter(|frame| frame["build_id"].as_str() == Some(build_id.as_str()))
        .collect();
    assert!(
        !ours.is_empty()
            && ours.iter().all(|frame| {
                frame["module_path"].as_str() == Some(stripped.to_str().unwrap())
                    && frame["module_offset"].is_number()
                    && frame["function"].is_null()
            }),
        "the permanent stacks' frames should be unnamed normalized frames of {} \
         (build id {build_id}, module path, module offset):\n{alerts2}",
        stripped.display()
    );
    eprintln!(
        "debuginfod test: without a server, {} unnamed frames of build {build_id}",
        ours.len()
    );

    let refused = run(
        Command::new(&stripped)
            .arg("symbolicate")
            .arg(&saved)
            .arg("-o")
            .arg(out2.join(".").join("alerts.jsonl"))
            .env("DEBUGINFOD_URLS", &url)
            .env("DEBUGINFOD_CACHE_PATH", root.join("cache-refused")),
        &logs,
        "symbolicate-onto-its-input",
    );
    assert!(
        !refused.status.success() && refused.stderr.contains("is the input file"),
        "symbolicate with -o its own input should refuse, non-zero, saying so \
         ({}):\n{}",
        refused.status,
        refused.text()
    );
    assert_eq!(
        read_or_why(&saved),
        alerts2,
        "symbolicate changed its input when it refused to overwrite it"
    );

    let named_file = out2.join("named.jsonl");
    let symbolicated = run(
        Command::new(&stripped)
            .arg("symbolicate")
            .arg(&saved)
            .arg("-o")
            .arg(&named_file)
            .env("DEBUGINFOD_URLS", &url)
            .env("DEBUGINFOD_CACHE_PATH", root.join("cache2")),
        &logs,
        "symbolicate",
    );
    let named_alerts = read_or_why(&named_file);
    assert!(
        symbolicated.status.success(),
        "symbolicate failed ({}):\n{}\noutput:\n{named_alerts}\ndebuginfod log:\n{}",
        symbolicated.status,
        symbolicated.text(),
        server.log()
    );
    let later = named_permanent_frame(&named_alerts).unwrap_or_else(|| {
        panic!(
            "symbolicate named no permanent frame in {PERMANENT_FUNCTIONS:?} with file and \
             line:\n{named_alerts}\nits stderr:\n{}\ndebuginfod log:\n{}",
            symbolicated.stderr,
            server.log()
        )
    });
    assert_eq!(
        later["build_id"].as_str(),
        Some(build_id.as_str()),
        "the frame symbolicate named is of another build: {later}"
    );
    assert_eq!(
        named_alerts.lines().count(),
        alerts2.lines().count(),
        "symbolicate should write one line per line it read:\n{named_alerts}"
    );
    eprintln!("debuginfod test: named later by symbolicate: {later}");
    eprintln!(
        "debuginfod test: symbolicate said: {}",
        symbolicated.stderr.trim()
    );

    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}

/// Whether `tool` is an executable file in a directory of `PATH`.
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

struct ElfFacts {
    build_id: Option<String>,
    sections: Vec<String>,
}

fn elf_facts(path: &Path) -> ElfFacts {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let elf = object::File::parse(&*data)
        .unwrap_or_else(|e| panic!("{} is not ELF: {e}", path.display()));
    ElfFacts {
        build_id: elf
            .build_id()
            .unwrap_or_else(|e| panic!("{}: bad build id note: {e}", path.display()))
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
        sections: elf
            .sections()
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .collect(),
    }
}

/// What a command did, its output read back from its log files.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn text(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `command` with its output in `logs/NAME.{stdout,stderr}`, killed
/// (and the test failed) if it outlives [`COMMAND_LIMIT`].
fn run(command: &mut Command, logs: &Path, name: &str) -> Ran {
    let stdout_path = logs.join(format!("{name}.stdout"));
    let stderr_path = logs.join(format!("{name}.stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create a log file"))
        .stderr(File::create(&stderr_path).expect("create a log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name} ({command:?}): {e}"));
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a command") {
            break status;
        }
        if began.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} ({command:?}) ran longer than {COMMAND_LIMIT:?}:\nstdout:\n{}\nstderr:\n{}",
                read_or_why(&stdout_path),
                read_or_why(&stderr_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("debuginfod test: {name} took {:?}", began.elapsed());
    Ran {
        status,
        stdout: read_or_why(&stdout_path),
        stderr: read_or_why(&stderr_path),
    }
}

fn run_ok(command: &mut Command, logs: &Path, name: &str) -> Ran {
    let ran = run(command, logs, name);
    assert!(
        ran.status.success(),
        "{name} ({command:?}) failed ({}):\n{}",
        ran.status,
        ran.text()
    );
    ran
}

/// Every file under `dir`, recursively (none if it is missing).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn read_or_why(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("<{}: {error}>", path.display()))
}

/// The frames of every stack of a permanent hang in `alerts` (JSON lines):
/// of `permanent` alerts, and of `stack` alerts that complete one.
fn permanent_frames(alerts: &str) -> Vec<Value> {
    alerts
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nin:\n{alerts}"))
        })
        .filter(|alert| {
            alert["kind"] == "permanent" || (alert["kind"] == "stack" && alert["of"] == "permanent")
        })
        .flat_map(|alert| match alert.pointer("/stack/frames") {
            Some(Value::Array(frames)) => frames.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// A frame of a permanent hang's stack in one of the demo's permanent-hang
/// functions, with its file (`child.rs`) and line.
fn named_permanent_frame(alerts: &str) -> Option<Value> {
    permanent_frames(alerts).into_iter().find(|frame| {
        frame["function"]
            .as_str()
            .is_some_and(|f| PERMANENT_FUNCTIONS.iter().any(|name| f.contains(name)))
            && frame["file"]
                .as_str()
                .is_some_and(|file| file.ends_with("child.rs"))
            && frame["line"].as_u64().is_some_and(|line| line > 0)
    })
}

/// Whether any frame of any alert names a demo function.
fn names_any(alerts: &str) -> bool {
    alerts.lines().any(|line| {
        PERMANENT_FUNCTIONS
            .iter()
            .any(|name| line.contains(&format!("::{name}")))
    })
}

/// An elfutils `debuginfod` on a free loopback port, killed on drop.
struct Debuginfod {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Debuginfod {
    fn start(served: &Path, database: &Path, logs: &Path) -> Debuginfod {
        // A port that was free a moment ago; debuginfod says so in its log
        // if another process took it since.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let log = logs.join("debuginfod.log");
        let log_file = File::create(&log).expect("create the debuginfod log");
        let mut command = Command::new("debuginfod");
        command
            .arg("-F")
            .args(["-p", &port.to_string()])
            .arg("-d")
            .arg(database)
            // No periodic rescans or grooming while the test runs.
            .args(["-t", "0", "-g", "0"])
            .arg("-v")
            .arg(served)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file);
        if help_mentions("--disable-source-scan") {
            // Sources are not asked for; indexing them only takes time.
            command.arg("--disable-source-scan");
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start debuginfod ({command:?}): {e}"));
        Debuginfod { child, port, log }
    }

    /// Polls until the server answers 200 for `build_id`'s debug file, and
    /// says how long that took; fails the test after [`SERVER_READY`] or if
    /// the server exits.
    fn wait_until_it_serves(&mut self, build_id: &str) -> Duration {
        let began = Instant::now();
        let mut last: String;
        loop {
            match http_status(self.port, &format!("/buildid/{build_id}/debuginfo")) {
                Ok(200) => return began.elapsed(),
                Ok(status) => last = format!("HTTP {status}"),
                Err(error) => last = error,
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("debuginfod exited ({status}):\n{}", self.log());
            }
            assert!(
                began.elapsed() < SERVER_READY,
                "debuginfod did not serve build id {build_id} within {SERVER_READY:?} \
                 (last: {last}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn log(&self) -> String {
        read_or_why(&self.log)
    }
}

impl Drop for Debuginfod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `debuginfod --help` lists `flag` (flags differ by version).
fn help_mentions(flag: &str) -> bool {
    Command::new("debuginfod")
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
}

/// The status code of `GET path` on the loopback port, reading no more
/// than the status line.
fn http_status(port: u16, path: &str) -> Result<u16, String> {
    let timeout = Duration::from_secs(10);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|error| format!("connect: {error}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|error| format!("socket: {error}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .map_err(|error| format!("send: {error}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while head.len() < 256 && !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(error) => return Err(format!("read: {error}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))
}
