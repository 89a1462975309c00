//! Figures of fresh processes: what a symbolizer, a monitor and a hub cost
//! in private memory, and how soon a fresh process's first hang is alerted.
//!
//! # How the children are run
//!
//! There is no hidden subcommand for these children, so the bench re-runs
//! its own program (`std::env::current_exe()`, the `hangwatch` binary:
//! about 50 MB with the release profile's line tables) as `hangwatch bench
//! --quick` with [`CHILD_ENV`] set to what the child should do;
//! [`crate::run`] sees the variable before measuring anything, does that
//! one thing ([`child_main`]), prints one line ([`RESULT_PREFIX`] and a JSON
//! object) on stdout and exits. Every child is a fresh process: no
//! symbolizer cache, no allocator free list and no page of heap left over
//! from another measurement. A child that does not answer within
//! [`CHILD_TIMEOUT`] is killed and its figures are NaN.
//!
//! Memory is `RssAnon` of `/proc/self/status`, read by the child itself:
//! heap, thread stacks and other anonymous pages, not the pages of mapped
//! files (which the page cache shares with every process mapping them).
//!
//! # The children
//!
//! - `symbolize-ours`, `symbolize-reference`: a thread blocked
//!   [`DEPTH`](crate::stacks::DEPTH) calls deep is sampled (from outside,
//!   as the monitor samples a hung thread) and unwound; then `RssAnon` is
//!   read, a fresh symbolizer (ours, or [`ReferenceSymbolizer`]) symbolicates
//!   the stack once, and `RssAnon` is read again *while the symbolizer is
//!   alive*. The difference is what its first symbolication left in this
//!   process's private memory (for the reference, mostly the module files
//!   read whole into the heap).
//! - `alert-bare`, `alert-in_process`, `alert-function_names_in_process`,
//!   `alert-elsewhere`: one thread
//!   registers a component (transient timeout [`TRANSIENT`], permanent
//!   60 s) and blocks [`DEPTH`](crate::stacks::DEPTH) calls deep in an
//!   activity until the main thread has its transient alert. The monitor is
//!   fresh (`stack_on_transient(true)`, `symbolicate_deadline` 10 s so that
//!   the alert waits for its stack, default `warm_symbols(false)`), with
//!   [`Symbolication::InProcess`] (the first stack pays the symbols' cold
//!   load), [`Symbolication::FunctionNamesInProcess`] (names from symbol
//!   tables only) or [`Symbolication::Elsewhere`] (normalized frames,
//!   nothing symbolicated in the process). The child reads `monotonic_ns()` as
//!   `recv` returns the alert, then `RssAnon`. `alert-bare` is the same
//!   program with no monitor at all: its thread blocks the same way for
//!   `TRANSIENT` plus 20 ms before `RssAnon` is read.
//! - `hub`: a [`Hub`] (naming its children's frames, the default) in a
//!   fresh process starts `bridged` children of the same binary, each a
//!   `alert-elsewhere` child whose monitor's alerts go to the hub through a
//!   [`Bridge`]. The hub reads its `RssAnon` after the first child's first
//!   alert arrived with its frames named (the hub's symbolizer has then
//!   loaded the binary's symbols), and again after more children connected
//!   and each had its first named alert; children stay connected until the
//!   hub has read it.
//! - `nano-watchdog-notify`, `nano-watchdog-idle`: nano-watchdog's
//!   notification pairs ([`crate::notify`]) and its thread's idle wake-ups
//!   ([`crate::idle`]). Its watchdog thread can be started once per process
//!   and never ends, so each of these runs in a child of its own, where the
//!   thread cannot touch the other measurements.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch::test_util::{Sampler, SymbolizeUnwound, Unwinder};
use hangwatch::{
    monotonic_ns, Alert, AlertKind, ComponentId, HangLevel, Monitor, SampleSignal, Stack,
    Symbolication, Symbolizer, Timeouts,
};
use hangwatch_hub::{Bridge, Hub, HubEvent};
use serde::{Deserialize, Serialize};

use crate::procfs::rss_anon_kib;
use crate::reference_symbolizer::ReferenceSymbolizer;
use crate::stacks::{blocked_thread, descend, DEPTH};

/// The environment variable that makes `hangwatch bench` a child of the
/// bench: its value says which.
pub const CHILD_ENV: &str = "HANGWATCH_BENCH_CHILD";

/// What starts a child's answer on its stdout.
pub const RESULT_PREFIX: &str = "hangwatch-bench-child: ";

