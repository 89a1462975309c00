//! The parent's side: a [`Hub`] that takes on child processes, hands out
//! their alerts on one receiver, and sends their monitors control requests.
//!
//! # Who owns what
//!
//! - The **hub's thread** ([`run`]) keeps every receiving half: each child's
//!   stream (in one `IpcReceiverSet`), and the hub's own command queue with
//!   the in-process ipc "doorbell" that wakes it for commands. All of its
//!   state (children, invitations, pending requests) is local to it.
//! - A **link thread** per invitation ([`link`]) waits for its child to
//!   connect (the one-shot server's `accept` blocks), connects to the child's
//!   control server, hands the child's stream to the hub's thread, and then
//!   writes the hub's requests to that child. One child that stops reading
//!   can block only its own link thread, never the hub's thread or another
//!   child's requests.
//! - Each child's **[`Inbox`]** ([`inbox`]), owned by the hub's thread, turns
//!   the bytes of its stream into messages and glues their pieces back into
//!   payloads.
//! - The **[`Hub`] handle** holds the reading end of the event stream and the
//!   sending end of the command queue. A request from it (`stats`, `exit`,
//!   ...) travels as a command to the hub's thread, which numbers it, keeps a
//!   reply slot for it and passes it to the child's link thread; the child's
//!   reply comes back on its stream, and the hub's thread puts it in the
//!   slot. The caller waits on the slot with a timeout, so a child that is
//!   gone or stuck makes the call fail, never hang.
//!
//! # Faults
//!
//! - A child that dies closes its stream without a goodbye: the hub's thread
//!   sees the channel close in its select, reports
//!   [`HubEvent::ProcessGone`](crate::HubEvent::ProcessGone) with what it last
//!   knew, fails that child's pending requests, and forgets the child. The
//!   channel closes once, so this happens once.
//! - A message that does not decode is counted, reported as
//!   [`HubEvent::Undecodable`](crate::HubEvent::Undecodable) and dropped. A
//!   first message that does not decode refuses the connection.
//! - A child that never connects is reported
//!   ([`HubEvent::NeverConnected`](crate::HubEvent::NeverConnected)) after
//!   the connect timeout, and its invitation withdrawn.
//! - A parent that stops reading events loses the oldest ones, counted in
//!   [`HubCounters::events_dropped`](crate::HubCounters::events_dropped).

mod inbox;
mod link;
mod names;
mod run;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use hangwatch::{ExitReport, Profile, ProfilingOptions, Stats, Symbolication};
use ipc_channel::ipc::{IpcOneShotServer, IpcSender};
use serde::de::DeserializeOwned;

use crate::error::{ControlError, HubError, HubGone};
use crate::event::{ChildInfo, HubCounters, HubEvent};
use crate::protocol::{ChildMsg, Json, RemoteError, Reply, Request, HUB_ENV};
use names::Names;

#[cfg(feature = "test-util")]
pub use inbox::{Delivery, Inbox};
pub(crate) use run::Command as HubCommand;

/// One answer per child from a request made to every child at once, in the
/// order the children connected.
pub type Answers<T> = Vec<(ChildInfo, Result<T, ControlError>)>;

/// Settings for a hub. [`HubBuilder::start`] starts it.
#[derive(Clone, Debug)]
pub struct HubBuilder {
    event_capacity: usize,
    request_timeout: Duration,
    connect_timeout: Duration,
    thread_name: String,
    symbolicate: bool,
}

impl Default for HubBuilder {
    fn default() -> HubBuilder {
        HubBuilder::new()
    }
}

impl HubBuilder {
    /// The defaults: room for 4,096 unread events, 10 s for a child to
    /// answer a request, 30 s for an invited child to connect, a thread named
    /// `hangwatch-hub`, children's frames named by the hub.
    pub fn new() -> HubBuilder {
        HubBuilder {
            event_capacity: 4096,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            thread_name: "hangwatch-hub".to_owned(),
            symbolicate: true,
        }
    }

