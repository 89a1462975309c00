//! How every exporter names a frame, and which frames are the program's own.
//!
//! # Frame names
//!
//! [`frame_name`] gives, in this order of preference:
//!
//! | the frame has | its name |
//! |---|---|
//! | a function name (not empty) | the demangled name: `layout::reflow::run` |
//! | a module and an offset in it (not symbolicated) | `module+0xoffset`: `libfoo.so+0x1a2b` |
//! | only an address | `0xaddress`: `0x7f3a12c4` |
//!
//! A name is always one line: control characters (line breaks, tabs) become
//! spaces, and whitespace at either end is trimmed.
//!
//! An inlined frame is a frame like any other: a call that was inlined shows
//! as its callee's frame above its caller's, as it would without inlining.
//!
//! # The program's own frames
//!
//! [`is_program_frame`] tells the program's frames from the plumbing under
//! them, so that a report can name a hang after the code that hung rather
//! than after the lock or system call it sat in. A frame is **not** the
//! program's when its name is:
//!
//! - a Rust path whose crate is one of [`RUNTIME_CRATES`]: the standard
//!   library (`std`, `core`, `alloc`), and the channel, lock and runtime
//!   crates event loops block in (`crossbeam*`, `parking_lot*`, `lock_api`,
//!   `tokio`, `mio`). hangwatch's own crate is not on the list: its frames
//!   are never where a thread hangs, and the `hangwatch` command's own
//!   functions (its demo's, say) share that crate name. A trait method such as
//!   `<std::sync::Mutex<T> as Foo>::bar` counts by its first path: `std`;
//! - a C symbol of the C runtime, threads or system calls: one starting with
//!   `_` (`__lll_lock_wait`, `__GI___poll`, `_start`), `pthread_`, `futex`,
//!   `epoll_` or `sem_`, or one of [`RUNTIME_SYMBOLS`] (`syscall`,
//!   `start_thread`, `clone3`, `nanosleep`, the C `main`, …);
//! - an unsymbolicated frame in a system library (`libc.so.6+0x…`, see
//!   [`RUNTIME_MODULES`]), or a bare address, which says nothing stable.
//!
//! Everything else is the program's: `myapp::layout::reflow`,
//! `<myapp::Doc as core::ops::Drop>::drop` (its first path is `myapp`),
//! `hangwatch::demo::reflow_stuck_on_lock`, `libmyapp.so+0x1f00`.
//!
//! ```
//! use hangwatch::Frame;
//! use hangwatch_export::frames::{frame_name, is_program_frame};
//!
//! let frame = Frame { function: Some("myapp::layout::reflow".into()), ..Frame::default() };
//! assert_eq!(frame_name(&frame), "myapp::layout::reflow");
//! assert!(is_program_frame("myapp::layout::reflow"));
//! assert!(!is_program_frame("std::sync::poison::mutex::Mutex<T>::lock"));
//! assert!(!is_program_frame("__lll_lock_wait"));
//!
//! let unsymbolicated = Frame {
//!     address: 0x7f00_0000_1234,
//!     module: Some("libc.so.6".into()),
//!     module_offset: Some(0x1234),
//!     ..Frame::default()
//! };
//! assert_eq!(frame_name(&unsymbolicated), "libc.so.6+0x1234");
//! assert!(!is_program_frame("libc.so.6+0x1234"));
//! ```

use hangwatch::Frame;

/// Crates whose frames are runtime or library plumbing, not the program's.
pub const RUNTIME_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "crossbeam",
    "crossbeam_channel",
    "crossbeam_utils",
    "crossbeam_epoch",
    "crossbeam_deque",
    "parking_lot",
    "parking_lot_core",
    "lock_api",
    "tokio",
    "mio",
];

/// C symbols (with no `::`) of the C runtime, threads and system calls that
/// the prefix rule (`_`, `pthread_`, `futex`, `epoll_`, `sem_`) does not catch.
pub const RUNTIME_SYMBOLS: &[&str] = &[
    "main",
    "syscall",
    "start_thread",
    "thread_start",
    "clone",
    "clone3",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "gettimeofday",
    "usleep",
    "sleep",
    "sched_yield",
    "poll",
    "ppoll",
    "select",
    "pselect",
    "read",
    "write",
    "recv",
    "recvfrom",
    "recvmsg",
    "send",
    "sendto",
    "sendmsg",
    "accept",
    "accept4",
    "connect",
    "abort",
    "raise",
];

