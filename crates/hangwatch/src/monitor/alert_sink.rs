//! Where the monitor puts alerts: a bounded channel that drops its oldest
//! alert rather than block; and the monitor's observers, which hear of
//! every alert that leaves or is dropped here.
//!
//! The monitor keeps a receiving clone of the alert channel for itself. When
//! the channel is full it takes the oldest alert out and counts it as dropped,
//! so an application that stops reading (or drops its receiver) costs a fixed
//! amount of memory and never stalls the monitor.
//!
//! Every alert the monitor delivers leaves through [`AlertSink::send`], so
//! its observers (see `observer.rs`: the integrations that the enabled
//! features provide) are told of each one here, just before it goes into
//! the channel. The sink keeps them for the whole monitor: the outbox tells
//! them of each alert it raises, and the monitor of everything else.

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::alert::Alert;
use crate::monitor::observer::Observers;

pub(crate) struct AlertSink {
    sender: Sender<Alert>,
    oldest: Receiver<Alert>,
    observers: Observers,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
}

impl AlertSink {
    /// A sink into `sender`, whose oldest alerts `oldest` takes out when it
    /// is full; observed by nobody until [`observed_by`](Self::observed_by).
    pub(crate) fn new(sender: Sender<Alert>, oldest: Receiver<Alert>) -> AlertSink {
        AlertSink {
            sender,
            oldest,
            observers: Observers::default(),
            sent: 0,
            dropped: 0,
        }
    }

    /// The sink, reporting to `observers`.
    pub(crate) fn observed_by(self, observers: Observers) -> AlertSink {
        AlertSink { observers, ..self }
    }

    /// Whoever watches the monitor.
    pub(crate) fn observers(&self) -> &Observers {
        &self.observers
    }

    pub(crate) fn send(&mut self, mut alert: Alert) {
        self.observers
            .report(|observer| observer.alert_delivered(&alert));
        loop {
            match self.sender.try_send(alert) {
                Ok(()) => {
                    self.sent += 1;
                    return;
                }
                Err(TrySendError::Full(back)) => {
                    alert = back;
                    if let Ok(dropped) = self.oldest.try_recv() {
                        self.dropped += 1;
                        self.observers
                            .report(|observer| observer.alert_dropped(&dropped));
                    }
                }
                // We hold a receiver, so this cannot happen; if it did, there
                // would be nobody to tell.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}