    /// Whether the hub names the frames its children send normalized (on
    /// by default), on a thread of its own with one symbolizer for every
    /// child (see the crate docs on symbolication). The children it starts
    /// ([`Hub::spawn`], [`Invitation::configure`]) are then told to send
    /// them so (`HANGWATCH_SYMBOLICATION=elsewhere`, which a child's
    /// [`Builder::symbolication`](hangwatch::Builder::symbolication)
    /// overrides). Off, frames come as the children sent them.
    pub fn symbolicate(mut self, on: bool) -> HubBuilder {
        self.symbolicate = on;
        self
    }

    /// How many unread events to keep before dropping the oldest (at least
    /// 1). With [`symbolicate`](HubBuilder::symbolicate) on, events pass
    /// through two streams of this size (the loop's and the parent's) and
    /// the namer's queue holds as many alerts.
    pub fn event_capacity(mut self, capacity: usize) -> HubBuilder {
        self.event_capacity = capacity.max(1);
        self
    }

    /// How long a control request waits for the child's answer; and how
    /// long a stopped profile waits for the hub to name its frames, after
    /// which it comes as the child sent it. Naming a profile the first time
    /// can take a few seconds.
    pub fn request_timeout(mut self, timeout: Duration) -> HubBuilder {
        self.request_timeout = timeout;
        self
    }

    /// How long an invitation waits for its child before the hub reports
    /// [`HubEvent::NeverConnected`] and withdraws it.
    pub fn connect_timeout(mut self, timeout: Duration) -> HubBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The name of the hub's thread.
    pub fn thread_name(mut self, name: impl Into<String>) -> HubBuilder {
        self.thread_name = name.into();
        self
    }

    /// Starts the hub's thread.
    pub fn start(self) -> Result<Hub, HubError> {
        let (doorbell, doorbell_receiver) =
            ipc_channel::ipc::channel::<u8>().map_err(HubError::Channels)?;
        let (commands, command_receiver) = crossbeam_channel::unbounded();
        let wake = Wake {
            commands,
            doorbell: Arc::new(Mutex::new(doorbell)),
            rung: Arc::new(AtomicBool::new(false)),
        };
        let dropped = Arc::new(AtomicU64::new(0));
        let (hub_loop, events) = run::HubLoop::new(
            doorbell_receiver,
            wake.rung.clone(),
            command_receiver,
            self.event_capacity,
            dropped.clone(),
        )
        .map_err(HubError::Channels)?;
        let (names, events) = match self.symbolicate {
            true => {
                let (names, named) =
                    Names::start(events, self.event_capacity, dropped).map_err(HubError::Spawn)?;
                (Some(names), named)
            }
            false => (None, events),
        };
        let thread = std::thread::Builder::new()
            .name(self.thread_name)
            .spawn(move || hub_loop.run())
            .map_err(HubError::Spawn)?;
        Ok(Hub {
            events,
            names,
            wake,
            next_invitation: AtomicU64::new(1),
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
            thread: Some(thread),
        })
    }
}

/// A running hub: takes on child processes, gives out their alerts, and
/// sends their monitors control requests. See the [crate docs](crate).
///
/// Dropping it stops the hub's thread (as [`Hub::shutdown`] does, without
/// waiting): the children notice, stop sending, and go on without it.
pub struct Hub {
    events: Receiver<HubEvent>,
    /// The symbolizer thread, when the hub names children's frames.
    names: Option<Names>,
    wake: Wake,
    next_invitation: AtomicU64,
    request_timeout: Duration,
    connect_timeout: Duration,
    thread: Option<JoinHandle<Result<(), HubError>>>,
}

impl Hub {
    /// Starts a hub with the default settings.
    pub fn start() -> Result<Hub, HubError> {
        HubBuilder::new().start()
    }

    /// A builder with the default settings.
    pub fn builder() -> HubBuilder {
        HubBuilder::new()
    }

    /// Everything the hub sees, from every child, in the order the hub got
    /// it: connections, alerts (tagged with the child's pid and name),
    /// children that left or died, messages that did not decode.
    ///
    /// Bounded: if nobody reads, the oldest events are dropped (and counted).
    /// Once the hub has stopped and every event is read, `recv` fails.
    pub fn events(&self) -> &Receiver<HubEvent> {
        &self.events
    }

