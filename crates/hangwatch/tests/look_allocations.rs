//! The monitor's thread allocates nothing on its way to an alert.
//!
//! A counting global allocator watches one thread, the monitor's (found by
//! its name in `/proc/self/task/*/comm`), through whole hangs: transient,
//! permanent (with its stack request), ended. `allocation-counter` counts
//! only the thread that measures, so this binary has its own allocator.
//!
//! Why it matters: a hung thread may hold the allocator's lock. The second
//! test makes one do so for real, in a child process whose threads all share
//! one malloc arena, and checks that the monitor still raises its alerts.
#![cfg(target_os = "linux")]
// A counting global allocator, and libc calls (malloc, pipes, `gettid`)
// made where nothing may allocate.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use common::{expect_hang_alert, is_follow_up, ms, thread_id_named, Puppet, Step, GENEROUS};
use hangwatch::{Alert, AlertKind, ComponentId, HangLevel, Monitor, Timeouts};

// --- The counting allocator ---------------------------------------------------

/// The thread whose allocations are counted (0: none).
static WATCHED_TID: AtomicU32 = AtomicU32::new(0);
/// Whether the counting window is open.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Allocations (`alloc`, `alloc_zeroed`, `realloc`) and frees in the window.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
/// The sizes of the first allocations in the window.
const SIZES_KEPT: usize = 32;
static SIZES: [AtomicUsize; SIZES_KEPT] = [const { AtomicUsize::new(0) }; SIZES_KEPT];
/// Backtraces of the first allocations in the window, taken with the hook
/// switched off on that thread (their own allocations are not counted).
const BACKTRACES_KEPT: u64 = 6;
static BACKTRACES: Mutex<Vec<(usize, Backtrace)>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's id, once asked (const-initialised, no destructor: using
    /// it never allocates).
    static TID: Cell<u32> = const { Cell::new(0) };
    /// Set while this thread takes a backtrace for the record.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

fn this_tid() -> u32 {
    TID.with(|tid| {
        if tid.get() == 0 {
            // SAFETY: gettid has no preconditions.
            tid.set(unsafe { libc::syscall(libc::SYS_gettid) } as u32);
        }
        tid.get()
    })
}

/// Whether this call comes from the watched thread inside the window.
fn watched() -> bool {
    COUNTING.load(Ordering::Relaxed)
        && this_tid() == WATCHED_TID.load(Ordering::Relaxed)
        && !IN_HOOK.with(Cell::get)
}

fn note_allocation(size: usize) {
    if !watched() {
        return;
    }
    let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = SIZES.get(n as usize) {
        slot.store(size, Ordering::Relaxed);
    }
    if n < BACKTRACES_KEPT {
        // Everything this allocates passes through uncounted.
        IN_HOOK.with(|hook| hook.set(true));
        let backtrace = Backtrace::force_capture();
        if let Ok(mut kept) = BACKTRACES.try_lock() {
            kept.push((size, backtrace));
        }
        IN_HOOK.with(|hook| hook.set(false));
    }
}

struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if watched() {
            FREES.fetch_add(1, Ordering::Relaxed);
        }
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the watched thread did in one window.
struct Window {
    allocations: u64,
    frees: u64,
    sizes: Vec<usize>,
    backtraces: Vec<(usize, Backtrace)>,
}

fn open_window() {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    FREES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
}

fn close_window() -> Window {
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let sizes = SIZES
        .iter()
        .take(allocations as usize)
        .map(|size| size.load(Ordering::Relaxed))
        .collect();
    let backtraces = std::mem::take(&mut *BACKTRACES.lock().unwrap());
    Window {
        allocations,
        frees: FREES.load(Ordering::Relaxed),
        sizes,
        backtraces,
    }
}

// --- 1. Looks that raise alerts allocate nothing ------------------------------

