//! What sampling does to threads blocked in timed system calls, ours beside
//! the signal-only sampler hangwatch had before (the reference,
//! [`Sampler::signal_only`]), and what the signal-free capture costs.
//!
//! A signal handler that runs while a thread sits in a timed system call
//! makes that call fail with `EINTR`, whatever `SA_RESTART` says. Our
//! sampler reads a thread blocked in the kernel from outside and signals
//! only running ones; one race is left (a thread seen running enters a call
//! before the signal lands, or is seen running because it was woken and
//! has not run yet, still inside its call). These figures count it.
//!
//! - **Timed-call workload.** Four threads, each a registered component that
//!   stays inside one `activity` for the whole run (the profiler does not
//!   sample waiting components), each looping on one kind of timed call made
//!   with raw libc so that `EINTR` shows: `nanosleep` 1 ms; `poll` 1 ms on
//!   an empty pipe; `epoll_wait` 1 ms on an empty epoll; `recv` on a
//!   socket with `SO_RCVTIMEO` 1 ms (the kernel rounds that timeout up to
//!   a jiffy: on a 100 Hz kernel each `recv` that times out lasts 10 ms, so
//!   that thread makes a tenth of the others' calls). Each thread counts
//!   its calls and the calls that returned `EINTR`. The same four threads
//!   serve all three windows below, one after the other, `window` each
//!   (quick 3 s, full 10 s), with a 100 ms gap between windows that counts
//!   toward none.
//! - `eintr_per_1k_profiled_calls`: `EINTR`s per 1,000 calls while the whole
//!   monitor profiles the four at 1 kHz (`Control::start_profiling` with
//!   `rate_hz: 1000`), with its default sampler.
//! - `eintr_per_1k_sampled_calls`: the same calls sampled at the sampler
//!   level: every 1 ms one thread of ours asks each of the four for a
//!   sample of 32 KiB (`Sampler::request`), then takes the four answers
//!   (`PendingSample::wait`, 50 ms at most), with the default sampler, on
//!   the threads' own [`SampleTarget`]s.
//! - `eintr_per_1k_profiled_calls_signal`: that sampler-level loop with
//!   `signal_only()`, the reference. (The monitor cannot be given the
//!   signal-only sampler, so the reference is measured at the sampler
//!   level; compare it with `eintr_per_1k_sampled_calls`.)
//! - `blocked_capture_us_p50`, `_p99`: the time one `Sampler::sample` call
//!   (timeout 50 ms) takes, as seen by the sampling thread, for a thread
//!   blocked 24 calls deep in `recv` on a socket with `SO_RCVTIMEO` 10 s:
//!   the default sampler, which reads it from outside. Before each capture
//!   the sampling thread waits, untimed, until `/proc/self/task/TID/syscall`
//!   shows the thread inside `recvfrom` again. `_signal`: the same
//!   captures with `signal_only()`, which includes waking the thread and
//!   its handler.
//! - `blocked_capture_eintr`, `_signal`: the `EINTR`s that thread's `recv`
//!   returned (it restarts the call each time and counts) during those
//!   captures, per path; ours should be 0, the reference about one per
//!   capture.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hangwatch::test_util::{SampleTarget, Sampler, DEFAULT_COPY_LIMIT};
use hangwatch::{ComponentId, Monitor, ProfilingOptions, SampleSignal, Timeouts};

use crate::detect::percentile;
use crate::stacks::DEPTH;

/// What the measurements found.
pub struct EintrFigures {
    pub per_1k_profiled: f64,
    pub per_1k_sampled: f64,
    pub per_1k_sampled_signal: f64,
    pub capture_p50_us: f64,
    pub capture_p99_us: f64,
    pub capture_p50_us_signal: f64,
    pub capture_p99_us_signal: f64,
    pub capture_eintr: u64,
    pub capture_eintr_signal: u64,
}

/// Bytes of stack asked for per profiling-style sample.
const PROFILE_BYTES: usize = 32 * 1024;
/// The sampling rate of every window.
const RATE_HZ: u32 = 1000;

pub fn run(quick: bool, window: Duration) -> EintrFigures {
    let sampler = Sampler::install(SampleSignal::default()).expect("install the sampler");
    let (per_1k_profiled, per_1k_sampled, per_1k_sampled_signal) = timed_calls(sampler, window);
    let captures = if quick { 2_000 } else { 10_000 };
    let ours = blocked_captures(sampler, captures);
    let reference = blocked_captures(sampler.signal_only(), captures);
    EintrFigures {
        per_1k_profiled,
        per_1k_sampled,
        per_1k_sampled_signal,
        capture_p50_us: percentile(&ours.micros, 0.5),
        capture_p99_us: percentile(&ours.micros, 0.99),
        capture_p50_us_signal: percentile(&reference.micros, 0.5),
        capture_p99_us_signal: percentile(&reference.micros, 0.99),
        capture_eintr: ours.eintr,
        capture_eintr_signal: reference.eintr,
    }
}

