//! `hangwatch soak`: the demo's processes under a heavy mix for a while,
//! and one JSON object of figures at the end.
//!
//! The hub (this process) starts [`Config::processes`] children
//! (`hangwatch demo-child --mode soak`, `child.rs`): four event loops each,
//! fed bursts of tiny tasks between their ordinary work, hanging over and
//! over on the plan `plan.rs` draws (transient and permanent hangs, each
//! ending on its own). The driver (`driver.rs`, shared with the demo) takes
//! in the hub's events and the children's lines (when a child's clock
//! started, its notifications so far) and opens and closes profiling
//! windows on every child ([`PROFILE_EVERY`], [`PROFILE_FOR`]); between its
//! looks the soak, one step after another:
//!
//! 1. now and then kills a random child other than `child-0` with SIGKILL
//!    and at once starts the next generation of its role ([`KILL_EVERY`]);
//!    `child-0` lives the whole run, so one process's memory is measured
//!    over all of it;
//! 2. every second asks every child for its monitor's stats and reads its
//!    memory;
//! 3. every few seconds says how far it got.
//!
//! At the end it asks every child to exit (with confirmation), waits for
//! them to leave, checks the alerts against the plans (`check.rs`), and
//! gives back the figures (`summary.rs`) for the command to print; progress
//! goes to stderr. They pass unless a hang was missed, an alert was false,
//! there was no kill or a kill was not survived, a child died unkilled, or
//! a child's memory grew by 1 MiB or more.

mod fleet;
mod summary;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hangwatch::Frame;
use hangwatch::Profile;
use hangwatch_hub::{ChildInfo, ControlError, Hub, HubEvent};

use self::fleet::Fleet;
use self::summary::Counts;
pub use self::summary::{Summary, RSS_GROWTH_LIMIT_KIB};
use crate::check::{Detection, Outcome};
use crate::driver::{Course, Driver, ProfilingWindows, Scenario, WindowEnd};
use crate::error::ScenarioError;
use crate::lines::Line;
use crate::plan::{Mode, Script};

/// What the soak is to do.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long it runs, in seconds.
    pub seconds: f64,
    /// How many child processes run at once (`child-0` is never killed).
    pub processes: u32,
    /// Seed for the plans, the work, and which child is killed when.
    pub seed: u64,
}

/// The shortest soak: time for the children to warm up and for a kill and
/// a restart.
pub const MIN_SECONDS: f64 = 15.0;

/// The longest soak: a day.
pub const MAX_SECONDS: f64 = 86_400.0;

/// A profiling window opens this often...
pub const PROFILE_EVERY: Duration = Duration::from_secs(4);
/// ...and stays open this long.
pub const PROFILE_FOR: Duration = Duration::from_millis(1500);
/// A child is killed every this many seconds (at random within)...
pub const KILL_EVERY: (u64, u64) = (5, 9);
/// ...but only one that has run this long...
const KILL_AGE: Duration = Duration::from_secs(3);
/// ...and no later than this before the end, so its replacement gets going.
const KILL_STOP: Duration = Duration::from_secs(6);
/// Stats and memory are read this often.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A progress line this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long the children have to leave once asked to exit...
const LEAVE_WITHIN: Duration = Duration::from_secs(30);
/// ...and to end once they have left (or not), before they are killed.
const END_WITHIN: Duration = Duration::from_secs(10);
/// How long the children's last lines may take once they have ended.
const LAST_LINES_WITHIN: Duration = Duration::from_secs(5);

/// Runs the soak `config` describes, until its end or until `interrupted`
/// is raised (Ctrl-C): then the children are asked to exit as at the end,
/// and the figures so far come back marked `interrupted` (and not passed).
pub fn run(config: &Config, interrupted: &AtomicBool) -> Result<Summary, ScenarioError> {
    // `seconds` and `processes` were checked as they were parsed.
    let run_for =
        Duration::try_from_secs_f64(config.seconds).map_err(|source| ScenarioError::Seconds {
            seconds: config.seconds,
            source,
        })?;
    let hub = Hub::start()?;
    let mut driver = Driver::new(&hub, Mode::Soak.timeouts())?;
    let course = Course {
        started: Instant::now(),
        run_for,
        look_every: Duration::from_millis(50),
        windows: ProfilingWindows {
            first: PROFILE_EVERY / 2,
            open_for: PROFILE_FOR,
            every: Some(PROFILE_EVERY),
        },
    };
    let mut soak = Soak::new(config, &course, &hub);
    let timeouts = Mode::Soak.timeouts();
    soak.say(&format!(
        "soak: a hub and {} child processes for {:.1} s; transient timeout {:?}, permanent \
         {:?}; a profiling window every {:?}, a kill every {}-{} s",
        config.processes,
        config.seconds,
        timeouts.transient(),
        timeouts.permanent(),
        PROFILE_EVERY,
        KILL_EVERY.0,
        KILL_EVERY.1
    ));
    for index in 0..config.processes {
        soak.start(&mut driver, index, 0)?;
    }
    let interrupted_after = driver.run(&mut soak, &course, interrupted)?;
    let mut summary = soak.finish(driver)?;
    if interrupted_after.is_some() {
        summary.interrupted = true;
        summary.passed = false;
    }
    Ok(summary)
}