/// The first field of `/proc/self/task/TID/syscall`: the system call the
/// thread is blocked in, or "running". Read into a buffer on the stack,
/// with a path made beforehand: no allocation.
fn syscall_of(path: &std::ffi::CStr) -> ([u8; 64], usize) {
    let mut buffer = [0u8; 64];
    // SAFETY: plain descriptor calls into a buffer on the stack.
    let n = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return (buffer, 0);
        }
        let n = libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
        libc::close(fd);
        n
    };
    (buffer, n.max(0) as usize)
}

fn syscall_path(tid: u32) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/self/task/{tid}/syscall")).unwrap()
}

/// Waits until thread `tid` of this process is blocked in `futex(2)`.
fn wait_until_in_futex(tid: u32) {
    let path = syscall_path(tid);
    let futex = format!("{} ", libc::SYS_futex);
    let until = Instant::now() + GENEROUS;
    loop {
        let (buffer, n) = syscall_of(&path);
        if buffer[..n].starts_with(futex.as_bytes()) {
            return;
        }
        assert!(
            Instant::now() < until,
            "thread {tid} never blocked in futex"
        );
        std::thread::sleep(ms(1));
    }
}

#[test]
fn the_monitor_thread_allocates_nothing_while_it_raises_alerts() {
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder()
        .thread_name("hw-alloc-mon")
        .start()
        .unwrap();
    let monitor_tid = thread_id_named("hw-alloc-mon");
    WATCHED_TID.store(monitor_tid, Ordering::SeqCst);
    let id = ComponentId::new("alloc-watched", 1);
    let puppet = Puppet::spawn(&register, id.clone(), ms(100), ms(300), None).unwrap();

    let mut windows = Vec::new();
    for round in 1..=2 {
        // The monitor has taken in the registration (and, from the second
        // round on, is done with the previous hang). A figures request
        // allocates its answer, so it comes before the window opens, and
        // none is made inside it.
        let stats = control.stats().unwrap();
        assert_eq!(stats.components.len(), 1, "{stats:?}");
        // And it has gone back to its wait, blocked in it. The first time
        // the monitor blocks in its `Select` allocates (crossbeam's
        // thread-local context, and each channel's list of watchers); on a
        // loaded machine that first time may not have come yet, since a
        // wait that finds a message ready does not block.
        wait_until_in_futex(monitor_tid);
        open_window();
        puppet.step(Step::Activity("counted hang"));
        expect_hang_alert(&alerts, &id, AlertKind::Transient);
        let permanent = expect_hang_alert(&alerts, &id, AlertKind::Permanent);
        assert!(
            permanent.stack.is_some() || permanent.no_stack.is_some(),
            "a permanent alert carries a stack or says why not: {permanent}"
        );
        puppet.step(Step::Wait);
        expect_hang_alert(
            &alerts,
            &id,
            AlertKind::Ended {
                worst: HangLevel::Permanent,
            },
        );
        let window = close_window();
        println!(
            "round {round}: {} allocation(s) and {} free(s) on the monitor's thread; \
             permanent alert: stack {}, no_stack {:?}",
            window.allocations,
            window.frees,
            permanent.stack.is_some(),
            permanent.no_stack
        );
        windows.push(window);
    }

    let mut report = String::new();
    for (round, window) in windows.iter().enumerate() {
        if window.allocations == 0 {
            continue;
        }
        report += &format!(
            "\nround {}: {} allocation(s) on the monitor's thread, sizes (first {SIZES_KEPT}) {:?}",
            round + 1,
            window.allocations,
            window.sizes
        );
        for (n, (size, backtrace)) in window.backtraces.iter().enumerate() {
            report += &format!("\n--- allocation {} ({size} bytes) ---\n{backtrace}", n + 1);
        }
    }
    assert!(
        report.is_empty(),
        "the monitor's thread allocated during looks that raised alerts:{report}"
    );
}

// --- 2. A hung thread holding the malloc lock ---------------------------------

