//! `hangwatch demo`: the main job. A hub and child processes with injected
//! hangs.
//!
//! The hub (this process) re-executes the same binary as
//! [`Config::processes`] children (`hangwatch demo-child`, `child.rs`).
//! Each child runs four event loops shaped like a browser's (script,
//! layout, network, compositor) under its own monitor, doing jittered work,
//! and injects the hangs of its plan (`plan.rs`): a long script task
//! (transient), a reflow stuck on a lock and a network read that waits for
//! a slow peer (both permanent), each ending on its own. Every alert reaches
//! the hub, which shows a live view (`view.rs`) and, with
//! [`Config::metrics`], serves the children's figures for Prometheus
//! (`metrics.rs`); one profiling window runs across all children. At the
//! end the hub asks every child to exit (with confirmation), writes the
//! alerts, a report, a flamegraph, a Firefox profile and a trace
//! (`outputs.rs`), and checks itself against the plans (`check.rs`; each
//! child's first line on stdout says when its plan's clock started, which
//! places its alerts in its plan). The run itself is the driver's
//! (`driver.rs`), shared with the soak; this module is what the demo adds.
//!
//! [`run`] gives back what the command prints: the report, where each file
//! went, and the self-check ([`Ending`]).

mod metrics;
mod outputs;
mod view;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hangwatch::{Alert, Profile};
use hangwatch_export::report::Report;
use hangwatch_hub::{ChildAlert, ChildInfo, ControlError, Hub, HubEvent};

pub use self::outputs::{OutputError, Written};
use self::view::View;
use crate::check::{Detection, Outcome};
use crate::driver::{Course, Driver, ProfilingWindows, Scenario, WindowEnd};
use crate::error::ScenarioError;
use crate::lines::Line;
use crate::plan::{self, InjectedHang, Mode, Script};
pub use crate::plan::{MAX_SECONDS, MIN_SECONDS};
use crate::procfs;

/// How long the hub waits for the next child to connect.
const CONNECT_WITHIN: Duration = Duration::from_secs(20);

/// How long the children have to leave once asked to exit.
const LEAVE_WITHIN: Duration = Duration::from_secs(20);

/// How long the children's last lines may take once they have ended.
const LAST_LINES_WITHIN: Duration = Duration::from_secs(5);

/// How often the children's stats are read for Prometheus.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// What the demo is to do.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many child processes.
    pub processes: u32,
    /// How long it runs, in seconds (longer if the plan needs it).
    pub seconds: f64,
    /// The directory of its files.
    pub out: PathBuf,
    /// Seed for the plan of hangs and the jitter of the work.
    pub seed: u64,
    /// Where to serve every child's figures for Prometheus, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// What a demo gave: its report, where each file went, and how it ended.
#[derive(Debug)]
pub struct DemoRun {
    /// The text report of every alert.
    pub report: Report,
    /// Each file written, or why not.
    pub outputs: Vec<Result<Written, OutputError>>,
    /// How it ended.
    pub ending: Ending,
}

impl DemoRun {
    /// Whether every file was written.
    pub fn written(&self) -> bool {
        self.outputs.iter().all(Result::is_ok)
    }
}

/// How a demo ended.
#[derive(Debug)]
pub enum Ending {
    /// Ctrl-C cut it short, after `after` of its `run_for`: nothing is
    /// judged.
    Interrupted {
        /// How long it ran.
        after: Duration,
        /// How long it was to run.
        run_for: Duration,
    },
    /// It ran to its end, and checked itself.
    Checked(SelfCheck),
}

/// The demo's self-check, and the figures beside it.
#[derive(Debug)]
pub struct SelfCheck {
    /// The children's and the hub's private memory before they exited.
    pub memory: Memory,
    /// How late each child's first hang reached the hub.
    pub first_alerts: FirstAlerts,
    /// The check's counts and problems.
    pub outcome: Outcome,
}

impl SelfCheck {
    /// Whether every hang was detected, with no false alert and no missing
    /// stack.
    pub fn passed(&self) -> bool {
        self.outcome.ok()
    }
}

