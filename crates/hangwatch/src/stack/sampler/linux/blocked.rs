//! Reading a thread that is blocked in the kernel, from outside, without a
//! signal.
//!
//! Most hangs are threads that wait in the kernel: for a lock (a futex), a
//! read, a sleep, a poll. Signalling such a thread is not harmless: a
//! handler that runs while a thread sits in a timed system call makes that
//! call fail with `EINTR` (the kernel never restarts timed calls after a
//! handler, whatever `SA_RESTART` says), so a monitor that signals blocked
//! threads changes the program it reports on. The kernel already holds what
//! we need instead:
//!
//! - `/proc/self/task/TID/syscall` gives a blocked thread's system call and
//!   arguments, its user stack pointer and its program counter, as saved
//!   when it entered the kernel ("running" for a thread on a CPU or ready
//!   to run; `-1` and the two registers for one blocked outside a system
//!   call, in a page fault). The kernel collects these with the thread held
//!   off the CPU and checks that it did not switch meanwhile.
//! - `process_vm_readv` on our own pid copies the stack from that stack
//!   pointer up; an unmapped page ends the copy instead of faulting.
//! - `/proc/self/task/TID/schedstat` (or, where the kernel has no scheduler
//!   statistics, the context-switch counts in `status`) says whether the
//!   thread ran: it is read before and after, and the sample is kept only
//!   if the thread did not run in between, so registers and copy describe
//!   one moment. Otherwise the read is tried again, a few times, and then
//!   the thread is left to the signal path, like a running one.
//!
//! "Running" is not "outside a system call": a thread woken inside one (its
//! timeout expired, its data came) is runnable, and so "running", until it
//! has been put on a CPU and returned; a handler run then makes a timed
//! call fail with `EINTR` just the same (poll checks for a pending signal
//! once more after its timeout). So `mod.rs` watches a thread seen blocked
//! at its previous capture until it blocks again, and signals it only once
//! the kernel's accounting ([`runs`]) shows it running.
//!
//! Only the stack pointer and program counter are known this way: the
//! frame pointer (and, on aarch64, the link register) stay in the kernel.
//! Code without frame pointers (Rust release builds, most distributions'
//! C libraries) unwinds from DWARF CFI with the stack pointer alone; a walk
//! that needs the frame pointer before any frame saved it ends there, and
//! the unwinder says so (`WalkEnd::MissingRegister`).
//!
//! Nothing here allocates: paths and file contents live on the stack, the
//! copy goes into a buffer the caller owns.

use std::io;

use super::sys;
use crate::stack::Registers;

/// What the thread was doing when it was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Blocked in the kernel: in system call `syscall` (`None`: outside a
    /// system call, in a page fault), stopped at `sp` and `pc`.
    Blocked {
        syscall: Option<u64>,
        sp: u64,
        pc: u64,
    },
    /// On a CPU, or ready to run on one: only the thread itself can tell
    /// where it is.
    Running,
}

/// Why a thread could not be read from outside.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The thread no longer exists.
    Gone,
    /// The kernel does not let us look (no `/proc`, an unexpected format, a
    /// refused read): the signal path is the only one.
    Unavailable,
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> ReadError {
        match error.raw_os_error() {
            Some(libc::ENOENT | libc::ESRCH) => ReadError::Gone,
            _ => ReadError::Unavailable,
        }
    }
}

/// A thread read while blocked.
#[derive(Debug)]
pub(super) struct Read {
    pub(super) registers: Registers,
    pub(super) syscall: Option<u64>,
    /// Bytes copied into the caller's buffer, from `registers.sp` up.
    pub(super) copied: usize,
    /// How many times the thread had been put on a CPU (see
    /// [`runs`]).
    pub(super) scheduled: u64,
}

/// How many times a read is tried when the thread keeps running during it.
const ATTEMPTS: usize = 3;

/// Reads thread `tid` if it is blocked: its registers, and its stack from
/// the stack pointer up into `buffer` (whose length bounds the copy) and no
/// further than `stack_high` when the stack pointer lies in
/// `[stack_low, stack_high)`. `Ok(None)` when it is running (or kept
/// running during every attempt): it must be signalled to be sampled.
pub(super) fn read(
    tid: u32,
    stack_low: usize,
    stack_high: usize,
    buffer: &mut [u8],
) -> Result<Option<Read>, ReadError> {
    // One cheap look first: a running thread, the common case of a busy one,
    // costs that alone.
    if state(tid)? == State::Running {
        return Ok(None);
    }
    for _ in 0..ATTEMPTS {
        let before = runs(tid)?;
        let State::Blocked { syscall, sp, pc } = state(tid)? else {
            return Ok(None);
        };
        let sp_at = sp as usize;
        let end = if (stack_low..stack_high).contains(&sp_at) {
            stack_high
        } else {
            // On another stack (a coroutine, a signal handler's): copy what
            // is mapped, up to the buffer's size.
            sp_at.saturating_add(buffer.len())
        };
        let length = end.saturating_sub(sp_at).min(buffer.len());
        let copied = sys::read_memory(sp_at, &mut buffer[..length])?;
        if runs(tid)? != before {
            continue;
        }
        return Ok(Some(Read {
            registers: Registers {
                ip: pc,
                sp,
                fp: 0,
                lr: 0,
            },
            syscall,
            copied,
            scheduled: before.count,
        }));
    }
    Ok(None)
}

/// What `/proc/self/task/TID/syscall` says.
pub(super) fn state(tid: u32) -> Result<State, ReadError> {
    let mut buffer = [0u8; 256];
    let line = sys::read_task_file(tid, "syscall", &mut buffer)?;
    parse_syscall_line(line).ok_or_else(unexpected)
}

