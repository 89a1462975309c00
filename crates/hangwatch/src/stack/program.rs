//! Which frames are the program's own: one rule, [`is_program_frame_name`],
//! for every place that names a hang after the code that hung rather than
//! after the lock or system call it sat in: the `tracing` integration's
//! `top_frame` field, the exporters' report signatures and flame-graph
//! categories, the soak's checks.

use std::borrow::Cow;

use super::{Frame, Stack};

/// Crates whose frames are runtime or library plumbing, not the program's.
const RUNTIME_CRATES: &[&str] = &[
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
const RUNTIME_SYMBOLS: &[&str] = &[
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

/// Module file names (prefixes) of system libraries.
const RUNTIME_MODULES: &[&str] = &[
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

impl Frame {
    /// The frame's name, as every exporter and log line shows it: its
    /// function (demangled), else `module+0xoffset` (not symbolicated), else
    /// `0xaddress`. Always one line: control characters become spaces and
    /// whitespace at either end goes. Borrowed, with nothing allocated, for
    /// a function name that is already so.
    pub fn name(&self) -> Cow<'_, str> {
        if let Some(function) = self.function.as_deref() {
            if is_one_line(function) {
                return Cow::Borrowed(function);
            }
            let function = one_line(function);
            if !function.is_empty() {
                return Cow::Owned(function);
            }
        }
        Cow::Owned(match (&self.module, self.module_offset) {
            (Some(module), Some(offset)) => format!("{}+{offset:#x}", one_line(module)),
            _ => format!("{:#x}", self.address),
        })
    }

    /// Whether this frame is the program's own code: its name says so
    /// ([`is_program_frame_name`]) and its module is not a system library.
    /// Allocates nothing (the monitor's thread asks it of every alert it
    /// hands to the `tracing` integration).
    pub fn is_programs(&self) -> bool {
        let module_file = self
            .module
            .as_deref()
            .map(|module| module.rsplit('/').next().unwrap_or(module));
        if module_file.is_some_and(is_runtime_module) {
            return false;
        }
        match self.function.as_deref().map(str::trim) {
            Some(function) if !function.is_empty() => is_program_frame_name(function),
            // Named `module+0xoffset` (a module that is not a system
            // library's: the program's) or by its bare address (nothing).
            _ => self.module.is_some() && self.module_offset.is_some(),
        }
    }
}

impl Stack {
    /// The innermost frame that is the program's own ([`Frame::is_programs`]):
    /// the code that hung. `None` if no frame is.
    pub fn top_program_frame(&self) -> Option<&Frame> {
        self.frames.iter().find(|frame| frame.is_programs())
    }
}

/// Whether a frame named `name` (as [`Frame::name`] names frames) is the
/// program's own rather than runtime or library plumbing: the rule, which
/// stacks that are only names (collapsed stacks, report signatures) use
/// directly.
///
/// A frame is **not** the program's when its name ([`Frame::name`]) is:
///
/// - a Rust path whose crate is one of the runtime crates: the standard
///   library (`std`, `core`, `alloc`), and the channel, lock and runtime
///   crates event loops block in (`crossbeam*`, `parking_lot*`, `lock_api`,
///   `tokio`, `mio`). A trait method such as `<std::sync::Mutex<T> as
///   Foo>::bar` counts by its first path: `std`. hangwatch's own crate is not
///   on the list: a thread never hangs in it (an instrumented task's frames
///   are inner to the instrumentation's `poll`, so they come first), and a
///   binary may itself be named `hangwatch`;
/// - a C symbol of the C runtime, threads or system calls: one starting with
///   `_` (`__lll_lock_wait`, `__GI___poll`, `_start`), `pthread_`, `futex`,
///   `epoll_` or `sem_`, or a well-known entry point of them (`syscall`,
///   `start_thread`, `clone3`, `nanosleep`, `poll`, `read`, the C `main`, …);
/// - an unsymbolicated frame in a system library (`libc.so.6+0x…`: the C
///   library, the dynamic loader, libgcc, libstdc++, libm, the vDSO), or a
///   bare address, which says nothing stable.
///
/// A [`Frame`] whose module is a system library is not the program's either,
/// whatever its function is called ([`Frame::is_programs`]): a blocking call
/// ends up there, it is never made there.
///
/// Everything else is the program's: `myapp::layout::reflow`,
/// `<myapp::Doc as core::ops::Drop>::drop` (its first path is `myapp`),
/// `libmyapp.so+0x1f00`.
///
/// ```
/// use hangwatch::{is_program_frame_name, Frame, Stack};
///
/// assert!(is_program_frame_name("myapp::layout::reflow"));
/// assert!(!is_program_frame_name("std::sync::poison::mutex::Mutex<T>::lock"));
/// assert!(!is_program_frame_name("__lll_lock_wait"));
/// assert!(!is_program_frame_name("libc.so.6+0x1234"));
///
/// let frame = |function: &str| Frame { function: Some(function.into()), ..Frame::default() };
/// let stack = Stack {
///     frames: vec![frame("__lll_lock_wait"), frame("std::sync::Mutex<T>::lock"), frame("myapp::reflow")],
///     ..Stack::default()
/// };
/// assert_eq!(stack.top_program_frame().map(Frame::name).as_deref(), Some("myapp::reflow"));
/// ```
pub fn is_program_frame_name(name: &str) -> bool {
    let name = name.trim();
    if let Some(hex) = name.strip_prefix("0x") {
        if hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    if let Some((module, offset)) = name.rsplit_once("+0x") {
        if !module.is_empty() && offset.chars().all(|c| c.is_ascii_hexdigit()) {
            return !is_runtime_module(module);
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

/// Whether a module file name is a system library's.
fn is_runtime_module(file_name: &str) -> bool {
    RUNTIME_MODULES.iter().any(|m| file_name.starts_with(m))
}

/// Whether `text` is already what [`one_line`] would make of it, and not empty.
fn is_one_line(text: &str) -> bool {
    !text.is_empty() && text.trim() == text && !text.chars().any(char::is_control)
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

/// The first segment of the path a Rust function belongs to (`std` in
/// `std::thread::sleep` and in `<std::sync::Mutex<T> as Foo>::bar`), or
/// `None` for a name with no `::`. A trait method, `<Type as Trait>::method`,
/// belongs to its type, or to its trait when the type has no path of its
/// own (a generic parameter or a primitive:
/// `<&mut F as core::ops::FnOnce<A>>::call_once` is core's).
fn first_path_segment(name: &str) -> Option<&str> {
    if !name.contains("::") {
        return None;
    }
    let owner = match name
        .strip_prefix('<')
        .and_then(|qualified| qualified.split_once(" as "))
    {
        Some((ty, tr)) if !ty.contains("::") => tr,
        _ => name,
    };
    let mut rest = owner;
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

    fn frame(function: Option<&str>, module: &str) -> Frame {
        Frame {
            function: function.map(str::to_owned),
            module: Some(module.to_owned()),
            ..Frame::default()
        }
    }

    #[test]
    fn runtime_and_library_frames_are_not_the_programs() {
        for name in [
            "std::thread::sleep",
            "core::ops::function::FnOnce::call_once",
            "alloc::vec::Vec<T>::push",
            "<std::sync::poison::mutex::MutexGuard<T> as core::ops::drop::Drop>::drop",
            "<&mut std::io::Stdout as std::io::Write>::write",
            "<&mut F as core::ops::function::FnOnce<A>>::call_once",
            "<[u8] as core::fmt::Debug>::fmt",
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
            assert!(
                !is_program_frame_name(name),
                "{name} counted as the program's"
            );
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
                is_program_frame_name(name),
                "{name} not counted as the program's"
            );
        }
    }

    #[test]
    fn a_named_function_in_a_system_library_is_not_the_programs() {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        assert!(!frame(Some("do_futex_wait_helper"), libc).is_programs());
        assert!(frame(Some("do_futex_wait_helper"), "/opt/app/bin/app").is_programs());
    }

    #[test]
    fn the_top_program_frame_is_the_innermost_past_the_runtime_and_the_c_library() {
        // Innermost first, as a blocked instrumented tokio task's stack reads.
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let stack = Stack {
            frames: vec![
                frame(None, libc),
                frame(Some("clock_nanosleep"), libc),
                frame(Some("std::thread::sleep"), "app"),
                frame(Some("app::handlers::slow::{{closure}}"), "app"),
                frame(
                    Some("<hangwatch::integrations::tokio::Instrumented<F> as core::future::future::Future>::poll"),
                    "app",
                ),
                frame(Some("tokio::runtime::task::raw::poll"), "app"),
                frame(Some("app::main"), "app"),
            ],
            ..Stack::default()
        };
        let top = stack.top_program_frame().map(Frame::name);
        assert_eq!(top.as_deref(), Some("app::handlers::slow::{{closure}}"));
        assert!(Stack::default().top_program_frame().is_none());
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
        assert_eq!(frame.name(), "libx.so+0x10");
        frame.module_offset = None;
        assert_eq!(frame.name(), "0xabc");
        frame.function = Some(" f\ng\t".into());
        assert_eq!(frame.name(), "f g");
    }
}
