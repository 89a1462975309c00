//! What identifies a component and what it asks of the monitor.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::RegisterError;

/// Names a monitored component: a name plus a number of your choosing, so that
/// several components of one kind (`script` 1, `script` 2, …) are told apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ComponentId {
    /// What kind of component this is: `script`, `layout`, `network`.
    pub name: Cow<'static, str>,
    /// Which one of that kind.
    pub number: u64,
}

impl ComponentId {
    /// A component id. A `&'static str` name costs no allocation.
    pub fn new(name: impl Into<Cow<'static, str>>, number: u64) -> ComponentId {
        ComponentId {
            name: name.into(),
            number,
        }
    }
}

/// `id` with a `&'static str` name: a borrowed name as it is, an owned one
/// leaked once per distinct name (components are few and their names
/// fewer), so that every alert about it can carry it without allocating.
pub(crate) fn with_static_name(id: ComponentId) -> ComponentId {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let name = match id.name {
        Cow::Borrowed(name) => name,
        Cow::Owned(name) => {
            let mut names = NAMES
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match names.get(name.as_str()) {
                Some(&known) => known,
                None => {
                    let leaked: &'static str = Box::leak(name.into_boxed_str());
                    names.insert(leaked);
                    leaked
                }
            }
        }
    };
    ComponentId {
        name: Cow::Borrowed(name),
        number: id.number,
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.number)
    }
}

/// How long a component may stay busy before the monitor says so.
///
/// Past `transient` the monitor raises a [`Transient`](crate::AlertKind::Transient)
/// alert; past `permanent` a [`Permanent`](crate::AlertKind::Permanent) one.
/// Both must be longer than zero and `permanent` longer than `transient`;
/// registration checks it ([`RegisterError::ZeroTimeout`],
/// [`RegisterError::PermanentNotLonger`]), so that a constant can hold them:
///
/// ```
/// use std::time::Duration;
/// use hangwatch::Timeouts;
///
/// const FRAME_LOOP: Timeouts = Timeouts::new(Duration::from_millis(50), Duration::from_millis(500));
/// assert_eq!(FRAME_LOOP.transient(), Duration::from_millis(50));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    transient: Duration,
    permanent: Duration,
}

impl Timeouts {
    /// A transient and a permanent timeout.
    pub const fn new(transient: Duration, permanent: Duration) -> Timeouts {
        Timeouts {
            transient,
            permanent,
        }
    }

    /// The transient timeout.
    pub const fn transient(&self) -> Duration {
        self.transient
    }

    /// The permanent timeout.
    pub const fn permanent(&self) -> Duration {
        self.permanent
    }

    /// These timeouts if both are non-zero and `permanent` is longer than
    /// `transient`.
    pub(crate) fn checked(self) -> Result<Timeouts, RegisterError> {
        if self.transient.is_zero() || self.permanent.is_zero() {
            return Err(RegisterError::ZeroTimeout);
        }
        if self.permanent <= self.transient {
            return Err(RegisterError::PermanentNotLonger {
                transient: self.transient,
                permanent: self.permanent,
            });
        }
        Ok(self)
    }
}

/// Called once, on the monitor's thread, when [`Control::exit`](crate::Control::exit)
/// asks every component to exit. It should only pass the request on (send a
/// message, set a flag): it must not block, since the monitor waits for it.
pub type ExitSignal = Box<dyn FnOnce() + Send + 'static>;

/// How the monitor sees a component's progress within one activity: the
/// number of pieces of work (a task's poll, a message) it has completed
/// since its current activity began. See [`Handle::watch_progress`](crate::Handle::watch_progress).
///
/// Called on the monitor's thread at each look at the active component: it
/// must be cheap (a few atomic loads) and must not block.
pub type ProgressProbe = Box<dyn Fn() -> u64 + Send + 'static>;
