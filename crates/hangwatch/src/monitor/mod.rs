//! The monitor: one thread that keeps every receiving half and runs a plain
//! loop over what arrives.
//!
//! All of the monitor's state is local to its thread and changed by the
//! sequential steps of [`Monitor::run`]. Components never send it their
//! notifications; it reads their cells when it looks. It looks:
//!
//! - at the exact deadline of the earliest active component;
//! - while components are busy, at least once per shortest transient timeout,
//!   so it finds every new activity before that activity's first deadline
//!   without the component waking it;
//! - when a component wakes it because it would otherwise look too late, when
//!   a hang it alerted on ends, or when a message arrives;
//! - never, while every component waits: after one look that finds nothing
//!   changed it sleeps without a timer until something happens.
//!
//! Why no activity slips through between two looks is argued in
//! `schedule.rs` and at each step of `look` and `promise` below.
//!
//! The monitor tells what it does, as it happens, to its observers
//! (`observer.rs`): components joining and leaving, alerts raised (in the
//! outbox), delivered and dropped (in the alert sink), stacks sampled, and
//! looks that came late. It does not know who they are: the builder gives
//! it the ones the enabled features provide (`integrations::observers`),
//! and no integration is named here.

mod alert_sink;
mod components;
mod observer;
mod outbox;
mod pauses;
mod profiler;
mod run_time;
mod stacks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

pub(crate) use self::alert_sink::AlertSink;
use self::components::{Components, LookAt};
pub(crate) use self::observer::{Observer, Observers};
use self::outbox::Outbox;
use self::pauses::{Evidence, Pauses, Verdict};
use self::profiler::Profiler;
pub use self::profiler::ProfilingOptions;
use self::run_time::{RunTimeSource, RunTimes};
pub(crate) use self::stacks::Stacks;
use crate::clock::Clock;
use crate::component::{ComponentId, ExitSignal};
use crate::doorbell::Doorbell;
use crate::error::ProfilingError;
use crate::messages::{ControlMsg, Registration, RegistryMsg, StackDone};
use crate::profile::Profile;
use crate::schedule::{Schedule, NEVER};
use crate::stats::{ExitReport, Stats};

/// The receiving halves, all kept by the monitor, and the doorbell every
/// sender to them rings (see `doorbell.rs`).
pub(crate) struct Inbox {
    pub(crate) bell: Arc<Doorbell>,
    pub(crate) registry: Receiver<RegistryMsg>,
    pub(crate) control: Receiver<ControlMsg>,
    pub(crate) stacks: Receiver<StackDone>,
}

/// What the monitor is started with.
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    pub(crate) stack_on_transient: bool,
    pub(crate) pause_threshold: Duration,
    pub(crate) thread_name: String,
}

/// Starts the monitor's thread.
pub(crate) fn spawn(
    settings: Settings,
    inbox: Inbox,
    schedule: Arc<Schedule>,
    alerts: AlertSink,
    stacks: Option<Stacks>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(settings.thread_name.clone())
        .spawn(move || {
            // However the loop ends, handles go quiet: notifications return at
            // once instead of writing cells nobody reads.
            let _quiet = QuietOnExit(schedule.clone());
            Monitor::new(&settings, schedule, alerts, stacks).run(inbox);
        })
}

struct QuietOnExit(Arc<Schedule>);

impl Drop for QuietOnExit {
    fn drop(&mut self) {
        self.0.set_enabled(false);
    }
}

struct Monitor {
    clock: &'static Clock,
    schedule: Arc<Schedule>,
    components: Components,
    /// Alerts on their way out, and the stack stages they (and the
    /// profiler) ask.
    outbox: Outbox,
    profiler: Option<Profiler>,
    /// Samples taken so far (hang captures and profiling).
    samples: u64,
    pauses: Pauses,
    /// The kernel's accounting of the monitor's thread and process, and its
    /// reading at the previous look: the pause rule's evidence.
    run_times: RunTimeSource,
    last_run_times: Option<RunTimes>,
    /// Stamps spent in exit signals since the previous look: time the
    /// monitor's thread was held by the program, not stopped.
    in_exit_signals: u64,
    enabled: bool,
    stack_on_transient: bool,
    exited: bool,
    /// When the previous look happened, and when this one was planned for.
    last_look: u64,
    planned: Option<u64>,
    /// When the monitor next wakes: the planned look, or earlier, when a held
    /// alert's symbolication deadline comes first.
    wake_at: Option<u64>,
    stats_requests: Vec<Sender<Stats>>,
    exit_signal_panics: Vec<ComponentId>,
    threads_exited: u64,
    looks: u64,
}

