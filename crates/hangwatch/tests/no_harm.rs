//! First, do no harm: capturing a thread never changes what it observes.
//!
//! A hang monitor that makes the program it watches misbehave is worse than
//! none. These tests watch threads through everything the sampler does to
//! them, and check what each thread saw by its own measure (return values,
//! `errno`, its own clock, its own heap), never by what an idle machine
//! would take:
//!
//! - a thread blocked in a system call is read from outside and never
//!   signalled: each of eight blocking calls, captured on its transient and
//!   its permanent alert, returns exactly what the same call returns on an
//!   unmonitored thread beside it, after its full time, never `EINTR`;
//! - profiling at 1 kHz threads that loop on 2 ms timed calls interrupts
//!   next to none of them (the one race the design leaves: a thread seen
//!   running enters a call as its signal arrives);
//! - the handler runs only where it fits: threads with their own alternate
//!   signal stacks of every size, and one with none hung 2 KiB from the end
//!   of its stack, all spinning, so signalled, are profiled at 1 kHz and
//!   captured on a permanent hang, and survive, with
//!   their heap and the program's too-small stacks untouched, and what they
//!   had is given back as documented when they unregister;
//! - a thread that blocks every signal and consumes ours with
//!   `sigtimedwait` is not locked out: while it blocks them its captures say
//!   so at once, and once it lets them through it is sampled again.
//!
//! The tests take turns (one monitor, one load at a time), so that one
//! test's spinning threads do not stretch another's timing; bounds are
//! generous, for a loaded two-core machine.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
// The blocking calls under test are made with raw libc, so that what they
// return (`EINTR` above all) is seen as the kernel gives it.
#![allow(unsafe_code)]

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{ms, GENEROUS};
use crossbeam_channel::Receiver;
use hangwatch::{
    Alert, AlertKind, CaptureMethod, ComponentId, Handle, HangLevel, Monitor, NoStack, Profile,
    ProfilingOptions, SampleSignal, Stack, Timeouts,
};
use hangwatch_test_support::eventually;

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// How long an alert with a stack may take to come: its stack is
/// symbolicated first, and the first symbolication of this (debug) test
/// binary reads all of its debug information, which took up to 6 s on a
/// loaded two-core machine.
const STACKS_WITHIN: Duration = Duration::from_secs(30);

/// The monitor every test uses: alerts wait for their symbols as long as it
/// takes, so that their frames have names to check.
fn builder() -> hangwatch::Builder {
    Monitor::builder().symbolicate_deadline(STACKS_WITHIN)
}

/// One test at a time: each brings its own monitor and its own load.
static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Profiling at 1 kHz, 32 KiB per sample.
fn at_1khz() -> ProfilingOptions {
    ProfilingOptions {
        rate_hz: 1000,
        max_duration: Duration::from_secs(30),
        stack_bytes: 32 * 1024,
    }
}

/// `errno` as the last call left it.
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errno_name(errno: i32) -> String {
    match errno {
        libc::EINTR => "EINTR".to_owned(),
        libc::EAGAIN => "EAGAIN".to_owned(),
        libc::ETIMEDOUT => "ETIMEDOUT".to_owned(),
        other => format!("errno {other}"),
    }
}

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// An epoll instance watching nothing.
fn empty_epoll() -> OwnedFd {
    // SAFETY: plain system call.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(fd >= 0, "epoll_create1: {}", io::Error::last_os_error());
    // SAFETY: just opened, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A UDP socket on loopback that nobody sends to, whose receive timeout
/// (`SO_RCVTIMEO`, set with `setsockopt` itself) is `timeout`.
fn silent_udp_socket(timeout: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `value` is a timeval, as SO_RCVTIMEO wants, and outlives the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&value as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "setsockopt: {}", io::Error::last_os_error());
    socket
}

fn timespec(duration: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: duration.subsec_nanos() as libc::c_long,
    }
}

/// Whether some frame of `stack` is the function `name` of this file.
fn names(stack: &Stack, name: &str) -> bool {
    let suffix = format!("::{name}");
    stack.frames.iter().any(|frame| {
        frame
            .function
            .as_deref()
            .is_some_and(|function| function.ends_with(&suffix))
    })
}

/// The samples the profile holds of component `name`.
fn samples_of(profile: &Profile, name: &str) -> usize {
    profile
        .threads
        .iter()
        .filter(|thread| thread.component.name == name)
        .map(|thread| thread.samples.len())
        .sum()
}

/// The first alert for component `name` that satisfies `wanted`: from
/// `seen` (alerts taken earlier and not yet claimed), else from `alerts`,
/// keeping every other alert taken meanwhile in `seen`.
fn await_alert(
    alerts: &Receiver<Alert>,
    seen: &mut Vec<Alert>,
    name: &str,
    what: &str,
    wanted: impl Fn(&Alert) -> bool,
) -> Alert {
    if let Some(at) = seen
        .iter()
        .position(|alert| alert.component.name == name && wanted(alert))
    {
        return seen.remove(at);
    }
    let deadline = Instant::now() + STACKS_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let alert = alerts.recv_timeout(left).unwrap_or_else(|_| {
            let seen: Vec<String> = seen.iter().map(|a| a.to_string()).collect();
            panic!("no {what} for {name} within {STACKS_WITHIN:?}; alerts so far:\n{seen:#?}")
        });
        if alert.component.name == name && wanted(&alert) {
            return alert;
        }
        seen.push(alert);
    }
}

