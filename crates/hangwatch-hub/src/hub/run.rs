//! The hub's thread: one plain loop over one `IpcReceiverSet`.
//!
//! The set holds every connected child's stream and the doorbell, an
//! in-process ipc channel that other threads ring after they queue a
//! [`Command`]. Each turn of the loop:
//!
//! 1. **Wait** on the set: until something arrives, or until the earliest
//!    invitation's connect deadline if any invitation is open (no timer
//!    otherwise: an idle hub does not wake).
//! 2. **Handle** what arrived, in the order the set gave it: commands
//!    (after the doorbell), a child's messages, channels that closed.
//! 3. **Checkpoint**: withdraw invitations past their deadline, forget
//!    requests whose caller has given up.
//!
//! Nothing in the loop blocks on a child: every message a child sends fits
//! in one read of its socket (long payloads come in pieces, see
//! [`protocol`](crate::protocol)), events go to a bounded stream that drops
//! its oldest, answers go to one-slot channels nobody else writes to, and
//! requests go to each child's link thread through an unbounded queue.
//! Every piece of state here is owned by this thread.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hangwatch::{Alert, Stats};
use ipc_channel::ipc::{IpcMessage, IpcReceiver, IpcReceiverSet, IpcSelectionResult};
use ipc_channel::TrySelectError;

use super::inbox::{Delivery, Inbox};
use crate::error::{ControlError, HubError, HubGone};
use crate::event::{ChildAlert, ChildInfo, EventSink, HubCounters, HubEvent, LastState};
use crate::protocol::{ChildMsg, Hello, HubMsg, Reply, Request};

/// How long after its caller stopped waiting a request's reply slot is
/// kept, in case the reply is on its way.
const FORGET_AFTER: Duration = Duration::from_secs(1);

/// What other threads ask of the hub's thread.
pub(crate) enum Command {
    /// [`Hub::invite`](crate::Hub::invite) opened a one-shot server.
    Invited {
        number: u64,
        name: String,
        server_name: String,
        deadline: Instant,
    },
    /// A link thread's child connected and introduced itself; the link
    /// thread reached the child's control server and now writes `outbox` to
    /// it.
    Accepted {
        number: u64,
        name: String,
        stream: IpcReceiver<ChildMsg>,
        hello: Hello,
        outbox: Sender<HubMsg>,
    },
    /// A link thread's peer could not be taken on.
    Refused {
        number: u64,
        name: String,
        why: Refusal,
    },
    /// A link thread's invitation was withdrawn.
    Withdrawn { number: u64 },
    /// A control request for child `pid`.
    Request {
        pid: u32,
        request: Request,
        reply: Sender<Result<Reply, ControlError>>,
        deadline: Instant,
    },
    /// The connected children.
    Children { reply: Sender<Vec<ChildInfo>> },
    /// The hub's figures.
    Counters { reply: Sender<HubCounters> },
    /// Stop.
    Shutdown,
}

/// Why a link thread refused a peer.
pub(crate) enum Refusal {
    /// Its first message did not decode.
    Undecodable(String),
    /// Anything else: another protocol, not a hello, unreachable control.
    Other(String),
}

/// An invitation waiting for its child.
struct Invited {
    name: String,
    server_name: String,
    deadline: Instant,
    since: Instant,
}

/// A connected child.
struct Child {
    info: ChildInfo,
    invitation: String,
    /// When it connected: orders [`Hub::children`](crate::Hub::children).
    since: Instant,
    /// Requests to its link thread; `None` once it has said goodbye.
    outbox: Option<Sender<HubMsg>>,
    last_heard: Instant,
    last_alert: Option<Alert>,
    last_stats: Option<Stats>,
    alerts: u64,
    undecodable: u64,
    /// Its stream's payloads under way.
    inbox: Inbox,
}

impl Child {
    fn last_state(self, now: Instant) -> LastState {
        LastState {
            last_alert: self.last_alert,
            last_stats: self.last_stats,
            alerts: self.alerts,
            undecodable: self.undecodable,
            connected_for: now.saturating_duration_since(self.since),
            silent_for: now.saturating_duration_since(self.last_heard),
        }
    }
}

/// A request sent to a child and not answered yet.
struct Pending {
    /// The child's stream's id in the receiver set.
    stream: u64,
    reply: Sender<Result<Reply, ControlError>>,
    forget_at: Instant,
}

pub(crate) struct HubLoop {
    set: IpcReceiverSet,
    doorbell: u64,
    rung: Arc<AtomicBool>,
    commands: Receiver<Command>,
    events: EventSink,
    invitations: HashMap<u64, Invited>,
    /// By the id of their stream in `set`.
    children: HashMap<u64, Child>,
    /// By request number.
    pending: HashMap<u64, Pending>,
    next_request: u64,
    counters: HubCounters,
    stop: bool,
}