/// How long a child may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// The alert children's transient timeout.
const TRANSIENT: Duration = Duration::from_millis(20);

/// How long an alert waits for its stack in the alert children.
const SYMBOLICATE_DEADLINE: Duration = Duration::from_secs(10);

/// What a child says.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ChildResult {
    /// `RssAnon` before the thing measured (KiB), if the child reads one.
    rss_before_kib: u64,
    /// `RssAnon` after it (KiB).
    rss_kib: u64,
    /// A time the child measured (ms): a cold symbolication, an alert's
    /// delivery after its deadline.
    ms: f64,
    /// Frames of the stack symbolicated or carried.
    frames: usize,
    /// Of those, the frames with a function name.
    named: usize,
    /// For the hub: children at the second reading.
    children: usize,
    /// Figures of the children that measure something else, in the order
    /// their function says.
    #[serde(default)]
    figures: Vec<f64>,
}

/// What the children measured; see [`crate::Report`] for each field.
pub struct ChildFigures {
    pub symbolize_private_mib: f64,
    pub symbolize_private_mib_reference: f64,
    pub overhead_in_process_mib: f64,
    pub overhead_elsewhere_mib: f64,
    pub overhead_names_mib: f64,
    pub delivery_in_process_ms: f64,
    pub delivery_elsewhere_ms: f64,
    pub delivery_names_ms: f64,
    pub hub_per_child_mib: f64,
    pub hub_children: usize,
    pub runs: usize,
}

/// Runs every child `runs` times (`hub` once) and takes medians.
pub fn run(quick: bool) -> ChildFigures {
    let runs = if quick { 5 } else { 9 };
    let many = |mode: &str| -> Vec<ChildResult> {
        (0..runs).filter_map(|_| run_child(mode, &[])).collect()
    };
    // The reference's children first: their heap is their own, so the
    // order only matters to the page cache, which the first child of all
    // fills for the others.
    let reference = many("symbolize-reference");
    let ours = many("symbolize-ours");
    let bare = many("alert-bare");
    let in_process = many("alert-in_process");
    let elsewhere = many("alert-elsewhere");
    let names = many("alert-function_names_in_process");
    let hub_children = if quick { 4 } else { 8 };
    let hub = run_child("hub", &[("HANGWATCH_BENCH_HUB_CHILDREN", hub_children)]);

    let growth = |results: &[ChildResult]| {
        median(
            results
                .iter()
                .map(|r| mib(r.rss_kib) - mib(r.rss_before_kib)),
        )
    };
    let rss = |results: &[ChildResult]| median(results.iter().map(|r| mib(r.rss_kib)));
    let delivery = |results: &[ChildResult]| median(results.iter().map(|r| r.ms));
    ChildFigures {
        symbolize_private_mib: growth(&ours),
        symbolize_private_mib_reference: growth(&reference),
        overhead_in_process_mib: rss(&in_process) - rss(&bare),
        overhead_elsewhere_mib: rss(&elsewhere) - rss(&bare),
        overhead_names_mib: rss(&names) - rss(&bare),
        delivery_in_process_ms: delivery(&in_process),
        delivery_elsewhere_ms: delivery(&elsewhere),
        delivery_names_ms: delivery(&names),
        hub_per_child_mib: hub.as_ref().map_or(f64::NAN, |hub| {
            (mib(hub.rss_kib) - mib(hub.rss_before_kib)) / (hub.children - 1) as f64
        }),
        hub_children,
        runs,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The median; NaN for none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// nano-watchdog's dense and sparse pairs, ns per pair, measured in a child
/// (NaN if it gave no answer).
pub fn nano_watchdog_pairs(quick: bool) -> (f64, f64) {
    let figures = run_child("nano-watchdog-notify", &[(QUICK_ENV, usize::from(quick))])
        .map(|result| result.figures)
        .unwrap_or_default();
    match figures[..] {
        [dense, sparse] => (dense, sparse),
        _ => (f64::NAN, f64::NAN),
    }
}

/// nano-watchdog's thread's idle wake-ups per second over `window`,
/// measured in a child (NaN if it gave no answer).
pub fn nano_watchdog_wakeups_per_second(window: Duration) -> f64 {
    let window_ms = window.as_millis() as usize;
    run_child("nano-watchdog-idle", &[(WINDOW_ENV, window_ms)])
        .and_then(|result| result.figures.first().copied())
        .unwrap_or(f64::NAN)
}

/// Tells a nano-watchdog child whether the bench is `--quick` (1) or not.
const QUICK_ENV: &str = "HANGWATCH_BENCH_QUICK";
/// Tells a nano-watchdog child its window, ms.
const WINDOW_ENV: &str = "HANGWATCH_BENCH_WINDOW_MS";

/// The value of the child's numeric variable `name`.
fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

/// The command that runs child `mode`.
fn child_command(mode: &str) -> Option<Command> {
    let program = std::env::current_exe().ok()?;
    let mut command = Command::new(program);
    command
        .args(["bench", "--quick"])
        .env(CHILD_ENV, mode)
        .env_remove(Symbolication::ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    Some(command)
}

/// Runs child `mode` and reads its answer; `None` if it gave none in time.
fn run_child(mode: &str, env: &[(&str, usize)]) -> Option<ChildResult> {
    let mut command = child_command(mode)?;
    for (name, value) in env {
        command.env(name, value.to_string());
    }
    let mut child = command.spawn().ok()?;
    let stdout = child.stdout.take()?;
    let (sender, answer) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(read_answer(stdout));
    });
    let result = answer.recv_timeout(CHILD_TIMEOUT).ok().flatten();
    if result.is_none() {
        eprintln!("bench: child {mode} gave no answer");
        let _ = child.kill();
    }
    let _ = child.wait();
    result
}

fn read_answer(stdout: impl Read) -> Option<ChildResult> {
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| serde_json::from_str(line.strip_prefix(RESULT_PREFIX)?).ok())
}

