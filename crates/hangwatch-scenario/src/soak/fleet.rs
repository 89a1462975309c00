//! The soak's child processes, every one it started: their roles, what
//! happened to them, and their figures.
//!
//! A role (`child-<index>`) always has exactly one live process: when the
//! soak kills one, it starts the next generation of the same role at once.
//! Dropping the fleet kills and reaps every child still running.
//!
//! Each process's figures are the last it gave: its monitor's stats
//! (refreshed every poll and just before it is killed), its notification
//! count (from its own lines), and its resident set size, read from
//! `/proc/<pid>/status` at every poll once it has warmed up
//! ([`Member::warm`]), so that its first reading is its start and its last
//! its end.

use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use hangwatch::Stats;

use crate::error::ScenarioError;
use crate::plan::Script;

/// How long after its start a child has injected a hang of each kind and
/// been through a profiling window.
pub const WARM_UP: Duration = Duration::from_secs(8);

/// One child process.
pub struct Member {
    /// What it runs.
    pub script: Script,
    /// Its process.
    pub pid: u32,
    /// Until it is reaped.
    process: Option<Child>,
    spawned: Instant,
    /// It connected to the hub.
    pub connected: bool,
    /// It said when its clock started.
    pub clock_started: bool,
    /// The soak killed it.
    pub killed: bool,
    /// `ProcessGone` events the hub sent about it.
    pub gone_reports: u32,
    /// It said goodbye.
    pub left: bool,
    /// It sent an alert whose stack names a function of this program: its
    /// symbol tables are loaded.
    pub symbolicated: bool,
    /// It gave a profile whose samples name functions of this program (a
    /// window open while a cold start keeps its stack workers busy may
    /// give an empty one).
    pub profiled: bool,
    /// Its monitor's last stats.
    pub stats: Option<Stats>,
    /// Its loops' notifications, as of its last line.
    pub notifications: u64,
    /// Resident set size in KiB: the first reading after warm-up, the latest,
    /// and how far apart they were taken.
    pub rss: Option<Rss>,
}

/// A process's memory, read twice or more.
#[derive(Clone, Copy, Debug)]
pub struct Rss {
    /// The first reading.
    pub start_kib: u64,
    /// The latest.
    pub end_kib: u64,
    first: Instant,
    /// How far apart they were taken.
    pub span: Duration,
}

impl Rss {
    /// How much it grew (or shrank) between them.
    pub fn growth_kib(&self) -> i64 {
        self.end_kib as i64 - self.start_kib as i64
    }
}

impl Member {
    /// `child-<index> (pid <pid>)`.
    pub fn name(&self) -> String {
        format!("child-{} (pid {})", self.script.index, self.pid)
    }

    /// Running, as far as the soak knows: neither killed nor gone nor left.
    pub fn live(&self) -> bool {
        !self.killed && self.gone_reports == 0 && !self.left
    }

    /// How long since it was started.
    pub fn age(&self) -> Duration {
        self.spawned.elapsed()
    }

    /// Its caches and buffers have grown to their working size: it has run
    /// [`WARM_UP`], symbolicated a hang's stack and given a symbolicated
    /// profile (the first symbolicated profile grows the symbol caches by a
    /// few MiB in a debug build; on a loaded machine it can come late).
    pub fn warm(&self) -> bool {
        self.age() >= WARM_UP && self.symbolicated && self.profiled
    }
}

/// Every child process the soak started, in the order it started them.
#[derive(Default)]
pub struct Fleet {
    /// Every child started, in order.
    pub members: Vec<Member>,
}

impl Fleet {
    /// Takes in `process`, just started with `script`.
    pub fn add(&mut self, script: Script, process: Child) -> &Member {
        let pid = process.id();
        self.members.push(Member {
            script,
            pid,
            process: Some(process),
            spawned: Instant::now(),
            connected: false,
            clock_started: false,
            killed: false,
            gone_reports: 0,
            left: false,
            symbolicated: false,
            profiled: false,
            stats: None,
            notifications: 0,
            rss: None,
        });
        &self.members[self.members.len() - 1]
    }

    /// The child of process `pid`.
    pub fn get(&mut self, pid: u32) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.pid == pid)
    }

    /// The children running, as far as the soak knows.
    pub fn live(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.live())
    }

    /// Kills process `pid` with SIGKILL and reaps it; returns when (none
    /// if it is not a process of the fleet not yet reaped).
    pub fn kill(&mut self, pid: u32) -> Result<Option<SystemTime>, ScenarioError> {
        let Some(member) = self.get(pid) else {
            return Ok(None);
        };
        let Some(process) = member.process.as_mut() else {
            return Ok(None);
        };
        let at = SystemTime::now();
        if let Err(source) = process.kill() {
            let name = member.name();
            return Err(ScenarioError::Kill { name, source });
        }
        let _ = process.wait();
        member.process = None;
        member.killed = true;
        Ok(Some(at))
    }

    /// Reads the memory of every live child that has warmed up.
    pub fn read_rss(&mut self) {
        for member in self.members.iter_mut().filter(|m| m.live() && m.warm()) {
            let Some(kib) = crate::procfs::status_kib(member.pid, "VmRSS") else {
                continue;
            };
            let now = Instant::now();
            let rss = member.rss.get_or_insert(Rss {
                start_kib: kib,
                end_kib: kib,
                first: now,
                span: Duration::ZERO,
            });
            rss.end_kib = kib;
            rss.span = now - rss.first;
        }
    }

    /// Waits up to `timeout` for every child not yet reaped to end, then
    /// kills what is left; returns the names of those it had to kill.
    pub fn reap(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut killed = Vec::new();
        for member in &mut self.members {
            let Some(process) = member.process.as_mut() else {
                continue;
            };
            loop {
                match process.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(None) => {
                        let _ = process.kill();
                        let _ = process.wait();
                        killed.push(member.name());
                        break;
                    }
                    Ok(Some(_)) | Err(_) => break,
                }
            }
            member.process = None;
        }
        killed
    }
}

/// A soak that ends early (on an error) leaves no child behind.
impl Drop for Fleet {
    fn drop(&mut self) {
        for process in self.members.iter_mut().filter_map(|m| m.process.as_mut()) {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}
