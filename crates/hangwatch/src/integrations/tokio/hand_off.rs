//! The driver hand-off: which runtime each monitored worker belongs to, and
//! the monitor's observer that wakes an idle worker of that runtime the
//! moment the monitor raises a transient alert for the worker (see "When
//! one blocked worker stalls the whole runtime" in the module docs).
//!
//! The registry is global, because the observer is made when the monitor
//! starts, before any runtime exists, and runs on the monitor's thread; a
//! worker's entry lives as long as its registration, and an entry is
//! removed only by the registration that made it (a worker taken over by
//! another thread registers the same id again). The observer reacts when
//! the alert is raised, not when it is delivered: a transient alert that
//! carries a stack may wait for it up to the symbolication deadline, and
//! the runtime must not stall behind it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::alert::{Alert, AlertKind};
use crate::component::ComponentId;
use crate::monitor::Observer;

/// The runtime of each monitored worker (by component id, with a token
/// telling registrations of the same id apart), for the driver hand-off.
type Runtimes = HashMap<ComponentId, (u64, ::tokio::runtime::Handle)>;

fn runtimes() -> &'static Mutex<Runtimes> {
    static RUNTIMES: OnceLock<Mutex<Runtimes>> = OnceLock::new();
    RUNTIMES.get_or_init(Mutex::default)
}

/// A worker's entry in [`runtimes`], removed when the worker goes.
pub(super) struct HandOff {
    id: ComponentId,
    token: u64,
}

impl HandOff {
    pub(super) fn watch(id: ComponentId, runtime: ::tokio::runtime::Handle) -> HandOff {
        static TOKENS: AtomicU64 = AtomicU64::new(0);
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        runtimes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), (token, runtime));
        HandOff { id, token }
    }
}

impl Drop for HandOff {
    fn drop(&mut self) {
        let mut runtimes = runtimes().lock().unwrap_or_else(PoisonError::into_inner);
        if runtimes
            .get(&self.id)
            .is_some_and(|(token, _)| *token == self.token)
        {
            runtimes.remove(&self.id);
        }
    }
}

/// The monitor's observer that hands a blocked worker's driver off: a
/// transient alert raised for a monitored worker wakes an idle worker of its
/// runtime, which then takes over the I/O and timer driver.
pub(crate) struct DriverHandOff;

impl Observer for DriverHandOff {
    fn alert_raised(&self, alert: &Alert) {
        if alert.kind != AlertKind::Transient {
            return;
        }
        let runtime = runtimes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&alert.component)
            .map(|(_, runtime)| runtime.clone());
        if let Some(runtime) = runtime {
            // A task spawned from outside the runtime wakes a parked worker. If
            // the runtime is shutting down, the task is dropped unrun.
            drop(runtime.spawn(async {}));
        }
    }
}
