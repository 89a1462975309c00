//! Profiling mode: every registered component's thread sampled at a rate,
//! while hang checks go on.
//!
//! At each tick the monitor asks the capture thread for a small copy of each
//! component's stack (32 KiB by default) and goes on without waiting: a
//! thread blocked in the kernel is read from outside, a running one answers
//! in its signal handler, in parallel. The samples go to the stack workers
//! to be unwound, and the walked addresses that come back are kept in a ring
//! per thread holding at most `max_duration` worth of samples; older samples
//! fall out, and captures that fail (a thread that does not answer within
//! the capture timeout) are given up, both counted as dropped. A thread
//! still being asked is not asked again. A tick costs the monitor one queued
//! job per thread.
//!
//! A component that was waiting at its previous sample and has not notified
//! since is not interrupted again: its previous stack is repeated, as the
//! Gecko profiler does for sleeping threads. Waiting threads cost nothing.
//!
//! Samples hold addresses, not frames. Stopping sends the distinct addresses
//! of the whole profile to a worker, which symbolicates each one once; when
//! its answer arrives the monitor builds the [`Profile`] and replies. Hang
//! markers come from the `Ended` alerts raised during the window, and from
//! the hangs still under way when it closes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;

use crate::alert::{Alert, AlertKind};
use crate::cell;
use crate::clock::Clock;
use crate::component::ComponentId;
use crate::error::ProfilingError;
use crate::monitor::components::Components;
use crate::monitor::stacks::Stacks;
use crate::profile::{HangMarker, Profile, ProfileSample, ProfiledThread};
use crate::stack::Frame;

/// How to profile. See [`Control::start_profiling`](crate::Control::start_profiling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProfilingOptions {
    /// Samples per second of each thread (100 by default).
    pub rate_hz: u32,
    /// The longest span kept: older samples are dropped (30 s by default).
    #[serde(rename = "max_duration_ms", with = "crate::alert::millis")]
    pub max_duration: Duration,
    /// Bytes of stack copied per sample (32 KiB by default); deeper stacks
    /// are marked truncated.
    pub stack_bytes: usize,
}

impl Default for ProfilingOptions {
    fn default() -> ProfilingOptions {
        ProfilingOptions {
            rate_hz: 100,
            max_duration: Duration::from_secs(30),
            stack_bytes: 32 * 1024,
        }
    }
}

/// One thread's samples so far.
struct ThreadSamples {
    component: ComponentId,
    thread: Option<String>,
    tid: u32,
    samples: VecDeque<Walked>,
    /// The state word at the previous tick, to skip waiting threads.
    last_word: Option<u64>,
}

/// A sample, unwound but not symbolicated.
#[derive(Clone)]
struct Walked {
    /// Stamps since the window began.
    time: u64,
    addresses: Rc<[u64]>,
    truncated: bool,
}

/// A profile whose symbols are being looked up.
struct Stopping {
    job: u64,
    addresses: Vec<u64>,
    profile: Profile,
    /// Per thread (in `profile.threads` order), its samples.
    samples: Vec<Vec<Walked>>,
    reply: Sender<Result<Profile, ProfilingError>>,
}

pub(crate) struct Profiler {
    interval: u64,
    stack_bytes: usize,
    /// The span of samples kept, in stamps.
    keep: u64,
    options: ProfilingOptions,
    started: u64,
    started_wall: SystemTime,
    next_tick: u64,
    threads: HashMap<u64, ThreadSamples>,
    /// Thread keys in the order they were first seen.
    order: Vec<u64>,
    /// Samples being taken or unwound: job id to (thread key, time).
    in_flight: HashMap<u64, (u64, u64)>,
    /// The job in flight for each thread: not asked again meanwhile.
    asked: HashMap<u64, u64>,
    markers: HashMap<u64, Vec<HangMarker>>,
    dropped: u64,
    stopping: Option<Stopping>,
}