    /// Opens a one-shot server for one child called `name`, and waits (on a
    /// thread of its own) for that child to connect. Hand the child the
    /// invitation's [`server_name`](Invitation::server_name), for example
    /// with [`Invitation::configure`].
    pub fn invite(&self, name: impl Into<String>) -> Result<Invitation, HubError> {
        let name = name.into();
        let (server, server_name) =
            IpcOneShotServer::<ChildMsg>::new().map_err(|source| HubError::Server {
                name: name.clone(),
                source,
            })?;
        let number = self.next_invitation.fetch_add(1, Ordering::Relaxed);
        // Tell the hub's thread before the link thread can report a
        // connection, so the connection always finds its invitation.
        self.wake.send(HubCommand::Invited {
            number,
            name: name.clone(),
            server_name: server_name.clone(),
            deadline: Instant::now() + self.connect_timeout,
        })?;
        link::spawn(number, name.clone(), server, self.wake.clone()).map_err(HubError::Spawn)?;
        Ok(Invitation {
            name,
            server_name,
            symbolicate: self.names.is_some(),
        })
    }

    /// Invites a child called `name`, puts the invitation in `command`'s
    /// environment, and starts it. The child connects with
    /// [`Bridge::connect_from_env`](crate::Bridge::connect_from_env); a
    /// [`HubEvent::Connected`] follows.
    pub fn spawn(
        &self,
        name: impl Into<String>,
        command: &mut Command,
    ) -> Result<std::process::Child, HubError> {
        let invitation = self.invite(name)?;
        invitation.configure(command);
        command.spawn().map_err(|source| {
            let name = invitation.name().to_owned();
            invitation.withdraw();
            HubError::Launch { name, source }
        })
    }

    /// The children connected now, in the order they connected.
    pub fn children(&self) -> Result<Vec<ChildInfo>, HubGone> {
        let (reply, answer) = bounded(1);
        self.wake.send(HubCommand::Children { reply })?;
        answer.recv().map_err(|_| HubGone)
    }

    /// The hub's figures.
    pub fn counters(&self) -> Result<HubCounters, HubGone> {
        let (reply, answer) = bounded(1);
        self.wake.send(HubCommand::Counters { reply })?;
        answer.recv().map_err(|_| HubGone)
    }

    /// Asks child `pid`'s monitor to call every exit signal, and returns its
    /// confirmation: [`Control::exit`](hangwatch::Control::exit) across the
    /// process boundary.
    pub fn exit(&self, pid: u32) -> Result<ExitReport, ControlError> {
        let answer = self.send(pid, Request::Exit, self.deadline())?;
        expect_exit(pid, self.wait(pid, answer)?)
    }

    /// Child `pid`'s monitor's figures.
    pub fn stats(&self, pid: u32) -> Result<Stats, ControlError> {
        let answer = self.send(pid, Request::Stats, self.deadline())?;
        expect_stats(pid, self.wait(pid, answer)?)
    }

    /// Turns child `pid`'s hang checks on or off.
    pub fn set_enabled(&self, pid: u32, enabled: bool) -> Result<(), ControlError> {
        let answer = self.send(pid, Request::SetEnabled(enabled), self.deadline())?;
        match self.wait(pid, answer)? {
            Reply::SetEnabled(result) => result.map_err(|e| ControlError::remote(pid, e)),
            other => Err(mismatch(pid, "set_enabled", &other)),
        }
    }

    /// Starts profiling in child `pid`.
    pub fn start_profiling(&self, pid: u32, options: ProfilingOptions) -> Result<(), ControlError> {
        let answer = self.send(pid, Request::StartProfiling(options), self.deadline())?;
        expect_started(pid, self.wait(pid, answer)?)
    }

    /// Stops profiling in child `pid` and returns its profile, its frames
    /// named by the hub if the child sent them normalized (see
    /// [`HubBuilder::symbolicate`]).
    pub fn stop_profiling(&self, pid: u32) -> Result<Profile, ControlError> {
        let answer = self.send(pid, Request::StopProfiling, self.deadline())?;
        let profile = expect_profile(pid, self.wait(pid, answer)?)?;
        Ok(self.named(profile))
    }