/// If this process is a child of the bench ([`CHILD_ENV`] is set), does
/// what it is asked, prints its answer, and gives the exit code.
pub fn child_main() -> Option<i32> {
    let mode = std::env::var(CHILD_ENV).ok()?;
    let result = match mode.as_str() {
        "symbolize-ours" => symbolize_child(false),
        "symbolize-reference" => symbolize_child(true),
        "alert-bare" => Some(bare_child()),
        "alert-in_process" => alert_child(Some(Symbolication::InProcess)),
        "alert-elsewhere" => alert_child(Some(Symbolication::Elsewhere)),
        "alert-function_names_in_process" => {
            alert_child(Some(Symbolication::FunctionNamesInProcess))
        }
        "bridged" => alert_child(None),
        "hub" => hub_child(),
        "nano-watchdog-notify" => {
            let (dense, sparse) = crate::notify::nano_watchdog_pairs(env_number(QUICK_ENV)? == 1);
            Some(ChildResult {
                figures: vec![dense, sparse],
                ..ChildResult::default()
            })
        }
        "nano-watchdog-idle" => {
            let window = Duration::from_millis(env_number(WINDOW_ENV)? as u64);
            let wakeups = crate::idle::nano_watchdog_wakeups_per_second(window)?;
            Some(ChildResult {
                figures: vec![wakeups],
                ..ChildResult::default()
            })
        }
        _ => None,
    };
    match result {
        Some(result) => {
            let json = serde_json::to_string(&result).unwrap_or_default();
            println!("{RESULT_PREFIX}{json}");
            Some(0)
        }
        None => {
            eprintln!("bench child {mode}: failed");
            Some(1)
        }
    }
}

fn named(stack: &Stack) -> usize {
    stack
        .frames
        .iter()
        .filter(|frame| frame.function.is_some())
        .count()
}

/// A fresh symbolizer's first symbolication of an unwound stack: the
/// private memory it leaves while alive, and its time.
fn symbolize_child(reference: bool) -> Option<ChildResult> {
    let (target, release, thread) = blocked_thread();
    let sampler = Sampler::install(SampleSignal::default()).ok()?;
    let sample = sampler.sample(&target, Duration::from_millis(50)).ok()?;
    let unwound = Unwinder::new().unwind(&sample);
    let rss_before_kib = rss_anon_kib()?;
    let started = Instant::now();
    let (stack, alive): (Stack, Box<dyn std::any::Any>) = if reference {
        let mut symbolizer = ReferenceSymbolizer::new();
        (symbolizer.symbolize(&unwound), Box::new(symbolizer))
    } else {
        let mut symbolizer = Symbolizer::new();
        (symbolizer.symbolize_unwound(&unwound), Box::new(symbolizer))
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let rss_kib = rss_anon_kib()?;
    drop(alive);
    drop(release);
    let _ = thread.join();
    Some(ChildResult {
        rss_before_kib,
        rss_kib,
        ms,
        frames: stack.frames.len(),
        named: named(&stack),
        children: 0,
        figures: Vec::new(),
    })
}

/// The alert children's program without hangwatch.
fn bare_child() -> ChildResult {
    let (release, released) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || descend(DEPTH, &released));
    std::thread::sleep(TRANSIENT + Duration::from_millis(20));
    let rss_kib = rss_anon_kib().unwrap_or(0);
    drop(release);
    let _ = thread.join();
    ChildResult {
        rss_kib,
        ..ChildResult::default()
    }
}

