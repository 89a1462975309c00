//! One thread's timeline as nested slices: its hangs, and its samples as
//! runs of frames.
//!
//! 1. **Hangs**, by start: each is a slice at depth 0 from its start to its
//!    end, or from the previous hang's end if it began before that.
//! 2. **Sample spans**: each sample, in time order, stands for a span from
//!    its time (see the [parent module](super), *Time*), and one taken in a
//!    hang no longer than the hang; spans never overlap, since a span ends
//!    at the next sample at the latest.
//! 3. **Pieces**: each span is cut where a hang starts or ends, so that a
//!    piece lies in one hang or outside every hang.
//! 4. **Runs**: pieces are walked in time with the stack of frames still
//!    open. A piece that starts where the previous one ended, in the same
//!    hang (or outside both), keeps the open frames its stack shares with
//!    theirs, outermost first, by name; the others are closed where the
//!    previous piece ended, and the piece's remaining frames are opened. So
//!    a frame is one slice for as long as consecutive samples were in it.
//!    Frames in a hang sit one deeper than the hang's slice.
//! 5. **After a hang**: frames opened where a hang ends begin
//!    [`AFTER_HANG`] later. The frames cut there close and open again with
//!    the same names at one time, and speedscope takes an end and a start
//!    of one name at one time for an event of no length: it would open the
//!    new frame inside the old one and nest the rest of the thread wrongly.

use std::collections::HashMap;
use std::time::Duration;

use hangwatch::{Frame, HangMarker, Profile, ProfiledThread};

/// How long a sample of a profile without an interval stands for when it is
/// in no hang.
const NO_INTERVAL: Duration = Duration::from_millis(1);

/// A sample stands until the next one if that comes within this many
/// sampling intervals (ticks come late on a loaded machine), else for one
/// interval.
const NEXT_WITHIN: u32 = 10;

/// How much later than a hang's end the frames after it begin.
const AFTER_HANG: Duration = Duration::from_micros(1);

/// One slice of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice<'a> {
    /// From the start of the thread's profile.
    pub start: Duration,
    pub end: Duration,
    /// 0 for the outermost.
    pub depth: usize,
    pub what: What<'a>,
}

/// What a slice shows.
#[derive(Clone, Debug, PartialEq)]
pub enum What<'a> {
    Hang(&'a HangMarker),
    /// A frame, named as [`Frame::name`](hangwatch::Frame::name) names it; whether it is the
    /// program's own ([`Frame::is_programs`]).
    Frame {
        name: String,
        program: bool,
    },
}

/// A hang as drawn: its start and end, and the marker.
type Drawn<'a> = (Duration, Duration, &'a HangMarker);

/// The slices of `thread`, a thread of `profile` (see the
/// [module docs](self)), hangs first, then frames in the order they close.
pub fn slices<'a>(profile: &Profile, thread: &'a ProfiledThread) -> Vec<Slice<'a>> {
    let hangs = drawn_hangs(thread, profile.interval);
    let mut slices: Vec<Slice<'a>> = hangs
        .iter()
        .map(|&(start, end, hang)| Slice {
            start,
            end,
            depth: 0,
            what: What::Hang(hang),
        })
        .collect();

    let mut names = Names::default();
    let mut samples: Vec<_> = thread.samples.iter().collect();
    samples.sort_by_key(|sample| sample.time);
    let mut runs = Runs::default();
    for (i, sample) in samples.iter().enumerate() {
        let next = samples.get(i + 1).map(|sample| sample.time);
        let end = span_end(sample.time, next, profile.interval, &hangs);
        if end <= sample.time {
            continue;
        }
        // Outermost first.
        let frames: Vec<usize> = profile
            .frames_of(sample)
            .map(|frame| names.id(frame))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        for (start, end, hang) in pieces(sample.time, end, &hangs) {
            runs.add(start, end, hang, &frames, &names, &mut slices);
        }
    }
    runs.close(0, &names, &mut slices);
    slices
}

/// The hangs of `thread` by start, each from its start (or the previous
/// one's end, if later) to its end (not before it starts). In a profile
/// without an interval (one made from alerts) an ongoing hang ends at its
/// latest alert, which is where its latest stack was seen: it is drawn
/// [`NO_INTERVAL`] longer, so that stack has a place in it.
fn drawn_hangs(thread: &ProfiledThread, interval: Duration) -> Vec<Drawn<'_>> {
    let mut hangs: Vec<&HangMarker> = thread.hangs.iter().collect();
    hangs.sort_by_key(|hang| hang.start);
    let mut drawn = Vec::with_capacity(hangs.len());
    let mut last_end = Duration::ZERO;
    for hang in hangs {
        let start = hang.start.max(last_end);
        // Saturating: a profile from another process may say anything.
        let mut end = hang.start.saturating_add(hang.duration).max(start);
        let seen_at_end = thread.samples.iter().any(|sample| sample.time == end);
        if interval.is_zero() && !hang.ended && seen_at_end {
            end = end.saturating_add(NO_INTERVAL);
        }
        drawn.push((start, end, hang));
        last_end = end;
    }
    drawn
}

