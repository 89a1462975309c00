//! Not API: for hangwatch's own tests and benches (feature `test-util`).
//!
//! The pieces under the monitor, one stage at a time: the [`Sampler`] that
//! copies a thread's registers and stack, the [`Unwinder`] that walks the
//! copy, the [`Modules`] it walks with, and the hooks that install
//! process-wide signal handlers to stand for another library's. hangwatch's
//! integration tests and `hangwatch-bench` drive them directly; a program
//! gets their results through the monitor's alerts and profiles instead.
//!
//! Nothing here follows semver: it changes whenever the monitor's insides
//! do. Do not enable this feature outside hangwatch's workspace.
//!
//! # Sampling a thread by hand
//!
//! ```
//! use std::time::Duration;
//! use hangwatch::test_util::{SampleTarget, Sampler, DEFAULT_COPY_LIMIT};
//! use hangwatch::SampleSignal;
//!
//! let sampler = Sampler::install(SampleSignal::default())?;
//! // Created on the thread to sample, then handed to the monitor.
//! let target = SampleTarget::current_thread(DEFAULT_COPY_LIMIT)?;
//! match sampler.sample(&target, Duration::from_millis(50)) {
//!     Ok(sample) => assert!(!sample.stack.is_empty()),
//!     Err(no_stack) => println!("no stack: {no_stack:?}"),
//! }
//! # Ok::<(), hangwatch::SamplerError>(())
//! ```

pub use crate::stack::modules::{LiveModules, Module, ModuleError, Modules, ModulesError};
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub use crate::stack::sampler::{
    block_sample_signal_on_this_thread, install_foreign_handler_for_tests, install_handler,
    interrupted_registers, monotonic_ns as signal_safe_monotonic_ns,
    unblock_sample_signal_on_this_thread, Claim, Handler, HandlerSpec, SavedErrno,
};
pub use crate::stack::sampler::{
    PendingSample, SampleTarget, Sampler, ThreadLease, DEFAULT_COPY_LIMIT,
};
pub use crate::stack::unwind::{
    AddressKind, UnwindError, Unwinder, UnwoundFrame, UnwoundStack, WalkEnd, MAX_FRAMES,
};
use crate::stack::Stack;
pub use crate::stack::{RawSample, Registers};
use crate::{SymbolizeError, Symbolizer};

/// What a [`Symbolizer`] does with this process's own unwound stacks (the
/// stack workers' part), for tests and benches that unwind by hand.
pub trait SymbolizeUnwound {
    /// The frames of `stack`, a stack of this process, inlined calls
    /// expanded, innermost first.
    fn symbolize_unwound(&mut self, stack: &UnwoundStack) -> Stack;
    /// Reads `module`'s symbols now rather than at its first address. An
    /// error says why its frames will have no names.
    fn preload_module(&mut self, module: &Module) -> Result<(), SymbolizeError>;
}

impl SymbolizeUnwound for Symbolizer {
    fn symbolize_unwound(&mut self, stack: &UnwoundStack) -> Stack {
        self.symbolize(stack)
    }

    fn preload_module(&mut self, module: &Module) -> Result<(), SymbolizeError> {
        self.preload(module)
    }
}

/// The frames of `stack` normalized: addresses, modules, build ids and
/// offsets, no file read (what leaves the process with
/// [`Symbolication::Elsewhere`](crate::Symbolication::Elsewhere)).
pub fn normalize(stack: &UnwoundStack) -> Stack {
    Symbolizer::raw(stack)
}