impl HubLoop {
    pub(crate) fn new(
        doorbell: IpcReceiver<u8>,
        rung: Arc<AtomicBool>,
        commands: Receiver<Command>,
        event_capacity: usize,
        dropped: Arc<std::sync::atomic::AtomicU64>,
    ) -> io::Result<(HubLoop, Receiver<HubEvent>)> {
        let mut set = IpcReceiverSet::new()?;
        let doorbell = set.add(doorbell)?;
        let (events, receiver) = EventSink::new(event_capacity, dropped);
        let hub = HubLoop {
            set,
            doorbell,
            rung,
            commands,
            events,
            invitations: HashMap::new(),
            children: HashMap::new(),
            pending: HashMap::new(),
            next_request: 1,
            counters: HubCounters::default(),
            stop: false,
        };
        Ok((hub, receiver))
    }

    /// The loop. Returns when asked to stop, when every [`Hub`](crate::Hub)
    /// handle and link thread is gone, or when the receiver set fails.
    pub(crate) fn run(mut self) -> Result<(), HubError> {
        let outcome = loop {
            // 1. Wait.
            let arrived = match self.wait() {
                Ok(arrived) => arrived,
                Err(error) => break Err(HubError::Select(error)),
            };
            // 2. Handle.
            for result in arrived {
                match result {
                    IpcSelectionResult::MessageReceived(id, _) if id == self.doorbell => {
                        self.take_commands()
                    }
                    IpcSelectionResult::MessageReceived(id, message) => {
                        self.child_message(id, message)
                    }
                    IpcSelectionResult::ChannelClosed(id) if id == self.doorbell => {
                        self.stop = true
                    }
                    IpcSelectionResult::ChannelClosed(id) => self.closed(id),
                }
            }
            // 3. Checkpoint.
            self.checkpoint(Instant::now());
            if self.stop {
                break Ok(());
            }
        };
        self.finish();
        outcome
    }

