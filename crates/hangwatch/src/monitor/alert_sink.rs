//! Where the monitor puts alerts: a bounded channel that drops its oldest
//! alert rather than block.
//!
//! The monitor keeps a receiving clone of the alert channel for itself. When
//! the channel is full it takes the oldest alert out and counts it as dropped,
//! so an application that stops reading (or drops its receiver) costs a fixed
//! amount of memory and never stalls the monitor.
//!
//! Every alert the monitor raises leaves through [`AlertSink::send`], so the
//! `tracing`, `metrics` and `tokio` integrations (when their features are on)
//! see each one here.

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::alert::Alert;

pub(crate) struct AlertSink {
    sender: Sender<Alert>,
    oldest: Receiver<Alert>,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
}

impl AlertSink {
    pub(crate) fn new(sender: Sender<Alert>, oldest: Receiver<Alert>) -> AlertSink {
        AlertSink {
            sender,
            oldest,
            sent: 0,
            dropped: 0,
        }
    }

    pub(crate) fn send(&mut self, mut alert: Alert) {
        #[cfg(any(feature = "tracing", feature = "metrics", feature = "tokio"))]
        crate::integrations::on_alert(&alert);
        loop {
            match self.sender.try_send(alert) {
                Ok(()) => {
                    self.sent += 1;
                    return;
                }
                Err(TrySendError::Full(back)) => {
                    alert = back;
                    if self.oldest.try_recv().is_ok() {
                        self.dropped += 1;
                        #[cfg(feature = "metrics")]
                        crate::integrations::metrics::alert_dropped();
                    }
                }
                // We hold a receiver, so this cannot happen; if it did, there
                // would be nobody to tell.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}
