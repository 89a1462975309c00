//! What the monitor's thread and its process did between two looks, from
//! the kernel's own accounting: the evidence the pause rule (`pauses.rs`)
//! weighs before it calls a late look a pause.
//!
//! - `/proc/thread-self/schedstat`: the monitor thread's time on a CPU and
//!   its time *waiting for* one on a run queue. A monitor that looks late
//!   because other threads had the CPU was runnable all along: that is
//!   starvation, not a stop, and the hang it then finds is real.
//! - `/proc/self/stat`: the whole process's CPU time. A process that kept
//!   running while the monitor's thread alone was held up (an exit signal
//!   that blocks) was not stopped either.
//!
//! Both files are opened once, on the monitor's thread, and read again at
//! offset zero at each look into a buffer on the stack: a look allocates
//! nothing. Where they cannot be read (not Linux, no `/proc`, a kernel
//! without scheduler statistics) the evidence is missing, and the pause rule
//! judges by lateness alone, as it would without it.

use std::fs::File;
use std::time::Duration;

/// The kernel's accounting at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunTimes {
    /// The monitor thread's time on a CPU and waiting for one, together.
    pub(crate) thread_runnable: Duration,
    /// CPU time of every thread of the process.
    pub(crate) process_cpu: Duration,
}

/// The files the accounting is read from.
pub(crate) struct RunTimeSource {
    thread: Option<File>,
    process: Option<File>,
    /// Clock ticks per second, the unit of `/proc/self/stat`.
    ticks_per_second: u64,
}

impl RunTimeSource {
    /// Opens the files. Call it on the monitor's thread: `thread-self` is the
    /// thread that opens it.
    pub(crate) fn open() -> RunTimeSource {
        RunTimeSource {
            thread: File::open("/proc/thread-self/schedstat").ok(),
            process: File::open("/proc/self/stat").ok(),
            // USER_HZ, the unit of utime and stime, is 100 on every Linux
            // architecture hangwatch runs on.
            ticks_per_second: 100,
        }
    }

    /// The accounting now, if both parts can be read.
    pub(crate) fn read(&self) -> Option<RunTimes> {
        let mut buffer = [0u8; 1024];
        let schedstat = read_at_start(self.thread.as_ref()?, &mut buffer)?;
        let thread_runnable = parse_schedstat(schedstat)?;
        let stat = read_at_start(self.process.as_ref()?, &mut buffer)?;
        let ticks = parse_process_ticks(stat)?;
        Some(RunTimes {
            thread_runnable,
            process_cpu: Duration::from_nanos(
                ticks.saturating_mul(1_000_000_000 / self.ticks_per_second),
            ),
        })
    }
}

#[cfg(unix)]
fn read_at_start<'a>(file: &File, buffer: &'a mut [u8]) -> Option<&'a [u8]> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(&buffer[..filled])
}

#[cfg(not(unix))]
fn read_at_start<'a>(_: &File, _: &'a mut [u8]) -> Option<&'a [u8]> {
    None
}

/// "exec_ns wait_ns timeslices": time on a CPU plus time waiting for one.
fn parse_schedstat(text: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(text).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let on_cpu: u64 = fields.next()?.parse().ok()?;
    let waiting: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_nanos(on_cpu.saturating_add(waiting)))
}

/// `utime + stime` of `/proc/self/stat`, in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_process_ticks(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags,
    // minflt, cminflt, majflt, cmajflt, utime (14), stime (15).
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user.saturating_add(system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_files_parse() {
        assert_eq!(
            parse_schedstat(b"100262152 8239774 193\n"),
            Some(Duration::from_nanos(108_501_926))
        );
        let stat = b"4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 6479 0 0 0 \
                     25 7 0 0 20 0 3 0 3503 5124096 937\n";
        assert_eq!(parse_process_ticks(stat), Some(32));
        assert_eq!(parse_process_ticks(b"1 (x) S 1 2"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_thread_and_process_are_read_again_and_again() {
        let source = RunTimeSource::open();
        let first = source.read().expect("Linux has both files");
        let until = std::time::Instant::now() + Duration::from_millis(30);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        let second = source.read().unwrap();
        assert!(second.thread_runnable >= first.thread_runnable + Duration::from_millis(20));
        assert!(second.process_cpu >= first.process_cpu);
    }
}
