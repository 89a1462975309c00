//! The hub's symbolizer: names the frames of every child, without holding
//! the children's alerts for it.
//!
//! Children started by a hub send their stacks normalized (each frame its
//! module's path and build id and an offset in it; see
//! [`hangwatch::Symbolication::Elsewhere`]), so no child opens a symbol
//! table. One **namer** thread owns one [`Symbolizer`] for all of them: its
//! caches are per module file, so N children of one binary cost one set of
//! symbol tables, read once, however many children come and go.
//!
//! A **forwarder** thread sits between the hub's loop and the parent's event
//! stream. It reads the loop's events in order and passes each on, in the
//! same order; an alert whose frames need names goes to the namer first,
//! and waits for it at most [`NAME_HOLD`]:
//!
//! - named in time (warm symbols: well under a millisecond), the alert goes
//!   on named;
//! - not yet (the first stack through a binary's debug info parses it, a
//!   debuginfod download, a loaded machine), the alert goes on as it came,
//!   normalized, and its named stack follows when the namer has it, in an
//!   alert of kind [`Stack`](hangwatch::AlertKind::Stack) that repeats the
//!   alert's fields, as a monitor's own late stacks do.
//!
//! An alert waits only while the namer has nothing older to do: behind a
//! slow name (a cold binary, a download, a file that will not open) the
//! alerts after it go on at once and their names follow. So an alert is
//! never later than `NAME_HOLD` for its names, and no name is lost for being
//! slow. The namer's queue is bounded like the streams: an alert that finds
//! it full goes on as it came, unnamed. Both streams drop their oldest event
//! rather than wait, and the drops are counted together in
//! [`HubCounters::events_dropped`](crate::HubCounters::events_dropped).
//! If the namer ever dies (a panic in a symbol file's parser is caught and
//! a fresh symbolizer takes over; this is the last resort), events go on
//! unnamed.
//!
//! When a child connects, the namer reads the symbols of the child's
//! program (unless it has them already) while the child starts up, so that
//! its first stack is usually named in time. Profiles from
//! [`Hub::stop_profiling`](crate::Hub::stop_profiling) are named by the
//! namer too (the caller waits for them anyway), sharing its caches.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, Receiver, RecvTimeoutError, Sender, TrySendError};
use hangwatch::{AlertKind, HangLevel, Profile, Symbolizer};

use crate::event::{ChildAlert, EventSink, HubEvent};

/// How long an alert waits for its frames' names before it goes on without
/// them (they then follow).
pub(crate) const NAME_HOLD: Duration = Duration::from_millis(5);

/// How long a stopping hub's forwarder waits for names still on their way.
const LAST_NAMES: Duration = Duration::from_secs(1);

/// What the namer is asked.
enum Job {
    /// Name this alert's frames; answer with the same number.
    Alert(u64, ChildAlert),
    /// Read the symbols of child `pid`'s program.
    Warm(u32),
    /// Name this profile's frames and hand it back.
    Profile(Profile, Sender<Profile>),
}

/// The namer's answer about an alert.
struct Answer {
    number: u64,
    alert: ChildAlert,
    /// Whether naming added anything to the stack.
    named: bool,
}

/// A handle on the namer, for profiles.
#[derive(Clone)]
pub(crate) struct Names {
    jobs: Sender<Job>,
}

impl Names {
    /// Starts the namer and the forwarder between `raw` (the loop's events)
    /// and a new event stream of `capacity`, which it returns.
    pub(crate) fn start(
        raw: Receiver<HubEvent>,
        capacity: usize,
        dropped: Arc<AtomicU64>,
    ) -> std::io::Result<(Names, Receiver<HubEvent>)> {
        let (out, events) = EventSink::new(capacity, dropped);
        let (jobs, job_queue) = bounded(capacity);
        // The namer never has more answers in hand than jobs taken.
        let (answers, answered) = bounded(capacity);
        std::thread::Builder::new()
            .name("hangwatch-hub-symbols".into())
            .spawn(move || name(job_queue, answers))?;
        let forwarder = Forwarder {
            jobs: jobs.clone(),
            answered,
            out,
            next: 0,
            outstanding: 0,
        };
        std::thread::Builder::new()
            .name("hangwatch-hub-events".into())
            .spawn(move || forwarder.run(raw))?;
        Ok((Names { jobs }, events))
    }

    /// `profile` with its frames named; as it came if the namer is gone or
    /// does not answer within `timeout`.
    pub(crate) fn profile(&self, profile: Profile, timeout: Duration) -> Profile {
        let (reply, answer) = bounded(1);
        let kept = profile.clone();
        match self
            .jobs
            .send_timeout(Job::Profile(profile, reply), timeout)
        {
            Ok(()) => answer.recv_timeout(timeout).unwrap_or(kept),
            Err(_) => kept,
        }
    }
}

