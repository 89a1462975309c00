//! The child's side: a [`Bridge`] between the child's own
//! [`hangwatch::Monitor`] and the hub.
//!
//! # Who owns what
//!
//! The child runs an ordinary monitor and hands the bridge its alert
//! receiver and a clone of its [`Control`]. The bridge runs two threads:
//!
//! - the **alert thread** keeps the monitor's alert receiver and sends each
//!   alert to the hub (and, if asked, a copy to a local receiver,
//!   [`Bridge::local_alerts`]). It holds a sending half of the child's stream.
//! - the **control thread** keeps the receiving half of the child's control
//!   channel: it waits for the hub to connect, then performs each request on
//!   the monitor's `Control` and sends the answer on the child's stream.
//!
//! # Never blocking the child
//!
//! The child's components never talk to the bridge: they notify their
//! monitor as always, and the monitor puts alerts in its own bounded channel,
//! which drops its oldest alert rather than block. So nothing the hub does
//! (dying, stopping, flooding) can block a component or the monitor. At
//! worst the bridge's own threads wait on a hub that stopped reading.
//!
//! # When the hub goes away
//!
//! A send that fails (the hub's end of the stream is closed) or a control
//! channel that closes means the hub is gone: the bridge marks it so
//! ([`Bridge::hub_connected`] turns false), stops sending, and the alert
//! thread ends unless it keeps a local copy, in which case it goes on filling
//! it. The monitor and the program go on as if there had never been a hub.
//!
//! Sends to a hub that is gone fail with `EPIPE`; Rust programs ignore
//! `SIGPIPE` by default, so that is an error, not a signal. A child that
//! restores `SIGPIPE`'s default action would be killed by it instead.
//!
//! # Ending
//!
//! When the monitor ends (every register and handle dropped) or the bridge
//! is closed, the alert thread forwards what is still queued and says
//! goodbye; the hub then closes the control channel, after the control
//! thread has answered what it was asked, and the control thread ends.
//! [`Bridge::close`] waits for both, for a bounded time.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, RecvTimeoutError, Sender, TrySendError};
use hangwatch::{Alert, Control};
use ipc_channel::ipc::{IpcOneShotServer, IpcSender};
use ipc_channel::IpcError;
use serde::Serialize;

use crate::error::ConnectError;
use crate::protocol::{
    cut_into_pieces, ChildMsg, Hello, HubMsg, Json, RemoteError, Reply, Request, HUB_ENV,
    PROTOCOL_VERSION,
};

/// Settings for a bridge.
#[derive(Clone, Debug)]
pub struct BridgeBuilder {
    local_alerts: Option<usize>,
    close_timeout: Duration,
}

impl Default for BridgeBuilder {
    fn default() -> BridgeBuilder {
        BridgeBuilder::new()
    }
}

impl BridgeBuilder {
    /// The defaults: no local copy of alerts, 2 s for [`Bridge::close`].
    pub fn new() -> BridgeBuilder {
        BridgeBuilder {
            local_alerts: None,
            close_timeout: Duration::from_secs(2),
        }
    }

    /// Also keep a copy of every alert in the process, in a bounded channel
    /// of `capacity` alerts that drops its oldest
    /// ([`Bridge::local_alerts`]). It goes on filling after the hub is gone.
    pub fn local_alerts(mut self, capacity: usize) -> BridgeBuilder {
        self.local_alerts = Some(capacity.max(1));
        self
    }

    /// How long [`Bridge::close`] waits for the bridge's threads to finish.
    pub fn close_timeout(mut self, timeout: Duration) -> BridgeBuilder {
        self.close_timeout = timeout;
        self
    }

    /// Connects to the hub whose server is named in the [`HUB_ENV`]
    /// environment variable. See [`BridgeBuilder::connect`].
    pub fn connect_from_env(
        self,
        alerts: Receiver<Alert>,
        control: Control,
    ) -> Result<Bridge, ConnectError> {
        let server = std::env::var(HUB_ENV).map_err(|_| ConnectError::NoHub)?;
        self.connect(&server, alerts, control)
    }

