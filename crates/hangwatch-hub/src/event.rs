//! What the hub tells the parent program: one stream of [`HubEvent`]s.
//!
//! The hub's thread is the only writer of the stream and the parent holds its
//! only reader ([`Hub::events`](crate::Hub::events)). Events come out in the
//! order the hub's thread handled what caused them, which for one child is
//! the order the child sent it. The stream is bounded: when nobody reads it
//! and it is full, the oldest event is dropped and counted
//! ([`HubCounters::events_dropped`]), so a parent that stops reading costs a
//! fixed amount of memory and never stalls the hub.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hangwatch::{Alert, Stats};

/// A child process the hub has taken on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChildInfo {
    /// Its process id, as the child gave it.
    pub pid: u32,
    /// The name the parent gave it when it invited it
    /// ([`Hub::invite`](crate::Hub::invite)).
    pub name: String,
    /// Its program: the file name of its executable, as the child gave it.
    pub program: String,
}

impl fmt::Display for ChildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// An alert from one child's monitor.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildAlert {
    /// Which child raised it.
    pub child: ChildInfo,
    /// The alert, as the child's monitor raised it; its stack's frames
    /// named by the hub if the child sent them normalized (see
    /// [`HubBuilder::symbolicate`](crate::HubBuilder::symbolicate)).
    pub alert: Alert,
}

impl fmt::Display for ChildAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.child, self.alert)
    }
}

/// What the hub last knew about a child that has gone.
#[derive(Clone, Debug, Default)]
pub struct LastState {
    /// The last alert it sent.
    pub last_alert: Option<Alert>,
    /// The last figures it sent (in answer to a stats request).
    pub last_stats: Option<Stats>,
    /// How many alerts it sent in all.
    pub alerts: u64,
    /// How many of its messages did not decode.
    pub undecodable: u64,
    /// How long it was connected.
    pub connected_for: Duration,
    /// How long before the end the hub last heard from it.
    pub silent_for: Duration,
}

/// Something the hub saw. See [`Hub::events`](crate::Hub::events).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HubEvent {
    /// A child connected and the hub took it on; control requests can now be
    /// sent to it by its pid.
    Connected(ChildInfo),
    /// A child's monitor raised an alert.
    Alert(ChildAlert),
    /// A peer sent a message that does not decode. It was dropped, and the
    /// hub went on.
    Undecodable {
        /// The name of the invitation the peer came through.
        invitation: String,
        /// The child, if it had introduced itself (a bad first message
        /// leaves it unknown and the connection is refused).
        child: Option<ChildInfo>,
        /// What was wrong with it.
        detail: String,
    },
    /// A peer came through an invitation but could not be taken on (it
    /// speaks another protocol version, its first message was not a hello,
    /// or its control channel could not be reached).
    ConnectFailed {
        /// The name of the invitation.
        invitation: String,
        /// Why.
        reason: String,
    },
    /// Nobody used an invitation within the hub's connect timeout (the
    /// child may have failed to start, or not be a hangwatch child). The
    /// invitation was withdrawn.
    NeverConnected {
        /// The name of the invitation.
        invitation: String,
        /// How long the hub waited.
        waited: Duration,
    },
    /// A child said goodbye and closed its channels: it ended normally.
    Left {
        /// The child.
        child: ChildInfo,
        /// What the hub last knew about it.
        last: LastState,
    },
    /// A child's channel closed without a goodbye: the process died (it was
    /// killed, crashed, or exited without closing its bridge). Reported once
    /// per child; the hub goes on with the others.
    ProcessGone {
        /// The child.
        child: ChildInfo,
        /// What the hub last knew about it.
        last: LastState,
    },
}

impl fmt::Display for HubEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubEvent::Connected(child) => write!(f, "{child}: connected"),
            HubEvent::Alert(alert) => write!(f, "{alert}"),
            HubEvent::Undecodable {
                invitation,
                child: Some(child),
                detail,
            } => write!(
                f,
                "{child} (invitation {invitation}): dropped a message that does not decode: \
                 {detail}"
            ),
            HubEvent::Undecodable {
                invitation,
                child: None,
                detail,
            } => write!(
                f,
                "invitation {invitation}: refused a peer whose first message does not decode: \
                 {detail}"
            ),
            HubEvent::ConnectFailed { invitation, reason } => {
                write!(
                    f,
                    "invitation {invitation}: could not take the child on: {reason}"
                )
            }
            HubEvent::NeverConnected { invitation, waited } => write!(
                f,
                "invitation {invitation}: no child connected within {waited:.1?}; withdrawn"
            ),
            HubEvent::Left { child, last } => {
                write!(f, "{child}: left after {} alerts", last.alerts)
            }
            HubEvent::ProcessGone { child, last } => {
                write!(
                    f,
                    "{child}: PROCESS GONE without saying goodbye, after {} alerts",
                    last.alerts
                )?;
                if let Some(alert) = &last.last_alert {
                    let text = alert.to_string();
                    let first_line = text.lines().next().unwrap_or_default();
                    write!(f, "; its last alert: {first_line}")?;
                }
                Ok(())
            }
        }
    }
}

/// The hub's figures. See [`Hub::counters`](crate::Hub::counters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubCounters {
    /// Children taken on so far.
    pub connected: u64,
    /// Children connected now.
    pub children: usize,
    /// Invitations waiting for their child.
    pub invitations: usize,
    /// Alerts received.
    pub alerts: u64,
    /// Messages that did not decode (each also reported as an event).
    pub undecodable: u64,
    /// Children that left normally.
    pub left: u64,
    /// Children whose process died.
    pub gone: u64,
    /// Requests sent that have not been answered yet.
    pub pending_requests: usize,
    /// Events dropped because nobody read the event stream and it was full.
    pub events_dropped: u64,
}

/// The writing end of the event stream: bounded, drops the oldest.
pub(crate) struct EventSink {
    sender: Sender<HubEvent>,
    oldest: Receiver<HubEvent>,
    /// Shared by every stream an event goes through.
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    pub(crate) fn new(capacity: usize, dropped: Arc<AtomicU64>) -> (EventSink, Receiver<HubEvent>) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let sink = EventSink {
            sender,
            oldest: receiver.clone(),
            dropped,
        };
        (sink, receiver)
    }

    /// Events dropped so far, by this stream and those that share its count.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn send(&mut self, mut event: HubEvent) {
        loop {
            match self.sender.try_send(event) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    event = back;
                    if self.oldest.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // We hold a receiver, so the channel cannot be disconnected.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}
