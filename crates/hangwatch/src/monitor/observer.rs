//! What the monitor tells whoever watches it, as it happens: the one seam
//! through which integrations (`tracing`, `metrics`, tokio's driver
//! hand-off) hook into the monitor, without the monitor naming any of them.
//!
//! An [`Observer`] hears of each event by a method of its own, every one
//! empty by default, so an observer implements only what it reacts to. The
//! monitor is given its observers once, when it starts (which ones is
//! decided in one place, `integrations::observers`), and keeps them in its
//! alert sink, the point every alert leaves through; the outbox reaches
//! them there when it raises an alert, the monitor for everything else.
//!
//! Invariants: every method is called on the monitor's thread, between two
//! of its steps, so an observer that is slow delays the monitor's next look
//! by as much, and one that allocates makes the monitor allocate (a hung
//! thread holding the allocator's lock would hold up its own alert):
//! observers keep each call to a few recorder calls or lookups, and make
//! whatever they need ahead, at [`Observer::component_added`]. Reporting to
//! them allocates nothing: the list is made once, and an event is a call per
//! observer.

use crate::alert::Alert;
use crate::component::ComponentId;

/// Something that watches the monitor's work: an integration.
pub(crate) trait Observer: Send {
    /// A component registered (before any alert of its can be raised).
    fn component_added(&self, _id: &ComponentId) {}

    /// A component left: unregistered, its thread exited, or the monitor
    /// ended while it was still registered.
    fn component_removed(&self, _id: &ComponentId) {}

    /// The monitor decided to raise `alert`: before its stack is asked for,
    /// and before it waits for that stack in the outbox. What must react to
    /// a hang at once reacts here; the alert's stack and its delivery may
    /// come up to the symbolication deadline later. Raised alerts are hang
    /// alerts, ends of hangs and exited threads; the `Stack` alerts that
    /// complete alerts delivered without their stacks are never raised, only
    /// delivered.
    fn alert_raised(&self, _alert: &Alert) {}

    /// `alert` leaves the monitor, with its stack if it has one, just before
    /// it is put in the alert channel.
    fn alert_delivered(&self, _alert: &Alert) {}

    /// `alert`, the oldest in the alert channel, was dropped to make room
    /// because nobody read the channel.
    fn alert_dropped(&self, _alert: &Alert) {}

    /// A thread's stack was sampled (for a hang alert, or while profiling).
    fn sample_taken(&self) {}

    /// A look came much later than planned although the process could run:
    /// the monitor's thread waited for a CPU.
    fn look_starved(&self) {}

    /// A look came much later than planned because the process could not
    /// run (stopped, suspended); that time is charged to no hang.
    fn paused(&self) {}
}

/// The observers a monitor reports to, in the order they were given.
#[derive(Default)]
pub(crate) struct Observers(Vec<Box<dyn Observer>>);

impl Observers {
    pub(crate) fn new(observers: Vec<Box<dyn Observer>>) -> Observers {
        Observers(observers)
    }

    /// Tells every observer of an event: `event` calls the method for it.
    pub(crate) fn report(&self, event: impl Fn(&dyn Observer)) {
        for observer in &self.0 {
            event(observer.as_ref());
        }
    }
}