/// A fresh monitor's first hang. With no `symbolication` the process is a
/// hub's child: the hub's setting applies (elsewhere), its alerts go to the
/// hub, and it reads them from the bridge's local copy.
fn alert_child(symbolication: Option<Symbolication>) -> Option<ChildResult> {
    let mut builder = Monitor::builder()
        .thread_name("hw-bench-child")
        .stack_on_transient(true)
        .symbolicate_deadline(SYMBOLICATE_DEADLINE);
    if let Some(symbolication) = symbolication {
        builder = builder.symbolication(symbolication);
    }
    let Monitor {
        register,
        alerts,
        control,
        thread: monitor,
        ..
    } = builder.start().ok()?;
    let (alerts, bridge) = match symbolication {
        None => {
            let bridge = Bridge::builder()
                .local_alerts(64)
                .connect_from_env(alerts, control)
                .ok()?;
            (bridge.local_alerts()?.clone(), Some(bridge))
        }
        Some(_) => (alerts, None),
    };
    let (release, released) = mpsc::channel::<()>();
    let component = std::thread::spawn(move || {
        let handle = register
            .register_component(
                ComponentId::new("bench-child", 0),
                Timeouts::new(TRANSIENT, Duration::from_secs(60)),
                None,
            )
            .expect("register");
        let _busy = handle.activity("bench child hang");
        descend(DEPTH, &released);
    });
    let (alert, received_ns): (Alert, u64) = loop {
        let alert = alerts.recv_timeout(CHILD_TIMEOUT).ok()?;
        if alert.kind == AlertKind::Transient {
            break (alert, monotonic_ns());
        }
    };
    let rss_kib = rss_anon_kib()?;
    let deadline_ns = alert.started_ns? + TRANSIENT.as_nanos() as u64;
    let stack = alert.stack.unwrap_or_default();
    drop(release);
    let _ = component.join();
    if let Some(bridge) = bridge {
        // Stay connected until the hub has read its memory (it closes
        // this process's stdin).
        let _ = std::io::stdin().read(&mut [0u8]);
        let _ = monitor.join();
        bridge.close();
    }
    Some(ChildResult {
        rss_before_kib: 0,
        rss_kib,
        ms: received_ns.saturating_sub(deadline_ns) as f64 / 1e6,
        frames: stack.frames.len(),
        named: named(&stack),
        children: 0,
        figures: Vec::new(),
    })
}

/// A hub's private memory with one child and with more (see the module
/// docs).
fn hub_child() -> Option<ChildResult> {
    let children: usize = std::env::var("HANGWATCH_BENCH_HUB_CHILDREN")
        .ok()?
        .parse()
        .ok()?;
    let hub = Hub::start().ok()?;
    let mut started = Vec::new();
    let mut spawn = |n: usize| -> Option<()> {
        let mut command = child_command("bridged")?;
        command.stdin(Stdio::piped()).stdout(Stdio::null());
        started.push(hub.spawn(format!("bench-{n}"), &mut command).ok()?);
        Some(())
    };
    let wait_for_named_alerts = |count: usize| -> Option<()> {
        let mut seen = 0;
        while seen < count {
            match hub.events().recv_timeout(CHILD_TIMEOUT).ok()? {
                // Named on the alert, or in the `stack` alert that follows
                // it when naming took longer than the hub holds an alert.
                HubEvent::Alert(alert)
                    if matches!(
                        alert.alert.kind,
                        AlertKind::Transient
                            | AlertKind::Stack {
                                of: HangLevel::Transient
                            }
                    ) && alert.alert.stack.as_ref().is_some_and(|s| named(s) > 0) =>
                {
                    seen += 1;
                }
                HubEvent::ProcessGone { .. } | HubEvent::NeverConnected { .. } => return None,
                _ => {}
            }
        }
        Some(())
    };
    spawn(0)?;
    wait_for_named_alerts(1)?;
    let rss_before_kib = rss_anon_kib()?;
    for n in 1..children {
        spawn(n)?;
    }
    wait_for_named_alerts(children - 1)?;
    let rss_kib = rss_anon_kib()?;
    for mut child in started {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    Some(ChildResult {
        rss_before_kib,
        rss_kib,
        children,
        ..ChildResult::default()
    })
}