/// What one look decided.
struct Plan {
    /// When the look began.
    now: u64,
    /// The promise stored before looking: now plus the shortest transient timeout.
    soon: Option<u64>,
    /// When the monitor wants to look next.
    next: Option<u64>,
}

impl Monitor {
    fn new(
        settings: &Settings,
        schedule: Arc<Schedule>,
        alerts: AlertSink,
        stacks: Option<Stacks>,
    ) -> Monitor {
        let clock = Clock::global();
        Monitor {
            clock,
            schedule,
            components: Components::default(),
            outbox: Outbox::new(alerts, stacks),
            samples: 0,
            profiler: None,
            pauses: Pauses::new(clock.to_stamps(settings.pause_threshold)),
            // Opened here, on the monitor's own thread.
            run_times: RunTimeSource::open(),
            last_run_times: None,
            in_exit_signals: 0,
            enabled: settings.enabled,
            stack_on_transient: settings.stack_on_transient,
            exited: false,
            last_look: clock.now(),
            planned: None,
            wake_at: None,
            stats_requests: Vec::new(),
            exit_signal_panics: Vec::new(),
            threads_exited: 0,
            looks: 0,
        }
    }

    fn run(mut self, inbox: Inbox) {
        loop {
            // 1. Sleep until the planned look, a component's wake-up, a
            //    message, a hang's stack from a worker, or a stack's
            //    deadline. Every sender rings after it sends, so what rang
            //    is in the channels below. (A profile's samples do not ring:
            //    they are taken at the next tick.)
            let rung = inbox.bell.wait(self.time_until_wake());

            // 2. Take in what arrived: the stacks first, so that a request
            //    to stop profiling finds every sample already answered.
            //    Every registration sent before a control request is taken
            //    in before that request is handled (see `take_messages`);
            //    one that arrives after an exit is signalled on arrival, so
            //    the two channels may interleave in any order without losing
            //    a signal.
            self.take_stacks(&inbox.stacks);
            if !self.take_messages(&inbox) {
                // Every register and handle is gone (nothing left to watch,
                // and nobody left to signal), or we were asked to stop. Alerts
                // still waiting for their stacks leave with what they have.
                self.outbox.expire(u64::MAX);
                return;
            }

            // 3. Look at every component: raise what is due (sampling the
            //    threads whose alerts carry a stack), find the next deadline.
            //    A wake-up for a profiling tick alone does not look: the
            //    promise of the previous look still stands (its time has
            //    not come), and nothing rang.
            let now = self.clock.now();
            let plan = (rung || self.look_is_due(now)).then(|| self.look());
            let now = plan.as_ref().map_or(now, |plan| plan.now);

            // 4. Let out the alerts whose stacks are out of time.
            self.outbox.expire(now);

            // 5. If profiling, note the hangs that ended and take the
            //    samples that are due.
            if let Some(profiler) = &mut self.profiler {
                profiler.note_ended(self.outbox.take_ended_hangs());
                if let Some(stacks) = self.outbox.stacks() {
                    profiler.tick(now, &self.components, stacks);
                }
            }

            // 6. Promise when we will look next, and set the timer for it
            //    (or for a stack's deadline, or a profiling tick, if sooner).
            if let Some(plan) = plan {
                self.planned = self.promise(plan);
            }
            self.wake_at = [
                self.outbox.next_deadline(),
                self.profiler.as_ref().and_then(Profiler::next_tick),
            ]
            .into_iter()
            .fold(self.planned, earliest);

            // 7. Answer figures requests with what this look saw.
            self.answer_stats();
        }
    }

