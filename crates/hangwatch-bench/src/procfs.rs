//! What the kernel says about this process's threads, from /proc (Linux).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A thread of this process, found by name.
pub struct Thread {
    dir: PathBuf,
}

impl Thread {
    /// Finds this process's thread named `name`, waiting a little for a
    /// thread that is still starting (a thread names itself once it runs).
    pub fn named(name: &str) -> Option<Thread> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            for task in fs::read_dir("/proc/self/task").ok()?.flatten() {
                let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.trim_end() == name {
                    return Some(Thread { dir: task.path() });
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The thread's id, as `/proc/self/task` names it.
    pub fn tid(&self) -> Option<u32> {
        self.dir.file_name()?.to_str()?.parse().ok()
    }

    /// Voluntary and involuntary context switches so far: how often the
    /// thread went to sleep or was put off the CPU.
    pub fn context_switches(&self) -> u64 {
        let status = fs::read_to_string(self.dir.join("status")).unwrap_or_default();
        status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    /// Voluntary context switches so far: how often the thread went to
    /// sleep.
    pub fn voluntary_context_switches(&self) -> u64 {
        let status = fs::read_to_string(self.dir.join("status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("voluntary_ctxt_switches"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time used so far, from schedstat (nanoseconds) or, failing that,
    /// stat (clock ticks).
    pub fn cpu_time(&self) -> Duration {
        if let Some(ns) = fs::read_to_string(self.dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            return Duration::from_nanos(ns);
        }
        let stat = fs::read_to_string(self.dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; utime and stime are 14 and 15.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after_name
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }
}

/// How long a thread has waited on a run queue (runnable, not running) and
/// how many times it was put on a CPU, from a schedstat file's second and
/// third fields.
pub fn run_queue_wait(schedstat: &Path) -> Option<(Duration, u64)> {
    let text = fs::read_to_string(schedstat).ok()?;
    let mut fields = text.split_whitespace().skip(1);
    let wait = fields.next()?.parse().ok()?;
    let slices = fields.next()?.parse().ok()?;
    Some((Duration::from_nanos(wait), slices))
}

impl Thread {
    /// See [`run_queue_wait`].
    pub fn run_queue_wait(&self) -> Option<(Duration, u64)> {
        run_queue_wait(&self.dir.join("schedstat"))
    }
}

/// This process's resident set size, in MiB.
pub fn rss_mib() -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// This process's threads whose names start with `prefix`.
pub fn threads_starting_with(prefix: &str) -> Vec<Thread> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.starts_with(prefix))
        })
        .map(|task| Thread { dir: task.path() })
        .collect()
}

/// This process's resident anonymous memory (`RssAnon` of
/// `/proc/self/status`: heap, thread stacks, anonymous mappings; not the
/// pages of mapped files), in KiB.
pub fn rss_anon_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// The CPU time used so far by each thread of this process that is alive,
/// by thread id (see [`Thread::cpu_time`]).
pub fn cpu_time_by_thread() -> HashMap<u32, Duration> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let thread = Thread { dir: task.path() };
            Some((thread.tid()?, thread.cpu_time()))
        })
        .collect()
}