/// Calls made and calls that failed with `EINTR`, shared by the four threads.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    eintr: AtomicU64,
}

impl Counts {
    fn now(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.eintr.load(Ordering::Relaxed),
        )
    }
}

/// One kind of timed call, 1 ms each.
#[derive(Clone, Copy, Debug)]
enum Call {
    Nanosleep,
    Poll,
    EpollWait,
    Recv,
}

impl Call {
    const ALL: [Call; 4] = [Call::Nanosleep, Call::Poll, Call::EpollWait, Call::Recv];

    fn name(self) -> &'static str {
        match self {
            Call::Nanosleep => "nanosleep",
            Call::Poll => "poll",
            Call::EpollWait => "epoll_wait",
            Call::Recv => "recv",
        }
    }
}

/// Runs the four timed-call threads through the three windows and returns
/// `EINTR`s per 1,000 calls in each: profiled by the monitor, sampled by
/// our sampler, sampled by the signal-only one.
fn timed_calls(sampler: Sampler, window: Duration) -> (f64, f64, f64) {
    let Monitor {
        register, control, ..
    } = Monitor::builder()
        .thread_name("hw-bench-eintr")
        .start()
        .expect("start the monitor");
    let counts = Arc::new(Counts::default());
    let running = Arc::new(AtomicBool::new(true));
    let (targets_sender, targets) = mpsc::channel();
    let threads: Vec<_> = Call::ALL
        .into_iter()
        .enumerate()
        .map(|(n, call)| {
            let register = register.clone();
            let (counts, running) = (counts.clone(), running.clone());
            let targets = targets_sender.clone();
            std::thread::Builder::new()
                .name(format!("hw-eintr-{}", call.name()))
                .spawn(move || {
                    let handle = register
                        .register_component(
                            ComponentId::new(call.name(), n as u64),
                            Timeouts::new(Duration::from_secs(3600), Duration::from_secs(7200)),
                            None,
                        )
                        .expect("register");
                    let target =
                        SampleTarget::current_thread(PROFILE_BYTES).expect("a sample target");
                    let _busy = handle.activity("timed calls");
                    targets.send(Arc::new(target)).expect("send the target");
                    drop(targets);
                    loop_on(call, &counts, &running);
                })
                .expect("spawn a timed-call thread")
        })
        .collect();
    drop(targets_sender);
    let targets: Vec<Arc<SampleTarget>> = targets.iter().take(Call::ALL.len()).collect();
    std::thread::sleep(Duration::from_millis(200));

    let gap = Duration::from_millis(100);
    let measure = |during: &mut dyn FnMut()| {
        let (calls, eintr) = counts.now();
        during();
        let (calls_after, eintr_after) = counts.now();
        std::thread::sleep(gap);
        per_thousand(eintr_after - eintr, calls_after - calls)
    };

    let profiled = measure(&mut || {
        control
            .start_profiling(ProfilingOptions {
                rate_hz: RATE_HZ,
                ..ProfilingOptions::default()
            })
            .expect("start profiling");
        std::thread::sleep(window);
        control.stop_profiling().expect("stop profiling");
    });
    let sampled = measure(&mut || sample_loop(sampler, &targets, window));
    let sampled_signal = measure(&mut || sample_loop(sampler.signal_only(), &targets, window));

    running.store(false, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    (profiled, sampled, sampled_signal)
}

fn per_thousand(eintr: u64, calls: u64) -> f64 {
    if calls == 0 {
        return f64::NAN;
    }
    eintr as f64 * 1e3 / calls as f64
}

/// Every 1 ms, asks each target for a sample, then takes the answers.
fn sample_loop(sampler: Sampler, targets: &[Arc<SampleTarget>], window: Duration) {
    let interval = Duration::from_secs(1) / RATE_HZ;
    let started = Instant::now();
    let mut next = started;
    while next.duration_since(started) < window {
        let pending: Vec<_> = targets
            .iter()
            .filter_map(|target| sampler.request(target, PROFILE_BYTES).ok())
            .collect();
        for request in pending {
            let _ = std::hint::black_box(request.wait(Duration::from_millis(50)));
        }
        // Ticks missed while sampling are skipped, not bunched.
        next = (next + interval).max(Instant::now());
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Makes `call` over and over, 1 ms each, until `running` is cleared,
/// counting calls and `EINTR`s into `counts`.
fn loop_on(call: Call, counts: &Counts, running: &AtomicBool) {
    let mut fds = [-1; 2];
    // SAFETY: each call gets valid pointers to live locals; the descriptors
    // are this thread's own and closed at the end.
    unsafe {
        match call {
            Call::Nanosleep => {}
            Call::Poll => check(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC)),
            Call::EpollWait => fds[0] = check_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)),
            Call::Recv => {
                check(libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    fds.as_mut_ptr(),
                ));
                set_receive_timeout(fds[0], Duration::from_millis(1));
            }
        }
        let one_ms = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        let mut poll_fd = libc::pollfd {
            fd: fds[0],
            events: libc::POLLIN,
            revents: 0,
        };
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        let mut byte = 0u8;
        while running.load(Ordering::Relaxed) {
            let result = match call {
                Call::Nanosleep => libc::nanosleep(&one_ms, std::ptr::null_mut()) as isize,
                Call::Poll => libc::poll(&mut poll_fd, 1, 1) as isize,
                Call::EpollWait => libc::epoll_wait(fds[0], &mut event, 1, 1) as isize,
                Call::Recv => libc::recv(fds[0], (&raw mut byte).cast(), 1, 0),
            };
            counts.calls.fetch_add(1, Ordering::Relaxed);
            if result < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                counts.eintr.fetch_add(1, Ordering::Relaxed);
            }
        }
        for fd in fds {
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
}

