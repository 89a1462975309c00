//! The one orchestration loop of the demo and the soak: a hub, its child
//! processes, and what they send, from the first spawn to the last line.
//!
//! A [`Driver`] does what both scenarios do the same way:
//!
//! - it starts children (`lines.rs`) and tells the [`Check`] their plans;
//! - it takes in what arrives: the hub's events, each stamped with the time
//!   it reached the hub by a thread that does nothing else (so that the
//!   hub's own blocking requests never make an alert look late), and each
//!   child's lines; every alert and every clock start goes to the check,
//!   and everything to the scenario;
//! - it runs the scenario until its end or Ctrl-C, opening and closing the
//!   profiling windows of its [`ProfilingWindows`] on every child and
//!   calling the scenario's own [`Scenario::step`] between;
//! - at the end it closes an open window, asks every child to exit (with
//!   confirmation), waits for them to leave, and reads their last lines.
//!
//! What differs (what the scenario shows, which answers it counts, what
//! it does between looks, when every child has left) is the scenario's,
//! behind the small [`Scenario`] trait.

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, unbounded, Receiver, RecvTimeoutError, Sender};
use hangwatch::{Profile, ProfilingOptions};
use hangwatch_hub::{ChildInfo, ControlError, Hub, HubEvent};

use crate::check::Check;
use crate::error::ScenarioError;
use crate::lines::{self, Line};
use crate::plan::Script;
use hangwatch::Timeouts;

/// What a scenario adds to the driver's loop.
pub trait Scenario {
    /// Shows a line of progress.
    fn say(&self, line: &str);
    /// An event from the hub (an alert is given to the check after this).
    fn event(&mut self, event: &HubEvent);
    /// A line from child `pid` (a clock start is given to the check too).
    fn line(&mut self, pid: u32, line: Line);
    /// The scenario's own work between two looks at what arrived.
    fn step(&mut self, driver: &mut Driver<'_>) -> Result<(), ScenarioError>;
    /// A profiling window has opened on every child.
    fn window_opened(&mut self);
    /// Child `child`'s profile, as the window closes; `in_window` says
    /// whether the child started profiling when it opened.
    fn profile(
        &mut self,
        child: &ChildInfo,
        answer: Result<Profile, ControlError>,
        in_window: bool,
        end: WindowEnd,
    );
    /// The window has closed and every profile is in.
    fn window_closed(&mut self, end: WindowEnd);
    /// The run was cut short by Ctrl-C after `after`.
    fn interrupted(&mut self, after: Duration);
    /// A child did not confirm that it got the exit signal.
    fn exit_not_confirmed(&mut self, child: &ChildInfo);
    /// Every child has left (or is gone).
    fn all_left(&self) -> bool;
}

/// Why a profiling window closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowEnd {
    /// At its time, or at the end of the run.
    OnTime,
    /// Because Ctrl-C cut the run short.
    Interrupted,
}

/// When profiling windows open on every child: the first `first` after
/// the run's start, then (if `every`) again every `every` after the
/// previous one was due; each stays open `open_for`.
#[derive(Clone, Copy, Debug)]
pub struct ProfilingWindows {
    /// From the run's start to the first window.
    pub first: Duration,
    /// How long each stays open.
    pub open_for: Duration,
    /// From one window's due time to the next's; `None` for one window.
    pub every: Option<Duration>,
}

/// How a run goes: how long, how often it looks at what arrived, its
/// profiling windows.
#[derive(Clone, Copy, Debug)]
pub struct Course {
    /// When the run started.
    pub started: Instant,
    /// How long it lasts.
    pub run_for: Duration,
    /// The longest wait for something to arrive between two steps.
    pub look_every: Duration,
    /// Its profiling windows.
    pub windows: ProfilingWindows,
}

/// The profiling window open now.
struct Window {
    closes: Instant,
    /// The children that started profiling when it opened.
    children: Vec<u32>,
}

