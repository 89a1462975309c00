//! Monitored crossbeam-channel event loops (feature `crossbeam`).
//!
//! An [`EventLoop`] stands between a component's [`Handle`] and the calls
//! its loop blocks in. Each time the loop goes to fetch its next message the
//! event loop ends the activity under way ([`Handle::notify_wait`]), lets the
//! loop block, and when a message arrives starts a new activity
//! ([`Handle::notify_activity`]) with an annotation derived from the message.
//! The activity therefore lasts exactly while the message is being handled:
//! from its arrival until the loop asks for the next one. A loop that hangs
//! on a message raises alerts named after that message; a loop that blocks
//! waiting for messages never does.
//!
//! **Cost:** per message, one call of the annotate function and one notify
//! pair (a few nanoseconds; see the crate docs); nothing else is allocated,
//! locked or queued. This module needs no dependency beyond crossbeam-channel,
//! which hangwatch uses anyway.
//!
//! # A monitored loop is a one-line change
//!
//! ```text
//! for msg in &inbox { handle_msg(msg) }                                          // before
//! for msg in handle.event_loop(Msg::annotation).iter(&inbox) { handle_msg(msg) } // after
//! ```
//!
//! ```
//! use std::time::Duration;
//! use crossbeam_channel::unbounded;
//! use hangwatch::{Annotation, AlertKind, ComponentId, Monitor, Timeouts};
//!
//! enum Msg { Ping, Reflow(Duration) }
//!
//! impl Msg {
//!     fn annotation(&self) -> Annotation {
//!         match self {
//!             Msg::Ping => Annotation::new("ping"),
//!             Msg::Reflow(_) => Annotation::new("reflow"),
//!         }
//!     }
//! }
//!
//! let Monitor { register, alerts, .. } = Monitor::builder().stacks(false).start()?;
//! let (sender, inbox) = unbounded();
//! let layout = std::thread::spawn(move || {
//!     let handle = register
//!         .register_component(
//!             ComponentId::new("layout", 1),
//!             Timeouts::new(Duration::from_millis(50), Duration::from_millis(500)),
//!             None,
//!         )
//!         .expect("valid timeouts and a fresh id");
//!     // The one line: the loop itself is unchanged.
//!     for msg in handle.event_loop(Msg::annotation).iter(&inbox) {
//!         match msg {
//!             Msg::Ping => {}
//!             Msg::Reflow(took) => std::thread::sleep(took),
//!         }
//!     }
//! });
//!
//! sender.send(Msg::Ping)?;
//! sender.send(Msg::Reflow(Duration::from_millis(120)))?; // longer than 50 ms
//! drop(sender);
//! layout.join().unwrap();
//!
//! let transient = alerts.recv()?;
//! assert_eq!(transient.kind, AlertKind::Transient);
//! assert_eq!(transient.annotation.as_deref(), Some("reflow"));
//! assert!(matches!(alerts.recv()?.kind, AlertKind::Ended { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The annotation can be anything that implements [`Annotate`]: a function or
//! closure from `&Msg` to an [`Annotation`] (or to anything that converts into
//! one, such as a `&'static str` or your own enum), or a fixed
//! [`Annotation`] or `&'static str` for every message.
//!
//! # `select!`, timeouts, and other ways to block
//!
//! [`EventLoop::wait`] wraps any blocking call: it ends the activity under
//! way, runs the call, and starts an activity annotated from what the call
//! returned. Wrap only the part that blocks, so that the handling happens
//! under the activity and not inside the wait:
//!
//! ```
//! use std::time::Duration;
//! use crossbeam_channel::{select, unbounded};
//! use hangwatch::{ComponentId, Monitor, Timeouts};
//!
//! enum Event { Input(u32), Tick, Closed }
//!
//! fn label(event: &Event) -> &'static str {
//!     match event {
//!         Event::Input(_) => "input",
//!         Event::Tick => "tick",
//!         Event::Closed => "shutting down",
//!     }
//! }
//!
//! let Monitor { register, .. } = Monitor::builder().stacks(false).start()?;
//! let (input, inputs) = unbounded::<u32>();
//! let (tick, ticks) = unbounded::<()>();
//! let handle = register.register_component(
//!     ComponentId::new("ui", 1),
//!     Timeouts::new(Duration::from_millis(100), Duration::from_secs(1)),
//!     None,
//! )?;
//! input.send(7)?;
//! tick.send(())?;
//!
//! let events = handle.event_loop(label);
//! let mut total = 0;
//! for _ in 0..2 {
//!     // `select!` as before, inside `events.wait(|| ...)`.
//!     let event = events.wait(|| select! {
//!         recv(inputs) -> n => n.map_or(Event::Closed, Event::Input),
//!         recv(ticks) -> t => t.map_or(Event::Closed, |()| Event::Tick),
//!     });
//!     match event {
//!         Event::Input(n) => total += n,
//!         Event::Tick => {}
//!         Event::Closed => break,
//!     }
//! }
//! assert_eq!(total, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Dropping the [`EventLoop`] ends the activity under way, so a loop that
//! `break`s or returns leaves its component waiting.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, TryRecvError};

use crate::annotation::Annotation;
use crate::handle::Handle;