/// Whether `frame` is named as a function of this program (hangwatch's one
/// rule, [`Frame::is_programs`], with a function name): once one is, the
/// child's own symbols are loaded (a system library's names come sooner).
fn is_named_program_frame(frame: &Frame) -> bool {
    frame.function.is_some() && frame.is_programs()
}

/// The soak under way.
struct Soak<'h> {
    hub: &'h Hub,
    seed: u64,
    processes: u32,
    started: Instant,
    end: Instant,
    rng: fastrand::Rng,
    fleet: Fleet,
    next_kill: Instant,
    next_poll: Instant,
    next_progress: Instant,
    alerts: u64,
    profiling_windows: u64,
    profiles: u64,
    unexpected_exits: usize,
}

impl<'h> Soak<'h> {
    fn new(config: &Config, course: &Course, hub: &'h Hub) -> Soak<'h> {
        let started = course.started;
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let next_kill = started + kill_gap(&mut rng);
        Soak {
            hub,
            seed: config.seed,
            processes: config.processes,
            started,
            end: started + course.run_for,
            rng,
            fleet: Fleet::default(),
            next_kill,
            next_poll: started + POLL_EVERY,
            next_progress: started + PROGRESS_EVERY,
            alerts: 0,
            profiling_windows: 0,
            profiles: 0,
            unexpected_exits: 0,
        }
    }

    /// Starts generation `generation` of child `index`, with a plan for the
    /// rest of the run.
    fn start(
        &mut self,
        driver: &mut Driver<'_>,
        index: u32,
        generation: u32,
    ) -> Result<(), ScenarioError> {
        let script = Script {
            mode: Mode::Soak,
            index,
            generation,
            seed: self.seed,
            seconds: self
                .end
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
        };
        let process = driver.spawn(&script)?;
        let member = self.fleet.add(script, process);
        let line = format!(
            "started {} ({} hangs planned)",
            member.name(),
            script.hangs().len()
        );
        self.say(&line);
        Ok(())
    }

    /// Step 1: kills a random child that may be killed, after taking its
    /// last figures, and starts its replacement.
    fn kill_one(&mut self, driver: &mut Driver<'_>) -> Result<(), ScenarioError> {
        let victims: Vec<(u32, u32, u32)> = self
            .fleet
            .live()
            .filter(|m| m.script.index != 0 && m.clock_started && m.age() >= KILL_AGE)
            .map(|m| (m.pid, m.script.index, m.script.generation))
            .collect();
        if victims.is_empty() {
            return Ok(());
        }
        let (pid, index, generation) = victims[self.rng.usize(..victims.len())];
        if let (Ok(stats), Some(member)) = (self.hub.stats(pid), self.fleet.get(pid)) {
            member.stats = Some(stats);
        }
        self.fleet.read_rss();
        let Some(at) = self.fleet.kill(pid)? else {
            return Ok(());
        };
        driver.check().killed(pid, at);
        self.say(&format!("killed child-{index} (pid {pid}) with SIGKILL"));
        self.start(driver, index, generation + 1)
    }

    /// Step 2: every child's stats, and its memory.
    fn poll(&mut self) -> Result<(), ScenarioError> {
        for (child, answer) in self.hub.stats_all()? {
            if let (Ok(stats), Some(member)) = (answer, self.fleet.get(child.pid)) {
                member.stats = Some(stats);
            }
        }
        self.fleet.read_rss();
        Ok(())
    }

    /// The end: last figures, exit with confirmation, every child gone, the
    /// check, the summary.
    fn finish(mut self, mut driver: Driver<'_>) -> Result<Summary, ScenarioError> {
        self.poll()?;
        driver.exit_all(&mut self, LEAVE_WITHIN)?;
        let stuck: Vec<String> = self.fleet.live().map(|m| m.name()).collect();
        for name in stuck {
            self.unexpected_exits += 1;
            self.say(&format!("{name} did not leave"));
        }
        for name in self.fleet.reap(END_WITHIN) {
            self.say(&format!("{name} did not end; killed"));
        }
        let ran_for = self.started.elapsed();
        let check = driver.finish(&mut self, LAST_LINES_WITHIN);
        let hub_events_dropped = self.hub.counters()?.events_dropped;
        let outcome = check.finish();
        self.tell(&outcome);
        let counts = Counts {
            ran_for,
            processes: self.processes,
            alerts: self.alerts,
            hub_events_dropped,
            profiling_windows: self.profiling_windows,
            profiles: self.profiles,
            unexpected_exits: self.unexpected_exits,
        };
        Ok(Summary::new(&counts, &self.fleet, &outcome))
    }

    /// The details behind the figures, on stderr: each process's memory,
    /// what went wrong, the slowest detections.
    fn tell(&self, outcome: &Outcome) {
        for member in &self.fleet.members {
            if let Some(rss) = member.rss {
                self.say(&format!(
                    "{}: resident {} KiB after warm-up, {} KiB {:.1} s later ({:+} KiB)",
                    member.name(),
                    rss.start_kib,
                    rss.end_kib,
                    rss.span.as_secs_f64(),
                    rss.growth_kib()
                ));
            }
        }
        for problem in &outcome.problems {
            self.say(problem);
        }
        let mut slowest: Vec<&Detection> = outcome.detections.iter().collect();
        slowest.sort_by_key(|d| std::cmp::Reverse(d.latency));
        for d in slowest.iter().take(3) {
            self.say(&format!(
                "slow: child-{} (pid {}) {} hang planned at {:.3} s reported {:.1} ms after \
                 its transient deadline",
                d.index,
                d.pid,
                d.component,
                d.at.as_secs_f64(),
                d.latency.as_secs_f64() * 1e3
            ));
        }
    }

    fn progress(&self) {
        let notifications: u64 = self.fleet.members.iter().map(|m| m.notifications).sum();
        let killed = self.fleet.members.iter().filter(|m| m.killed).count();
        self.say(&format!(
            "{} children live, {notifications} notifications, {} alerts, {killed} killed so far",
            self.fleet.live().count(),
            self.alerts
        ));
    }
}

/// The time from one kill to the next.
fn kill_gap(rng: &mut fastrand::Rng) -> Duration {
    Duration::from_millis(rng.u64(KILL_EVERY.0 * 1000..=KILL_EVERY.1 * 1000))
}

impl Scenario for Soak<'_> {
    /// A progress line on stderr.
    fn say(&self, line: &str) {
        eprintln!("[{:>7.3} s] {line}", self.started.elapsed().as_secs_f64());
    }