/// The hub's events, each with the time it came, passed on by a thread of
/// their own until this is dropped.
struct Stamper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Stamper {
    fn start(hub: &Hub, out: Sender<(SystemTime, HubEvent)>) -> Result<Stamper, ScenarioError> {
        let events = hub.events().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hub-events".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match events.recv_timeout(Duration::from_millis(100)) {
                        Ok(event) => {
                            if out.send((SystemTime::now(), event)).is_err() {
                                return;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(ScenarioError::Thread)?;
        Ok(Stamper {
            stop,
            thread: Some(thread),
        })
    }
}

/// However the run ends, the stamping thread ends with it.
impl Drop for Stamper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A hub's run with its children. See the module docs.
pub struct Driver<'h> {
    hub: &'h Hub,
    program: PathBuf,
    events: Receiver<(SystemTime, HubEvent)>,
    _stamper: Stamper,
    /// Given to each child's reader; dropped at the end, so that the lines
    /// end once every reader has.
    line_sender: Sender<(u32, Line)>,
    lines: Receiver<(u32, Line)>,
    check: Check,
    window: Option<Window>,
    next_window: Option<Instant>,
}

impl<'h> Driver<'h> {
    /// A driver of `hub`'s children, this program started again, whose
    /// plans run under `timeouts`.
    pub fn new(hub: &'h Hub, timeouts: Timeouts) -> Result<Driver<'h>, ScenarioError> {
        let program = std::env::current_exe().map_err(ScenarioError::NoProgram)?;
        let (stamped, events) = unbounded();
        let stamper = Stamper::start(hub, stamped)?;
        let (line_sender, lines) = unbounded();
        Ok(Driver {
            hub,
            program,
            events,
            _stamper: stamper,
            line_sender,
            lines,
            check: Check::new(timeouts),
            window: None,
            next_window: None,
        })
    }

    /// The hub.
    pub fn hub(&self) -> &'h Hub {
        self.hub
    }

    /// The check, fed as things arrive.
    pub fn check(&mut self) -> &mut Check {
        &mut self.check
    }

    /// Starts a child with `script`, and tells the check its plan.
    pub fn spawn(&mut self, script: &Script) -> Result<Child, ScenarioError> {
        let process = lines::spawn(self.hub, &self.program, script, &self.line_sender)?;
        self.check
            .process(process.id(), script.index, script.hangs());
        Ok(process)
    }

    /// Waits up to `wait` for something to arrive, then takes in everything
    /// that has; returns how many events of the hub came.
    pub fn take_in(&mut self, scenario: &mut impl Scenario, wait: Duration) -> usize {
        let mut events = 0;
        select! {
            recv(self.events) -> event => if let Ok((at, event)) = event {
                events += 1;
                take_event(&mut self.check, scenario, at, event);
            },
            recv(self.lines) -> line => if let Ok((pid, line)) = line {
                take_line(&mut self.check, scenario, pid, line);
            },
            default(wait) => {}
        }
        while let Ok((at, event)) = self.events.try_recv() {
            events += 1;
            take_event(&mut self.check, scenario, at, event);
        }
        while let Ok((pid, line)) = self.lines.try_recv() {
            take_line(&mut self.check, scenario, pid, line);
        }
        events
    }

    /// The run, until `course.run_for` has passed or `interrupted` is
    /// raised: take in what arrived, open or close a profiling window, the
    /// scenario's step. At its end an open window closes. Returns how long
    /// it ran if Ctrl-C cut it short.
    pub fn run(
        &mut self,
        scenario: &mut impl Scenario,
        course: &Course,
        interrupted: &AtomicBool,
    ) -> Result<Option<Duration>, ScenarioError> {
        self.next_window = Some(course.started + course.windows.first);
        while course.started.elapsed() < course.run_for && !interrupted.load(Ordering::SeqCst) {
            self.take_in(scenario, course.look_every);
            let now = Instant::now();
            let due = self.next_window.filter(|due| now >= *due);
            if let (None, Some(due)) = (&self.window, due) {
                self.open_window(scenario, now + course.windows.open_for)?;
                self.next_window = course.windows.every.map(|every| due + every);
            }
            if self.window.as_ref().is_some_and(|w| now >= w.closes) {
                self.close_window(scenario, WindowEnd::OnTime)?;
            }
            scenario.step(self)?;
        }
        let interrupted_after = interrupted
            .load(Ordering::SeqCst)
            .then(|| course.started.elapsed());
        if let Some(after) = interrupted_after {
            scenario.interrupted(after);
        }
        if self.window.is_some() {
            let end = match interrupted_after {
                Some(_) => WindowEnd::Interrupted,
                None => WindowEnd::OnTime,
            };
            self.close_window(scenario, end)?;
        }
        Ok(interrupted_after)
    }

