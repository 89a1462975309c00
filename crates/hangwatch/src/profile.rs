//! Profiles: what profiling mode collected, as plain data.
//!
//! A [`Profile`] holds, for each component, the stacks its thread was
//! sampled in over the profiling window, and the hangs that happened during
//! it. Exporters (the `hangwatch-export` crate) turn it into a Firefox
//! Profiler profile, collapsed stacks or a flamegraph.
//!
//! A profile of many threads over many seconds repeats the same frames
//! millions of times, so samples do not hold frames: they hold numbers into
//! the profile's table of distinct [`Frames`], as the Firefox Profiler's own
//! format does.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::alert::HangLevel;
use crate::component::ComponentId;
use crate::stack::{Frame, Stack};

/// Samples of every monitored thread over one profiling window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// When the window began, by the wall clock.
    #[serde(with = "crate::alert::unix_millis")]
    pub start: SystemTime,
    /// How long it lasted.
    #[serde(with = "crate::alert::millis")]
    pub duration: Duration,
    /// The sampling interval asked for.
    #[serde(with = "crate::alert::millis")]
    pub interval: Duration,
    /// Every distinct frame of every sample.
    pub frames: Frames,
    /// One entry per component that was registered during the window.
    pub threads: Vec<ProfiledThread>,
    /// Samples dropped: older ones that fell out of the ring buffer, and
    /// ones that could not be taken or processed in time.
    pub dropped_samples: u64,
}

/// One component's samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfiledThread {
    /// The component.
    pub component: ComponentId,
    /// Its thread's name, if it has one.
    pub thread: Option<String>,
    /// Its thread's OS id.
    pub tid: u32,
    /// Its samples, oldest first.
    pub samples: Vec<ProfileSample>,
    /// The hangs it had during the window.
    pub hangs: Vec<HangMarker>,
}

/// One sample of a thread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileSample {
    /// When it was taken, from the start of the window.
    #[serde(with = "crate::alert::millis")]
    pub time: Duration,
    /// Where the thread was: numbers into [`Profile::frames`], innermost
    /// frame first.
    pub frames: Vec<u32>,
    /// The stack copy ended before the outermost frame.
    pub truncated: bool,
}

impl Profile {
    /// An empty profile of a window that began at `start`.
    pub fn new(start: SystemTime, interval: Duration) -> Profile {
        Profile {
            start,
            duration: Duration::ZERO,
            interval,
            frames: Frames::default(),
            threads: Vec::new(),
            dropped_samples: 0,
        }
    }

    /// The frames of `sample`, innermost first.
    pub fn frames_of<'a>(
        &'a self,
        sample: &'a ProfileSample,
    ) -> impl Iterator<Item = &'a Frame> + 'a {
        sample.frames.iter().filter_map(|&n| self.frames.get(n))
    }

    /// The stack of `sample`.
    pub fn stack_of(&self, sample: &ProfileSample) -> Stack {
        Stack {
            frames: self.frames_of(sample).cloned().collect(),
            truncated: sample.truncated,
            ..Stack::default()
        }
    }

    /// A sample of `stack` at `time`, its frames added to the table.
    pub fn sample(&mut self, time: Duration, stack: &Stack) -> ProfileSample {
        ProfileSample {
            time,
            frames: stack.frames.iter().map(|f| self.frames.intern(f)).collect(),
            truncated: stack.truncated,
        }
    }
}

/// A table of distinct frames, each known by its number.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Frame>", into = "Vec<Frame>")]
pub struct Frames {
    list: Vec<Frame>,
    numbers: HashMap<Frame, u32>,
}

impl Frames {
    /// The number of `frame`, added to the table if it is new.
    pub fn intern(&mut self, frame: &Frame) -> u32 {
        if let Some(&n) = self.numbers.get(frame) {
            return n;
        }
        let n = self.list.len() as u32;
        self.list.push(frame.clone());
        self.numbers.insert(frame.clone(), n);
        n
    }

    /// The frame numbered `n`.
    pub fn get(&self, n: u32) -> Option<&Frame> {
        self.list.get(n as usize)
    }

    /// How many distinct frames there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl PartialEq for Frames {
    fn eq(&self, other: &Frames) -> bool {
        self.list == other.list
    }
}

impl From<Vec<Frame>> for Frames {
    fn from(list: Vec<Frame>) -> Frames {
        let numbers = list
            .iter()
            .enumerate()
            .map(|(n, f)| (f.clone(), n as u32))
            .collect();
        Frames { list, numbers }
    }
}

impl From<Frames> for Vec<Frame> {
    fn from(frames: Frames) -> Vec<Frame> {
        frames.list
    }
}

/// A hang during the window, for markers on a timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HangMarker {
    /// When it started, from the start of the window (zero if before it).
    #[serde(with = "crate::alert::millis")]
    pub start: Duration,
    /// How long it lasted, or had lasted when the window closed.
    #[serde(with = "crate::alert::millis")]
    pub duration: Duration,
    /// The highest level it reached.
    pub level: HangLevel,
    /// What the component said it was doing.
    pub annotation: Option<String>,
    /// Whether it had ended when the window closed.
    pub ended: bool,
}
