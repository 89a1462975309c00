//! Platforms without a sampler yet: everything installs, nothing samples.
//!
//! [`Sampler::sample`] returns [`NoStack::Unsupported`] with the reason, so
//! that a monitor runs unchanged and its alerts say why they carry no stack.
//! (A macOS or Windows sampler would suspend the thread from outside; see
//! the module above.)

use std::fmt;
use std::time::Duration;

use super::{Platform, SampleSignal, Sampler, SamplerError};
use crate::stack::{NoStack, RawSample};

/// The [`Platform`] of platforms hangwatch cannot sample yet.
pub(super) struct Unsupported;

/// No request can be made here, so none exists.
#[derive(Debug)]
pub(super) enum Request {}

impl Platform for Unsupported {
    type Thread = ();
    type ThreadLease = ();
    type Request = Request;

    fn default_signal() -> i32 {
        0
    }

    fn describe_signal(signal: i32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signal {signal}")
    }

    fn install(_: SampleSignal) -> Result<(), SamplerError> {
        Ok(())
    }

    fn current_thread(_: usize) -> Result<((), ()), SamplerError> {
        Ok(((), ()))
    }

    /// Unknown here: 0.
    fn tid(_: &()) -> u32 {
        0
    }

    fn request(_: &Sampler, _: &(), _: usize, _: Duration) -> Result<Request, NoStack> {
        Err(NoStack::Unsupported(format!(
            "hangwatch has no stack sampler for {} on {} yet (it samples Linux on x86_64 and \
             aarch64)",
            std::env::consts::OS,
            std::env::consts::ARCH,
        )))
    }

    fn is_answered(request: &Request) -> bool {
        match *request {}
    }

    fn await_answer(request: &Request, _: Duration) -> bool {
        match *request {}
    }

    fn finish(request: Request, _: Duration) -> Result<RawSample, NoStack> {
        match request {}
    }

    fn syscall_name(_: u64) -> Option<&'static str> {
        None
    }

    fn read_memory(_: u64, _: &mut [u8]) -> usize {
        0
    }
}
