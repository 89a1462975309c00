//! The alternate-stack rule: the handler never runs where it cannot fit.
//!
//! The sampling handler is installed with `SA_ONSTACK`, so on a thread with
//! an alternate signal stack it runs there, and on one without, on whatever
//! is left of the thread's own stack. Either can be too small: the kernel's
//! signal frame alone is `AT_MINSIGSTKSZ` (3.3 KiB with AVX-512, more with
//! AMX), larger than the `MINSIGSTKSZ` (2 KiB) the kernel accepts for an
//! alternate stack, and a thread hung near the end of its stack has less.
//! A handler that does not fit runs past the bottom of the stack into
//! whatever lies below (the heap, for an alternate stack a program
//! allocated), or the kernel kills the thread.
//!
//! So when a thread registers, on that thread, we look at its alternate
//! stack:
//!
//! - one of at least [`required`] bytes (the kernel's frame plus what the
//!   handler needs, [`HANDLER_NEED`], measured by this module's tests) is
//!   left alone: Rust's threads have one of 8 KiB, enough;
//! - otherwise the thread gets one of ours, mapped with a guard page below
//!   it, so that even an overflow faults rather than corrupts. When the
//!   thread's last component unregisters, what was there is put back if
//!   the handler fits on it (no stack at all: the handler then runs on the
//!   thread's own stack, which a thread that unregisters is not at the end
//!   of); a too-small stack is not put back while our signals could still
//!   arrive, so ours stays until the thread exits;
//! - if ours cannot be mapped or installed, the signal path is refused for
//!   that thread, with the reason: it is then sampled only while blocked.
//!
//! A program that installs a smaller alternate stack on a thread *after*
//! registering it is not protected; README says so.

use std::cell::RefCell;
use std::io;

use super::sys;

/// Linux's flag for a stack that is disarmed while a handler runs on it (not
/// in the `libc` crate).
const SS_AUTODISARM: libc::c_int = 1 << 31;

/// What the handler itself uses of its stack beyond the kernel's frame, with
/// room to spare (measured by the Linux sampler's test
/// `the_handler_fits_in_what_the_rule_reserves`: nothing beyond the frame
/// the kernel reserves in a release build, 0.8 KiB in a debug build, 2.9 KiB
/// in a debug build under AddressSanitizer). With the 3.3 KiB frame of an
/// AVX-512 machine this still fits the 8 KiB alternate stack Rust gives its
/// threads.
pub(super) const HANDLER_NEED: usize = 4096;

/// The smallest alternate stack the handler may run on.
pub(super) fn required() -> usize {
    sys::signal_frame_size() + HANDLER_NEED
}

/// The size of the alternate stacks we give threads: the requirement, with
/// room for a program's own handlers too, in whole pages.
fn our_size() -> usize {
    let page = sys::page_size();
    (required() * 2).max(16 * 1024).div_ceil(page) * page
}

/// An alternate stack we mapped and installed on this thread.
struct Ours {
    start: *mut u8,
    len: usize,
    guard: usize,
    /// What was installed before: put back when the last user leaves, if
    /// the handler fits on it.
    previous: libc::stack_t,
    /// Components of this thread relying on it.
    users: usize,
}

/// Unmaps our stack, after taking it off the thread if it is still there.
struct OnThisThread(RefCell<Option<Ours>>);

impl Drop for OnThisThread {
    fn drop(&mut self) {
        // The thread is exiting: leave it with no alternate stack rather
        // than one too small for a late signal.
        if let Some(ours) = self.0.get_mut().take() {
            ours.retire(None);
        }
    }
}

thread_local! {
    static OURS: OnThisThread = const { OnThisThread(RefCell::new(None)) };
}

impl Ours {
    fn is_current(&self) -> bool {
        sys::alt_stack().is_ok_and(|current| current.ss_sp.cast::<u8>() == self.start)
    }

    /// Takes our stack off the thread (putting `replacement` in its place,
    /// or none) if it is still installed, then unmaps it.
    fn retire(self, replacement: Option<libc::stack_t>) {
        if self.is_current() {
            let none = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            if sys::set_alt_stack(&replacement.unwrap_or(none)).is_err() {
                // Still in use (we are running on it): leaking it is the
                // only safe choice.
                return;
            }
        }
        // SAFETY: mapped by `map_guarded` with these sizes in `install`,
        // and no longer this thread's alternate stack, so no handler can
        // run on it.
        unsafe { sys::unmap_guarded(self.start, self.guard, self.len) };
    }
}