/// Spins (CPU-bound, no system call) for about `duration`, looking at the
/// clock only every few thousand rounds.
#[inline(never)]
fn spin_for(duration: Duration) -> u64 {
    let until = Instant::now() + duration;
    let mut rounds = 0u64;
    loop {
        for _ in 0..2_000 {
            rounds = black_box(rounds.wrapping_add(1));
        }
        if Instant::now() >= until {
            return rounds;
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Blocking calls return what they would without the monitor
// ---------------------------------------------------------------------------

/// How long each call of the first test blocks.
const BLOCK: Duration = Duration::from_secs(3);

/// What one blocking call returned, by its caller's measure.
#[derive(Debug)]
struct Outcome {
    /// The return value (and `errno`, when it failed), as text.
    returned: String,
    /// How long the call took, by the calling thread's clock.
    took: Duration,
    /// Returns before the time was up that the caller had to retry (only
    /// `park_timeout`, which may wake spuriously).
    early_returns: u32,
}

impl Outcome {
    fn new(returned: String, took: Duration) -> Outcome {
        Outcome {
            returned,
            took,
            early_returns: 0,
        }
    }

    /// The outcome of a libc call that returned `result` just now, begun
    /// at `started`: `-1` with its errno's name, or what `success` says.
    fn of_call(result: isize, started: Instant, success: impl FnOnce() -> String) -> Outcome {
        let error = errno();
        let took = started.elapsed();
        let returned = if result < 0 {
            format!("{result}, {}", errno_name(error))
        } else {
            success()
        };
        Outcome::new(returned, took)
    }
}

/// One blocking call.
struct Case {
    component: &'static str,
    /// The `#[inline(never)]` function the thread blocks in.
    function: &'static str,
    /// What the call returns on a thread nobody samples.
    expected: &'static str,
    /// The system calls the thread may be found blocked in.
    syscalls: &'static [&'static str],
    /// How much shorter than [`BLOCK`] the call may take by the caller's
    /// clock: a socket timeout counts in jiffies, and the one it starts in
    /// is partly over (at most 10 ms, for HZ=100).
    may_end_early_by: Duration,
    /// Sets the call up and makes it, inside an activity when monitored.
    run: fn(Option<&Handle>) -> Outcome,
}

const CASES: [Case; 8] = [
    Case {
        component: "tcp-read",
        function: "blocked_in_tcp_stream_read",
        expected: "Ok(1)",
        syscalls: &["recvfrom", "read"],
        may_end_early_by: Duration::ZERO,
        run: tcp_read,
    },
    Case {
        component: "nanosleep",
        function: "blocked_in_nanosleep",
        expected: "0, rem 0.000000000 s",
        syscalls: &["clock_nanosleep", "nanosleep"],
        may_end_early_by: Duration::ZERO,
        run: nanosleep,
    },
    Case {
        component: "poll",
        function: "blocked_in_poll_on_a_silent_pipe",
        expected: "0, revents 0x0",
        syscalls: &["poll", "ppoll"],
        may_end_early_by: Duration::ZERO,
        run: poll,
    },
    Case {
        component: "epoll-wait",
        function: "blocked_in_epoll_wait_on_nothing",
        expected: "0",
        syscalls: &["epoll_wait", "epoll_pwait", "epoll_pwait2"],
        may_end_early_by: Duration::ZERO,
        run: epoll_wait,
    },
    Case {
        component: "condvar",
        function: "blocked_in_condvar_wait_timeout",
        expected: "timed out",
        syscalls: &["futex"],
        may_end_early_by: Duration::ZERO,
        run: condvar_wait_timeout,
    },
    Case {
        component: "park",
        function: "blocked_in_park_timeout",
        expected: "()",
        syscalls: &["futex"],
        may_end_early_by: Duration::ZERO,
        run: park_timeout,
    },
    Case {
        component: "recv",
        function: "blocked_in_recv_with_rcvtimeo",
        expected: "-1, EAGAIN",
        syscalls: &["recvfrom"],
        may_end_early_by: Duration::from_millis(10),
        run: recv,
    },
    Case {
        component: "pipe-read",
        function: "blocked_in_read_of_a_slow_pipe",
        expected: "1, byte 0x21",
        syscalls: &["read"],
        may_end_early_by: Duration::ZERO,
        run: pipe_read,
    },
];

/// Starts a peer that does `then` [`BLOCK`] after it is told the call is
/// about to be made.
fn peer_after_block<T: Send + 'static>(
    then: impl FnOnce() -> T + Send + 'static,
) -> (mpsc::Sender<()>, thread::JoinHandle<T>) {
    let (go, started) = mpsc::channel::<()>();
    let peer = thread::spawn(move || {
        started.recv().expect("the caller says when it calls");
        thread::sleep(BLOCK);
        then()
    });
    (go, peer)
}

fn tcp_read(handle: Option<&Handle>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut writer, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (go, peer) = peer_after_block(move || {
        writer.write_all(b"!").unwrap();
        writer
    });
    let outcome = blocked_in_tcp_stream_read(handle, &mut stream, go);
    drop(peer.join().unwrap());
    outcome
}

#[inline(never)]
fn blocked_in_tcp_stream_read(
    handle: Option<&Handle>,
    stream: &mut TcpStream,
    go: mpsc::Sender<()>,
) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("TcpStream::read"));
    let started = Instant::now();
    go.send(()).unwrap();
    let mut buffer = [0u8; 16];
    // std does not retry a socket read that fails with EINTR.
    let result = stream.read(&mut buffer);
    let took = started.elapsed();
    Outcome::new(format!("{:?}", result.map_err(|e| e.kind())), took)
}

fn nanosleep(handle: Option<&Handle>) -> Outcome {
    blocked_in_nanosleep(handle)
}

#[inline(never)]
fn blocked_in_nanosleep(handle: Option<&Handle>) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("nanosleep"));
    let request = timespec(BLOCK);
    let mut rem = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let started = Instant::now();
    // SAFETY: both point to live timespecs.
    let result = unsafe { libc::nanosleep(&request, &mut rem) };
    let error = errno();
    let took = started.elapsed();
    let failed = if result == 0 {
        String::new()
    } else {
        format!(" {}", errno_name(error))
    };
    Outcome::new(
        format!("{result}{failed}, rem {}.{:09} s", rem.tv_sec, rem.tv_nsec),
        took,
    )
}

fn poll(handle: Option<&Handle>) -> Outcome {
    // The write end stays open and silent: no data, no hang-up.
    let (read_end, _write_end) = pipe();
    blocked_in_poll_on_a_silent_pipe(handle, &read_end)
}

#[inline(never)]
fn blocked_in_poll_on_a_silent_pipe(handle: Option<&Handle>, read_end: &OwnedFd) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("poll"));
    let mut fds = [libc::pollfd {
        fd: read_end.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let started = Instant::now();
    // SAFETY: `fds` is one live pollfd.
    let result = unsafe { libc::poll(fds.as_mut_ptr(), 1, BLOCK.as_millis() as libc::c_int) };
    Outcome::of_call(result as isize, started, || {
        format!("{result}, revents {:#x}", fds[0].revents)
    })
}

fn epoll_wait(handle: Option<&Handle>) -> Outcome {
    let epoll = empty_epoll();
    blocked_in_epoll_wait_on_nothing(handle, &epoll)
}

#[inline(never)]
fn blocked_in_epoll_wait_on_nothing(handle: Option<&Handle>, epoll: &OwnedFd) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("epoll_wait"));
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    let started = Instant::now();
    // SAFETY: `events` has room for 4 events.
    let result = unsafe {
        libc::epoll_wait(
            epoll.as_raw_fd(),
            events.as_mut_ptr(),
            events.len() as libc::c_int,
            BLOCK.as_millis() as libc::c_int,
        )
    };
    Outcome::of_call(result as isize, started, || result.to_string())
}

