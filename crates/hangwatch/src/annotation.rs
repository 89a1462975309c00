//! Annotations: what a component is doing when it becomes active.
//!
//! An [`Annotation`] is a `&'static str` label, so passing one never
//! allocates. A user enum becomes an annotation through `From`, which compiles
//! to a jump table of constant strings:
//!
//! ```
//! use hangwatch::Annotation;
//!
//! #[derive(Clone, Copy)]
//! enum ScriptTask { Reflow, RunTimers }
//!
//! impl From<ScriptTask> for Annotation {
//!     fn from(task: ScriptTask) -> Annotation {
//!         match task {
//!             ScriptTask::Reflow => Annotation::new("reflow"),
//!             ScriptTask::RunTimers => Annotation::new("run timers"),
//!         }
//!     }
//! }
//! # let _ = Annotation::from(ScriptTask::Reflow);
//! # let _ = Annotation::from(ScriptTask::RunTimers);
//! ```
//!
//! The component publishes its activity to the monitor as one atomic word
//! (see `cell.rs`), which has room for a 16-bit label *number*, not for a
//! string. Labels are therefore interned once into a process-wide, append-only
//! table: a component learns each label's number on first use (one lock, taken
//! by components only, never by the monitor) and caches it, so that the steady
//! state is a pointer comparison. The monitor reads the table by number without
//! any lock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// What a component is doing: a static label, cheap to copy and to pass.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Annotation(&'static str);

impl Annotation {
    /// An annotation with this label.
    pub const fn new(label: &'static str) -> Annotation {
        Annotation(label)
    }

    /// The label.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl From<&'static str> for Annotation {
    fn from(label: &'static str) -> Annotation {
        Annotation(label)
    }
}

impl fmt::Debug for Annotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Annotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Label numbers fit in the 16 bits the state word keeps for them.
pub(crate) type LabelId = u16;

/// The label recorded once the table is full: 65,535 distinct labels in one
/// process means labels are being made at run time, which is a misuse.
const OVERFLOW_LABEL: &str = "<more than 65535 distinct annotations>";

/// The process-wide label table.
struct Labels {
    /// Read by number, lock-free, by the monitor.
    by_id: boxcar::Vec<&'static str>,
    /// Written on a component's first use of a label. Never taken by the monitor.
    by_label: Mutex<HashMap<(usize, usize), LabelId>>,
}

fn labels() -> &'static Labels {
    static LABELS: OnceLock<Labels> = OnceLock::new();
    LABELS.get_or_init(|| {
        let by_id = boxcar::Vec::new();
        // Number 0 is the overflow label, so that every number resolves.
        by_id.push(OVERFLOW_LABEL);
        Labels {
            by_id,
            by_label: Mutex::new(HashMap::new()),
        }
    })
}

fn key(label: &'static str) -> (usize, usize) {
    (label.as_ptr() as usize, label.len())
}

fn intern(label: &'static str) -> LabelId {
    let table = labels();
    let mut by_label = table
        .by_label
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&id) = by_label.get(&key(label)) {
        return id;
    }
    if table.by_id.count() > LabelId::MAX as usize {
        return 0;
    }
    let id = table.by_id.push(label) as LabelId;
    by_label.insert(key(label), id);
    id
}

/// The annotation with this number.
pub(crate) fn resolve(id: LabelId) -> Annotation {
    Annotation(
        labels()
            .by_id
            .get(id as usize)
            .copied()
            .unwrap_or(OVERFLOW_LABEL),
    )
}

/// A component's cache of label numbers: the last one used, then the others.
#[derive(Default)]
pub(crate) struct LabelCache {
    last: Cell<(usize, usize, LabelId)>,
    seen: RefCell<Vec<((usize, usize), LabelId)>>,
}

impl LabelCache {
    #[inline(always)]
    pub(crate) fn id_of(&self, annotation: Annotation) -> LabelId {
        let (ptr, len, id) = self.last.get();
        if (ptr, len) == key(annotation.0) {
            return id;
        }
        self.id_of_cold(annotation)
    }

    #[cold]
    fn id_of_cold(&self, annotation: Annotation) -> LabelId {
        let key = key(annotation.0);
        let mut seen = self.seen.borrow_mut();
        let id = match seen.iter().find(|(k, _)| *k == key) {
            Some(&(_, id)) => id,
            None => {
                let id = intern(annotation.0);
                seen.push((key, id));
                id
            }
        };
        self.last.set((key.0, key.1, id));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_what_was_interned() {
        let cache = LabelCache::default();
        let a = cache.id_of(Annotation::new("unit-test: parse"));
        let b = cache.id_of(Annotation::new("unit-test: layout"));
        assert_ne!(a, b);
        assert_eq!(cache.id_of(Annotation::new("unit-test: parse")), a);
        assert_eq!(resolve(a).as_str(), "unit-test: parse");
        assert_eq!(resolve(b).as_str(), "unit-test: layout");
    }

    #[test]
    fn a_prefix_sharing_storage_is_a_different_label() {
        static WHOLE: &str = "unit-test: reflow";
        let prefix: &'static str = &WHOLE[..10];
        let cache = LabelCache::default();
        let whole = cache.id_of(Annotation::new(WHOLE));
        let part = cache.id_of(Annotation::new(prefix));
        assert_ne!(whole, part);
        assert_eq!(resolve(part).as_str(), "unit-test:");
    }

    #[test]
    fn two_caches_agree_on_numbers() {
        let first = LabelCache::default();
        let second = LabelCache::default();
        let label = Annotation::new("unit-test: shared");
        assert_eq!(first.id_of(label), second.id_of(label));
    }
}