/// Says what a component is doing when it handles a message of type `T`.
///
/// Implemented for functions and closures `Fn(&T) -> A` where `A` converts
/// into an [`Annotation`], and for a fixed [`Annotation`] or `&'static str`.
pub trait Annotate<T: ?Sized> {
    /// The annotation of the activity that handles `message`.
    fn annotate(&self, message: &T) -> Annotation;
}

impl<T: ?Sized, F, A> Annotate<T> for F
where
    F: Fn(&T) -> A,
    A: Into<Annotation>,
{
    #[inline]
    fn annotate(&self, message: &T) -> Annotation {
        self(message).into()
    }
}

impl<T: ?Sized> Annotate<T> for Annotation {
    #[inline]
    fn annotate(&self, _: &T) -> Annotation {
        *self
    }
}

impl<T: ?Sized> Annotate<T> for &'static str {
    #[inline]
    fn annotate(&self, _: &T) -> Annotation {
        Annotation::from(*self)
    }
}

/// A component's event loop: notifies wait before each blocking fetch and
/// activity when a message arrives. See the [module docs](self).
///
/// Made by [`EventLoop::new`] or [`Handle::event_loop`]. Like its handle, it
/// belongs to the component's thread. Dropping it ends the activity under
/// way.
pub struct EventLoop<'h, A> {
    handle: &'h Handle,
    annotate: A,
}

impl Handle {
    /// An [`EventLoop`] over this handle, annotating each activity with
    /// `annotate` (feature `crossbeam`).
    ///
    /// `for msg in &inbox` becomes
    /// `for msg in handle.event_loop(Msg::annotation).iter(&inbox)`.
    pub fn event_loop<A>(&self, annotate: A) -> EventLoop<'_, A> {
        EventLoop::new(self, annotate)
    }
}

impl<'h, A> EventLoop<'h, A> {
    /// An event loop for the component of `handle`, whose activities are
    /// annotated by `annotate` from the message that started them.
    pub fn new(handle: &'h Handle, annotate: A) -> EventLoop<'h, A> {
        EventLoop { handle, annotate }
    }

    /// The component's handle.
    pub fn handle(&self) -> &'h Handle {
        self.handle
    }

    /// Ends the activity under way, blocks in `wait`, then starts an activity
    /// annotated from what `wait` returned, and returns it.
    ///
    /// Use it around `select!`, `Select::select`, or any other call that
    /// waits for the loop's next event; handle the event after it returns.
    pub fn wait<R>(&self, wait: impl FnOnce() -> R) -> R
    where
        A: Annotate<R>,
    {
        self.handle.notify_wait();
        let event = wait();
        self.begin(&event);
        event
    }

    /// Ends the activity under way, waits for the next message, and starts
    /// an activity for it. When the channel is empty and disconnected the
    /// component is left waiting and the error is returned.
    pub fn recv<T>(&self, receiver: &Receiver<T>) -> Result<T, RecvError>
    where
        A: Annotate<T>,
    {
        self.handle.notify_wait();
        let message = receiver.recv()?;
        self.begin(&message);
        Ok(message)
    }

    /// Like [`recv`](EventLoop::recv), waiting at most `timeout`. On a time-out
    /// the component is left waiting.
    pub fn recv_timeout<T>(
        &self,
        receiver: &Receiver<T>,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError>
    where
        A: Annotate<T>,
    {
        self.handle.notify_wait();
        let message = receiver.recv_timeout(timeout)?;
        self.begin(&message);
        Ok(message)
    }

    /// Takes a message if one is ready, without blocking: ends the activity
    /// under way, and starts one for the message if there is one.
    pub fn try_recv<T>(&self, receiver: &Receiver<T>) -> Result<T, TryRecvError>
    where
        A: Annotate<T>,
    {
        self.handle.notify_wait();
        let message = receiver.try_recv()?;
        self.begin(&message);
        Ok(message)
    }

    /// A blocking iterator over `receiver`'s messages, each handled under an
    /// activity that lasts until the next one is asked for. It ends when the
    /// channel is empty and disconnected, like `Receiver::iter`.
    pub fn iter<'a, T>(&'a self, receiver: &'a Receiver<T>) -> Iter<'a, 'h, T, A>
    where
        A: Annotate<T>,
    {
        Iter {
            event_loop: self,
            receiver,
        }
    }

    /// Ends the activity under way: the loop goes back to waiting without
    /// asking for a message (before it sleeps on something that is not a
    /// channel, say).
    pub fn end_activity(&self) {
        self.handle.notify_wait();
    }

    #[inline]
    fn begin<T: ?Sized>(&self, event: &T)
    where
        A: Annotate<T>,
    {
        self.handle.notify_activity(self.annotate.annotate(event));
    }
}

impl<A> Drop for EventLoop<'_, A> {
    fn drop(&mut self) {
        self.handle.notify_wait();
    }
}

/// The iterator of [`EventLoop::iter`].
pub struct Iter<'a, 'h, T, A> {
    event_loop: &'a EventLoop<'h, A>,
    receiver: &'a Receiver<T>,
}

impl<T, A: Annotate<T>> Iterator for Iter<'_, '_, T, A> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.event_loop.recv(self.receiver).ok()
    }
}
