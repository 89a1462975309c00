//! A reference monitor that behaves like Servo's background hang monitor, so
//! that the bench can measure both side by side in one run.
//!
//! What it reproduces, from Servo's `background_hang_monitor.rs`:
//!
//! - each handle holds a `Weak` to the monitor's sender; every notification
//!   upgrades it and sends `(component id, message)` on a crossbeam
//!   *unbounded* channel, so a notification that finds the monitor asleep pays
//!   for waking it up (a futex wake);
//! - the monitor thread blocks on that channel or on a 100 ms timer
//!   (`after(100 ms)`, also when every component waits), then drains the
//!   channel, timestamping each message on receipt, and then runs a checkpoint
//!   that compares each busy component's last activity with its timeouts and
//!   raises at most one transient and one permanent alert per activity.
//!
//! What it leaves out, because it changes none of the measured costs: exit
//! signals, sampling, and IPC to a constellation (alerts go to a crossbeam
//! channel here, as ours do).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{after, select, unbounded, Receiver, Sender};

/// The tick of Servo's monitor loop.
const TICK: Duration = Duration::from_millis(100);

enum Message {
    Register {
        transient: Duration,
        permanent: Duration,
    },
    Activity(&'static str),
    Wait,
    Unregister,
}

type Port = Receiver<(u64, Message)>;

/// A hang alert from the reference monitor.
#[derive(Clone, Debug)]
pub struct ServoAlert {
    /// The component's id.
    pub component: u64,
    /// What it said it was doing.
    pub annotation: Option<&'static str>,
    /// Whether this is the permanent alert.
    pub permanent: bool,
}

/// The register: hands out handles.
#[derive(Clone)]
pub struct ServoRegister {
    sender: Weak<Sender<(u64, Message)>>,
}

/// A started reference monitor.
pub struct ServoMonitor {
    /// Registers components.
    pub register: ServoRegister,
    /// Its alerts.
    pub alerts: Receiver<ServoAlert>,
    /// Its thread, which ends when the `ServoMonitor` is dropped.
    pub thread: JoinHandle<()>,
    stop: Sender<()>,
}

impl ServoMonitor {
    /// Starts the reference monitor on a thread named `thread_name`.
    pub fn start(thread_name: &str) -> ServoMonitor {
        let (sender, port) = unbounded();
        let sender = Arc::new(sender);
        let weak = Arc::downgrade(&sender);
        let (alert_sender, alerts) = unbounded();
        let (stop, stopped) = unbounded();
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || Worker::new(sender, port, alert_sender).run(stopped))
            .expect("spawn the reference monitor");
        ServoMonitor {
            register: ServoRegister { sender: weak },
            alerts,
            thread,
            stop,
        }
    }

    /// Stops the monitor and waits for its thread.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl ServoRegister {
    /// Registers component `id`.
    pub fn register(&self, id: u64, transient: Duration, permanent: Duration) -> ServoHandle {
        let handle = ServoHandle {
            sender: self.sender.clone(),
            id,
        };
        handle.send(Message::Register {
            transient,
            permanent,
        });
        handle
    }
}

/// A component's handle to the reference monitor.
pub struct ServoHandle {
    sender: Weak<Sender<(u64, Message)>>,
    id: u64,
}

impl ServoHandle {
    fn send(&self, message: Message) {
        if let Some(sender) = self.sender.upgrade() {
            let _ = sender.send((self.id, message));
        }
    }

    /// Starts an activity.
    #[inline(never)]
    pub fn notify_activity(&self, annotation: &'static str) {
        self.send(Message::Activity(annotation));
    }

    /// Goes back to waiting.
    #[inline(never)]
    pub fn notify_wait(&self) {
        self.send(Message::Wait);
    }
}

impl Drop for ServoHandle {
    fn drop(&mut self) {
        self.send(Message::Unregister);
    }
}

struct Component {
    transient: Duration,
    permanent: Duration,
    last_activity: Instant,
    last_annotation: Option<&'static str>,
    waiting: bool,
    sent_transient: bool,
    sent_permanent: bool,
}

struct Worker {
    // Keeps the channel open: handles hold only weak references.
    _sender: Arc<Sender<(u64, Message)>>,
    port: Port,
    alerts: Sender<ServoAlert>,
    components: HashMap<u64, Component>,
}

impl Worker {
    fn new(sender: Arc<Sender<(u64, Message)>>, port: Port, alerts: Sender<ServoAlert>) -> Worker {
        Worker {
            _sender: sender,
            port,
            alerts,
            components: HashMap::new(),
        }
    }

    fn run(mut self, stopped: Receiver<()>) {
        loop {
            let first = select! {
                recv(self.port) -> message => message.ok(),
                recv(stopped) -> _ => return,
                recv(after(TICK)) -> _ => None,
            };
            if let Some(message) = first {
                self.handle(message);
            }
            while let Ok(message) = self.port.try_recv() {
                self.handle(message);
            }
            self.checkpoint();
        }
    }

    fn handle(&mut self, (id, message): (u64, Message)) {
        let now = Instant::now();
        match message {
            Message::Register {
                transient,
                permanent,
            } => {
                self.components.insert(
                    id,
                    Component {
                        transient,
                        permanent,
                        last_activity: now,
                        last_annotation: None,
                        waiting: true,
                        sent_transient: false,
                        sent_permanent: false,
                    },
                );
            }
            Message::Activity(annotation) => {
                if let Some(c) = self.components.get_mut(&id) {
                    c.last_activity = now;
                    c.last_annotation = Some(annotation);
                    c.waiting = false;
                    c.sent_transient = false;
                    c.sent_permanent = false;
                }
            }
            Message::Wait => {
                if let Some(c) = self.components.get_mut(&id) {
                    c.last_activity = now;
                    c.waiting = true;
                }
            }
            Message::Unregister => {
                self.components.remove(&id);
            }
        }
    }

    fn checkpoint(&mut self) {
        let now = Instant::now();
        for (&id, c) in &mut self.components {
            if c.waiting {
                continue;
            }
            let busy = now - c.last_activity;
            if busy > c.permanent && !c.sent_permanent {
                c.sent_permanent = true;
                let _ = self.alerts.send(ServoAlert {
                    component: id,
                    annotation: c.last_annotation,
                    permanent: true,
                });
            } else if busy > c.transient && !c.sent_transient {
                c.sent_transient = true;
                let _ = self.alerts.send(ServoAlert {
                    component: id,
                    annotation: c.last_annotation,
                    permanent: false,
                });
            }
        }
    }
}