fn condvar_wait_timeout(handle: Option<&Handle>) -> Outcome {
    let pair = (Mutex::new(()), Condvar::new());
    blocked_in_condvar_wait_timeout(handle, &pair)
}

#[inline(never)]
fn blocked_in_condvar_wait_timeout(
    handle: Option<&Handle>,
    (lock, condvar): &(Mutex<()>, Condvar),
) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("Condvar::wait_timeout"));
    let guard = lock.lock().unwrap();
    let started = Instant::now();
    // Nobody notifies. (std retries a futex wait that fails with EINTR, so
    // an interruption would not show here, but a short wait would.)
    let (_guard, result) = condvar.wait_timeout(guard, BLOCK).unwrap();
    let took = started.elapsed();
    let returned = if result.timed_out() {
        "timed out"
    } else {
        "woken"
    };
    Outcome::new(returned.to_owned(), took)
}

fn park_timeout(handle: Option<&Handle>) -> Outcome {
    blocked_in_park_timeout(handle)
}

#[inline(never)]
fn blocked_in_park_timeout(handle: Option<&Handle>) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("thread::park_timeout"));
    let started = Instant::now();
    let mut early_returns = 0;
    // `park_timeout` may return early without an unpark (its docs say so):
    // a caller that wants the whole time parks again.
    loop {
        let left = BLOCK.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        thread::park_timeout(left);
        if started.elapsed() < BLOCK {
            early_returns += 1;
        }
    }
    Outcome {
        returned: "()".to_owned(),
        took: started.elapsed(),
        early_returns,
    }
}

fn recv(handle: Option<&Handle>) -> Outcome {
    let socket = silent_udp_socket(BLOCK);
    blocked_in_recv_with_rcvtimeo(handle, &socket)
}

#[inline(never)]
fn blocked_in_recv_with_rcvtimeo(handle: Option<&Handle>, socket: &UdpSocket) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("recv"));
    let mut buffer = [0u8; 64];
    let started = Instant::now();
    // SAFETY: `buffer` is live and as long as said.
    let result = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
        )
    };
    Outcome::of_call(result, started, || format!("{result} bytes"))
}

fn pipe_read(handle: Option<&Handle>) -> Outcome {
    let (read_end, write_end) = pipe();
    let (go, peer) = peer_after_block(move || {
        // SAFETY: one live byte, written to the open write end.
        let written = unsafe { libc::write(write_end.as_raw_fd(), b"!".as_ptr().cast(), 1) };
        assert_eq!(written, 1);
        write_end
    });
    let outcome = blocked_in_read_of_a_slow_pipe(handle, &read_end, go);
    drop(peer.join().unwrap());
    outcome
}

