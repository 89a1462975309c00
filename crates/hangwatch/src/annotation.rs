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
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

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

    /// An annotation with a label made at run time, such as
    /// `"GET /users/{id}"`.
    ///
    /// Each distinct text is copied once into a string that is never freed,
    /// and every later call with equal text returns that same string, so a
    /// component's label cache (keyed by the string's address) finds it again
    /// without interning it anew. That is a deliberate leak, bounded by the
    /// number of distinct texts: give it texts of bounded variety (route
    /// templates, task kinds), never raw user input such as concrete paths or
    /// ids. The process's label table holds 65,535 distinct labels in all;
    /// past that, alerts show an overflow label instead.
    ///
    /// Each call takes one process-wide lock (a hash set lookup under it).
    /// On a hot path, keep the annotation you got, or cache it per thread,
    /// as the `tower` integration does; [`Annotation::new`] with a
    /// `&'static str` costs nothing.
    ///
    /// ```
    /// use hangwatch::Annotation;
    ///
    /// let route = String::from("GET /users/{id}");
    /// let first = Annotation::intern(&route);
    /// let again = Annotation::intern("GET /users/{id}");
    /// assert_eq!(first.as_str(), "GET /users/{id}");
    /// assert!(std::ptr::eq(first.as_str(), again.as_str()));
    /// ```
    pub fn intern(label: &str) -> Annotation {
        static INTERNED: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut interned = INTERNED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&known) = interned.get(label) {
            return Annotation(known);
        }
        // Once per distinct text: the leak documented above.
        let leaked: &'static str = Box::leak(label.to_owned().into_boxed_str());
        interned.insert(leaked);
        Annotation(leaked)
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

/// A component's cache of label numbers: the last two used (a worker
/// switches between a task's label and its own at every poll), then the
/// others.
#[derive(Default)]
pub(crate) struct LabelCache {
    last: Cell<(usize, usize, LabelId)>,
    previous: Cell<(usize, usize, LabelId)>,
    seen: RefCell<Vec<((usize, usize), LabelId)>>,
}

impl LabelCache {
    #[inline(always)]
    pub(crate) fn id_of(&self, annotation: Annotation) -> LabelId {
        let wanted = key(annotation.0);
        let last = self.last.get();
        if (last.0, last.1) == wanted {
            return last.2;
        }
        let previous = self.previous.get();
        if (previous.0, previous.1) == wanted {
            self.previous.set(last);
            self.last.set(previous);
            return previous.2;
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
        self.previous.set(self.last.get());
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
    fn interned_equal_texts_share_one_string_and_different_texts_do_not() {
        let built = format!("unit-test: {} /users/{{id}}", "GET");
        let first = Annotation::intern(&built);
        drop(built);
        let second = Annotation::intern("unit-test: GET /users/{id}");
        assert_eq!(first.as_str(), "unit-test: GET /users/{id}");
        assert!(std::ptr::eq(first.as_str(), second.as_str()));
        assert_eq!(first, second);
        let other = Annotation::intern("unit-test: POST /users/{id}");
        assert!(!std::ptr::eq(first.as_str(), other.as_str()));
        assert_ne!(first, other);
        // Another thread gets the same string, so label caches agree.
        let elsewhere = std::thread::spawn(|| Annotation::intern("unit-test: GET /users/{id}"))
            .join()
            .unwrap();
        assert!(std::ptr::eq(first.as_str(), elsewhere.as_str()));
        let cache = LabelCache::default();
        assert_eq!(cache.id_of(first), cache.id_of(elsewhere));
    }

    #[test]
    fn two_caches_agree_on_numbers() {
        let first = LabelCache::default();
        let second = LabelCache::default();
        let label = Annotation::new("unit-test: shared");
        assert_eq!(first.id_of(label), second.id_of(label));
    }
}