impl Profiler {
    pub(crate) fn start(options: ProfilingOptions, now: u64, clock: &Clock) -> Profiler {
        let interval = clock
            .to_stamps(Duration::from_secs(1) / options.rate_hz.max(1))
            .max(1);
        Profiler {
            interval,
            stack_bytes: options.stack_bytes,
            keep: clock.to_stamps(options.max_duration),
            options,
            started: now,
            started_wall: SystemTime::now(),
            next_tick: now,
            threads: HashMap::new(),
            order: Vec::new(),
            in_flight: HashMap::new(),
            asked: HashMap::new(),
            markers: HashMap::new(),
            dropped: 0,
            stopping: None,
        }
    }

    /// When the next tick is due, unless profiling is stopping.
    pub(crate) fn next_tick(&self) -> Option<u64> {
        self.stopping.is_none().then_some(self.next_tick)
    }

    /// Samples every component, if a tick is due.
    pub(crate) fn tick(&mut self, now: u64, components: &Components, stacks: &mut Stacks) {
        if self.stopping.is_some() || now < self.next_tick {
            return;
        }
        self.next_tick = tick_after(self.next_tick, self.interval, now);
        let time = now - self.started;
        for component in components.iter() {
            let Some(target) = component.sample_target() else {
                continue;
            };
            let key = component.key();
            if self.asked.contains_key(&key) {
                // Still being asked: asking again would only queue signals.
                continue;
            }
            let thread = self.threads.entry(key).or_insert_with(|| {
                self.order.push(key);
                ThreadSamples {
                    component: component.id.clone(),
                    thread: component.thread_name().map(str::to_owned),
                    tid: target.tid(),
                    samples: VecDeque::new(),
                    last_word: None,
                }
            });
            let word = component.state_word();
            let still_waiting = !cell::is_active(word) && thread.last_word == Some(word);
            thread.last_word = Some(word);
            if let (true, Some(last)) = (still_waiting, thread.samples.back()) {
                let repeat = Walked {
                    time,
                    ..last.clone()
                };
                push_bounded(&mut thread.samples, repeat, self.keep, &mut self.dropped);
                continue;
            }
            match stacks.capture_profile(target.clone(), self.stack_bytes) {
                Some(id) => {
                    self.in_flight.insert(id, (key, time));
                    self.asked.insert(key, id);
                }
                None => self.dropped += 1,
            }
        }
    }

    /// Takes in a walked sample. Returns false if the job is not ours.
    pub(crate) fn walked(&mut self, id: u64, addresses: Vec<u64>, truncated: bool) -> bool {
        let Some((key, time)) = self.answered(id) else {
            return false;
        };
        if let Some(thread) = self.threads.get_mut(&key) {
            let walked = Walked {
                time,
                addresses: addresses.into(),
                truncated,
            };
            push_bounded(&mut thread.samples, walked, self.keep, &mut self.dropped);
        }
        true
    }

    /// A sample that could not be taken. Returns false if the job is not ours.
    pub(crate) fn missing(&mut self, id: u64) -> bool {
        let ours = self.answered(id).is_some();
        if ours {
            self.dropped += 1;
        }
        ours
    }

    /// Forgets job `id`, returning its thread key and time if it was ours.
    fn answered(&mut self, id: u64) -> Option<(u64, u64)> {
        let (key, time) = self.in_flight.remove(&id)?;
        if self.asked.get(&key) == Some(&id) {
            self.asked.remove(&key);
        }
        Some((key, time))
    }

    /// Notes the `Ended` alerts raised since the last call, as hang markers.
    pub(crate) fn note_ended(&mut self, ended: Vec<(u64, Alert)>) {
        for (key, alert) in ended {
            let AlertKind::Ended { worst } = alert.kind else {
                continue;
            };
            let began = alert.time.checked_sub(alert.duration).unwrap_or(alert.time);
            self.markers.entry(key).or_default().push(HangMarker {
                start: began.duration_since(self.started_wall).unwrap_or_default(),
                duration: alert.duration,
                level: worst,
                annotation: alert.annotation.map(|a| a.into_owned()),
                ended: true,
            });
        }
    }