/// Where the span of a sample at `time` ends, given the next sample's time:
/// never past the end of the hang it was taken in, which is when its thread
/// left the activity that hung.
fn span_end(
    time: Duration,
    next: Option<Duration>,
    interval: Duration,
    hangs: &[Drawn],
) -> Duration {
    let hang_end = hang_at(time, hangs).map(|index| hangs[index].1);
    let end = if interval.is_zero() {
        let end = hang_end.unwrap_or(time.saturating_add(NO_INTERVAL));
        next.map_or(end, |next| end.min(next))
    } else {
        let within = interval.saturating_mul(NEXT_WITHIN);
        match next {
            Some(next) if next.saturating_sub(time) <= within => next,
            _ => time.saturating_add(interval),
        }
    };
    hang_end.map_or(end, |hang_end| end.min(hang_end))
}

/// The hang (its index in `hangs`) that `time` is in, if any.
fn hang_at(time: Duration, hangs: &[Drawn]) -> Option<usize> {
    let after = hangs.partition_point(|&(start, _, _)| start <= time);
    let index = after.checked_sub(1)?;
    (time < hangs[index].1).then_some(index)
}

/// The span from `start` to `end` cut where a hang starts or ends: each
/// piece with the hang it is in, if any.
fn pieces(
    start: Duration,
    end: Duration,
    hangs: &[Drawn],
) -> Vec<(Duration, Duration, Option<usize>)> {
    let first = hangs.partition_point(|&(_, hang_end, _)| hang_end <= start);
    let mut points = vec![start];
    for &(hang_start, hang_end, _) in hangs[first..].iter().take_while(|&&(s, _, _)| s < end) {
        for point in [hang_start, hang_end] {
            if start < point && point < end && points.last() != Some(&point) {
                points.push(point);
            }
        }
    }
    points.push(end);
    points
        .windows(2)
        .map(|pair| (pair[0], pair[1], hang_at(pair[0], hangs)))
        .collect()
}

/// Frame names, each known by a number.
#[derive(Default)]
struct Names {
    list: Vec<(String, bool)>,
    ids: HashMap<String, usize>,
}

impl Names {
    /// The id of the frame `frame`'s name, first seen whether it is the
    /// program's own.
    fn id(&mut self, frame: &Frame) -> usize {
        let name = frame.name().into_owned();
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        let id = self.list.len();
        self.list.push((name.clone(), frame.is_programs()));
        self.ids.insert(name, id);
        id
    }
}

/// The frames open so far, outermost first, each with its start; the hang
/// the last piece was in, and where it ended.
#[derive(Default)]
struct Runs {
    open: Vec<(usize, Duration)>,
    hang: Option<usize>,
    end: Duration,
}

impl Runs {
    /// Takes in a piece from `start` to `end` in `hang` (if any) whose
    /// stack is `frames`, outermost first.
    fn add(
        &mut self,
        start: Duration,
        end: Duration,
        hang: Option<usize>,
        frames: &[usize],
        names: &Names,
        slices: &mut Vec<Slice<'_>>,
    ) {
        let mut start = start;
        if hang != self.hang || start != self.end {
            let after_hang = self.hang.is_some() && start == self.end;
            self.close(0, names, slices);
            self.hang = hang;
            if after_hang {
                start = start.saturating_add(AFTER_HANG);
                if start >= end {
                    self.end = end;
                    return;
                }
            }
        }
        let shared = self
            .open
            .iter()
            .zip(frames)
            .take_while(|((open, _), frame)| open == *frame)
            .count();
        self.close(shared, names, slices);
        self.open
            .extend(frames[shared..].iter().map(|&frame| (frame, start)));
        self.end = end;
    }

    /// Closes the open frames past the first `keep`, where the last piece
    /// ended.
    fn close(&mut self, keep: usize, names: &Names, slices: &mut Vec<Slice<'_>>) {
        let base = usize::from(self.hang.is_some());
        while self.open.len() > keep {
            let Some((frame, start)) = self.open.pop() else {
                break;
            };
            let (name, program) = names.list[frame].clone();
            slices.push(Slice {
                start,
                end: self.end,
                depth: base + self.open.len(),
                what: What::Frame { name, program },
            });
        }
    }
}