    /// Whether a wake-up nothing rang for must look: the planned look is
    /// due, or a held alert's deadline, or the wake-up itself came so late
    /// that the process may have been stopped (the pause rule, which only a
    /// look applies, must see it before the stop is charged to a hang).
    fn look_is_due(&self, now: u64) -> bool {
        let reached = |at: Option<u64>| at.is_some_and(|at| now >= at);
        reached(self.planned)
            || reached(self.outbox.next_deadline())
            || self
                .wake_at
                .is_some_and(|at| now.saturating_sub(at) > self.pauses.threshold())
    }

    fn time_until_wake(&self) -> Option<Duration> {
        self.wake_at
            .map(|at| self.clock.to_duration(at.saturating_sub(self.clock.now())))
    }

    /// Returns false once every sender is gone.
    fn take_registrations(&mut self, registry: &Receiver<RegistryMsg>) -> bool {
        loop {
            match registry.try_recv() {
                Ok(RegistryMsg::Register(registration)) => self.register(registration),
                Ok(RegistryMsg::Unregister { key }) => {
                    if let Some(component) = self.components.remove(key) {
                        self.observers()
                            .report(|observer| observer.component_removed(&component.id));
                        let at = LookAt {
                            now: self.clock.now(),
                            pauses: &self.pauses,
                            clock: self.clock,
                            late_after: self.pauses.threshold(),
                        };
                        component.retire(&at, &mut self.outbox);
                    }
                }
                Ok(RegistryMsg::Progress { key, probe }) => {
                    self.components.watch_progress(key, probe)
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn register(&mut self, registration: Registration) {
        self.observers()
            .report(|observer| observer.component_added(&registration.id));
        // Room for its alerts first, so that raising one never allocates.
        self.outbox.add(registration.key);
        let component = self
            .components
            .add(registration, self.clock, self.stack_on_transient);
        if self.exited {
            if let Some(signal) = component.exit_signal.take() {
                let id = component.id.clone();
                let started = self.clock.now();
                if !call_exit_signal(signal) {
                    self.exit_signal_panics.push(id);
                }
                self.in_exit_signals += self.clock.now().saturating_sub(started);
            }
        }
    }

    /// Takes in registrations, then control requests. Before each control
    /// request it takes in the registrations again: one sent before the
    /// request (by a thread the requester heard from) is in the channel by
    /// the time the request is, so it is taken in first, and an exit or a
    /// figures request reflects it. Returns false once every register and
    /// handle is gone, or when asked to shut down.
    fn take_messages(&mut self, inbox: &Inbox) -> bool {
        if !self.take_registrations(&inbox.registry) {
            return false;
        }
        loop {
            let Ok(message) = inbox.control.try_recv() else {
                // Empty, or every `Control` is gone, which ends nothing.
                return true;
            };
            if !self.take_registrations(&inbox.registry) || !self.handle_control(message) {
                return false;
            }
        }
    }

    /// Returns false when asked to shut down.
    fn handle_control(&mut self, message: ControlMsg) -> bool {
        match message {
            ControlMsg::Exit { reply } => {
                let report = self.exit();
                let _ = reply.send(report);
            }
            ControlMsg::Stats { reply } => self.stats_requests.push(reply),
            ControlMsg::SetEnabled(enabled) => self.set_enabled(enabled),
            ControlMsg::StartProfiling { options, reply } => {
                let _ = reply.send(self.start_profiling(options));
            }
            ControlMsg::StopProfiling { reply } => self.stop_profiling(reply),
            ControlMsg::Shutdown { reply } => {
                // Nothing is looked at after this reply.
                let _ = reply.send(());
                return false;
            }
        }
        true
    }

    fn exit(&mut self) -> ExitReport {
        self.exited = true;
        let mut report = ExitReport::default();
        let started = self.clock.now();
        for component in self.components.iter_mut() {
            if let Some(signal) = component.exit_signal.take() {
                report.signalled += 1;
                if !call_exit_signal(signal) {
                    report.panicked.push(component.id.clone());
                }
            }
        }
        self.in_exit_signals += self.clock.now().saturating_sub(started);
        self.exit_signal_panics
            .extend(report.panicked.iter().cloned());
        report
    }

    fn set_enabled(&mut self, enabled: bool) {
        if enabled && !self.enabled {
            // Forget what was under way while checks were off, *then* let
            // handles write again, so that every activity begun from now on
            // has a word we have not marked as ignored.
            for component in self.components.iter_mut() {
                component.resume_checks();
            }
        }
        self.enabled = enabled;
        self.schedule.set_enabled(enabled);
    }

    /// Takes in the capture thread's and the stack workers' answers. (If
    /// they are gone, held alerts leave at their deadlines.)
    fn take_stacks(&mut self, stacks: &Receiver<StackDone>) {
        while let Ok(done) = stacks.try_recv() {
            self.stack_done(done);
        }
    }

    /// Routes an answer to whoever owns its job: a held alert or the profiler.
    fn stack_done(&mut self, done: StackDone) {
        match done {
            StackDone::Unwound { id, stack } => {
                self.count_sample();
                self.outbox.stack_done(id, stack, false);
            }
            StackDone::Symbolized { id, stack } => self.outbox.stack_done(id, stack, true),
            StackDone::Walked {
                id,
                addresses,
                truncated,
            } => {
                if let Some(profiler) = &mut self.profiler {
                    if profiler.walked(id, addresses, truncated) {
                        self.count_sample();
                    }
                }
            }
            StackDone::Missing { id, reason } => {
                if self.outbox.owns(id) {
                    self.outbox.stack_missing(id, reason);
                } else if let Some(profiler) = &mut self.profiler {
                    profiler.missing(id);
                }
            }
            StackDone::Symbols { id, frames } => {
                let finished = self
                    .profiler
                    .as_mut()
                    .and_then(|profiler| profiler.symbols(id, frames, self.clock));
                if let Some((profile, reply)) = finished {
                    self.profiler = None;
                    let _ = reply.send(Ok(profile));
                }
            }
        }
    }

    /// A sample arrived from the capture thread, by way of a worker.
    fn count_sample(&mut self) {
        self.samples += 1;
        self.observers().report(|observer| observer.sample_taken());
    }

    fn start_profiling(&mut self, options: ProfilingOptions) -> Result<(), ProfilingError> {
        if !self.outbox.has_stacks() {
            return Err(ProfilingError::StacksOff);
        }
        if self.profiler.is_some() {
            return Err(ProfilingError::AlreadyProfiling);
        }
        self.outbox.collect_ended_hangs(true);
        let now = self.clock.now();
        self.profiler = Some(Profiler::start(options, now, self.clock));
        Ok(())
    }

    /// Closes the profiling window. The reply goes out now, or when the
    /// profile's symbols come back from a worker.
    fn stop_profiling(
        &mut self,
        reply: crossbeam_channel::Sender<Result<Profile, ProfilingError>>,
    ) {
        let Some(profiler) = self.profiler.as_mut().filter(|p| p.next_tick().is_some()) else {
            let _ = reply.send(Err(ProfilingError::NotProfiling));
            return;
        };
        profiler.note_ended(self.outbox.collect_ended_hangs(false));
        let now = self.clock.now();
        let Some(stacks) = self.outbox.stacks() else {
            return;
        };
        if let Some((profile, reply)) =
            profiler.stop(now, &self.components, self.clock, reply, stacks)
        {
            self.profiler = None;
            let _ = reply.send(Ok(profile));
        }
    }

    fn look(&mut self) -> Plan {
        let now = self.clock.now();
        // This look was due at the timer we set, or earlier, at the first
        // deadline of an activity we have not seen yet: its component relied
        // on our promise (or woke us) to be looked at by then. Either way, a
        // look much later than due means we were not running.
        let due = earliest(self.wake_at, self.components.earliest_unseen_deadline(now));
        let run_times = self.run_times.read();
        let in_exit_signals = std::mem::take(&mut self.in_exit_signals);
        let evidence = run_times
            .zip(self.last_run_times)
            .map(|(now, then)| Evidence::between(then, now, in_exit_signals, self.clock));
        self.last_run_times = run_times;
        let verdict = self.pauses.observe(self.last_look, due, now, evidence);
        match verdict {
            Verdict::Starved => self.observers().report(|observer| observer.look_starved()),
            Verdict::Paused => self.observers().report(|observer| observer.paused()),
            Verdict::OnTime => {}
        }
        self.last_look = now;
        self.looks += 1;
        self.retire_exited_threads(now);
        if !self.enabled {
            return Plan {
                now,
                soon: None,
                next: None,
            };
        }

        // Promise before looking. A component whose new activity this look
        // misses stored its word after we read it, so it loads this promise
        // (or a later one) and wakes us if its deadline comes first.
        let soon = self.components.shortest_transient().map(|t| now + t);
        self.schedule.promise(soon.unwrap_or(NEVER));

        let mut changed = false;
        let mut next = None;
        let mut oldest_activity = now;
        let at = LookAt {
            now,
            pauses: &self.pauses,
            clock: self.clock,
            late_after: self.pauses.threshold(),
        };
        for component in self.components.iter_mut() {
            let look = component.look(&at, &mut self.outbox);
            changed |= look.changed;
            next = earliest(next, look.deadline);
            oldest_activity = oldest_activity.min(look.active_since.unwrap_or(now));
        }
        self.pauses.forget_before(oldest_activity);

        // While anything changes, come back within the shortest timeout, so
        // that components keep finding a promise early enough not to wake us.
        if changed {
            next = earliest(next, soon);
        }
        Plan { now, soon, next }
    }

    /// Stores the promise for the next look and returns when to wake.
    fn promise(&mut self, plan: Plan) -> Option<u64> {
        match (plan.next, plan.soon) {
            // Bringing the promise forward is always safe: whoever read the
            // earlier promise will be looked at by then.
            (Some(next), Some(soon)) if next <= soon => {
                self.schedule.promise(next);
                Some(next)
            }
            // Putting it back (or dropping it, to sleep until woken) is not:
            // an activity this look missed may have read the earlier promise
            // and counted on it. So promise first, then check again. Whoever
            // becomes active after this store sees the new promise; whoever
            // did before is seen by the check, and we look again at once.
            (next, _) => {
                self.schedule.promise(next.unwrap_or(NEVER));
                if self.enabled && self.components.any_changed() {
                    return Some(plan.now);
                }
                next
            }
        }
    }

    fn retire_exited_threads(&mut self, now: u64) {
        for key in self.components.exited_threads() {
            if let Some(component) = self.components.remove(key) {
                self.observers()
                    .report(|observer| observer.component_removed(&component.id));
                self.threads_exited += 1;
                let at = LookAt {
                    now,
                    pauses: &self.pauses,
                    clock: self.clock,
                    late_after: self.pauses.threshold(),
                };
                component.report_thread_exited(&at, &mut self.outbox);
            }
        }
    }

    /// Whoever watches the monitor (kept by its alert sink).
    fn observers(&self) -> &Observers {
        self.outbox.sink().observers()
    }

    fn answer_stats(&mut self) {
        if self.stats_requests.is_empty() {
            return;
        }
        let now = self.clock.now();
        let stats = Stats {
            enabled: self.enabled,
            exited: self.exited,
            components: self
                .components
                .iter()
                .map(|c| c.stats(now, &self.pauses, self.clock))
                .collect(),
            alerts_sent: self.outbox.sink().sent,
            alerts_dropped: self.outbox.sink().dropped,
            exit_signal_panics: self.exit_signal_panics.clone(),
            threads_exited: self.threads_exited,
            pauses: self.pauses.count,
            paused: self.clock.to_duration(self.pauses.total),
            starved_looks: self.pauses.starved_count,
            starved: self.clock.to_duration(self.pauses.starved_total),
            looks: self.looks,
            samples: self.samples,
        };
        for reply in self.stats_requests.drain(..) {
            let _ = reply.send(stats.clone());
        }
    }
}

/// The components still registered when the monitor ends leave it too: its
/// observers hear of each.
impl Drop for Monitor {
    fn drop(&mut self) {
        let observers = self.outbox.sink().observers();
        for component in self.components.iter() {
            observers.report(|observer| observer.component_removed(&component.id));
        }
    }
}

/// Calls an exit signal, catching a panic. Returns whether it returned normally.
fn call_exit_signal(signal: ExitSignal) -> bool {
    catch_unwind(AssertUnwindSafe(signal)).is_ok()
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