/// A component's claim on its thread's alternate stack, made on that thread
/// and given back there when dropped. Not `Send`.
#[derive(Debug)]
pub(in crate::stack::sampler) struct Lease {
    /// Whether this lease counts as a user of our stack.
    ours: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Makes sure the calling thread's alternate stack can hold the handler,
/// installing ours if not. `Err` says why the signal path must not be used
/// on this thread.
pub(super) fn ensure() -> Result<Lease, String> {
    let need = required();
    let lease = |ours| Lease {
        ours,
        _not_send: std::marker::PhantomData,
    };
    let already_ours = OURS
        .try_with(|ours| {
            ours.0.borrow_mut().as_mut().map(|ours| {
                ours.users += 1;
            })
        })
        .map_err(|_| "the thread is exiting".to_owned())?;
    if already_ours.is_some() {
        return Ok(lease(true));
    }
    let current = sys::alt_stack().map_err(|error| format!("sigaltstack failed: {error}"))?;
    if current.ss_flags & libc::SS_ONSTACK != 0 {
        return Err(
            "the thread registered from a signal handler running on its alternate stack".to_owned(),
        );
    }
    if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= need {
        return Ok(lease(false));
    }
    install(current).map_err(|error| {
        format!(
            "the thread's alternate signal stack is {} (the handler needs {need} bytes) and one \
             could not be given to it: {error}",
            describe(&current)
        )
    })?;
    Ok(lease(true))
}

fn describe(stack: &libc::stack_t) -> String {
    if stack.ss_flags & libc::SS_DISABLE != 0 {
        "missing".to_owned()
    } else {
        format!("{} bytes", stack.ss_size)
    }
}

fn install(previous: libc::stack_t) -> io::Result<()> {
    let (guard, len) = (sys::page_size(), our_size());
    let start = sys::map_guarded(guard, len)?;
    let stack = libc::stack_t {
        ss_sp: start.cast(),
        // Keep `SS_AUTODISARM` if the program asked for it.
        ss_flags: previous.ss_flags & SS_AUTODISARM,
        ss_size: len,
    };
    if let Err(error) = sys::set_alt_stack(&stack) {
        // SAFETY: just mapped, never installed.
        unsafe { sys::unmap_guarded(start, guard, len) };
        return Err(error);
    }
    let ours = Ours {
        start,
        len,
        guard,
        previous,
        users: 1,
    };
    // `ensure` checked that the thread-local is alive and empty.
    let _ = OURS.try_with(|slot| *slot.0.borrow_mut() = Some(ours));
    Ok(())
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.ours {
            return;
        }
        let _ = OURS.try_with(|slot| {
            let mut slot = slot.0.borrow_mut();
            let Some(ours) = slot.as_mut() else {
                return;
            };
            ours.users -= 1;
            if ours.users > 0 {
                return;
            }
            let previous = ours.previous;
            let fits = previous.ss_flags & libc::SS_DISABLE != 0 || previous.ss_size >= required();
            if fits || !ours.is_current() {
                if let Some(ours) = slot.take() {
                    ours.retire(fits.then_some(previous));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` on a new thread whose alternate stack is `stack` (made
    /// by `make` on that thread), and returns what `body` returned.
    fn on_thread_with<T: Send + 'static>(
        make: impl FnOnce() -> Option<libc::stack_t> + Send + 'static,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        std::thread::spawn(move || {
            let stack = make().unwrap_or_else(disabled);
            sys::set_alt_stack(&stack).unwrap();
            let result = body();
            // Leave no stack of ours behind: AddressSanitizer unmaps the
            // alternate stack it finds at thread exit, taking it for its own.
            sys::set_alt_stack(&disabled()).unwrap();
            result
        })
        .join()
        .unwrap()
    }

    fn disabled() -> libc::stack_t {
        libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        }
    }

    fn small_stack(size: usize) -> libc::stack_t {
        let memory = Box::leak(vec![0u8; size].into_boxed_slice());
        libc::stack_t {
            ss_sp: memory.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: size,
        }
    }

    #[test]
    fn a_big_enough_stack_is_left_alone() {
        let size = required() + 4096;
        let (before, after) = on_thread_with(
            move || Some(small_stack(size)),
            || {
                let before = sys::alt_stack().unwrap().ss_sp;
                let lease = ensure().unwrap();
                let after = sys::alt_stack().unwrap().ss_sp;
                drop(lease);
                (before as usize, after as usize)
            },
        );
        assert_eq!(before, after);
    }

    #[test]
    fn a_small_or_missing_stack_is_replaced_and_given_back_when_safe() {
        for size in [None, Some(2048), Some(3000)] {
            let (installed, restored) = on_thread_with(
                move || size.map(small_stack),
                move || {
                    let before = sys::alt_stack().unwrap();
                    let first = ensure().unwrap();
                    let second = ensure().unwrap();
                    let ours = sys::alt_stack().unwrap();
                    drop(first);
                    let still = sys::alt_stack().unwrap().ss_sp == ours.ss_sp;
                    drop(second);
                    let after = sys::alt_stack().unwrap();
                    let installed = ours.ss_size >= required() && ours.ss_sp != before.ss_sp;
                    assert!(still, "the first lease left our stack to the second");
                    let restored = after.ss_sp == before.ss_sp
                        && after.ss_flags & libc::SS_DISABLE == before.ss_flags & libc::SS_DISABLE;
                    (installed, restored)
                },
            );
            assert!(installed, "{size:?}: ours was installed");
            // No stack is put back; a too-small one is not, while our
            // signals could still arrive.
            assert_eq!(restored, size.is_none(), "{size:?}");
        }
    }
}
