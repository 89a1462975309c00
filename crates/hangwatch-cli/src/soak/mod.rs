//! `hangwatch soak --seconds N`: the demo's processes under a heavy mix for
//! a while, and one JSON object of figures at the end.
//!
//! The hub (this process) starts `--processes` children (`hangwatch
//! demo-child --mode soak`, `demo/child.rs`): four event loops each, fed
//! bursts of tiny tasks between their ordinary work, hanging over and over
//! on the plan `demo/plan.rs` draws (transient and permanent hangs, each
//! ending on its own). Meanwhile the hub, one step after another:
//!
//! 1. takes in what arrived: the hub's events, stamped with the time they
//!    reached it by a thread that does nothing else (so the hub's own
//!    blocking requests never make an alert look late), and each child's
//!    lines (when its clock started, its notifications so far);
//! 2. opens and closes profiling windows on every child
//!    ([`PROFILE_EVERY`], [`PROFILE_FOR`]);
//! 3. now and then kills a random child other than `child-0` with SIGKILL
//!    and at once starts the next generation of its role ([`KILL_EVERY`]);
//!    `child-0` lives the whole run, so one process's memory is measured
//!    over all of it;
//! 4. every second asks every child for its monitor's stats and reads its
//!    memory.
//!
//! At the end it asks every child to exit (with confirmation), waits for
//! them to leave, checks the alerts against the plans (`demo/check.rs`),
//! and prints the figures (`summary.rs`) on stdout; progress goes to
//! stderr. It exits non-zero unless no hang was missed, no alert was
//! false, there was a kill and every kill was survived, no child died
//! unkilled, and no child's memory grew by 1 MiB or more.

mod fleet;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, unbounded, Receiver, RecvTimeoutError, Sender};
use hangwatch::{Frame, ProfilingOptions};
use hangwatch_hub::{Hub, HubEvent};

use self::fleet::Fleet;
use self::summary::{Counts, Summary};
use crate::demo::check::{Check, Detection, Outcome};
use crate::demo::lines::Line;
use crate::demo::plan::{Mode, Script};

#[derive(clap::Args)]
pub struct Options {
    /// How long the soak runs, in seconds, from 15 to 86,400.
    #[arg(long, default_value_t = 60.0, allow_hyphen_values = true,
          value_parser = crate::args::seconds_in(MIN_SECONDS, MAX_SECONDS))]
    seconds: f64,
    /// How many child processes run at once, 2 to 16 (`child-0` is never
    /// killed).
    #[arg(long, default_value_t = 3, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(2..=16))]
    processes: u32,
    /// Seed for the plans, the work, and which child is killed when.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    seed: u64,
}

/// The shortest soak: time for the children to warm up and for a kill and
/// a restart.
pub const MIN_SECONDS: f64 = 15.0;

/// The longest soak: a day.
pub const MAX_SECONDS: f64 = 86_400.0;