    /// Connects to the hub's one-shot server `server`, introduces this
    /// process, and starts the bridge's threads. Returns without waiting for
    /// the hub to answer; alerts raised meanwhile wait in the channel.
    ///
    /// `alerts` should be the monitor's alert receiver (the bridge becomes
    /// its reader: keep no other reader, or alerts are split between them;
    /// use [`BridgeBuilder::local_alerts`] for a local view). `control` is a
    /// clone of the monitor's control.
    pub fn connect(
        self,
        server: &str,
        alerts: Receiver<Alert>,
        control: Control,
    ) -> Result<Bridge, ConnectError> {
        if server.contains('\0') {
            // ipc-channel would panic turning it into a path.
            return Err(ConnectError::Connect {
                server: server.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "the name holds a NUL byte"),
            });
        }
        let stream = IpcSender::<ChildMsg>::connect(server.to_owned()).map_err(|source| {
            ConnectError::Connect {
                server: server.to_owned(),
                source,
            }
        })?;
        let (control_server, control_name) =
            IpcOneShotServer::<HubMsg>::new().map_err(ConnectError::Server)?;
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            program: program_name(),
            control: control_name.clone(),
        };
        stream
            .send(ChildMsg::Hello(hello))
            .map_err(ConnectError::Hello)?;

        let shared = Arc::new(Shared {
            connected: AtomicBool::new(true),
            welcomed: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            not_forwarded: AtomicU64::new(0),
            local_dropped: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
        });
        let local = self.local_alerts.map(bounded::<Alert>);
        let (stop, stop_receiver) = bounded(1);
        let (alert_done_sender, alert_done) = bounded::<()>(1);
        let (control_done_sender, control_done) = bounded::<()>(1);

        let alert_thread = AlertThread {
            stream: stream.clone(),
            alerts,
            local: local.as_ref().map(|(sender, receiver)| LocalCopy {
                sender: sender.clone(),
                oldest: receiver.clone(),
            }),
            stop: stop_receiver,
            shared: shared.clone(),
            _done: alert_done_sender,
        };
        std::thread::Builder::new()
            .name("hangwatch-hub-alerts".to_owned())
            .spawn(move || alert_thread.run())
            .map_err(ConnectError::Spawn)?;
        let control_thread = ControlThread {
            server: control_server,
            stream,
            control,
            shared: shared.clone(),
            _done: control_done_sender,
        };
        std::thread::Builder::new()
            .name("hangwatch-hub-control".to_owned())
            .spawn(move || control_thread.run())
            .map_err(ConnectError::Spawn)?;

        Ok(Bridge {
            local: local.map(|(_, receiver)| receiver),
            control_name,
            shared,
            stop,
            alert_done,
            control_done,
            close_timeout: self.close_timeout,
        })
    }
}

/// The link from a child's monitor to its hub.
///
/// It runs two threads: one reads the monitor's alerts and sends them to the
/// hub (and to [`Bridge::local_alerts`], if asked), the other performs the
/// hub's requests on the monitor's [`Control`] and sends the answers back.
///
/// Components never talk to the bridge, and the monitor's alert channel is
/// bounded and drops its oldest alert, so nothing the hub does can block a
/// component or the monitor. If the hub goes away (a send fails, or its
/// control channel closes), [`Bridge::hub_connected`] turns false and the
/// bridge stops sending; the program and its monitor go on. Sends to a dead
/// hub fail with `EPIPE`, which is an error because Rust programs ignore
/// `SIGPIPE`; a program that restores `SIGPIPE`'s default action would be
/// killed by it instead.
///
/// When the monitor ends (every register and handle dropped), or on
/// [`Bridge::close`], the bridge forwards what is queued and says goodbye,
/// so the hub reports that the child left rather than died. Dropping the
/// bridge does the same without waiting.
pub struct Bridge {
    local: Option<Receiver<Alert>>,
    /// This process's control server, which the hub connects to.
    control_name: String,
    shared: Arc<Shared>,
    stop: Sender<()>,
    alert_done: Receiver<()>,
    control_done: Receiver<()>,
    close_timeout: Duration,
}

/// A bridge's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeCounters {
    /// Whether the hub is still there, as far as the bridge knows.
    pub hub_connected: bool,
    /// Alerts sent to the hub.
    pub forwarded: u64,
    /// Alerts not sent: the hub was gone (or the alert could not be encoded).
    pub not_forwarded: u64,
    /// Alerts dropped from the local copy because nobody read it.
    pub local_dropped: u64,
    /// Requests from the hub answered.
    pub requests: u64,
    /// Messages from the hub that did not decode, dropped.
    pub undecodable: u64,
}