/// Prefixes of C symbols of the C runtime, threads and system calls.
const RUNTIME_SYMBOL_PREFIXES: &[&str] = &["_", "pthread_", "futex", "epoll_", "sem_"];

/// Module file names (prefixes) of system libraries, for unsymbolicated frames.
pub const RUNTIME_MODULES: &[&str] = &[
    "libc.so",
    "libc-",
    "libpthread",
    "ld-linux",
    "ld-musl",
    "libgcc_s",
    "libstdc++",
    "libm.so",
    "linux-vdso",
    "[vdso]",
];

/// The name exporters give `frame` (see the [module docs](self)).
pub fn frame_name(frame: &Frame) -> String {
    let function = frame.function.as_deref().map(one_line).unwrap_or_default();
    match (&frame.module, frame.module_offset) {
        _ if !function.is_empty() => function,
        (Some(module), Some(offset)) => format!("{}+{offset:#x}", one_line(module)),
        _ => format!("{:#x}", frame.address),
    }
}

/// `text` on one line: control characters (line breaks, tabs) become
/// spaces, and whitespace at either end goes.
fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.trim().to_owned()
}

/// Whether a frame named `name` (as [`frame_name`] names it) is the
/// program's own rather than runtime or library plumbing (see the
/// [module docs](self) for the rule).
pub fn is_program_frame(name: &str) -> bool {
    let name = name.trim();
    if let Some(hex) = name.strip_prefix("0x") {
        if hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    if let Some((module, offset)) = name.rsplit_once("+0x") {
        if !module.is_empty() && offset.chars().all(|c| c.is_ascii_hexdigit()) {
            return !RUNTIME_MODULES.iter().any(|m| module.starts_with(m));
        }
    }
    match first_path_segment(name) {
        Some(krate) => !RUNTIME_CRATES.contains(&krate),
        None => {
            !(RUNTIME_SYMBOLS.contains(&name)
                || RUNTIME_SYMBOL_PREFIXES.iter().any(|p| name.starts_with(p)))
        }
    }
}

/// The first segment of a Rust path (`std` in `std::thread::sleep` and in
/// `<std::sync::Mutex<T> as Foo>::bar`), or `None` for a name with no `::`.
fn first_path_segment(name: &str) -> Option<&str> {
    if !name.contains("::") {
        return None;
    }
    let mut rest = name;
    loop {
        let before = rest;
        for prefix in ["<", "&", "mut ", "dyn ", "*const ", "*mut "] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest).trim_start();
        }
        if rest == before {
            break;
        }
    }
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_and_library_frames_are_not_the_programs() {
        for name in [
            "std::thread::sleep",
            "core::ops::function::FnOnce::call_once",
            "alloc::vec::Vec<T>::push",
            "<std::sync::poison::mutex::MutexGuard<T> as core::ops::drop::Drop>::drop",
            "<&mut std::io::Stdout as std::io::Write>::write",
            "crossbeam_channel::channel::Receiver<T>::recv",
            "parking_lot::raw_mutex::RawMutex::lock_slow",
            "tokio::runtime::park::Inner::park",
            "__lll_lock_wait",
            "__GI___poll",
            "_start",
            "pthread_cond_wait",
            "futex_wait",
            "syscall",
            "start_thread",
            "clone3",
            "main",
            "libc.so.6+0x9ca4f",
            "0x7f3a12c4",
        ] {
            assert!(!is_program_frame(name), "{name} counted as the program's");
        }
    }

    #[test]
    fn the_programs_frames_are() {
        for name in [
            "myapp::layout::reflow",
            "<myapp::Doc as core::ops::drop::Drop>::drop",
            "myapp::main::{{closure}}",
            "hangwatch::demo::reflow_stuck_on_lock",
            "reflow",
            "libmyapp.so+0x1f00",
        ] {
            assert!(
                is_program_frame(name),
                "{name} not counted as the program's"
            );
        }
    }

    #[test]
    fn names_fall_back_to_module_offset_then_address() {
        let mut frame = Frame {
            address: 0xabc,
            module: Some("libx.so".into()),
            module_offset: Some(0x10),
            function: Some(String::new()),
            ..Frame::default()
        };
        assert_eq!(frame_name(&frame), "libx.so+0x10");
        frame.module_offset = None;
        assert_eq!(frame_name(&frame), "0xabc");
        frame.function = Some(" f\ng\t".into());
        assert_eq!(frame_name(&frame), "f g");
    }
}