    fn event(&mut self, event: &HubEvent) {
        match event {
            HubEvent::Connected(child) => {
                if let Some(member) = self.fleet.get(child.pid) {
                    member.connected = true;
                }
            }
            HubEvent::Alert(alert) => {
                self.alerts += 1;
                let symbolicated = alert
                    .alert
                    .stack
                    .iter()
                    .flat_map(|stack| &stack.frames)
                    .any(is_named_program_frame);
                if let Some(member) = self.fleet.get(alert.child.pid) {
                    member.symbolicated |= symbolicated;
                }
            }
            HubEvent::ProcessGone { child, .. } => {
                let unexpected = self.fleet.get(child.pid).is_some_and(|member| {
                    member.gone_reports += 1;
                    !member.killed
                });
                if unexpected {
                    self.unexpected_exits += 1;
                    self.say(&format!("{child} DIED without being killed"));
                }
            }
            HubEvent::Left { child, .. } => {
                if let Some(member) = self.fleet.get(child.pid) {
                    member.left = true;
                }
            }
            other => self.say(&other.to_string()),
        }
    }

    fn line(&mut self, pid: u32, line: Line) {
        let Some(member) = self.fleet.get(pid) else {
            return;
        };
        match line {
            Line::Started(_) => member.clock_started = true,
            Line::Notifications(count) => member.notifications = member.notifications.max(count),
        }
    }

    /// Kills, polls and progress lines, each when due.
    fn step(&mut self, driver: &mut Driver<'_>) -> Result<(), ScenarioError> {
        let now = Instant::now();
        if now >= self.next_kill && now + KILL_STOP <= self.end {
            self.kill_one(driver)?;
            self.next_kill = Instant::now() + kill_gap(&mut self.rng);
        }
        if now >= self.next_poll {
            self.poll()?;
            self.next_poll += POLL_EVERY;
        }
        if now >= self.next_progress {
            self.progress();
            self.next_progress += PROGRESS_EVERY;
        }
        Ok(())
    }

    fn window_opened(&mut self) {
        self.profiling_windows += 1;
    }

    /// A profile is counted (and dropped); a child started or killed while
    /// the window was open has none to give.
    fn profile(
        &mut self,
        child: &ChildInfo,
        answer: Result<Profile, ControlError>,
        in_window: bool,
        _end: WindowEnd,
    ) {
        match answer {
            Ok(profile) => {
                self.profiles += 1;
                let symbolicated = (0..profile.frames.len())
                    .filter_map(|n| profile.frames.get(u32::try_from(n).ok()?))
                    .any(is_named_program_frame);
                if let Some(member) = self.fleet.get(child.pid) {
                    member.profiled |= symbolicated;
                }
            }
            Err(error) => {
                let expected = in_window && self.fleet.get(child.pid).is_some_and(|m| m.live());
                if expected {
                    self.say(&format!("{child}: no profile: {error}"));
                }
            }
        }
    }

    fn window_closed(&mut self, _end: WindowEnd) {}

    fn interrupted(&mut self, after: Duration) {
        eprintln!(
            "soak: interrupted (Ctrl-C) after {:.1} s: asking every child to exit (Ctrl-C again \
             to quit now); the figures so far follow, not judged",
            after.as_secs_f64()
        );
    }

    /// One that does not confirm is an unexpected exit.
    fn exit_not_confirmed(&mut self, _child: &ChildInfo) {
        self.unexpected_exits += 1;
    }

    fn all_left(&self) -> bool {
        self.fleet.live().next().is_none()
    }
}
