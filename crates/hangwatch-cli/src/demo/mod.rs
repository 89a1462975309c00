//! `hangwatch demo`: the main job. A hub and child processes with injected
//! hangs.
//!
//! The hub (this process) re-executes the same binary as `--processes`
//! children (`hangwatch demo-child`). Each child runs four event loops shaped
//! like a browser's (script, layout, network, compositor) under its own
//! monitor, doing jittered work, and injects the hangs of its plan
//! (`plan.rs`): a long script task (transient), a reflow stuck on a lock and
//! a network read that waits for a slow peer (both permanent), each ending on
//! its own. Every alert reaches the hub, which shows a live view; one
//! profiling window runs across all children. At the end the hub asks every
//! child to exit (with confirmation), writes the alerts, a report, a
//! flamegraph, a Firefox profile and a trace, prints the report, and checks
//! itself against the plans (each child's first line on stdout says when
//! its plan's clock started, which places its alerts in its plan;
//! `lines.rs`): the last line says how many hangs were injected and
//! detected, and exits non-zero if any count is off. `hangwatch soak` runs
//! the same children under a heavier script (`plan.rs`, `crate::soak`).

pub mod check;
mod child;
pub mod lines;
mod metrics;
mod outputs;
pub mod plan;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use hangwatch::{Alert, Profile, ProfilingOptions};
use hangwatch_export::report::Report;
use hangwatch_hub::{ChildAlert, Hub, HubEvent};

use self::check::Check;
pub use self::child::run as run_child;
use self::lines::Line;
use self::plan::{InjectedHang, Mode, Script};
use self::view::View;
use crate::procfs;

#[derive(clap::Args)]
pub struct Options {
    /// How many child processes (1 to 16).
    #[arg(long, default_value_t = 3, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    processes: u32,
    /// How long the demo runs, in seconds, from 6 to 86,400 (longer if the
    /// plan needs it).
    #[arg(long, default_value_t = 15.0, allow_hyphen_values = true,
          value_parser = crate::args::seconds_in(plan::MIN_SECONDS, plan::MAX_SECONDS))]
    seconds: f64,
    /// Where to write alerts.jsonl, report.txt, hangs.svg, profile.json and trace.json.
    #[arg(long, default_value = "hangwatch-demo")]
    out: PathBuf,
    /// Seed for the plan of hangs and the jitter of the work.
    #[arg(long, default_value_t = 7, allow_hyphen_values = true)]
    seed: u64,
    /// Serve every child's figures for Prometheus on this address
    /// (`127.0.0.1:9184`), labelled by process.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::args::listen_address)]
    metrics: Option<std::net::SocketAddr>,
}