fn check(result: libc::c_int) {
    assert!(result == 0, "{}", io::Error::last_os_error());
}

fn check_fd(fd: libc::c_int) -> libc::c_int {
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    fd
}

/// Sets `SO_RCVTIMEO` on `fd`.
///
/// # Safety
///
/// `fd` must be an open socket.
unsafe fn set_receive_timeout(fd: libc::c_int, timeout: Duration) {
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `value` outlives the call and its size is passed with it.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const value).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    });
}

/// What a series of captures of a blocked thread found.
struct Captures {
    /// Time per successful capture, µs, sorted.
    micros: Vec<f64>,
    /// `EINTR`s the thread saw during the series.
    eintr: u64,
}

/// Captures, `captures` times, a thread blocked `DEPTH` calls deep in a
/// `recv` with a 10 s timeout, each once `/proc` shows it blocked.
fn blocked_captures(sampler: Sampler, captures: usize) -> Captures {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    });
    let [ours, peer] = fds;
    // SAFETY: `ours` is the socket just made.
    unsafe { set_receive_timeout(ours, Duration::from_secs(10)) };
    let eintr = Arc::new(AtomicU64::new(0));
    let (target_sender, target) = mpsc::channel();
    let counted = eintr.clone();
    let thread = std::thread::spawn(move || {
        let made = SampleTarget::current_thread(DEFAULT_COPY_LIMIT).expect("a sample target");
        target_sender.send(made).expect("send the target");
        descend_and_receive(DEPTH, ours, &counted);
    });
    let target = target.recv().expect("the target");
    let syscall = format!("/proc/self/task/{}/syscall", target.tid());
    let in_recv = format!("{} ", libc::SYS_recvfrom);

    let timeout = Duration::from_millis(50);
    let mut micros = Vec::with_capacity(captures);
    let mut before = None;
    for _ in 0..captures {
        wait_until_blocked(&syscall, &in_recv);
        before.get_or_insert_with(|| eintr.load(Ordering::Relaxed));
        let started = Instant::now();
        let sample = sampler.sample(&target, timeout);
        let took = started.elapsed();
        if sample.is_ok() {
            micros.push(took.as_secs_f64() * 1e6);
        }
    }
    // Let the last signal, if any, land before counting.
    wait_until_blocked(&syscall, &in_recv);
    let seen = eintr.load(Ordering::Relaxed) - before.unwrap_or(0);

    // SAFETY: `peer` is ours; closing it ends the thread's `recv` with 0.
    unsafe { libc::close(peer) };
    let _ = thread.join();
    // SAFETY: the thread that used `ours` has exited.
    unsafe { libc::close(ours) };
    micros.sort_by(f64::total_cmp);
    Captures {
        micros,
        eintr: seen,
    }
}

/// Waits, at most a second, until the thread whose `/proc/.../syscall` file
/// is `path` is blocked in the system call whose line starts with `call`.
fn wait_until_blocked(path: &str, call: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match std::fs::read_to_string(path) {
            Ok(line) if line.starts_with(call) => return,
            Ok(_) => std::thread::yield_now(),
            Err(_) => return,
        }
    }
}

#[inline(never)]
fn descend_and_receive(depth: u32, fd: libc::c_int, eintr: &AtomicU64) {
    if depth == 0 {
        receive_until_closed(fd, eintr);
    } else {
        descend_and_receive(std::hint::black_box(depth - 1), fd, eintr);
    }
    std::hint::black_box(depth);
}

/// `recv` on `fd` until the peer closes it, restarting the call after a
/// timeout or an `EINTR` (counted).
#[inline(never)]
fn receive_until_closed(fd: libc::c_int, eintr: &AtomicU64) {
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is a live one-byte buffer.
        let result = unsafe { libc::recv(fd, (&raw mut byte).cast(), 1, 0) };
        if result >= 0 {
            return;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {
                eintr.fetch_add(1, Ordering::Relaxed);
            }
            Some(libc::EAGAIN) => {}
            _ => return,
        }
    }
}