#[inline(never)]
fn blocked_in_read_of_a_slow_pipe(
    handle: Option<&Handle>,
    read_end: &OwnedFd,
    go: mpsc::Sender<()>,
) -> Outcome {
    let _busy = handle.map(|handle| handle.activity("read"));
    let mut buffer = [0u8; 16];
    let started = Instant::now();
    go.send(()).unwrap();
    // SAFETY: `buffer` is live and as long as said.
    let result = unsafe {
        libc::read(
            read_end.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    Outcome::of_call(result, started, || {
        format!("{result}, byte {:#x}", buffer[0])
    })
}

/// Checks that `alert` carries a stack read from outside, in one of the
/// case's system calls, through the case's function.
fn check_blocked_stack(case: &Case, alert: &Alert) {
    let stack = alert
        .stack
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no stack on {alert}", case.component));
    assert_eq!(
        stack.capture,
        Some(CaptureMethod::Blocked),
        "{}: a blocked thread was not read from outside: {alert}",
        case.component
    );
    let blocked_in = stack
        .blocked_in
        .as_deref()
        .unwrap_or_else(|| panic!("{}: no blocked_in: {alert}", case.component));
    assert!(
        case.syscalls.contains(&blocked_in),
        "{}: blocked in {blocked_in}, expected one of {:?}",
        case.component,
        case.syscalls
    );
    assert!(
        names(stack, case.function),
        "{}: the stack does not name {}: {alert}",
        case.component,
        case.function
    );
}

#[test]
fn each_blocking_call_returns_what_it_would_without_the_monitor() {
    let _serial = one_at_a_time();
    let Monitor {
        register, alerts, ..
    } = builder().stack_on_transient(true).start().unwrap();

    // Each call twice at once: on a monitored thread, and on one nobody
    // samples, which says what the call returns without the monitor.
    let mut monitored = Vec::new();
    let mut unmonitored = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let register = register.clone();
        let (registered, is_registered) = mpsc::channel();
        monitored.push(
            thread::Builder::new()
                .name(case.component.to_owned())
                .spawn(move || {
                    let case = &CASES[n];
                    let handle = register
                        .register_component(
                            ComponentId::new(case.component, 1),
                            Timeouts::new(ms(300), ms(1000)),
                            None,
                        )
                        .unwrap();
                    registered.send(()).unwrap();
                    let outcome = (case.run)(Some(&handle));
                    drop(handle);
                    outcome
                })
                .unwrap(),
        );
        is_registered.recv().unwrap();
        unmonitored.push(
            thread::Builder::new()
                .name(format!("{}-unmonitored", case.component))
                .spawn(move || (CASES[n].run)(None))
                .unwrap(),
        );
    }
    drop(register);

    // Every component: transient, permanent, ended.
    let mut by_component: HashMap<String, Vec<Alert>> = HashMap::new();
    let mut ended = 0;
    let deadline = Instant::now() + BLOCK + STACKS_WITHIN;
    while ended < CASES.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let alert = alerts.recv_timeout(left).unwrap_or_else(|_| {
            let kinds: HashMap<_, Vec<_>> = by_component
                .iter()
                .map(|(name, alerts)| (name, alerts.iter().map(|a| a.kind).collect()))
                .collect();
            panic!(
                "not every hang ended within {:?}: {kinds:#?}",
                BLOCK + STACKS_WITHIN
            )
        });
        if matches!(alert.kind, AlertKind::Ended { .. }) {
            ended += 1;
        }
        by_component
            .entry(alert.component.name.to_string())
            .or_default()
            .push(alert);
    }
    let outcomes: Vec<Outcome> = monitored.into_iter().map(|t| t.join().unwrap()).collect();
    let controls: Vec<Outcome> = unmonitored.into_iter().map(|t| t.join().unwrap()).collect();

    for ((case, outcome), control) in CASES.iter().zip(&outcomes).zip(&controls) {
        let alerts = &by_component[case.component];
        eprintln!(
            "{:<10} monitored: {:<22} in {:>7.3?} ({} early returns); unmonitored: {:<22} in {:>7.3?}; \
             blocked in {:?} / {:?}; hang of {:?}",
            case.component,
            outcome.returned,
            outcome.took,
            outcome.early_returns,
            control.returned,
            control.took,
            alerts.first().and_then(|a| a.stack.as_ref()).and_then(|s| s.blocked_in.as_deref()),
            alerts.get(1).and_then(|a| a.stack.as_ref()).and_then(|s| s.blocked_in.as_deref()),
            alerts.get(2).map(|a| a.duration),
        );
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [
                AlertKind::Transient,
                AlertKind::Permanent,
                AlertKind::Ended {
                    worst: HangLevel::Permanent
                }
            ],
            "{}",
            case.component
        );
        check_blocked_stack(case, &alerts[0]);
        check_blocked_stack(case, &alerts[1]);

        // The call returned what it returns unmonitored, after its full time.
        assert_eq!(
            control.returned, case.expected,
            "{} unmonitored",
            case.component
        );
        assert_eq!(outcome.returned, control.returned, "{}", case.component);
        for (who, took) in [("monitored", outcome.took), ("unmonitored", control.took)] {
            assert!(
                took >= BLOCK - case.may_end_early_by,
                "{} ({who}) returned after {took:?}, before its {BLOCK:?}",
                case.component
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Profiling at 1 kHz interrupts no blocked call
// ---------------------------------------------------------------------------

/// What one timed call came to.
enum Timed {
    /// It returned what it returns when nothing happens: its timeout.
    AsItWould,
    /// It failed with EINTR.
    Interrupted,
    /// Anything else.
    Other(String),
}

/// A loop of 2 ms timed calls, with its own file descriptors.
#[derive(Clone, Copy, Debug)]
enum Loop {
    Nanosleep,
    Poll,
    EpollWait,
    Recv,
}

impl Loop {
    fn name(self) -> &'static str {
        match self {
            Loop::Nanosleep => "nanosleep-2ms",
            Loop::Poll => "poll-2ms",
            Loop::EpollWait => "epoll-wait-2ms",
            Loop::Recv => "recv-2ms",
        }
    }
}

const TIMED: Duration = Duration::from_millis(2);

#[inline(never)]
fn timed_nanosleep() -> Timed {
    let request = timespec(TIMED);
    let mut rem = timespec(Duration::ZERO);
    // SAFETY: both point to live timespecs.
    match unsafe { libc::nanosleep(&request, &mut rem) } {
        0 => Timed::AsItWould,
        _ => classify_failure(errno(), -1),
    }
}

#[inline(never)]
fn timed_poll(read_end: &OwnedFd) -> Timed {
    let mut fds = [libc::pollfd {
        fd: read_end.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is one live pollfd.
    match unsafe { libc::poll(fds.as_mut_ptr(), 1, TIMED.as_millis() as libc::c_int) } {
        0 => Timed::AsItWould,
        -1 => classify_failure(errno(), -1),
        n => Timed::Other(format!("poll returned {n}")),
    }
}

#[inline(never)]
fn timed_epoll_wait(epoll: &OwnedFd) -> Timed {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    // SAFETY: `events` has room for one event.
    let result = unsafe {
        libc::epoll_wait(
            epoll.as_raw_fd(),
            events.as_mut_ptr(),
            1,
            TIMED.as_millis() as libc::c_int,
        )
    };
    match result {
        0 => Timed::AsItWould,
        -1 => classify_failure(errno(), -1),
        n => Timed::Other(format!("epoll_wait returned {n}")),
    }
}

#[inline(never)]
fn timed_recv(socket: &UdpSocket) -> Timed {
    let mut buffer = [0u8; 64];
    // SAFETY: `buffer` is live and as long as said.
    let result = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
        )
    };
    match result {
        -1 => match errno() {
            libc::EAGAIN => Timed::AsItWould,
            error => classify_failure(error, -1),
        },
        n => Timed::Other(format!("recv returned {n}")),
    }
}

fn classify_failure(errno: i32, result: i64) -> Timed {
    match errno {
        libc::EINTR => Timed::Interrupted,
        other => Timed::Other(format!("{result}, {}", errno_name(other))),
    }
}

/// What a loop counted.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    interrupted: AtomicU64,
    /// Of those, the calls that failed only after their whole timeout had
    /// passed (woken by the timer, interrupted before they returned).
    interrupted_after_timeout: AtomicU64,
    other: Mutex<Vec<String>>,
}

/// Four threads loop on 2 ms timed calls, each inside an activity (so that
/// every tick samples it), through 10 s of profiling at 1 kHz. A thread
/// blocked when it is sampled is read from outside and never interrupted;
/// the one race the design leaves (a thread seen running enters its call
/// as the signal arrives) must stay rare: at most 1% of calls fail with
/// `EINTR` (the bench measures the rate: about 0.7 per 1,000 calls). A
/// thread that `/proc` shows as "running" may still be inside a system call
/// (woken by its timer and not yet returned), so one seen blocked before is
/// watched until it blocks again, and not signalled while it waits for a
/// CPU; before that rule, poll failed 5-7% of its calls, most of them after
/// their whole timeout.
#[test]
fn profiling_at_1khz_interrupts_no_blocked_call() {
    let _serial = one_at_a_time();
    let Monitor {
        register, control, ..
    } = builder().start().unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let loops = [Loop::Nanosleep, Loop::Poll, Loop::EpollWait, Loop::Recv];
    let (started, has_started) = mpsc::channel();
    let workers: Vec<_> = loops
        .iter()
        .map(|&kind| {
            let register = register.clone();
            let running = running.clone();
            let started = started.clone();
            let tally = Arc::new(Tally::default());
            let counted = tally.clone();
            let thread = thread::Builder::new()
                .name(kind.name().to_owned())
                .spawn(move || {
                    let handle = register
                        .register_component(
                            ComponentId::new(kind.name(), 1),
                            Timeouts::new(ms(5000), ms(30_000)),
                            None,
                        )
                        .unwrap();
                    let (read_end, _write_end) = pipe();
                    let epoll = empty_epoll();
                    let socket = silent_udp_socket(TIMED);
                    started.send(()).unwrap();
                    while running.load(Ordering::Relaxed) {
                        // Active while it waits, so that every tick samples it.
                        let _busy = handle.activity("timed call");
                        let called = Instant::now();
                        let result = match kind {
                            Loop::Nanosleep => timed_nanosleep(),
                            Loop::Poll => timed_poll(&read_end),
                            Loop::EpollWait => timed_epoll_wait(&epoll),
                            Loop::Recv => timed_recv(&socket),
                        };
                        counted.calls.fetch_add(1, Ordering::Relaxed);
                        match result {
                            Timed::AsItWould => {}
                            Timed::Interrupted => {
                                counted.interrupted.fetch_add(1, Ordering::Relaxed);
                                if called.elapsed() >= TIMED {
                                    counted
                                        .interrupted_after_timeout
                                        .fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Timed::Other(what) => counted.other.lock().unwrap().push(what),
                        }
                    }
                })
                .unwrap();
            (kind, tally, thread)
        })
        .collect();
    for _ in &loops {
        has_started.recv().unwrap();
    }

    control.start_profiling(at_1khz()).unwrap();
    thread::sleep(Duration::from_secs(10));
    let profile = control.stop_profiling().unwrap();
    running.store(false, Ordering::Relaxed);

    let (mut calls, mut interrupted) = (0, 0);
    let mut failures = Vec::new();
    for (kind, tally, thread) in workers {
        thread.join().unwrap();
        let samples = samples_of(&profile, kind.name());
        let kind_calls = tally.calls.load(Ordering::Relaxed);
        let kind_interrupted = tally.interrupted.load(Ordering::Relaxed);
        let late = tally.interrupted_after_timeout.load(Ordering::Relaxed);
        let other = tally.other.lock().unwrap();
        eprintln!(
            "{:<15} {kind_calls:>6} calls, {kind_interrupted:>4} EINTR ({:.3}%; {late} after the \
             whole timeout), {} other, {samples:>6} samples",
            kind.name(),
            kind_interrupted as f64 * 100.0 / kind_calls.max(1) as f64,
            other.len(),
        );
        calls += kind_calls;
        interrupted += kind_interrupted;
        if samples < 100 {
            failures.push(format!("{}: only {samples} samples", kind.name()));
        }
        if !other.is_empty() {
            failures.push(format!(
                "{}: unexpected results {:?}",
                kind.name(),
                &other[..other.len().min(5)]
            ));
        }
        // The one race the design leaves: a thread seen running enters its
        // call as the signal arrives. Blocked threads are never signalled.
        if kind_interrupted * 100 > kind_calls {
            failures.push(format!(
                "{}: {kind_interrupted} of {kind_calls} calls failed with EINTR",
                kind.name()
            ));
        }
    }
    eprintln!(
        "all: {calls} calls, {interrupted} EINTR ({:.3}%), profile of {:?}, {} dropped samples",
        interrupted as f64 * 100.0 / calls.max(1) as f64,
        profile.duration,
        profile.dropped_samples
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------
// 3. Alternate stacks of every size survive sampling
// ---------------------------------------------------------------------------

/// What the handler needs on an alternate stack, as hangwatch reckons it:
/// the kernel's signal frame and 2 KiB for itself.
fn handler_needs() -> usize {
    // SAFETY: `getauxval` only reads the auxiliary vector.
    let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let frame = if frame == 0 { libc::MINSIGSTKSZ } else { frame };
    frame + 2048
}

/// A thread's alternate signal stack, as `sigaltstack` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AltStack {
    start: usize,
    size: usize,
    disabled: bool,
}

fn current_alt_stack() -> AltStack {
    let mut current = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    // SAFETY: a null new stack only reads the current one, into `current`,
    // a valid `stack_t` of ours.
    let read = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    assert_eq!(read, 0);
    AltStack {
        start: current.ss_sp as usize,
        size: current.ss_size,
        disabled: current.ss_flags & libc::SS_DISABLE != 0,
    }
}

fn set_alt_stack(start: *mut u8, size: usize, flags: libc::c_int) -> io::Result<()> {
    let stack = libc::stack_t {
        ss_sp: start.cast(),
        ss_flags: flags,
        ss_size: size,
    };
    // SAFETY: the caller keeps the memory alive while it is the thread's
    // alternate stack.
    if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes around a program's alternate stack, and what fills it.
const CANARY: u8 = 0xc3;
const CANARY_LEN: usize = 4096;
const FILL: u8 = 0x5a;

/// A heap buffer: a canary, an alternate stack of `size` bytes, a canary.
fn alt_stack_buffer(size: usize) -> Vec<u8> {
    let mut buffer = vec![FILL; CANARY_LEN + size + CANARY_LEN];
    buffer[..CANARY_LEN].fill(CANARY);
    buffer[CANARY_LEN + size..].fill(CANARY);
    buffer
}

/// How such a buffer stands: canaries intact, and how many bytes at the top
/// of the stack part no longer hold the fill.
fn inspect(buffer: &[u8], size: usize) -> (bool, usize) {
    let canaries = buffer[..CANARY_LEN].iter().all(|&b| b == CANARY)
        && buffer[CANARY_LEN + size..].iter().all(|&b| b == CANARY);
    let stack = &buffer[CANARY_LEN..CANARY_LEN + size];
    let untouched = stack.iter().take_while(|&&b| b == FILL).count();
    (canaries, size - untouched)
}

/// The heap a spinning thread keeps and re-verifies.
struct Checksum {
    bytes: Vec<u8>,
    expected: u64,
}

impl Checksum {
    fn new() -> Checksum {
        let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 + 3) as u8).collect();
        let expected = sum(&bytes);
        Checksum { bytes, expected }
    }

    fn holds(&self) -> bool {
        sum(&self.bytes) == self.expected
    }
}

/// Small enough a frame for the edge of a stack.
#[inline(never)]
fn sum(bytes: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut i = 0;
    while i < bytes.len() {
        total = total.wrapping_mul(31).wrapping_add(bytes[i] as u64);
        i += 1;
    }
    total
}

/// What a spinning thread counts.
#[derive(Default)]
struct Spins {
    rounds: AtomicU64,
    checks: AtomicU64,
    bad_checks: AtomicU64,
}

/// Stack left (bytes) under which the deep thread stops recursing.
const EDGE: usize = 2048;

#[derive(Clone, Copy, Debug)]
enum Alt {
    /// The program's own alternate stack of this many bytes.
    Own(usize),
    /// No alternate stack, hung deep in recursion.
    NoneAtTheEdge,
}

impl Alt {
    fn component(self) -> String {
        match self {
            Alt::Own(size) => format!("alt-{size}"),
            Alt::NoneAtTheEdge => "no-alt-at-the-edge".to_owned(),
        }
    }
}

/// What a thread of the third test saw.
#[derive(Debug)]
struct AltReport {
    alt: Alt,
    /// The kernel would not take an alternate stack of this size (aarch64's
    /// MINSIGSTKSZ is 5 KiB): the case does not apply.
    refused: Option<String>,
    after_register: AltStack,
    after_unregister: AltStack,
    /// The program's buffer, kept alive past the thread, and its stack size.
    buffer: Option<(Vec<u8>, usize)>,
    /// The buffer as it stood on the thread right after unregistering.
    canaries_after_unregister: bool,
    used_after_unregister: usize,
    /// Stack left at the spin, for the deep thread.
    remaining_at_edge: Option<usize>,
    depth: Option<u32>,
    checks: u64,
    bad_checks: u64,
    rounds: u64,
}

/// Spins inside the activity until `stop`, re-verifying its heap.
#[inline(never)]
fn spin_beside_an_alternate_stack(stop: &AtomicBool, heap: &Checksum, spins: &Spins) {
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1_000 {
            spins.rounds.fetch_add(1, Ordering::Relaxed);
        }
        spins.checks.fetch_add(1, Ordering::Relaxed);
        if !heap.holds() {
            spins.bad_checks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where the deep thread stands.
struct Edge<'a> {
    low: usize,
    stop: &'a AtomicBool,
    heap: &'a Checksum,
    spins: &'a Spins,
    remaining: AtomicUsize,
    depth: AtomicU32,
}

#[inline(never)]
fn recurse_to_the_edge_of_the_stack(depth: u32, edge: &Edge<'_>) -> u32 {
    let pad = black_box([depth as u8; 64]);
    let here = black_box(&pad) as *const [u8; 64] as usize;
    let deepest = if here.saturating_sub(edge.low) < EDGE {
        spin_at_the_edge_of_the_stack(depth, edge)
    } else {
        recurse_to_the_edge_of_the_stack(depth + 1, edge)
    };
    black_box(&pad);
    deepest
}

#[inline(never)]
fn spin_at_the_edge_of_the_stack(depth: u32, edge: &Edge<'_>) -> u32 {
    let local = black_box(0u8);
    let remaining = (&local as *const u8 as usize).saturating_sub(edge.low);
    edge.remaining.store(remaining, Ordering::Relaxed);
    edge.depth.store(depth, Ordering::Relaxed);
    if remaining >= EDGE {
        // Not deep enough (it cannot be: this frame lies below the
        // caller's): say so rather than spin.
        return depth;
    }
    while !edge.stop.load(Ordering::Relaxed) {
        for _ in 0..1_000 {
            edge.spins.rounds.fetch_add(1, Ordering::Relaxed);
        }
        edge.spins.checks.fetch_add(1, Ordering::Relaxed);
        if !edge.heap.holds() {
            edge.spins.bad_checks.fetch_add(1, Ordering::Relaxed);
        }
    }
    black_box(local);
    depth
}

/// The calling thread's lowest usable stack address.
fn stack_low() -> usize {
    let mut attributes = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `pthread_getattr_np` initializes `attributes` on success, and
    // it is destroyed once.
    unsafe {
        assert_eq!(
            libc::pthread_getattr_np(libc::pthread_self(), attributes.as_mut_ptr()),
            0
        );
        let (mut low, mut size) = (std::ptr::null_mut(), 0);
        assert_eq!(
            libc::pthread_attr_getstack(attributes.as_ptr(), &mut low, &mut size),
            0
        );
        libc::pthread_attr_destroy(attributes.as_mut_ptr());
        low as usize
    }
}

fn alt_stack_thread(
    alt: Alt,
    register: hangwatch::Register,
    ready: mpsc::Sender<Option<String>>,
    go: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> AltReport {
    let mut buffer = None;
    let refused = match alt {
        Alt::Own(size) => {
            let mut memory = alt_stack_buffer(size);
            let start = memory[CANARY_LEN..].as_mut_ptr();
            let result = set_alt_stack(start, size, 0);
            buffer = Some((memory, size));
            match result {
                Ok(()) => {
                    assert_eq!(current_alt_stack().start, start as usize);
                    None
                }
                Err(error) => Some(format!("sigaltstack({size}): {error}")),
            }
        }
        Alt::NoneAtTheEdge => {
            set_alt_stack(std::ptr::null_mut(), 0, libc::SS_DISABLE).unwrap();
            assert!(current_alt_stack().disabled);
            None
        }
    };
    let mut report = AltReport {
        alt,
        refused: refused.clone(),
        after_register: current_alt_stack(),
        after_unregister: current_alt_stack(),
        buffer: None,
        canaries_after_unregister: true,
        used_after_unregister: 0,
        remaining_at_edge: None,
        depth: None,
        checks: 0,
        bad_checks: 0,
        rounds: 0,
    };
    if refused.is_some() {
        ready.send(refused).unwrap();
        report.buffer = buffer;
        return report;
    }

    let handle = register
        .register_component(
            ComponentId::new(alt.component(), 1),
            Timeouts::new(ms(200), ms(600)),
            None,
        )
        .unwrap();
    report.after_register = current_alt_stack();
    let heap = Checksum::new();
    let spins = Spins::default();
    ready.send(None).unwrap();
    while !go.load(Ordering::Acquire) {
        thread::yield_now();
    }
    {
        let _busy = handle.activity("spin");
        match alt {
            Alt::Own(_) => spin_beside_an_alternate_stack(&stop, &heap, &spins),
            Alt::NoneAtTheEdge => {
                let edge = Edge {
                    low: stack_low(),
                    stop: &stop,
                    heap: &heap,
                    spins: &spins,
                    remaining: AtomicUsize::new(0),
                    depth: AtomicU32::new(0),
                };
                recurse_to_the_edge_of_the_stack(0, &edge);
                report.remaining_at_edge = Some(edge.remaining.load(Ordering::Relaxed));
                report.depth = Some(edge.depth.load(Ordering::Relaxed));
            }
        }
    }
    drop(handle);
    report.after_unregister = current_alt_stack();
    if let Some((memory, size)) = &buffer {
        let (canaries, used) = inspect(memory, *size);
        report.canaries_after_unregister = canaries;
        report.used_after_unregister = used;
    }
    if !heap.holds() {
        spins.bad_checks.fetch_add(1, Ordering::Relaxed);
    }
    report.checks = spins.checks.load(Ordering::Relaxed);
    report.bad_checks = spins.bad_checks.load(Ordering::Relaxed);
    report.rounds = spins.rounds.load(Ordering::Relaxed);
    report.buffer = buffer;
    report
}

#[test]
fn alternate_stacks_of_every_size_survive_sampling() {
    let _serial = one_at_a_time();
    let need = handler_needs();
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = builder()
        .capture_timeout(Duration::from_secs(1))
        .start()
        .unwrap();
    let cases = [
        Alt::Own(2048),
        Alt::Own(3000),
        Alt::Own(3300),
        Alt::Own(8192),
        Alt::NoneAtTheEdge,
    ];
    let go = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut applies = Vec::new();
    for alt in cases {
        let (ready, is_ready) = mpsc::channel();
        let (register, go, stop) = (register.clone(), go.clone(), stop.clone());
        let mut builder = thread::Builder::new().name(alt.component());
        if let Alt::NoneAtTheEdge = alt {
            builder = builder.stack_size(256 * 1024);
        }
        threads.push(
            builder
                .spawn(move || alt_stack_thread(alt, register, ready, go, stop))
                .unwrap(),
        );
        match is_ready.recv().unwrap() {
            None => applies.push(alt),
            Some(refused) => eprintln!("{}: does not apply here: {refused}", alt.component()),
        }
    }

    // The threads spin in their activity (running: the signal path), hang
    // past their permanent timeout meanwhile, and are profiled at 1 kHz.
    control.start_profiling(at_1khz()).unwrap();
    let window = Instant::now();
    go.store(true, Ordering::Release);
    let mut seen = Vec::new();
    let mut permanents = HashMap::new();
    for alt in &applies {
        let name = alt.component();
        let permanent = await_alert(&alerts, &mut seen, &name, "permanent alert", |a| {
            a.kind == AlertKind::Permanent
        });
        permanents.insert(name, permanent);
    }
    thread::sleep(Duration::from_secs(2).saturating_sub(window.elapsed()));
    let profile = control.stop_profiling().unwrap();
    stop.store(true, Ordering::Relaxed);
    for alt in &applies {
        await_alert(&alerts, &mut seen, &alt.component(), "ended alert", |a| {
            a.kind
                == AlertKind::Ended {
                    worst: HangLevel::Permanent,
                }
        });
    }
    // The test process is still here: nobody crashed.
    let reports: Vec<AltReport> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let mut failures = Vec::new();
    for report in &reports {
        let name = report.alt.component();
        if report.refused.is_some() {
            continue;
        }
        let permanent = &permanents[&name];
        let samples = samples_of(&profile, &name);
        eprintln!(
            "{name:<19} alt stack after register {:?}, after unregister {:?}; {} checks ({} bad), \
             {} spins; {samples} samples; permanent: {}; edge: {:?} left at depth {:?}; \
             buffer: canaries {}, {} bytes used (handler needs {need})",
            report.after_register,
            report.after_unregister,
            report.checks,
            report.bad_checks,
            report.rounds,
            match (&permanent.stack, &permanent.no_stack) {
                (Some(stack), _) => format!(
                    "stack of {} frames by {:?}{}",
                    stack.frames.len(),
                    stack.capture,
                    if stack.truncated { ", truncated" } else { "" }
                ),
                (None, Some(why)) => format!("no stack: {why}"),
                (None, None) => "neither stack nor reason".to_owned(),
            },
            report.remaining_at_edge,
            report.depth,
            report.canaries_after_unregister,
            report.used_after_unregister,
        );
        let mut fail = |what: String| failures.push(format!("{name}: {what}"));
        if report.bad_checks > 0 || report.checks == 0 {
            fail(format!(
                "heap checksum: {} of {} checks bad",
                report.bad_checks, report.checks
            ));
        }
        if permanent.stack.is_none() && permanent.no_stack.is_none() {
            fail(format!(
                "a permanent alert with neither stack nor reason: {permanent}"
            ));
        }
        if samples == 0 && permanent.no_stack.is_none() {
            fail("no profile samples, and no reason known".to_owned());
        }
        // Every thread registered with an alternate stack the handler fits on.
        let registered = report.after_register;
        if registered.disabled || registered.size < need {
            fail(format!(
                "registered with an alternate stack too small: {registered:?}"
            ));
        }
        match report.alt {
            Alt::NoneAtTheEdge => {
                if !report.after_unregister.disabled {
                    fail(format!(
                        "no alternate stack was put back: {:?}",
                        report.after_unregister
                    ));
                }
                match report.remaining_at_edge {
                    Some(left) if left < EDGE => {}
                    other => fail(format!(
                        "did not hang within {EDGE} bytes of the end: {other:?}"
                    )),
                }
            }
            Alt::Own(size) => {
                let (memory, _) = report.buffer.as_ref().unwrap();
                let own = memory.as_ptr() as usize + CANARY_LEN;
                let (canaries, used) = inspect(memory, size);
                if !canaries || !report.canaries_after_unregister {
                    fail(
                        "the canaries around the program's alternate stack were written".to_owned(),
                    );
                }
                if size < need {
                    // Ours replaced it, and stays: the program's buffer is
                    // never written.
                    if registered.start == own {
                        fail("the too-small stack was kept".to_owned());
                    }
                    if report.after_unregister.start == own {
                        fail(
                            "the too-small stack was put back while signals could arrive"
                                .to_owned(),
                        );
                    }
                    if used != 0 || report.used_after_unregister != 0 {
                        fail(format!(
                            "the program's too-small stack was written: {used} bytes"
                        ));
                    }
                } else {
                    if registered.start != own || report.after_unregister.start != own {
                        fail("a big enough stack was not left alone".to_owned());
                    }
                    if used > need {
                        fail(format!(
                            "the handler used {used} bytes, more than the {need} reckoned"
                        ));
                    }
                }
            }
        }
    }
    eprintln!(
        "profile of {:?}: {} dropped samples",
        profile.duration, profile.dropped_samples
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------
// 4. A thread that consumes our signals is sampled again
// ---------------------------------------------------------------------------

const CONSUME: u32 = 0;
const BLOCKED_HANG: u32 = 1;
const UNBLOCKED_WORK: u32 = 2;
const UNBLOCKED_HANG: u32 = 3;
const STOP: u32 = 4;

/// What the consuming thread counted.
#[derive(Debug, Default)]
struct Consumed {
    ours: u64,
    others: u64,
    timeouts: u64,
    failures: Vec<String>,
    waits: u64,
}

/// Waits at most 1 ms for any signal.
#[inline(never)]
fn consume_signals(all: &libc::sigset_t, ours: i32, consumed: &mut Consumed) {
    let timeout = timespec(ms(1));
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::uninit();
    // SAFETY: live set, info and timeout.
    let result = unsafe { libc::sigtimedwait(all, info.as_mut_ptr(), &timeout) };
    consumed.waits += 1;
    match result {
        -1 => match errno() {
            libc::EAGAIN => consumed.timeouts += 1,
            other => consumed.failures.push(errno_name(other)),
        },
        signal if signal == ours => consumed.ours += 1,
        _ => consumed.others += 1,
    }
}

#[inline(never)]
fn spin_with_every_signal_blocked(mode: &AtomicU32) {
    while mode.load(Ordering::Relaxed) == BLOCKED_HANG {
        spin_for(ms(1));
    }
}

#[inline(never)]
fn spin_with_signals_unblocked(mode: &AtomicU32) {
    while mode.load(Ordering::Relaxed) == UNBLOCKED_HANG {
        spin_for(ms(1));
    }
}

#[test]
fn a_thread_that_consumes_our_signals_is_sampled_again() {
    let _serial = one_at_a_time();
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = builder()
        .stack_on_transient(true)
        .capture_timeout(ms(200))
        .start()
        .unwrap();
    let ours = SampleSignal::default().raw();
    let mode = Arc::new(AtomicU32::new(CONSUME));
    let worked = Arc::new(AtomicU64::new(0));
    let (ready, is_ready) = mpsc::channel();
    let name = "consumer";
    let thread = {
        let (mode, worked) = (mode.clone(), worked.clone());
        thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let handle = register
                    .register_component(
                        ComponentId::new(name, 1),
                        Timeouts::new(ms(200), ms(600)),
                        None,
                    )
                    .unwrap();
                // SAFETY: plain signal-mask calls on sets we own.
                let (all, old) = unsafe {
                    let mut all = std::mem::zeroed::<libc::sigset_t>();
                    let mut old = std::mem::zeroed::<libc::sigset_t>();
                    libc::sigfillset(&mut all);
                    assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old), 0);
                    (all, old)
                };
                ready.send(()).unwrap();
                let mut consumed = Consumed::default();
                let mut unblocked = false;
                loop {
                    match mode.load(Ordering::Relaxed) {
                        CONSUME => {
                            let _busy = handle.activity("consume signals");
                            spin_for(ms(1));
                            consume_signals(&all, ours, &mut consumed);
                        }
                        BLOCKED_HANG => {
                            let _busy = handle.activity("spin with every signal blocked");
                            spin_with_every_signal_blocked(&mode);
                        }
                        UNBLOCKED_WORK => {
                            if !unblocked {
                                // SAFETY: puts back the mask the thread had.
                                let result = unsafe {
                                    libc::pthread_sigmask(
                                        libc::SIG_SETMASK,
                                        &old,
                                        std::ptr::null_mut(),
                                    )
                                };
                                assert_eq!(result, 0);
                                unblocked = true;
                            }
                            let _busy = handle.activity("work");
                            spin_for(ms(1));
                            worked.fetch_add(1, Ordering::Relaxed);
                        }
                        UNBLOCKED_HANG => {
                            let _busy = handle.activity("spin with signals unblocked");
                            spin_with_signals_unblocked(&mode);
                        }
                        _ => break,
                    }
                }
                consumed
            })
            .unwrap()
    };
    is_ready.recv().unwrap();
    let mut seen = Vec::new();

    // It consumes whatever it is sent, ours included.
    control.start_profiling(at_1khz()).unwrap();
    thread::sleep(Duration::from_secs(1));
    let consuming = control.stop_profiling().unwrap();

    // It stops consuming, signals still blocked: its captures say so, at
    // once (the first may time out, on a signal it never takes).
    mode.store(BLOCKED_HANG, Ordering::Relaxed);
    let hung = Instant::now();
    let transient = await_alert(&alerts, &mut seen, name, "transient alert", |a| {
        a.kind == AlertKind::Transient
            && a.annotation.as_deref() == Some("spin with every signal blocked")
    });
    let permanent = await_alert(&alerts, &mut seen, name, "permanent alert", |a| {
        a.kind == AlertKind::Permanent
    });
    let blocked_for = hung.elapsed();

    // Signals let through: sampled again, by profiling and on a hang.
    mode.store(UNBLOCKED_WORK, Ordering::Relaxed);
    await_alert(&alerts, &mut seen, name, "ended alert", |a| {
        matches!(a.kind, AlertKind::Ended { .. })
    });
    eventually(
        GENEROUS,
        "the thread to work (20 rounds)",
        || worked.load(Ordering::Relaxed),
        |&rounds| rounds >= 20,
    );
    control.start_profiling(at_1khz()).unwrap();
    thread::sleep(Duration::from_secs(1));
    let unblocked = control.stop_profiling().unwrap();
    mode.store(UNBLOCKED_HANG, Ordering::Relaxed);
    let late = await_alert(&alerts, &mut seen, name, "permanent alert", |a| {
        a.kind == AlertKind::Permanent
            && a.annotation.as_deref() == Some("spin with signals unblocked")
    });
    mode.store(STOP, Ordering::Relaxed);
    await_alert(&alerts, &mut seen, name, "ended alert", |a| {
        matches!(a.kind, AlertKind::Ended { .. })
    });
    let consumed = thread.join().unwrap();

    let describe = |alert: &Alert| match (&alert.stack, &alert.no_stack) {
        (Some(stack), _) => format!(
            "stack by {:?}, {} frames",
            stack.capture,
            stack.frames.len()
        ),
        (None, Some(why)) => format!("no stack: {why:?}"),
        (None, None) => "nothing".to_owned(),
    };
    eprintln!(
        "consuming: {} samples in {:?} ({} dropped); {consumed:?}",
        samples_of(&consuming, name),
        consuming.duration,
        consuming.dropped_samples
    );
    eprintln!(
        "blocked: transient {}, permanent {} (after {blocked_for:?}); other alerts: {:?}",
        describe(&transient),
        describe(&permanent),
        seen.iter().map(|a| a.kind).collect::<Vec<_>>()
    );
    eprintln!(
        "unblocked: {} samples in {:?} ({} dropped); late hang: {}",
        samples_of(&unblocked, name),
        unblocked.duration,
        unblocked.dropped_samples,
        describe(&late)
    );

    assert!(consumed.failures.is_empty(), "{:?}", consumed.failures);
    assert!(
        matches!(
            transient.no_stack,
            Some(NoStack::Timeout | NoStack::SignalBlocked)
        ) || transient
            .stack
            .as_ref()
            .is_some_and(|s| s.capture == Some(CaptureMethod::Blocked)),
        "{transient}"
    );
    assert_eq!(
        permanent.no_stack,
        Some(NoStack::SignalBlocked),
        "{permanent}"
    );
    assert!(
        samples_of(&unblocked, name) >= 10,
        "only {} samples once signals were let through",
        samples_of(&unblocked, name)
    );
    let stack = late
        .stack
        .as_ref()
        .unwrap_or_else(|| panic!("no stack once signals were let through: {late}"));
    assert!(names(stack, "spin_with_signals_unblocked"), "{stack}");
}