impl Bridge {
    /// A builder with the default settings.
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder::new()
    }

    /// [`BridgeBuilder::connect`] with the default settings.
    pub fn connect(
        server: &str,
        alerts: Receiver<Alert>,
        control: Control,
    ) -> Result<Bridge, ConnectError> {
        BridgeBuilder::new().connect(server, alerts, control)
    }

    /// [`BridgeBuilder::connect_from_env`] with the default settings.
    pub fn connect_from_env(
        alerts: Receiver<Alert>,
        control: Control,
    ) -> Result<Bridge, ConnectError> {
        BridgeBuilder::new().connect_from_env(alerts, control)
    }

    /// The local copy of alerts, if the builder asked for one.
    pub fn local_alerts(&self) -> Option<&Receiver<Alert>> {
        self.local.as_ref()
    }

    /// Whether the hub is still there, as far as the bridge knows: false
    /// once a send to it failed or its control channel closed.
    pub fn hub_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// The bridge's figures.
    pub fn counters(&self) -> BridgeCounters {
        self.shared.counters()
    }

    /// Stops forwarding: the alert thread sends what is queued and says
    /// goodbye, and the hub then releases the control thread. Waits for both
    /// threads, at most the close timeout in all.
    pub fn close(self) -> BridgeCounters {
        let _ = self.stop.try_send(());
        let deadline = Instant::now() + self.close_timeout;
        wait_until_dropped(&self.alert_done, deadline);
        if self.shared.welcomed.load(Ordering::Acquire) {
            wait_until_dropped(&self.control_done, deadline);
        }
        self.shared.connected.store(false, Ordering::Release);
        self.shared.counters()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
        if !self.shared.welcomed.load(Ordering::Acquire) {
            // The hub never came: connect to our own control server and hang
            // up, so that the control thread's `accept` returns and the
            // server's temporary directory is removed. (If the hub connects
            // first, this connection fails, which is fine.)
            if let Ok(hang_up) = IpcSender::<HubMsg>::connect(self.control_name.clone()) {
                drop(hang_up);
            }
        }
    }
}

/// Waits until the thread holding the sender of `done` has ended.
fn wait_until_dropped(done: &Receiver<()>, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    // Nothing is ever sent: only the sender's drop ends this wait early.
    let _: Result<(), RecvTimeoutError> = done.recv_timeout(left);
}

/// What the bridge's threads share.
struct Shared {
    connected: AtomicBool,
    welcomed: AtomicBool,
    forwarded: AtomicU64,
    not_forwarded: AtomicU64,
    local_dropped: AtomicU64,
    requests: AtomicU64,
    undecodable: AtomicU64,
}

impl Shared {
    fn hub_gone(&self) {
        self.connected.store(false, Ordering::Release);
    }

    fn counters(&self) -> BridgeCounters {
        BridgeCounters {
            hub_connected: self.connected.load(Ordering::Acquire),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            not_forwarded: self.not_forwarded.load(Ordering::Relaxed),
            local_dropped: self.local_dropped.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            undecodable: self.undecodable.load(Ordering::Relaxed),
        }
    }
}

/// A bounded local channel that drops its oldest alert when full.
struct LocalCopy {
    sender: Sender<Alert>,
    oldest: Receiver<Alert>,
}