/// Runs the demo `config` describes, until its end or until `interrupted`
/// is raised (Ctrl-C): then the children are asked to exit as at the end,
/// and what was gathered is written, not judged.
pub fn run(config: &Config, interrupted: &AtomicBool) -> Result<DemoRun, ScenarioError> {
    // `seconds` was checked as it was parsed (6 s to a day).
    let seconds =
        Duration::try_from_secs_f64(config.seconds).map_err(|source| ScenarioError::Seconds {
            seconds: config.seconds,
            source,
        })?;
    outputs_can_go_to(&config.out)?;
    if let Some(address) = config.metrics {
        metrics::serve(address)?;
    }
    let hub = Hub::start()?;
    let mut driver = Driver::new(&hub, Mode::Demo.timeouts())?;
    let mut demo = Demo::new(config.metrics.is_some());
    let scripts: Vec<Script> = (0..config.processes)
        .map(|index| Script {
            mode: Mode::Demo,
            index,
            generation: 0,
            seed: config.seed,
            seconds: config.seconds,
        })
        .collect();
    let plans: Vec<Vec<InjectedHang>> = scripts.iter().map(Script::hangs).collect();
    let run_for = seconds.max(plan::last_end(&plans) + Duration::from_secs(1));
    demo.say(&format!(
        "demo: a hub and {} child processes for {:.1} s; transient timeout {:?}, permanent {:?}; \
         each child hangs 3 times",
        config.processes,
        run_for.as_secs_f64(),
        Mode::Demo.timeouts().transient(),
        Mode::Demo.timeouts().permanent()
    ));
    for script in &scripts {
        let process = driver.spawn(script)?;
        demo.connecting.push((script.index, process));
    }
    demo.connect(&mut driver)?;

    // The children's clocks started about now, as ours does. The run:
    // alerts as they come, and one profiling window across all children.
    let course = Course {
        started: Instant::now(),
        run_for,
        look_every: Duration::from_millis(100),
        windows: ProfilingWindows {
            first: run_for.mul_f64(0.1),
            open_for: run_for.mul_f64(0.75),
            every: None,
        },
    };
    let interrupted_after = driver.run(&mut demo, &course, interrupted)?;

    // Private memory while every child still runs (each has had hangs and a
    // profiling window): what normalizing costs a child, and what naming
    // every child's frames costs the hub.
    let memory = Memory::read(&demo.children);

    driver.exit_all(&mut demo, LEAVE_WITHIN)?;
    demo.view.finish();
    for process in &mut demo.children {
        let _ = process.wait();
    }
    let check = driver.finish(&mut demo, LAST_LINES_WITHIN);

    demo.profiles.sort_by(|a, b| a.0.cmp(&b.0));
    let outputs = outputs::write(&config.out, &demo.alerts, &demo.profiles);
    let plain: Vec<Alert> = demo.alerts.iter().map(|a| a.alert.clone()).collect();
    let ending = match interrupted_after {
        Some(after) => Ending::Interrupted { after, run_for },
        None => {
            let outcome = check.finish();
            Ending::Checked(SelfCheck {
                memory,
                first_alerts: FirstAlerts::of(&outcome),
                outcome,
            })
        }
    };
    Ok(DemoRun {
        report: Report::from_alerts(&plain),
        outputs,
        ending,
    })
}

