//! Platforms without a sampler yet: everything installs, nothing samples.
//!
//! [`super::Sampler::sample`] returns [`NoStack::Unsupported`] with the
//! reason, so that a monitor runs unchanged and its alerts say why they carry
//! no stack.

use std::fmt;
use std::time::Duration;

use super::{SampleSignal, SamplerError};
use crate::stack::{NoStack, RawSample};

pub(super) fn default_signal() -> i32 {
    0
}

pub(super) fn describe_signal(signal: i32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "signal {signal}")
}

pub(super) fn install(_: SampleSignal) -> Result<(), SamplerError> {
    Ok(())
}

pub(super) fn sample(
    _: SampleSignal,
    _: &Target,
    _: usize,
    _: Duration,
) -> Result<RawSample, NoStack> {
    Err(unsupported())
}

fn unsupported() -> NoStack {
    NoStack::Unsupported(format!(
        "hangwatch has no stack sampler for {} on {} yet (it samples Linux on x86_64 and aarch64)",
        std::env::consts::OS,
        std::env::consts::ARCH,
    ))
}

/// Nothing to record.
#[derive(Debug)]
pub(super) struct Target;

impl Target {
    pub(super) fn current_thread(_: usize) -> Result<Target, SamplerError> {
        Ok(Target)
    }

    /// Unknown here: 0.
    pub(super) fn tid(&self) -> u32 {
        0
    }
}

/// No request can be made here, so none exists.
#[derive(Debug)]
pub(super) enum Request {}

impl Request {
    pub(super) fn is_answered(&self) -> bool {
        match *self {}
    }
}

pub(super) fn request(_: SampleSignal, _: &Target, _: usize) -> Result<Request, NoStack> {
    Err(unsupported())
}

pub(super) fn finish(request: Request, _: Duration) -> Result<RawSample, NoStack> {
    match request {}
}