/// A profiling window opens this often...
const PROFILE_EVERY: Duration = Duration::from_secs(4);
/// ...and stays open this long.
const PROFILE_FOR: Duration = Duration::from_millis(1500);
/// A child is killed every this many seconds (at random within)...
const KILL_EVERY: (u64, u64) = (5, 9);
/// ...but only one that has run this long...
const KILL_AGE: Duration = Duration::from_secs(3);
/// ...and no later than this before the end, so its replacement gets going.
const KILL_STOP: Duration = Duration::from_secs(6);
/// Stats and memory are read this often.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A progress line this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub fn run(options: &Options) -> ExitCode {
    let summary = match soak(options) {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("hangwatch soak: {error}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string_pretty(&summary) {
        Ok(text) => println!("{text}"),
        Err(error) => {
            eprintln!("hangwatch soak: cannot encode the figures: {error}");
            return ExitCode::FAILURE;
        }
    }
    if summary.interrupted {
        ExitCode::from(crate::interrupt::INTERRUPTED)
    } else if summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn soak(options: &Options) -> Result<Summary, String> {
    // `--seconds` and `--processes` were checked as they were parsed.
    let run_for = Duration::try_from_secs_f64(options.seconds)
        .map_err(|e| format!("--seconds {}: {e}", options.seconds))?;
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let interrupted = crate::interrupt::watch_ctrl_c("soak");
    let hub = Hub::start().map_err(|e| e.to_string())?;
    let stop = AtomicBool::new(false);
    let (stamped, events) = unbounded();
    std::thread::scope(|scope| {
        scope.spawn(|| stamp(&hub, &stop, &stamped));
        // However the soak ends, the stamping thread ends with it.
        let _stop = StopOnDrop(&stop);
        Soak::new(options, run_for, &hub, program).and_then(|soak| soak.run(&events, &interrupted))
    })
}

/// Raises its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Passes on the hub's events, each with the time it came.
fn stamp(hub: &Hub, stop: &AtomicBool, out: &Sender<(SystemTime, HubEvent)>) {
    while !stop.load(Ordering::Relaxed) {
        match hub.events().recv_timeout(Duration::from_millis(100)) {
            Ok(event) => {
                if out.send((SystemTime::now(), event)).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Whether `frame` is named as a function of this program: once one is,
/// the child's own symbols are loaded (a system library's names come
/// sooner).
fn ours(frame: &Frame) -> bool {
    frame
        .function
        .as_deref()
        .is_some_and(|name| name.starts_with("hangwatch::"))
}

/// The soak under way.
struct Soak<'h> {
    hub: &'h Hub,
    program: PathBuf,
    seed: u64,
    processes: u32,
    started: Instant,
    end: Instant,
    rng: fastrand::Rng,
    fleet: Fleet,
    check: Check,
    /// Given to each child's reader; dropped at the end, so that the lines
    /// end once every reader has.
    line_sender: Option<Sender<(u32, Line)>>,
    lines: Receiver<(u32, Line)>,
    alerts: u64,
    /// The children profiling in the window open now.
    profiling: Vec<u32>,
    profiling_windows: u64,
    profiles: u64,
    unexpected_exits: usize,
}

impl<'h> Soak<'h> {
    fn new(
        options: &Options,
        run_for: Duration,
        hub: &'h Hub,
        program: PathBuf,
    ) -> Result<Soak<'h>, String> {
        let (line_sender, lines) = unbounded();
        let started = Instant::now();
        let mut soak = Soak {
            hub,
            program,
            seed: options.seed,
            processes: options.processes,
            started,
            end: started + run_for,
            rng: fastrand::Rng::with_seed(options.seed),
            fleet: Fleet::default(),
            check: Check::new(Mode::Soak.timeouts()),
            line_sender: Some(line_sender),
            lines,
            alerts: 0,
            profiling: Vec::new(),
            profiling_windows: 0,
            profiles: 0,
            unexpected_exits: 0,
        };
        let timeouts = Mode::Soak.timeouts();
        soak.say(&format!(
            "soak: a hub and {} child processes for {:.1} s; transient timeout {:?}, permanent \
             {:?}; a profiling window every {:?}, a kill every {}-{} s",
            options.processes,
            options.seconds,
            timeouts.transient,
            timeouts.permanent,
            PROFILE_EVERY,
            KILL_EVERY.0,
            KILL_EVERY.1
        ));
        for index in 0..options.processes {
            soak.start(index, 0)?;
        }
        Ok(soak)
    }

    /// The run, step by step (see the module docs), then the end.
    /// Runs until the end, or until Ctrl-C raises `interrupted`: then the
    /// children are asked to exit as at the end, and the figures so far
    /// come back marked `interrupted` (and not passed).
    fn run(
        mut self,
        events: &Receiver<(SystemTime, HubEvent)>,
        interrupted: &AtomicBool,
    ) -> Result<Summary, String> {
        let mut next_profile = self.started + PROFILE_EVERY / 2;
        let mut profiling_until: Option<Instant> = None;
        let mut next_kill = self.started + self.kill_gap();
        let mut next_poll = self.started + POLL_EVERY;
        let mut next_progress = self.started + PROGRESS_EVERY;
        while Instant::now() < self.end && !interrupted.load(Ordering::SeqCst) {
            self.take_in(events, Duration::from_millis(50));
            let now = Instant::now();
            if profiling_until.is_none() && now >= next_profile {
                self.start_profiling()?;
                profiling_until = Some(now + PROFILE_FOR);
                next_profile += PROFILE_EVERY;
            }
            if profiling_until.is_some_and(|until| now >= until) {
                self.stop_profiling()?;
                profiling_until = None;
            }
            if now >= next_kill && now + KILL_STOP <= self.end {
                self.kill_one()?;
                next_kill = Instant::now() + self.kill_gap();
            }
            if now >= next_poll {
                self.poll()?;
                next_poll += POLL_EVERY;
            }
            if now >= next_progress {
                self.progress();
                next_progress += PROGRESS_EVERY;
            }
        }
        let interrupted_after = interrupted
            .load(Ordering::SeqCst)
            .then(|| self.started.elapsed());
        if let Some(after) = interrupted_after {
            eprintln!(
                "soak: interrupted (Ctrl-C) after {:.1} s: asking every child to exit (Ctrl-C again \
                 to quit now); the figures so far follow, not judged",
                after.as_secs_f64()
            );
        }
        if profiling_until.is_some() {
            self.stop_profiling()?;
        }
        let mut summary = self.finish(events)?;
        if interrupted_after.is_some() {
            summary.interrupted = true;
            summary.passed = false;
        }
        Ok(summary)
    }

    /// Starts generation `generation` of child `index`, with a plan for the
    /// rest of the run.
    fn start(&mut self, index: u32, generation: u32) -> Result<(), String> {
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
        let lines = self.line_sender.as_ref().ok_or("the soak is over")?;
        let member = self
            .fleet
            .spawn(self.hub, &self.program, script, lines, &mut self.check)?;
        let line = format!(
            "started {} ({} hangs planned)",
            member.name(),
            script.hangs().len()
        );
        self.say(&line);
        Ok(())
    }

    /// Step 1: waits up to `wait` for something to arrive, then takes in
    /// everything that has.
    fn take_in(&mut self, events: &Receiver<(SystemTime, HubEvent)>, wait: Duration) {
        select! {
            recv(events) -> event => if let Ok((at, event)) = event { self.event(at, event) },
            recv(self.lines) -> line => if let Ok((pid, line)) = line { self.line(pid, line) },
            default(wait) => {}
        }
        while let Ok((at, event)) = events.try_recv() {
            self.event(at, event);
        }
        while let Ok((pid, line)) = self.lines.try_recv() {
            self.line(pid, line);
        }
    }

    fn event(&mut self, at: SystemTime, event: HubEvent) {
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
                    .any(ours);
                if let Some(member) = self.fleet.get(alert.child.pid) {
                    member.symbolicated |= symbolicated;
                }
                self.check.alert(alert, at);
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
            Line::Started(at) => {
                member.clock_started = true;
                self.check.started(pid, at);
            }
            Line::Notifications(count) => member.notifications = member.notifications.max(count),
        }
    }

    /// Step 2a: a profiling window opens on every child.
    fn start_profiling(&mut self) -> Result<(), String> {
        let answers = self
            .hub
            .start_profiling_all(ProfilingOptions::default())
            .map_err(|e| e.to_string())?;
        self.profiling_windows += 1;
        for (child, answer) in answers {
            match answer {
                Ok(()) => self.profiling.push(child.pid),
                Err(error) => self.say(&format!("{child}: profiling did not start: {error}")),
            }
        }
        Ok(())
    }

    /// Step 2b: the window closes; the profiles come back (and are
    /// dropped). Children started or killed meanwhile have none to give.
    fn stop_profiling(&mut self) -> Result<(), String> {
        let answers = self.hub.stop_profiling_all().map_err(|e| e.to_string())?;
        let profiling = std::mem::take(&mut self.profiling);
        for (child, answer) in answers {
            match answer {
                Ok(profile) => {
                    self.profiles += 1;
                    let symbolicated = (0..profile.frames.len())
                        .filter_map(|n| profile.frames.get(u32::try_from(n).ok()?))
                        .any(ours);
                    if let Some(member) = self.fleet.get(child.pid) {
                        member.profiled |= symbolicated;
                    }
                }
                Err(error) => {
                    let expected = profiling.contains(&child.pid)
                        && self.fleet.get(child.pid).is_some_and(|m| m.live());
                    if expected {
                        self.say(&format!("{child}: no profile: {error}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Step 3: kills a random child that may be killed, after taking its
    /// last figures, and starts its replacement.
    fn kill_one(&mut self) -> Result<(), String> {
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
        let at = self.fleet.kill(pid)?;
        self.check.killed(pid, at);
        self.say(&format!("killed child-{index} (pid {pid}) with SIGKILL"));
        self.start(index, generation + 1)
    }

    /// Step 4: every child's stats, and its memory.
    fn poll(&mut self) -> Result<(), String> {
        for (child, answer) in self.hub.stats_all().map_err(|e| e.to_string())? {
            if let (Ok(stats), Some(member)) = (answer, self.fleet.get(child.pid)) {
                member.stats = Some(stats);
            }
        }
        self.fleet.read_rss();
        Ok(())
    }

    /// The end: last figures, exit with confirmation, every child gone, the
    /// check, the summary.
    fn finish(mut self, events: &Receiver<(SystemTime, HubEvent)>) -> Result<Summary, String> {
        self.poll()?;
        self.exit_all(events)?;
        let ran_for = self.started.elapsed();
        // Every child's stdout is closed now: its reader sends its last line
        // and lets go of its sender; once ours goes too, the lines end.
        self.line_sender = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok((pid, line)) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.line(pid, line);
        }
        self.take_in(events, Duration::ZERO);
        let hub_events_dropped = self
            .hub
            .counters()
            .map_err(|e| e.to_string())?
            .events_dropped;
        let outcome = self.check.finish();
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

    /// Asks every child to exit, waits for each to leave, and reaps them;
    /// one that does not confirm or leave is an unexpected exit.
    fn exit_all(&mut self, events: &Receiver<(SystemTime, HubEvent)>) -> Result<(), String> {
        for (child, answer) in self.hub.exit_all().map_err(|e| e.to_string())? {
            match answer {
                Ok(report) => self.say(&format!(
                    "{child}: exit signals delivered to {} loops",
                    report.signalled
                )),
                Err(error) => {
                    self.unexpected_exits += 1;
                    self.say(&format!("{child}: exit not confirmed: {error}"));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.fleet.live().next().is_some() && Instant::now() < deadline {
            self.take_in(events, Duration::from_millis(100));
        }
        let stuck: Vec<String> = self.fleet.live().map(|m| m.name()).collect();
        for name in stuck {
            self.unexpected_exits += 1;
            self.say(&format!("{name} did not leave"));
        }
        for name in self.fleet.reap(Duration::from_secs(10)) {
            self.say(&format!("{name} did not end; killed"));
        }
        Ok(())
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

    fn kill_gap(&mut self) -> Duration {
        Duration::from_millis(self.rng.u64(KILL_EVERY.0 * 1000..=KILL_EVERY.1 * 1000))
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

    /// A progress line on stderr.
    fn say(&self, line: &str) {
        eprintln!("[{:>7.3} s] {line}", self.started.elapsed().as_secs_f64());
    }
}