    fn wait(&mut self) -> io::Result<Vec<IpcSelectionResult>> {
        let Some(deadline) = self.invitations.values().map(|i| i.deadline).min() else {
            return self.set.select();
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match self.set.try_select_timeout(left) {
            Ok(arrived) => Ok(arrived),
            Err(TrySelectError::Empty) => Ok(Vec::new()),
            Err(TrySelectError::IoError(error)) => Err(error),
        }
    }

    fn take_commands(&mut self) {
        // Clear before taking, so that a command queued after this point
        // rings again (see `Wake::send`).
        self.rung.store(false, Ordering::SeqCst);
        while let Ok(command) = self.commands.try_recv() {
            self.command(command);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Invited {
                number,
                name,
                server_name,
                deadline,
            } => {
                let since = Instant::now();
                self.invitations.insert(
                    number,
                    Invited {
                        name,
                        server_name,
                        deadline,
                        since,
                    },
                );
            }
            Command::Accepted {
                number,
                name,
                stream,
                hello,
                outbox,
            } => {
                // Taken on even if its invitation just timed out: it is here.
                self.invitations.remove(&number);
                self.adopt(name, stream, hello, outbox);
            }
            Command::Refused { number, name, why } => {
                self.invitations.remove(&number);
                match why {
                    Refusal::Undecodable(detail) => {
                        self.counters.undecodable += 1;
                        self.events.send(HubEvent::Undecodable {
                            invitation: name,
                            child: None,
                            detail,
                        });
                    }
                    Refusal::Other(reason) => self.events.send(HubEvent::ConnectFailed {
                        invitation: name,
                        reason,
                    }),
                }
            }
            Command::Withdrawn { number } => {
                self.invitations.remove(&number);
            }
            Command::Request {
                pid,
                request,
                reply,
                deadline,
            } => self.request(pid, request, reply, deadline),
            Command::Children { reply } => {
                let mut children: Vec<&Child> = self
                    .children
                    .values()
                    .filter(|c| c.outbox.is_some())
                    .collect();
                children.sort_by_key(|c| c.since);
                let _ = reply.try_send(children.into_iter().map(|c| c.info.clone()).collect());
            }
            Command::Counters { reply } => {
                let counters = HubCounters {
                    children: self.children.len(),
                    invitations: self.invitations.len(),
                    pending_requests: self.pending.len(),
                    events_dropped: self.events.dropped(),
                    ..self.counters.clone()
                };
                let _ = reply.try_send(counters);
            }
            Command::Shutdown => self.stop = true,
        }
    }

    fn adopt(
        &mut self,
        name: String,
        stream: IpcReceiver<ChildMsg>,
        hello: Hello,
        outbox: Sender<HubMsg>,
    ) {
        let id = match self.set.add(stream) {
            Ok(id) => id,
            Err(error) => {
                self.events.send(HubEvent::ConnectFailed {
                    invitation: name,
                    reason: format!("could not watch its channel: {error}"),
                });
                return;
            }
        };
        let info = ChildInfo {
            pid: hello.pid,
            name: name.clone(),
            program: hello.program,
        };
        let now = Instant::now();
        self.counters.connected += 1;
        self.events.send(HubEvent::Connected(info.clone()));
        self.children.insert(
            id,
            Child {
                info,
                invitation: name,
                since: now,
                outbox: Some(outbox),
                last_heard: now,
                last_alert: None,
                last_stats: None,
                alerts: 0,
                undecodable: 0,
                inbox: Inbox::default(),
            },
        );
    }

    fn request(
        &mut self,
        pid: u32,
        request: Request,
        reply: Sender<Result<Reply, ControlError>>,
        deadline: Instant,
    ) {
        let Some((&stream, child)) = self.children.iter().find(|(_, c)| c.info.pid == pid) else {
            let _ = reply.try_send(Err(ControlError::UnknownChild { pid }));
            return;
        };
        let id = self.next_request;
        self.next_request += 1;
        let sent = child
            .outbox
            .as_ref()
            .is_some_and(|outbox| outbox.send(HubMsg::Request { id, request }).is_ok());
        if !sent {
            let _ = reply.try_send(Err(ControlError::ChildGone { pid }));
            return;
        }
        self.pending.insert(
            id,
            Pending {
                stream,
                reply,
                forget_at: deadline + FORGET_AFTER,
            },
        );
    }

    fn child_message(&mut self, stream: u64, message: IpcMessage) {
        let Some(child) = self.children.get_mut(&stream) else {
            return;
        };
        child.last_heard = Instant::now();
        match child.inbox.take(message) {
            Delivery::Piece => {}
            Delivery::Alert(alert) => self.alert(stream, alert),
            Delivery::Reply { id, reply } => self.reply(stream, id, reply),
            Delivery::Goodbye => {
                // Stop writing to it: its link thread ends once it has sent
                // what is queued, and then the child's control thread ends
                // once it has answered. The stream closes after that.
                child.outbox = None;
            }
            Delivery::Undecodable(detail) => self.undecodable(stream, detail),
        }
    }

    /// A whole alert from the child on `stream`.
    fn alert(&mut self, stream: u64, alert: Alert) {
        let Some(child) = self.children.get_mut(&stream) else {
            return;
        };
        child.alerts += 1;
        child.last_alert = Some(alert.clone());
        self.counters.alerts += 1;
        let child = child.info.clone();
        self.events
            .send(HubEvent::Alert(ChildAlert { child, alert }));
    }

    /// A whole reply from the child on `stream`: to its caller, if the
    /// request was this child's and the caller still waits.
    fn reply(&mut self, stream: u64, id: u64, reply: Reply) {
        let Some(child) = self.children.get_mut(&stream) else {
            return;
        };
        if let Reply::Stats(Ok(json)) = &reply {
            if let Ok(stats) = json.decode() {
                child.last_stats = Some(stats);
            }
        }
        match self.pending.remove(&id) {
            Some(pending) if pending.stream == stream => {
                let _ = pending.reply.try_send(Ok(reply));
            }
            Some(pending) => {
                // Not this child's request: put it back, and drop the
                // impostor reply.
                self.pending.insert(id, pending);
                self.undecodable(stream, format!("a reply to request {id}, not its own"));
            }
            // Its caller gave up long ago.
            None => {}
        }
    }

    fn undecodable(&mut self, stream: u64, detail: String) {
        self.counters.undecodable += 1;
        if let Some(child) = self.children.get_mut(&stream) {
            child.undecodable += 1;
            let event = HubEvent::Undecodable {
                invitation: child.invitation.clone(),
                child: Some(child.info.clone()),
                detail,
            };
            self.events.send(event);
        }
    }

    fn closed(&mut self, stream: u64) {
        let Some(child) = self.children.remove(&stream) else {
            return;
        };
        let pid = child.info.pid;
        self.pending.retain(|_, pending| {
            if pending.stream != stream {
                return true;
            }
            let _ = pending.reply.try_send(Err(ControlError::ChildGone { pid }));
            false
        });
        let said_goodbye = child.outbox.is_none();
        let info = child.info.clone();
        let last = child.last_state(Instant::now());
        if said_goodbye {
            self.counters.left += 1;
            self.events.send(HubEvent::Left { child: info, last });
        } else {
            self.counters.gone += 1;
            self.events
                .send(HubEvent::ProcessGone { child: info, last });
        }
    }

    fn checkpoint(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .invitations
            .iter()
            .filter(|(_, invited)| invited.deadline <= now)
            .map(|(&number, _)| number)
            .collect();
        for number in expired {
            if let Some(invited) = self.invitations.remove(&number) {
                super::withdraw(&invited.server_name);
                self.events.send(HubEvent::NeverConnected {
                    invitation: invited.name,
                    waited: now.saturating_duration_since(invited.since),
                });
            }
        }
        self.pending.retain(|_, pending| pending.forget_at > now);
    }

    fn finish(&mut self) {
        for (_, invited) in self.invitations.drain() {
            super::withdraw(&invited.server_name);
        }
        for (_, pending) in self.pending.drain() {
            let _ = pending.reply.try_send(Err(ControlError::HubGone(HubGone)));
        }
        // Dropping the children drops their outboxes: their link threads
        // end, and with them the children's control channels.
        self.children.clear();
    }
}