/// Set in the child's environment: run the child's part.
const CHILD_ENV: &str = "HANGWATCH_MALLOC_LOCK_CHILD";
const CHILD_TEST: &str = "malloc_lock_child";
/// What the child prints on its standard output (with `write(2)`).
const LOCKING: &str = "hw-child: locking";
const UNLOCKED: &str = "hw-child: unlocked";
const DONE: &str = "hw-child: done";
const PROBED: &str = "hw-child: probe allocated";
const TRANSIENT: &str = "hw-alert: transient";
const PERMANENT: &str = "hw-alert: permanent";
const PERMANENT_NO_STACK: &str = "hw-alert: permanent (no stack)";
const ENDED: &str = "hw-alert: ended";
const OTHER: &str = "hw-alert: other";

/// Writes all of `bytes` to `fd` with `write(2)`: no allocation, no lock.
fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writing from a live buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Writes `line` and a newline in one `write(2)` (lines of two threads do
/// not mix), from a buffer on the stack.
fn say(line: &str) {
    let mut buffer = [0u8; 128];
    let line = &line.as_bytes()[..line.len().min(buffer.len() - 1)];
    buffer[..line.len()].copy_from_slice(line);
    buffer[line.len()] = b'\n';
    write_all(1, &buffer[..=line.len()]);
}

/// The child's part (a no-op unless the parent test started this binary
/// for it): a component thread, inside an activity, calls `malloc_stats`,
/// which holds the (only) malloc arena's lock while it writes to standard
/// error; standard error is made a full pipe nobody reads, so the write
/// blocks with the lock held. Every other thread that mallocs (or frees
/// much) now blocks too. The monitor should not: it raises the transient
/// and the permanent alert. An alert reader prints one fixed line per alert
/// with `write(2)`, keeping the alerts in room reserved beforehand, so that
/// it neither allocates nor frees. The parent drains the pipe once it has
/// read both alerts (or given up), and the child ends.
///
/// Before that, a short warm-up hang (transient only) shows the monitor
/// has taken in the registration and is done with everything that
/// allocates: the lock is taken only once the reader has its `Ended`.
#[test]
fn malloc_lock_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // The environment already says so (MALLOC_ARENA_MAX, GLIBC_TUNABLES);
    // this is for threads started from now on, should it not have.
    // SAFETY: mallopt has no memory-safety preconditions.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let Monitor {
        register,
        alerts,
        thread,
        ..
    } = Monitor::builder()
        .thread_name("hw-arena-mon")
        .start()
        .unwrap();

    // How many `Ended` alerts the reader has printed.
    static ENDED_SEEN: AtomicU32 = AtomicU32::new(0);
    // The holder's thread id, and whether it is about to take the lock.
    static HOLDER_TID: AtomicU32 = AtomicU32::new(0);
    static LOCKING_NOW: AtomicBool = AtomicBool::new(false);

    // The proof that the lock is held: a thread that mallocs once the
    // holder is inside `write(2)` in `malloc_stats`, and says when it got
    // its memory.
    let probe = std::thread::Builder::new()
        .name("hw-arena-probe".into())
        .spawn(|| {
            while HOLDER_TID.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(ms(1));
            }
            let path = syscall_path(HOLDER_TID.load(Ordering::SeqCst));
            let in_write = format!("{} ", libc::SYS_write);
            loop {
                let (buffer, n) = syscall_of(&path);
                if LOCKING_NOW.load(Ordering::SeqCst)
                    && buffer[..n].starts_with(in_write.as_bytes())
                {
                    break;
                }
                std::thread::sleep(ms(1));
            }
            // SAFETY: malloc and free of a block of our own.
            unsafe { libc::free(libc::malloc(64)) };
            say(PROBED);
        })
        .unwrap();
    let reader = std::thread::Builder::new()
        .name("hw-arena-reader".into())
        .spawn(move || {
            let mut kept: Vec<Alert> = Vec::with_capacity(64);
            loop {
                let alert = match alerts.try_recv() {
                    Ok(alert) => alert,
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        std::thread::sleep(ms(1));
                        continue;
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                };
                let ended = matches!(alert.kind, AlertKind::Ended { .. });
                say(if is_follow_up(&alert) {
                    OTHER
                } else if alert.kind == AlertKind::Transient {
                    TRANSIENT
                } else if alert.kind == AlertKind::Permanent && alert.stack.is_none() {
                    PERMANENT_NO_STACK
                } else if alert.kind == AlertKind::Permanent {
                    PERMANENT
                } else if ended {
                    ENDED
                } else {
                    OTHER
                });
                if kept.len() < kept.capacity() {
                    kept.push(alert);
                } else {
                    std::mem::forget(alert);
                }
                if ended && ENDED_SEEN.fetch_add(1, Ordering::SeqCst) == 1 {
                    break;
                }
            }
            kept
        })
        .unwrap();

    let holder = std::thread::Builder::new()
        .name("hw-arena-holder".into())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
            HOLDER_TID.store(tid, Ordering::SeqCst);
            let handle = register
                .register_component(
                    ComponentId::new("arena-holder", 1),
                    Timeouts::new(ms(100), ms(400)),
                    None,
                )
                .unwrap();
            drop(register);
            {
                let _warm_up = handle.activity("warm-up");
                std::thread::sleep(ms(150));
            }
            while ENDED_SEEN.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(ms(1));
            }
            // The monitor is back in its wait, blocked (see the first test).
            wait_until_in_futex(thread_id_named("hw-arena-mon"));
            // The label's first use interns it (that allocates): do it now.
            let label = "malloc_stats with the arena lock";
            handle.notify_activity(label);
            handle.notify_wait();
            // SAFETY: plain descriptor calls on descriptors this process has.
            let saved_stderr = unsafe { libc::dup(2) };
            assert!(saved_stderr >= 0);
            say(LOCKING);
            {
                let _busy = handle.activity(label);
                // SAFETY: fd 0 is the full pipe the parent gave us; fd 2 is
                // put back right after.
                unsafe {
                    libc::dup2(0, 2);
                    LOCKING_NOW.store(true, Ordering::SeqCst);
                    libc::malloc_stats();
                    libc::dup2(saved_stderr, 2);
                }
            }
            say(UNLOCKED);
            drop(handle);
        })
        .unwrap();

    holder.join().unwrap();
    probe.join().unwrap();
    let kept = reader.join().unwrap();
    thread.join().unwrap();
    for alert in &kept {
        println!("child alert: {alert}");
    }
    say(DONE);
}