    /// Closes the window: adds the hangs still under way, and asks a worker
    /// for the symbols of every address. Returns the finished profile at
    /// once if there is nothing to look up or no worker can take it.
    pub(crate) fn stop(
        &mut self,
        now: u64,
        components: &Components,
        clock: &Clock,
        reply: Sender<Result<Profile, ProfilingError>>,
        stacks: &mut Stacks,
    ) -> Option<(Profile, Sender<Result<Profile, ProfilingError>>)> {
        for component in components.iter() {
            if let Some((start, level, annotation)) = component.ongoing_hang() {
                let from = start.max(self.started);
                self.markers
                    .entry(component.key())
                    .or_default()
                    .push(HangMarker {
                        start: clock.to_duration(from - self.started),
                        duration: clock.to_duration(now.saturating_sub(from)),
                        level,
                        annotation: Some(annotation.to_owned()),
                        ended: false,
                    });
            }
        }
        let mut profile = Profile::new(self.started_wall, self.interval_duration());
        profile.duration = clock.to_duration(now - self.started);
        profile.dropped_samples = self.dropped + self.in_flight.len() as u64;
        self.in_flight.clear();
        self.asked.clear();
        let mut samples = Vec::new();
        for key in &self.order {
            let Some(thread) = self.threads.remove(key) else {
                continue;
            };
            profile.threads.push(ProfiledThread {
                component: thread.component,
                thread: thread.thread,
                tid: thread.tid,
                samples: Vec::new(),
                hangs: self.markers.remove(key).unwrap_or_default(),
            });
            samples.push(thread.samples.into_iter().collect::<Vec<_>>());
        }
        let addresses: Vec<u64> = samples
            .iter()
            .flatten()
            .flat_map(|walked| walked.addresses.iter().copied())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        match stacks.symbolize(addresses.clone()) {
            Some(job) if !addresses.is_empty() => {
                self.stopping = Some(Stopping {
                    job,
                    addresses,
                    profile,
                    samples,
                    reply,
                });
                None
            }
            // Nothing to look up, or no worker free: raw addresses it is.
            _ => {
                let frames = addresses.iter().map(|&a| vec![raw_frame(a)]).collect();
                Some((fill(profile, samples, &addresses, frames, clock), reply))
            }
        }
    }

    /// Takes in the symbols for a stopping profile: the finished profile and
    /// whom to send it to, if the job was ours.
    pub(crate) fn symbols(
        &mut self,
        id: u64,
        frames: Vec<Vec<Frame>>,
        clock: &Clock,
    ) -> Option<(Profile, Sender<Result<Profile, ProfilingError>>)> {
        if self.stopping.as_ref().is_none_or(|s| s.job != id) {
            return None;
        }
        let stopping = self.stopping.take()?;
        let profile = fill(
            stopping.profile,
            stopping.samples,
            &stopping.addresses,
            frames,
            clock,
        );
        Some((profile, stopping.reply))
    }

    fn interval_duration(&self) -> Duration {
        Duration::from_secs(1) / self.options.rate_hz.max(1)
    }
}

/// When the tick after one due at `due` and taken at `now` is due: one
/// `interval` on, or, for a tick taken late, no sooner than half an interval
/// after it. Ticks missed while the monitor was busy are skipped, not
/// bunched.
fn tick_after(due: u64, interval: u64, now: u64) -> u64 {
    (due + interval).max(now + interval / 2)
}

/// Adds `walked` and drops the samples older than `keep` before it.
fn push_bounded(samples: &mut VecDeque<Walked>, walked: Walked, keep: u64, dropped: &mut u64) {
    let oldest = walked.time.saturating_sub(keep);
    samples.push_back(walked);
    while samples.front().is_some_and(|s| s.time < oldest) {
        samples.pop_front();
        *dropped += 1;
    }
}