/// Parses "running", "NR A0 A1 A2 A3 A4 A5 SP PC" or "-1 SP PC".
fn parse_syscall_line(line: &[u8]) -> Option<State> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    if text == "running" {
        return Some(State::Running);
    }
    let mut fields = text.split(' ');
    let number: i64 = fields.next()?.parse().ok()?;
    let mut rest = [0u64; 8];
    let mut count = 0;
    for field in fields {
        let value = u64::from_str_radix(field.strip_prefix("0x")?, 16).ok()?;
        *rest.get_mut(count)? = value;
        count += 1;
    }
    let (syscall, registers) = match (number, count) {
        (-1, 2) => (None, &rest[..2]),
        (n, 8) if n >= 0 => (Some(n as u64), &rest[6..8]),
        _ => return None,
    };
    Some(State::Blocked {
        syscall,
        sp: registers[0],
        pc: registers[1],
    })
}

/// What changes whenever the thread runs: a thread woken inside a system
/// call that has not been put on a CPU since it was last seen blocked is
/// still inside that call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Runs {
    /// Nanoseconds on a CPU (or voluntary context switches, from `status`).
    pub(super) time: u64,
    /// Times it was put on a CPU (or involuntary context switches).
    pub(super) count: u64,
}

/// Thread `tid`'s [`Runs`] now.
pub(super) fn runs(tid: u32) -> Result<Runs, ReadError> {
    let mut buffer = [0u8; 128];
    match sys::read_task_file(tid, "schedstat", &mut buffer) {
        Ok(line) => parse_schedstat(line).ok_or_else(unexpected),
        // A kernel without scheduler statistics has no such file: the
        // context-switch counts tell the same, at more cost.
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
            let mut buffer = [0u8; 4096];
            let status = sys::read_task_file(tid, "status", &mut buffer)?;
            let switches = |name| status_field(status, name).and_then(|v| v.parse::<u64>().ok());
            match (
                switches("voluntary_ctxt_switches"),
                switches("nonvoluntary_ctxt_switches"),
            ) {
                (Some(time), Some(count)) => Ok(Runs { time, count }),
                _ => Err(unexpected()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

fn parse_schedstat(line: &[u8]) -> Option<Runs> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let time = fields.next()?.parse().ok()?;
    let _waited = fields.next()?;
    let count = fields.next()?.parse().ok()?;
    Some(Runs { time, count })
}

/// A `/proc` file that does not read as this kernel's should.
fn unexpected() -> ReadError {
    ReadError::Unavailable
}

/// The value of `name:` in a `status` file.
fn status_field<'a>(status: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(status).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

/// Where a thread's copy of one signal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SignalState {
    /// The signal is pending on the thread.
    pub(super) pending: bool,
    /// The thread blocks it.
    pub(super) blocked: bool,
}

/// Whether `signal` is pending on thread `tid`, and whether it blocks it.
pub(super) fn signal_state(tid: u32, signal: i32) -> Result<SignalState, ReadError> {
    let mut buffer = [0u8; 4096];
    let status = sys::read_task_file(tid, "status", &mut buffer)?;
    let has = |name| {
        let mask = u64::from_str_radix(status_field(status, name)?, 16).ok()?;
        Some(mask >> (signal - 1) & 1 == 1)
    };
    match (has("SigPnd"), has("SigBlk")) {
        (Some(pending), Some(blocked)) => Ok(SignalState { pending, blocked }),
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines_parse() {
        assert_eq!(parse_syscall_line(b"running\n"), Some(State::Running));
        assert_eq!(
            parse_syscall_line(b"202 0x7f0 0x80 0x2 0x0 0x0 0x0 0x7ffc5e8a1b40 0x7f36a2c9e4cd\n"),
            Some(State::Blocked {
                syscall: Some(202),
                sp: 0x7ffc_5e8a_1b40,
                pc: 0x7f36_a2c9_e4cd
            })
        );
        assert_eq!(
            parse_syscall_line(b"-1 0x7ffc5e8a1b40 0x55d0c0de\n"),
            Some(State::Blocked {
                syscall: None,
                sp: 0x7ffc_5e8a_1b40,
                pc: 0x55d0_c0de
            })
        );
        for bad in [
            &b""[..],
            b"202 0x1",
            b"-1 0x1 0x2 0x3",
            b"x 0x1 0x2",
            b"202 1 2 3 4 5 6 7 8",
        ] {
            assert_eq!(parse_syscall_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn schedstat_and_status_parse() {
        assert_eq!(
            parse_schedstat(b"100262152 8239774 193\n"),
            Some(Runs {
                time: 100_262_152,
                count: 193
            })
        );
        assert_eq!(parse_schedstat(b"1 2"), None);
        let status = b"Name:\tx\nSigPnd:\t0000000000000000\nSigBlk:\t0000000200000000\n";
        assert_eq!(status_field(status, "SigBlk"), Some("0000000200000000"));
        assert_eq!(status_field(status, "Sig"), None);
    }

    #[test]
    fn this_process_reads_its_own_blocked_thread() {
        let (sender, receiver) = std::sync::mpsc::channel::<()>();
        let (tids, tid) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            tids.send(sys::gettid()).unwrap();
            let _ = receiver.recv();
        });
        let tid = tid.recv().unwrap();
        let mut buffer = vec![0u8; 64 * 1024];
        let read = loop {
            if let Some(read) = read(tid, 0, usize::MAX, &mut buffer).unwrap() {
                break read;
            }
            std::thread::yield_now();
        };
        assert!(read.syscall.is_some());
        assert!(read.copied > 0);
        assert_ne!(read.registers.ip, 0);
        drop(sender);
        thread.join().unwrap();
        assert!(matches!(state(tid), Err(ReadError::Gone)));
    }
}