    /// A profiling window opens on every child, to close at `closes`.
    fn open_window(
        &mut self,
        scenario: &mut impl Scenario,
        closes: Instant,
    ) -> Result<(), ScenarioError> {
        let answers = self.hub.start_profiling_all(ProfilingOptions::default())?;
        let mut children = Vec::new();
        for (child, answer) in answers {
            match answer {
                Ok(()) => children.push(child.pid),
                Err(error) => scenario.say(&format!("{child}: profiling did not start: {error}")),
            }
        }
        self.window = Some(Window { closes, children });
        scenario.window_opened();
        Ok(())
    }

    /// The window closes; the profiles go to the scenario.
    fn close_window(
        &mut self,
        scenario: &mut impl Scenario,
        end: WindowEnd,
    ) -> Result<(), ScenarioError> {
        let answers = self.hub.stop_profiling_all()?;
        let window = self.window.take();
        for (child, answer) in answers {
            let in_window = window
                .as_ref()
                .is_some_and(|w| w.children.contains(&child.pid));
            scenario.profile(&child, answer, in_window, end);
        }
        scenario.window_closed(end);
        Ok(())
    }

    /// Asks every child to exit, then waits up to `leave_within` for every
    /// child to leave, taking in what arrives.
    pub fn exit_all(
        &mut self,
        scenario: &mut impl Scenario,
        leave_within: Duration,
    ) -> Result<(), ScenarioError> {
        for (child, answer) in self.hub.exit_all()? {
            match answer {
                Ok(report) => scenario.say(&format!(
                    "{child}: exit signals delivered to {} loops",
                    report.signalled
                )),
                Err(error) => {
                    scenario.exit_not_confirmed(&child);
                    scenario.say(&format!("{child}: exit not confirmed: {error}"));
                }
            }
        }
        let deadline = Instant::now() + leave_within;
        while !scenario.all_left() && Instant::now() < deadline {
            self.take_in(scenario, Duration::from_millis(100));
        }
        Ok(())
    }

    /// The end, once every child is reaped: reads their last lines (each
    /// reader sends its child's last line and lets go of its sender once
    /// the child's stdout closes; the lines end when ours goes too), for up
    /// to `within`, then what else has arrived. Returns the check.
    pub fn finish(self, scenario: &mut impl Scenario, within: Duration) -> Check {
        let Driver {
            events,
            line_sender,
            lines,
            mut check,
            ..
        } = self;
        drop(line_sender);
        let deadline = Instant::now() + within;
        while let Ok((pid, line)) =
            lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            take_line(&mut check, scenario, pid, line);
        }
        while let Ok((at, event)) = events.try_recv() {
            take_event(&mut check, scenario, at, event);
        }
        check
    }
}

/// An event that reached the hub at `at`: to the scenario, and an alert to
/// the check.
fn take_event(check: &mut Check, scenario: &mut impl Scenario, at: SystemTime, event: HubEvent) {
    scenario.event(&event);
    if let HubEvent::Alert(alert) = event {
        check.alert(alert, at);
    }
}

/// A child's line: to the scenario, and its clock's start to the check.
fn take_line(check: &mut Check, scenario: &mut impl Scenario, pid: u32, line: Line) {
    if let Line::Started(at) = line {
        check.started(pid, at);
    }
    scenario.line(pid, line);
}