    /// [`Hub::exit`] on every connected child at once; one answer per child,
    /// in the order they connected.
    pub fn exit_all(&self) -> Result<Answers<ExitReport>, HubGone> {
        self.broadcast(Request::Exit, expect_exit)
    }

    /// [`Hub::start_profiling`] on every connected child at once.
    pub fn start_profiling_all(&self, options: ProfilingOptions) -> Result<Answers<()>, HubGone> {
        self.broadcast(Request::StartProfiling(options), expect_started)
    }

    /// [`Hub::stop_profiling`] on every connected child at once: one profile
    /// per child.
    pub fn stop_profiling_all(&self) -> Result<Answers<Profile>, HubGone> {
        let answers = self.broadcast(Request::StopProfiling, expect_profile)?;
        Ok(answers
            .into_iter()
            .map(|(child, profile)| (child, profile.map(|profile| self.named(profile))))
            .collect())
    }

    /// `profile` with its frames named by the hub's symbolizer, if it has
    /// one.
    fn named(&self, profile: Profile) -> Profile {
        match &self.names {
            Some(names) => names.profile(profile, self.request_timeout),
            None => profile,
        }
    }

    /// [`Hub::stats`] of every connected child at once.
    pub fn stats_all(&self) -> Result<Answers<Stats>, HubGone> {
        self.broadcast(Request::Stats, expect_stats)
    }

    /// Stops the hub's thread and waits for it. Pending invitations are
    /// withdrawn and pending requests fail; children notice the hub is gone
    /// and go on without it.
    pub fn shutdown(mut self) -> Result<(), HubError> {
        let _ = self.wake.send(HubCommand::Shutdown);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) | None => Err(HubError::Gone(HubGone)),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.request_timeout
    }

    /// Sends `request` to child `pid` through the hub's thread; the answer
    /// will arrive on the returned receiver.
    fn send(&self, pid: u32, request: Request, deadline: Instant) -> Result<Answer, ControlError> {
        let (reply, answer) = bounded(1);
        self.wake.send(HubCommand::Request {
            pid,
            request,
            reply,
            deadline,
        })?;
        Ok(Answer { answer, deadline })
    }

    /// Waits for an answer until its deadline.
    fn wait(&self, pid: u32, answer: Answer) -> Result<Reply, ControlError> {
        let left = answer.deadline.saturating_duration_since(Instant::now());
        match answer.answer.recv_timeout(left) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ControlError::TimedOut {
                pid,
                timeout: self.request_timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(ControlError::HubGone(HubGone)),
        }
    }

    fn broadcast<T>(
        &self,
        request: Request,
        expect: fn(u32, Reply) -> Result<T, ControlError>,
    ) -> Result<Answers<T>, HubGone> {
        let deadline = self.deadline();
        let sent: Vec<(ChildInfo, Result<Answer, ControlError>)> = self
            .children()?
            .into_iter()
            .map(|child| {
                let answer = self.send(child.pid, request.clone(), deadline);
                (child, answer)
            })
            .collect();
        Ok(sent
            .into_iter()
            .map(|(child, answer)| {
                let pid = child.pid;
                let result = answer
                    .and_then(|answer| self.wait(pid, answer))
                    .and_then(|reply| expect(pid, reply));
                (child, result)
            })
            .collect())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.wake.send(HubCommand::Shutdown);
        }
    }
}

/// A place a child is invited to connect to: one ipc-channel one-shot server.
///
/// Give one invitation to one child: its server accepts a single connection.
#[derive(Debug)]
pub struct Invitation {
    name: String,
    server_name: String,
    /// Whether the hub names the child's frames.
    symbolicate: bool,
}