impl LocalCopy {
    fn push(&self, mut alert: Alert, shared: &Shared) {
        loop {
            match self.sender.try_send(alert) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    alert = back;
                    if self.oldest.try_recv().is_ok() {
                        shared.local_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// Reads the monitor's alerts and sends them on.
struct AlertThread {
    stream: IpcSender<ChildMsg>,
    alerts: Receiver<Alert>,
    local: Option<LocalCopy>,
    stop: Receiver<()>,
    shared: Arc<Shared>,
    /// Dropped when the thread ends.
    _done: Sender<()>,
}

impl AlertThread {
    fn run(self) {
        loop {
            select! {
                recv(self.alerts) -> alert => match alert {
                    Ok(alert) => self.forward(alert),
                    // The monitor has ended.
                    Err(_) => break,
                },
                recv(self.stop) -> _ => {
                    while let Ok(alert) = self.alerts.try_recv() {
                        self.forward(alert);
                    }
                    break;
                }
            }
            if self.local.is_none() && !self.shared.connected.load(Ordering::Acquire) {
                // The hub is gone and nobody here wants the alerts: leave
                // them to the monitor's channel, which drops its oldest.
                return;
            }
        }
        if self.shared.connected.load(Ordering::Acquire) {
            let _ = self.stream.send(ChildMsg::Goodbye);
        }
    }

    fn forward(&self, alert: Alert) {
        let json = Json::encode(&alert);
        if let Some(local) = &self.local {
            local.push(alert, &self.shared);
        }
        let sent = self.shared.connected.load(Ordering::Acquire)
            && match json {
                Ok(json) => match self.send(json) {
                    Ok(()) => true,
                    Err(_) => {
                        self.shared.hub_gone();
                        false
                    }
                },
                Err(_) => false,
            };
        let counter = if sent {
            &self.shared.forwarded
        } else {
            &self.shared.not_forwarded
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl AlertThread {
    /// Sends `json` in pieces if it is long (see the protocol's pieces).
    fn send(&self, mut json: Json<Alert>) -> Result<(), IpcError> {
        let (pieces, last) = cut_into_pieces(std::mem::take(json.text_mut()));
        *json.text_mut() = last;
        for piece in pieces {
            self.stream.send(ChildMsg::AlertPiece(piece))?;
        }
        self.stream.send(ChildMsg::Alert(json))
    }
}

/// Sends the answer to request `id` in pieces if its payload is long (see the
/// protocol's pieces).
fn send_reply(stream: &IpcSender<ChildMsg>, id: u64, mut reply: Reply) -> Result<(), IpcError> {
    if let Some(payload) = reply.payload_mut() {
        let (pieces, last) = cut_into_pieces(std::mem::take(payload));
        *payload = last;
        for text in pieces {
            stream.send(ChildMsg::ReplyPiece { id, text })?;
        }
    }
    stream.send(ChildMsg::Reply { id, reply })
}

/// Answers the hub's requests.
struct ControlThread {
    server: IpcOneShotServer<HubMsg>,
    stream: IpcSender<ChildMsg>,
    control: Control,
    shared: Arc<Shared>,
    /// Dropped when the thread ends.
    _done: Sender<()>,
}

impl ControlThread {
    fn run(self) {
        let ControlThread {
            server,
            stream,
            control,
            shared,
            _done,
        } = self;
        // Blocks until the hub connects. The hub's messages are decoded
        // inside ipc-channel, which can panic on file descriptors nobody
        // asked for; a hub never sends any, but a bad peer must not take the
        // thread down with a panic we did not catch.
        let (requests, first) = match catch_unwind(AssertUnwindSafe(move || server.accept())) {
            Ok(Ok(accepted)) => accepted,
            _ => return shared.hub_gone(),
        };
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => match catch_unwind(AssertUnwindSafe(|| requests.recv())) {
                    Ok(Ok(message)) => message,
                    Ok(Err(IpcError::SerializationError(_))) | Err(_) => {
                        shared.undecodable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(Err(_)) => return shared.hub_gone(),
                },
            };
            match message {
                HubMsg::Welcome { .. } => shared.welcomed.store(true, Ordering::Release),
                HubMsg::Request { id, request } => {
                    let reply = serve(&control, request);
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                    if send_reply(&stream, id, reply).is_err() {
                        return shared.hub_gone();
                    }
                }
            }
        }
    }
}

/// Performs `request` on the monitor.
fn serve(control: &Control, request: Request) -> Reply {
    match request {
        Request::Exit => Reply::Exit(control.exit().map_err(RemoteError::from)),
        Request::Stats => Reply::Stats(
            control
                .stats()
                .map_err(RemoteError::from)
                .and_then(|stats| encode(&stats)),
        ),
        Request::SetEnabled(enabled) => {
            Reply::SetEnabled(control.set_enabled(enabled).map_err(RemoteError::from))
        }
        Request::StartProfiling(options) => {
            Reply::StartProfiling(control.start_profiling(options).map_err(RemoteError::from))
        }
        Request::StopProfiling => Reply::StopProfiling(
            control
                .stop_profiling()
                .map_err(RemoteError::from)
                .and_then(|profile| encode(&profile)),
        ),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Json<T>, RemoteError> {
    Json::encode(value).map_err(|error| RemoteError::Encode(error.to_string()))
}

/// This process's executable's file name, or `?` if it cannot be told.
fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}