/// The namer: one symbolizer, every child. Ends when every sender of jobs
/// (the forwarder, the hub's handles) is gone.
fn name(jobs: Receiver<Job>, answers: Sender<Answer>) {
    let mut symbolizer = Symbolizer::new();
    for job in jobs {
        match job {
            Job::Alert(number, mut alert) => {
                let mut named = false;
                if let Some(stack) = &mut alert.alert.stack {
                    let before = stack.frames.clone();
                    let outcome = catch_unwind(AssertUnwindSafe(|| {
                        symbolizer.symbolize_stack(stack);
                    }));
                    if outcome.is_err() {
                        // A symbol file that made a parser panic: its half-built
                        // caches are not trusted, and the frames stay as they came.
                        symbolizer = Symbolizer::new();
                        stack.frames = before.clone();
                    }
                    named = stack.frames != before;
                }
                // The forwarder may be gone (the hub stopping): nobody to tell.
                let _ = answers.send(Answer {
                    number,
                    alert,
                    named,
                });
            }
            Job::Warm(pid) => {
                if catch_unwind(AssertUnwindSafe(|| warm_for(&mut symbolizer, pid))).is_err() {
                    symbolizer = Symbolizer::new();
                }
            }
            Job::Profile(mut profile, reply) => {
                let kept = profile.clone();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    symbolizer.symbolize_profile(&mut profile);
                }));
                if outcome.is_err() {
                    symbolizer = Symbolizer::new();
                    profile = kept;
                }
                let _ = reply.send(profile);
            }
        }
    }
}

/// Reads the symbols of child `pid`'s program while the child starts up,
/// before its first hang (the hub and its children share a machine, so the
/// child's executable is `/proc/PID/exe`). A program whose symbols are
/// already read costs a lookup in the cache.
fn warm_for(symbolizer: &mut Symbolizer, pid: u32) {
    if let Ok(program) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        // A failure shows again, per frame, as missing names.
        let _ = symbolizer.preload_file(&program);
    }
}

/// The forwarder's state: it is the only writer of the parent's stream.
struct Forwarder {
    jobs: Sender<Job>,
    answered: Receiver<Answer>,
    out: EventSink,
    /// The number of the next alert sent to the namer.
    next: u64,
    /// Alerts sent to the namer and not answered yet.
    outstanding: usize,
}

impl Forwarder {
    /// Passes the loop's events on until the loop is gone; then the names
    /// still on their way, for a little while.
    fn run(mut self, raw: Receiver<HubEvent>) {
        loop {
            select! {
                recv(raw) -> event => match event {
                    Ok(event) => self.forward(event),
                    Err(_) => break,
                },
                // A name that came after its alert left.
                recv(self.answered) -> answer => match answer {
                    Ok(answer) => self.follow(answer),
                    Err(_) => self.namer_gone(),
                },
            }
        }
        let deadline = Instant::now() + LAST_NAMES;
        while self.outstanding > 0 {
            match self.answered.recv_deadline(deadline) {
                Ok(answer) => self.follow(answer),
                Err(_) => return,
            }
        }
    }

    /// The namer died: events go on unnamed.
    fn namer_gone(&mut self) {
        self.answered = never();
        self.outstanding = 0;
    }

    fn forward(&mut self, event: HubEvent) {
        match event {
            HubEvent::Alert(alert) if needs_names(&alert) => self.name_or_go(alert),
            HubEvent::Connected(child) => {
                let pid = child.pid;
                self.out.send(HubEvent::Connected(child));
                let _ = self.jobs.send(Job::Warm(pid));
            }
            other => self.out.send(other),
        }
    }

    /// Sends `alert` on named if the namer, with nothing older to do, names
    /// it within [`NAME_HOLD`]; else as it is (its names follow).
    fn name_or_go(&mut self, alert: ChildAlert) {
        let number = self.next;
        self.next += 1;
        let busy = self.outstanding > 0;
        match self.jobs.try_send(Job::Alert(number, alert.clone())) {
            Ok(()) => self.outstanding += 1,
            // Full (the namer is stuck) or gone: unnamed, and no follow-up.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.out.send(HubEvent::Alert(alert));
                return;
            }
        }
        if busy {
            self.out.send(HubEvent::Alert(alert));
            return;
        }
        let deadline = Instant::now() + NAME_HOLD;
        loop {
            match self.answered.recv_deadline(deadline) {
                Ok(answer) if answer.number == number => {
                    self.outstanding -= 1;
                    self.out.send(HubEvent::Alert(answer.alert));
                    return;
                }
                // An earlier alert's names, late.
                Ok(answer) => self.follow(answer),
                Err(RecvTimeoutError::Timeout) => {
                    self.out.send(HubEvent::Alert(alert));
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.namer_gone();
                    self.out.send(HubEvent::Alert(alert));
                    return;
                }
            }
        }
    }

    /// Sends the stack of `answer` as a follow-up of the alert that left
    /// without its names, if naming added anything.
    fn follow(&mut self, answer: Answer) {
        self.outstanding = self.outstanding.saturating_sub(1);
        let Answer {
            alert: mut named,
            named: added,
            ..
        } = answer;
        let of = match named.alert.kind {
            AlertKind::Transient => HangLevel::Transient,
            AlertKind::Permanent => HangLevel::Permanent,
            AlertKind::Stack { of } => of,
            // Other kinds carry no stack.
            _ => return,
        };
        if added {
            named.alert.kind = AlertKind::Stack { of };
            self.out.send(HubEvent::Alert(named));
        }
    }
}

/// Whether some frame of `alert`'s stack could still be named.
fn needs_names(alert: &ChildAlert) -> bool {
    alert
        .alert
        .stack
        .as_ref()
        .is_some_and(|stack| stack.frames.iter().any(|frame| frame.needs_symbols()))
}