/// The backtrace of `pid`'s thread named `comm` (its first frames), from
/// gdb if it is installed.
fn gdb_backtrace(pid: u32, comm: &str) -> String {
    let output = Command::new("timeout")
        .args([
            "60",
            "gdb",
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Err(error) => return format!(" (no gdb: {error})"),
    };
    let header = format!("\"{comm}\"):");
    let mut lines = output.lines().skip_while(|line| !line.ends_with(&header));
    let mut out = String::new();
    if let Some(first) = lines.next() {
        out += &format!("\n    {first}");
        for line in lines.take_while(|line| line.starts_with('#')).take(24) {
            out += &format!("\n    {line}");
        }
    }
    out
}

/// A pipe whose buffer is full, made blocking again: a write to it blocks
/// until someone reads. Returns (read end, write end).
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let fd = write.as_raw_fd();
    // SAFETY: fcntl and write on our own descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
        let chunk = [b'x'; 4096];
        for size in [chunk.len(), 1] {
            while libc::write(fd, chunk.as_ptr().cast(), size) > 0 {}
        }
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK), 0);
    }
    (read, write)
}

/// "comm: syscall" for each thread of process `pid`, from /proc.
fn threads_of(pid: u32) -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let read = |file| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
        let syscall = read("syscall");
        let number = syscall.split_whitespace().next().unwrap_or("?").to_owned();
        out += &format!(
            "\n    {} ({}): syscall {number}, wchan {}",
            read("comm").trim_end(),
            task.file_name().to_string_lossy(),
            read("wchan")
        );
    }
    out
}