pub fn run(options: &Options) -> ExitCode {
    match run_hub(options) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hangwatch demo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_hub(options: &Options) -> Result<ExitCode, String> {
    // `--seconds` was checked as it was parsed (6 s to a day).
    let seconds = Duration::try_from_secs_f64(options.seconds)
        .map_err(|e| format!("--seconds {}: {e}", options.seconds))?;
    outputs_can_go_to(&options.out)?;
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    if let Some(address) = options.metrics {
        metrics::serve(address)?;
    }
    let interrupted = crate::interrupt::watch_ctrl_c("demo");
    let hub = Hub::start().map_err(|e| e.to_string())?;
    let mut view = View::new();
    let scripts: Vec<Script> = (0..options.processes)
        .map(|index| Script {
            mode: Mode::Demo,
            index,
            generation: 0,
            seed: options.seed,
            seconds: options.seconds,
        })
        .collect();
    let plans: Vec<Vec<InjectedHang>> = scripts.iter().map(Script::hangs).collect();
    let run_for = seconds.max(plan::last_end(&plans) + Duration::from_secs(1));
    view.say(&format!(
        "demo: a hub and {} child processes for {:.1} s; transient timeout {:?}, permanent {:?}; \
         each child hangs 3 times",
        options.processes,
        run_for.as_secs_f64(),
        Mode::Demo.timeouts().transient,
        Mode::Demo.timeouts().permanent
    ));

    let mut check = Check::new(Mode::Demo.timeouts());
    let (line_sender, child_lines) = crossbeam_channel::unbounded();
    let mut spawned = Vec::new();
    for (script, plan) in scripts.iter().zip(plans) {
        let process = lines::spawn(&hub, &program, script, &line_sender)?;
        check.process(process.id(), script.index, plan);
        spawned.push((script.index, process));
    }
    drop(line_sender);

    // The children connect; their clocks start about now, as ours does.
    let started = Instant::now();
    let mut children = Vec::new();
    let mut alerts: Vec<ChildAlert> = Vec::new();
    while !spawned.is_empty() {
        match hub.events().recv_timeout(Duration::from_secs(20)) {
            Ok(HubEvent::Connected(info)) => {
                view.connected(&info);
                let Some(at) = spawned
                    .iter()
                    .position(|(i, _)| info.name == format!("child-{i}"))
                else {
                    continue;
                };
                let (_, process) = spawned.remove(at);
                children.push(process);
            }
            Ok(other) => handle_event(other, &mut view, &mut alerts, &mut check),
            Err(_) => return Err("a child did not connect within 20 s".into()),
        }
    }

    // The run: alerts as they come, and one profiling window across all
    // children.
    let window = (run_for.mul_f64(0.1), run_for.mul_f64(0.85));
    let mut profiles = Vec::new();
    let mut profiling = false;
    let mut last_stats = Instant::now();
    while started.elapsed() < run_for && !interrupted.load(Ordering::SeqCst) {
        if !profiling && profiles.is_empty() && started.elapsed() >= window.0 {
            profiling = true;
            for (child, answer) in hub
                .start_profiling_all(ProfilingOptions::default())
                .map_err(|e| e.to_string())?
            {
                if let Err(error) = answer {
                    view.say(&format!("{child}: profiling did not start: {error}"));
                }
            }
            view.say("profiling every thread of every child at 100 Hz");
        }
        if profiling && started.elapsed() >= window.1 {
            profiling = false;
            for (child, answer) in hub.stop_profiling_all().map_err(|e| e.to_string())? {
                match answer {
                    Ok(profile) => profiles.push((child.name.clone(), child.pid, profile)),
                    Err(error) => view.say(&format!("{child}: no profile: {error}")),
                }
            }
            view.say("profiling stopped");
        }
        if let Ok(event) = hub.events().recv_timeout(Duration::from_millis(100)) {
            handle_event(event, &mut view, &mut alerts, &mut check);
        }
        take_lines(&child_lines, &mut check);
        if options.metrics.is_some() && last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            for (child, answer) in hub.stats_all().map_err(|e| e.to_string())? {
                if let Ok(stats) = answer {
                    metrics::stats(&child, &stats);
                }
            }
        }
        view.redraw();
    }

    let interrupted_at = interrupted
        .load(Ordering::SeqCst)
        .then(|| started.elapsed());
    if let Some(at) = interrupted_at {
        view.say(&format!(
            "interrupted (Ctrl-C) after {:.1} s: asking every child to exit (Ctrl-C again to quit now)",
            at.as_secs_f64()
        ));
        if profiling {
            for (child, answer) in hub.stop_profiling_all().map_err(|e| e.to_string())? {
                if let Ok(profile) = answer {
                    profiles.push((child.name.clone(), child.pid, profile));
                }
            }
        }
    }

    // Private memory while every child still runs (each has had hangs and a
    // profiling window): what normalizing costs a child, and what naming
    // every child's frames costs the hub.
    let memory = Memory::read(&children);

    // Exit, confirmed by each child's report; then their goodbyes.
    for (child, answer) in hub.exit_all().map_err(|e| e.to_string())? {
        match answer {
            Ok(report) => view.say(&format!(
                "{child}: exit signals delivered to {} loops",
                report.signalled
            )),
            Err(error) => view.say(&format!("{child}: exit not confirmed: {error}")),
        }
    }
    let mut left = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while left < children.len() && Instant::now() < deadline {
        if let Ok(event) = hub.events().recv_timeout(Duration::from_millis(100)) {
            if matches!(event, HubEvent::Left { .. } | HubEvent::ProcessGone { .. }) {
                left += 1;
            }
            handle_event(event, &mut view, &mut alerts, &mut check);
        }
    }
    view.finish();
    for process in &mut children {
        let _ = process.wait();
    }
    take_lines(&child_lines, &mut check);

    let (lines, written) = outputs::write(&options.out, &alerts, &profiles_sorted(profiles));
    let plain: Vec<Alert> = alerts.iter().map(|a| a.alert.clone()).collect();
    println!("\n{}", Report::from_alerts(&plain));
    for line in lines {
        println!("demo: {line}");
    }
    if let Some(at) = interrupted_at {
        println!(
            "demo: interrupted after {:.1} s of {:.1} s: what was gathered is written above; \
             no self-check of a cut-short run",
            at.as_secs_f64(),
            run_for.as_secs_f64()
        );
        return Ok(if written {
            ExitCode::from(crate::interrupt::INTERRUPTED)
        } else {
            ExitCode::FAILURE
        });
    }
    let outcome = check.finish();
    println!("demo: {memory}");
    println!("demo: {}", first_alerts(&outcome));
    for problem in &outcome.problems {
        println!("demo: {problem}");
    }
    println!("{outcome}");
    Ok(if written && outcome.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Makes the directory `out` if need be and checks that files can be made
/// in it, before the run rather than after it.
fn outputs_can_go_to(out: &Path) -> Result<(), String> {
    let shown = out.display();
    if out.exists() && !out.is_dir() {
        return Err(format!(
            "--out {shown} is not a directory: give a directory for the demo's files"
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {shown}: {e}"))?;
    let probe = out.join(format!(".hangwatch-demo-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| format!("cannot write files into --out {shown}: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Private (anonymous) memory of the children and of this process.
struct Memory {
    children_kib: Vec<Option<u64>>,
    hub_kib: Option<u64>,
}

impl Memory {
    fn read(children: &[std::process::Child]) -> Memory {
        Memory {
            children_kib: children
                .iter()
                .map(|child| procfs::status_kib(child.id(), "RssAnon"))
                .collect(),
            hub_kib: procfs::status_kib(std::process::id(), "RssAnon"),
        }
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: &Option<u64>| match kib {
            Some(kib) => format!("{:.1}", *kib as f64 / 1024.0),
            None => "?".into(),
        };
        let children: Vec<String> = self.children_kib.iter().map(mib).collect();
        write!(
            f,
            "private memory (RssAnon): children {} MiB (they only normalize their frames); \
             this process {} MiB (the hub, naming every child's frames, and the demo)",
            children.join(", "),
            mib(&self.hub_kib)
        )
    }
}

/// How late each child's first hang reached the hub's stream.
fn first_alerts(outcome: &check::Outcome) -> String {
    let mut firsts: Vec<&check::Detection> = Vec::new();
    for detection in &outcome.detections {
        match firsts.iter_mut().find(|first| first.pid == detection.pid) {
            Some(first) if detection.at < first.at => *first = detection,
            Some(_) => {}
            None => firsts.push(detection),
        }
    }
    firsts.sort_by_key(|first| first.index);
    let late: Vec<String> = firsts
        .iter()
        .map(|first| format!("{:.1}", first.latency.as_secs_f64() * 1e3))
        .collect();
    format!(
        "first hang of each child, transient deadline to its alert in the hub's stream (named, \
         or its names following in a stack alert): {} ms",
        late.join(", ")
    )
}

fn handle_event(event: HubEvent, view: &mut View, alerts: &mut Vec<ChildAlert>, check: &mut Check) {
    match event {
        HubEvent::Alert(alert) => {
            view.alert(&alert);
            metrics::alert(&alert);
            check.alert(alert.clone(), SystemTime::now());
            alerts.push(alert);
        }
        HubEvent::Left { child, .. } => {
            view.gone(child.pid, "exited");
            view.say(&format!("{child} exited"));
        }
        HubEvent::ProcessGone { child, .. } => {
            view.gone(child.pid, "GONE");
            view.say(&format!("{child} died"));
        }
        other => view.say(&format!("{other}")),
    }
}

/// Takes in when each child's clock started (the demo has no use for its
/// notification counts).
fn take_lines(lines: &Receiver<(u32, Line)>, check: &mut Check) {
    for (pid, line) in lines.try_iter() {
        if let Line::Started(at) = line {
            check.started(pid, at);
        }
    }
}

fn profiles_sorted(mut profiles: Vec<(String, u32, Profile)>) -> Vec<(String, u32, Profile)> {
    profiles.sort_by(|a, b| a.0.cmp(&b.0));
    profiles
}
