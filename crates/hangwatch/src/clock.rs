//! The time base shared by components and the monitor.
//!
//! The hot path reads the clock once per `notify_activity`, so the clock read
//! is its dominant cost: `Instant::now()` goes through the vDSO and costs about
//! 20–25 ns, while the CPU's invariant time-stamp counter costs a few. We use
//! [`quanta`], which reads the TSC where it is invariant and falls back to the
//! OS monotonic clock elsewhere, and we never convert on the hot path: a
//! component stores raw *stamps* and the monitor, off the hot path, turns
//! stamps into durations.
//!
//! A stamp is a raw reading shifted right by [`STAMP_SHIFT`] bits (128 TSC
//! ticks, a few tens of nanoseconds), so that 47 bits of it cover months and
//! fit beside a label in one atomic word (see `cell.rs`).
//!
//! The conversion factor comes from quanta's own calibration: quanta converts
//! a span of raw ticks linearly, so asking it for the length of a large
//! synthetic span yields the factor exactly, without a calibration sleep.

use std::sync::OnceLock;
use std::time::Duration;

/// Raw ticks per stamp, as a power of two.
const STAMP_SHIFT: u32 = 7;

/// A monotonic clock in stamps, cheap to read from any thread.
#[derive(Debug)]
pub(crate) struct Clock {
    source: quanta::Clock,
    ns_per_stamp: f64,
    /// The stamp at calibration: where [`monotonic_ns`] counts from.
    origin: u64,
}

impl Clock {
    /// The process-wide clock, calibrated on first use.
    pub(crate) fn global() -> &'static Clock {
        static CLOCK: OnceLock<Clock> = OnceLock::new();
        CLOCK.get_or_init(|| {
            let source = quanta::Clock::new();
            const SPAN: u64 = 1 << 40;
            let ns = source.delta_as_nanos(0, SPAN) as f64;
            let origin = source.raw() >> STAMP_SHIFT;
            Clock {
                source,
                ns_per_stamp: ns / SPAN as f64 * (1u64 << STAMP_SHIFT) as f64,
                origin,
            }
        })
    }

    /// A clock of `ns_per_stamp` nanoseconds per stamp counting from stamp 0,
    /// for tests that step time by hand: they pass every stamp in, so its
    /// source (quanta's mock, stopped at zero) is never meant to be read.
    #[cfg(test)]
    pub(crate) fn with_ns_per_stamp(ns_per_stamp: f64) -> Clock {
        Clock {
            source: quanta::Clock::mock().0,
            ns_per_stamp,
            origin: 0,
        }
    }

    /// Now, in stamps. This is the one clock read of the hot path.
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        self.source.raw() >> STAMP_SHIFT
    }

    /// The length of `stamps`.
    pub(crate) fn to_duration(&self, stamps: u64) -> Duration {
        Duration::from_nanos((stamps as f64 * self.ns_per_stamp) as u64)
    }

    /// `stamp` as nanoseconds on the clock of [`monotonic_ns`].
    pub(crate) fn to_monotonic_ns(&self, stamp: u64) -> u64 {
        (stamp.saturating_sub(self.origin) as f64 * self.ns_per_stamp) as u64
    }

    /// The number of stamps in `duration`, rounded up so that a deadline
    /// computed from it is never early.
    pub(crate) fn to_stamps(&self, duration: Duration) -> u64 {
        (duration.as_nanos() as f64 / self.ns_per_stamp).ceil() as u64
    }
}

/// Now, in nanoseconds on hangwatch's monotonic clock: the clock of
/// [`Alert::started_ns`](crate::Alert::started_ns) and
/// [`Alert::raised_ns`](crate::Alert::raised_ns). It counts from about when
/// hangwatch was first used in this process, does not go back, and is cheap
/// to read (the CPU's time-stamp counter where it is invariant).
///
/// ```
/// let before = hangwatch::monotonic_ns();
/// std::thread::sleep(std::time::Duration::from_millis(2));
/// assert!(hangwatch::monotonic_ns() >= before + 2_000_000);
/// ```
pub fn monotonic_ns() -> u64 {
    let clock = Clock::global();
    clock.to_monotonic_ns(clock.now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_within_a_stamp() {
        let clock = Clock::global();
        for ms in [1u64, 10, 250, 5_000, 3_600_000] {
            let d = Duration::from_millis(ms);
            let back = clock.to_duration(clock.to_stamps(d));
            let error = back.abs_diff(d);
            assert!(
                error < Duration::from_micros(1),
                "{d:?} came back as {back:?}"
            );
        }
    }

    #[test]
    fn stamps_advance_with_real_time() {
        let clock = Clock::global();
        let start = clock.now();
        let wall = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let measured = clock.to_duration(clock.now() - start);
        let real = wall.elapsed();
        // Generous: the two clocks are read a few microseconds apart.
        assert!(
            measured.abs_diff(real) < Duration::from_millis(2),
            "{measured:?} vs {real:?}"
        );
    }
}