/// Whether `pid`'s thread named `comm` is inside `write(2)` now.
fn blocked_in_write(pid: u32, comm: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        let read = |file| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
        read("comm").trim_end() == comm
            && read("syscall").split_whitespace().next() == Some(&libc::SYS_write.to_string())
    })
}

#[test]
fn a_hung_thread_holding_the_malloc_lock_does_not_silence_the_monitor() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let (pipe_read, pipe_write) = full_pipe();
    let mut child = {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("MALLOC_ARENA_MAX", "1")
            // One arena, and no per-thread caches: every malloc takes the
            // arena's lock.
            .env(
                "GLIBC_TUNABLES",
                "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0",
            )
            .stdin(Stdio::from(pipe_write))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("start the child")
        // The command, and with it our copy of the pipe's write end, goes here.
    };
    let pid = child.id();
    let (lines, lines_in) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr_text = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut seen: Vec<String> = Vec::new();
    let wait_for = |wanted: &[&str], until: Instant, seen: &mut Vec<String>| -> bool {
        loop {
            if wanted.iter().all(|w| seen.iter().any(|s| s.contains(w))) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            match lines_in.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => return false,
            }
        }
    };

    // The child takes the lock; while it holds it, both alerts should come.
    let started = wait_for(&[LOCKING], Instant::now() + GENEROUS * 3, &mut seen);
    let mut blocked = false;
    let mut alerted = false;
    let mut threads_then = String::new();
    if started {
        let until = Instant::now() + GENEROUS;
        while !blocked && Instant::now() < until {
            blocked = blocked_in_write(pid, "hw-arena-holder");
            std::thread::sleep(ms(1));
        }
        // Lines from the warm-up, before the lock was taken, do not count.
        let mut since_locked: Vec<String> = Vec::new();
        alerted = wait_for(
            &[TRANSIENT, PERMANENT],
            Instant::now() + GENEROUS,
            &mut since_locked,
        );
        seen.extend(since_locked);
        threads_then = threads_of(pid);
        if !alerted {
            threads_then += "\n  the monitor's thread, by gdb:";
            threads_then += &gdb_backtrace(pid, "hw-arena-mon");
        }
        // Still held when the permanent alert came?
        blocked &= blocked_in_write(pid, "hw-arena-holder");
    }
    let before_release = seen.clone();

    // Release the lock: drain the pipe until every write end is closed.
    let drain = std::thread::spawn(move || {
        let mut file = std::fs::File::from(pipe_read);
        let mut sink = [0u8; 65536];
        while matches!(file.read(&mut sink), Ok(n) if n > 0) {}
    });
    let finished = wait_for(&[ENDED, DONE], Instant::now() + GENEROUS * 3, &mut seen);
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    while let Ok(line) = lines_in.recv_timeout(ms(100)) {
        seen.push(line);
    }
    let _ = drain.join();
    let stderr_text = stderr_text.join().unwrap();
    let context = format!(
        "\nchild's lines before the release: {before_release:#?}\nall its lines: {seen:#?}\n\
         its threads when the permanent alert was due:{threads_then}\nits stderr:\n{stderr_text}"
    );
    println!("{context}");

    assert!(started, "the child did not reach the lock{context}");
    assert!(
        blocked,
        "the holder was not blocked in write(2) with the lock held{context}"
    );
    assert!(
        !before_release.iter().any(|l| l.contains(UNLOCKED)),
        "the holder let go of the lock before the release{context}"
    );
    assert!(
        !before_release.iter().any(|l| l.contains(PROBED)),
        "another thread could malloc: the lock was not held{context}"
    );
    assert!(
        alerted,
        "transient and permanent alerts did not both come while the malloc lock was held{context}"
    );
    assert!(
        finished && status.success() && seen.iter().any(|l| l.contains(PROBED)),
        "the child did not finish after the release ({status}){context}"
    );
}
