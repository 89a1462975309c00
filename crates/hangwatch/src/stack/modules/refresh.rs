//! [`LiveModules`]: a worker's current module snapshot, and when it is
//! reread (the policy of "Noticing loads and unloads" in the parent
//! module's docs).
//!
//! Invariants: a refresh that fails keeps the current snapshot;
//! [`LiveModules::generation`] changes exactly when the snapshot is
//! replaced; a lookup reads the maps at most once (when the snapshot is
//! stale, else on a miss).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Module, Modules, ModulesError};

/// How old a snapshot may get before an unwind rereads the maps.
const MAX_AGE: Duration = Duration::from_secs(1);

/// The current module snapshot of a worker, replaced when modules are loaded
/// or unloaded (see the module docs for when it rereads the maps).
#[derive(Debug, Default)]
pub struct LiveModules {
    current: Modules,
    loaded_at: Option<Instant>,
    generation: u64,
}

impl LiveModules {
    /// No snapshot yet: the first use reads one.
    pub fn new() -> LiveModules {
        LiveModules::default()
    }

    /// The current snapshot.
    pub fn modules(&self) -> &Modules {
        &self.current
    }

    /// Counts snapshot changes, so that what is derived from the snapshot
    /// knows when to rebuild.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Rereads the maps now; returns whether the modules changed. On error
    /// the current snapshot stays.
    pub fn refresh(&mut self) -> Result<bool, ModulesError> {
        let refreshed = self.current.refresh();
        self.loaded_at = Some(Instant::now());
        let changed = refreshed?.map(|modules| self.current = modules).is_some();
        if changed {
            self.generation += 1;
        }
        Ok(changed)
    }

    /// Rereads the maps if there is no snapshot yet or it is older than a
    /// second; returns whether the maps were read.
    pub(crate) fn refresh_if_stale(&mut self) -> bool {
        let stale = !matches!(self.loaded_at, Some(at) if at.elapsed() < MAX_AGE);
        if stale {
            // An error keeps the old snapshot; the next miss tries again.
            let _ = self.refresh();
        }
        stale
    }

    /// The module of `address`, rereading the maps once if `address` is not
    /// known code.
    pub(crate) fn find_or_refresh(&mut self, address: u64) -> Option<&Arc<Module>> {
        if !self.refresh_if_stale() && !self.current.covers(address) {
            let _ = self.refresh();
        }
        self.current.find(address)
    }
}