/// Makes the directory `out` if need be and checks that files can be made
/// in it, before the run rather than after it.
fn outputs_can_go_to(out: &Path) -> Result<(), ScenarioError> {
    if out.exists() && !out.is_dir() {
        return Err(ScenarioError::OutNotADirectory(out.to_owned()));
    }
    std::fs::create_dir_all(out).map_err(|source| ScenarioError::CreateOut {
        path: out.to_owned(),
        source,
    })?;
    let probe = out.join(format!(".hangwatch-demo-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|source| ScenarioError::OutNotWritable {
        path: out.to_owned(),
        source,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The demo under way: what it shows and what it gathers.
struct Demo {
    view: View,
    /// Whether the children's stats are served for Prometheus.
    metrics: bool,
    /// Children started and not yet connected, with their roles.
    connecting: Vec<(u32, Child)>,
    /// Children connected.
    children: Vec<Child>,
    /// Children that left or died.
    left: usize,
    alerts: Vec<ChildAlert>,
    profiles: Vec<(String, u32, Profile)>,
    last_stats: Instant,
}

impl Demo {
    fn new(metrics: bool) -> Demo {
        Demo {
            view: View::new(),
            metrics,
            connecting: Vec::new(),
            children: Vec::new(),
            left: 0,
            alerts: Vec::new(),
            profiles: Vec::new(),
            last_stats: Instant::now(),
        }
    }

    /// Waits until every child started has connected, each within
    /// [`CONNECT_WITHIN`] of the hub's last event.
    fn connect(&mut self, driver: &mut Driver<'_>) -> Result<(), ScenarioError> {
        let mut deadline = Instant::now() + CONNECT_WITHIN;
        while !self.connecting.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Err(ScenarioError::NotConnected(CONNECT_WITHIN));
            }
            if driver.take_in(self, deadline - now) > 0 {
                deadline = Instant::now() + CONNECT_WITHIN;
            }
        }
        Ok(())
    }
}

impl Scenario for Demo {
    fn say(&self, line: &str) {
        self.view.say(line);
    }

    fn event(&mut self, event: &HubEvent) {
        match event {
            HubEvent::Connected(info) => {
                self.view.connected(info);
                let name = |index: u32| info.name == format!("child-{index}");
                if let Some(at) = self.connecting.iter().position(|(i, _)| name(*i)) {
                    let (_, process) = self.connecting.remove(at);
                    self.children.push(process);
                }
            }
            HubEvent::Alert(alert) => {
                self.view.alert(alert);
                metrics::alert(alert);
                self.alerts.push(alert.clone());
            }
            HubEvent::Left { child, .. } => {
                self.left += 1;
                self.view.gone(child.pid, "exited");
                self.view.say(&format!("{child} exited"));
            }
            HubEvent::ProcessGone { child, .. } => {
                self.left += 1;
                self.view.gone(child.pid, "GONE");
                self.view.say(&format!("{child} died"));
            }
            other => self.view.say(&format!("{other}")),
        }
    }

    /// The demo has no use for the children's notification counts (and
    /// the driver gives their clocks' starts to the check).
    fn line(&mut self, _pid: u32, _line: Line) {}

    fn step(&mut self, driver: &mut Driver<'_>) -> Result<(), ScenarioError> {
        if self.metrics && self.last_stats.elapsed() >= STATS_EVERY {
            self.last_stats = Instant::now();
            for (child, answer) in driver.hub().stats_all()? {
                if let Ok(stats) = answer {
                    metrics::stats(&child, &stats);
                }
            }
        }
        self.view.redraw();
        Ok(())
    }

    fn window_opened(&mut self) {
        self.view
            .say("profiling every thread of every child at 100 Hz");
    }

    fn profile(
        &mut self,
        child: &ChildInfo,
        answer: Result<Profile, ControlError>,
        _in_window: bool,
        end: WindowEnd,
    ) {
        match answer {
            Ok(profile) => self.profiles.push((child.name.clone(), child.pid, profile)),
            Err(error) if end == WindowEnd::OnTime => {
                self.view.say(&format!("{child}: no profile: {error}"));
            }
            Err(_) => {}
        }
    }

    fn window_closed(&mut self, end: WindowEnd) {
        if end == WindowEnd::OnTime {
            self.view.say("profiling stopped");
        }
    }

    fn interrupted(&mut self, after: Duration) {
        self.view.say(&format!(
            "interrupted (Ctrl-C) after {:.1} s: asking every child to exit (Ctrl-C again to quit now)",
            after.as_secs_f64()
        ));
    }

    fn exit_not_confirmed(&mut self, _child: &ChildInfo) {}

    fn all_left(&self) -> bool {
        self.left >= self.children.len()
    }
}

/// Private (anonymous) memory of the children and of this process.
#[derive(Debug)]
pub struct Memory {
    children_kib: Vec<Option<u64>>,
    hub_kib: Option<u64>,
}

impl Memory {
    fn read(children: &[Child]) -> Memory {
        Memory {
            children_kib: children
                .iter()
                .map(|child| procfs::status_kib(child.id(), "RssAnon"))
                .collect(),
            hub_kib: procfs::status_kib(std::process::id(), "RssAnon"),
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// How late each child's first hang reached the hub's stream, in the
/// order of the children's roles.
#[derive(Debug)]
pub struct FirstAlerts(Vec<Duration>);

impl FirstAlerts {
    fn of(outcome: &Outcome) -> FirstAlerts {
        let mut firsts: Vec<&Detection> = Vec::new();
        for detection in &outcome.detections {
            match firsts.iter_mut().find(|first| first.pid == detection.pid) {
                Some(first) if detection.at < first.at => *first = detection,
                Some(_) => {}
                None => firsts.push(detection),
            }
        }
        firsts.sort_by_key(|first| first.index);
        FirstAlerts(firsts.iter().map(|first| first.latency).collect())
    }
}

impl fmt::Display for FirstAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let late: Vec<String> = self
            .0
            .iter()
            .map(|latency| format!("{:.1}", latency.as_secs_f64() * 1e3))
            .collect();
        write!(
            f,
            "first hang of each child, transient deadline to its alert in the hub's stream \
             (named, or its names following in a stack alert): {} ms",
            late.join(", ")
        )
    }
}