impl Invitation {
    /// The name the child will be known by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The one-shot server's name: what the child connects to (on Linux, the
    /// path of a unix socket in a temporary directory).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Puts the server's name in `command`'s environment as
    /// [`HUB_ENV`](crate::HUB_ENV), where
    /// [`Bridge::connect_from_env`](crate::Bridge::connect_from_env) looks;
    /// and, when the hub names children's frames, `HANGWATCH_SYMBOLICATION`
    /// as `elsewhere`, so that the child's monitor sends them normalized.
    pub fn configure<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        if self.symbolicate {
            command.env(Symbolication::ENV, "elsewhere");
        }
        command.env(HUB_ENV, &self.server_name)
    }

    /// Gives up on this invitation: its link thread ends, and a child that
    /// tries it later cannot connect.
    pub fn withdraw(self) {
        withdraw(&self.server_name);
    }
}

/// Connects to a one-shot server and says [`ChildMsg::Withdrawn`], so that
/// the link thread waiting in its `accept` wakes and ends. Fails quietly if
/// the server has already been used.
pub(crate) fn withdraw(server_name: &str) {
    if server_name.contains('\0') {
        return;
    }
    if let Ok(sender) = IpcSender::<ChildMsg>::connect(server_name.to_owned()) {
        let _ = sender.send(ChildMsg::Withdrawn);
    }
}

/// How other threads reach the hub's thread: a command on the queue, then a
/// ring of the doorbell (an ipc channel in the hub's receiver set), unless it
/// is already ringing.
#[derive(Clone)]
pub(crate) struct Wake {
    commands: Sender<HubCommand>,
    doorbell: Arc<Mutex<IpcSender<u8>>>,
    rung: Arc<AtomicBool>,
}

impl Wake {
    pub(crate) fn send(&self, command: HubCommand) -> Result<(), HubGone> {
        self.commands.send(command).map_err(|_| HubGone)?;
        // The hub's thread clears `rung` before it takes commands, so a
        // command queued after that is seen in this ring or the next one.
        if !self.rung.swap(true, Ordering::SeqCst) {
            let doorbell = self.doorbell.lock().map_err(|_| HubGone)?;
            doorbell.send(0).map_err(|_| HubGone)?;
        }
        Ok(())
    }
}

/// A request on its way: where its answer will arrive, and until when to
/// wait.
struct Answer {
    answer: Receiver<Result<Reply, ControlError>>,
    deadline: Instant,
}

fn mismatch(pid: u32, asked: &str, got: &Reply) -> ControlError {
    let got = match got {
        Reply::Exit(_) => "exit",
        Reply::Stats(_) => "stats",
        Reply::SetEnabled(_) => "set_enabled",
        Reply::StartProfiling(_) => "start_profiling",
        Reply::StopProfiling(_) => "stop_profiling",
    };
    ControlError::BadReply {
        pid,
        detail: format!("asked for {asked}, got an answer to {got}"),
    }
}

/// A child's JSON answer, decoded, or what went wrong: on its side, or in
/// the bytes it sent.
fn decode_reply<T: DeserializeOwned>(
    pid: u32,
    result: Result<Json<T>, RemoteError>,
) -> Result<T, ControlError> {
    let json = result.map_err(|e| ControlError::remote(pid, e))?;
    json.decode().map_err(|e| ControlError::BadReply {
        pid,
        detail: e.to_string(),
    })
}

fn expect_exit(pid: u32, reply: Reply) -> Result<ExitReport, ControlError> {
    match reply {
        Reply::Exit(result) => result.map_err(|e| ControlError::remote(pid, e)),
        other => Err(mismatch(pid, "exit", &other)),
    }
}

fn expect_stats(pid: u32, reply: Reply) -> Result<Stats, ControlError> {
    match reply {
        Reply::Stats(result) => decode_reply(pid, result),
        other => Err(mismatch(pid, "stats", &other)),
    }
}

fn expect_started(pid: u32, reply: Reply) -> Result<(), ControlError> {
    match reply {
        Reply::StartProfiling(result) => result.map_err(|e| ControlError::remote(pid, e)),
        other => Err(mismatch(pid, "start_profiling", &other)),
    }
}

fn expect_profile(pid: u32, reply: Reply) -> Result<Profile, ControlError> {
    match reply {
        Reply::StopProfiling(result) => decode_reply(pid, result),
        other => Err(mismatch(pid, "stop_profiling", &other)),
    }
}