fn raw_frame(address: u64) -> Frame {
    Frame {
        address,
        ..Frame::default()
    }
}

/// Puts each thread's samples into `profile`, with the frames of each address.
fn fill(
    mut profile: Profile,
    samples: Vec<Vec<Walked>>,
    addresses: &[u64],
    frames: Vec<Vec<Frame>>,
    clock: &Clock,
) -> Profile {
    let numbers: HashMap<u64, Vec<u32>> = addresses
        .iter()
        .zip(frames)
        .map(|(&address, frames)| {
            let frames = if frames.is_empty() {
                vec![raw_frame(address)]
            } else {
                frames
            };
            (
                address,
                frames.iter().map(|f| profile.frames.intern(f)).collect(),
            )
        })
        .collect();
    for (thread, mut walked) in profile.threads.iter_mut().zip(samples) {
        walked.sort_by_key(|w| w.time);
        thread.samples = walked
            .into_iter()
            .map(|w| ProfileSample {
                time: clock.to_duration(w.time),
                frames: w
                    .addresses
                    .iter()
                    .flat_map(|a| numbers.get(a).into_iter().flatten().copied())
                    .collect(),
                truncated: w.truncated,
            })
            .collect();
    }
    profile
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cell::ActivityCell;
    use crate::monitor::components::tests::registration;
    use crate::stack::capture::Capturer;
    use crate::stack::sampler::SampleTarget;
    use crate::stack::workers::StackWorkers;

    #[test]
    fn ticks_come_one_interval_apart_and_missed_ones_are_skipped_not_bunched() {
        assert_eq!(tick_after(100, 10, 100), 110);
        assert_eq!(
            tick_after(110, 10, 113),
            120,
            "a little late keeps the beat"
        );
        assert_eq!(tick_after(120, 10, 175), 180, "five missed ticks are one");
    }

    #[test]
    fn a_tick_asks_for_each_thread_once_and_repeats_a_waiting_threads_stack() {
        // One stamp is a millisecond; 100 Hz is a tick every 10 stamps.
        let clock = Clock::with_ns_per_stamp(1_000_000.0);
        let (capturer, _hangs, profile_jobs) = Capturer::unserved();
        let (workers, _, _) = StackWorkers::unserved();
        let mut stacks = Stacks::new(capturer, workers, 5, 1_000);
        let target = SampleTarget::current_thread(4096).expect("a target for this thread");
        let mut components = Components::default();
        let cell = Arc::new(ActivityCell::default());
        components.add(
            registration(1, cell, Some(Ok(Arc::new(target)))),
            &clock,
            false,
        );
        let mut profiler = Profiler::start(ProfilingOptions::default(), 1_000, &clock);
        assert_eq!(profiler.next_tick(), Some(1_000));

        profiler.tick(999, &components, &mut stacks);
        assert!(profile_jobs.is_empty(), "not due yet");
        profiler.tick(1_000, &components, &mut stacks);
        let job = profile_jobs.try_recv().expect("the thread is asked");
        assert_eq!(job.max_bytes, ProfilingOptions::default().stack_bytes);
        assert_eq!(profiler.next_tick(), Some(1_010));

        profiler.tick(1_010, &components, &mut stacks);
        assert!(profile_jobs.is_empty(), "not asked again while asked");
        assert!(profiler.missing(job.id));
        profiler.tick(1_020, &components, &mut stacks);
        let job = profile_jobs.try_recv().expect("asked again once answered");
        assert!(profiler.walked(job.id, vec![0x1000, 0x2000], false));
        assert!(!profiler.walked(job.id, Vec::new(), false), "answered once");

        // Still waiting, as at the tick before: its stack is repeated.
        profiler.tick(1_030, &components, &mut stacks);
        assert!(profile_jobs.is_empty());
        let thread = &profiler.threads[&1];
        let times: Vec<u64> = thread.samples.iter().map(|s| s.time).collect();
        assert_eq!(times, [20, 30]);
        assert_eq!(profiler.dropped, 1);
    }
}
