//! Offline unwinding: from a [`RawSample`] (registers and a copy of the
//! stack) to the list of return addresses, innermost first.
//!
//! The walk is framehop's, with DWARF CFI from each module's `.eh_frame`
//! (indexed by `.eh_frame_hdr`), the unwind information every Rust and C
//! object carries on Linux, frame pointers or not. Where an address has no
//! CFI (JIT code, a module that could not be read), framehop falls back to
//! the frame pointer chain.
//!
//! # Reading memory
//!
//! The walk reads memory only from the copy: `sample.stack`, whose first
//! byte is at `sample.stack_start`. A read outside the copy fails and stops
//! the walk, so a stale or garbage pointer costs nothing and cannot fault.
//! The stack grows down, so the sampled thread's callers live above the
//! copy's start: a walk that needs bytes past the *end* of a copy that the
//! sampler cut at its size limit ([`RawSample::truncated`]) is
//! [`UnwoundStack::truncated`], since the thread has more frames than the
//! copy shows. So is a walk stopped at [`MAX_FRAMES`].
//!
//! # Frames
//!
//! The first frame is the instruction pointer; every other frame is a
//! return address, which points *after* the call. Its lookup address,
//! `return address - 1`, lies inside the call instruction, and is the one
//! used for the module offset and for symbolication (so that a call that is
//! the last instruction of a function is not attributed to the next one).
//!
//! # Modules
//!
//! An [`Unwinder`] owns its module snapshot ([`LiveModules`]), framehop's
//! unwinder built from it, and framehop's cache of unwind rules (keyed by
//! address, so a warm walk mostly skips the CFI lookups). The walk happens
//! against the current snapshot; if a frame's address then lies in no module
//! and no known anonymous code, a module was loaded after the snapshot: the
//! unwinder rereads the module list once and, if it changed, walks again.
//! A snapshot older than a second is reread before a walk, so unloads are
//! noticed too. Modules still mapped keep their parsed data across
//! snapshots; framehop's unwinder is rebuilt from the snapshot when it
//! changes (adding a module with an `.eh_frame_hdr` costs next to nothing).
//!
//! # Architectures
//!
//! x86-64 (`rip`, `rsp`, `rbp`) and aarch64 (`pc`, `sp`, `x29`, `x30`, with
//! pointer authentication bits stripped from return addresses) are walked.
//! Elsewhere the stack has just its instruction pointer frame and ends with
//! `WalkEnd::UnsupportedArch`.

use std::sync::Arc;

#[cfg(feature = "test-util")]
use crate::stack::modules::ModulesError;
use crate::stack::modules::{LiveModules, Module, Modules};
use crate::stack::{CaptureMethod, RawSample};

/// The most frames a walk returns; deeper stacks are cut and marked
/// truncated.
pub const MAX_FRAMES: usize = 512;

/// What a frame's address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    /// The instruction pointer of the innermost frame: the instruction that
    /// was about to run.
    InstructionPointer,
    /// A return address: the instruction after a call.
    ReturnAddress,
}

/// One frame of an unwound stack.
#[derive(Clone, Debug)]
pub struct UnwoundFrame {
    /// The instruction pointer or the return address, as found.
    pub address: u64,
    /// Which of the two `address` is.
    pub kind: AddressKind,
    /// The module the lookup address lies in.
    pub module: Option<Arc<Module>>,
    /// The lookup address relative to the module's base address.
    pub module_offset: Option<u64>,
}

impl UnwoundFrame {
    /// A frame of `address`, with its module from `modules`.
    pub fn new(address: u64, kind: AddressKind, modules: &Modules) -> UnwoundFrame {
        let mut frame = UnwoundFrame {
            address,
            kind,
            module: None,
            module_offset: None,
        };
        let lookup = frame.lookup_address();
        if let Some(module) = modules.find(lookup) {
            frame.module_offset = module.offset_of(lookup);
            frame.module = Some(Arc::clone(module));
        }
        frame
    }

    /// The address to symbolicate: the instruction pointer, or the return
    /// address minus one (inside the call instruction).
    pub fn lookup_address(&self) -> u64 {
        match self.kind {
            AddressKind::InstructionPointer => self.address,
            AddressKind::ReturnAddress => self.address.wrapping_sub(1),
        }
    }
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// The unwind information says the outermost frame was reached.
    Complete,
    /// The walk needed memory outside the stack copy, at this address.
    OutsideCopy {
        /// The address that could not be read.
        address: u64,
    },
    /// [`MAX_FRAMES`] frames were found and there were more.
    FrameLimit,
    /// The unwinder could not go on.
    Failed(UnwindError),
    /// This architecture has no unwinder: the stack has only its
    /// instruction pointer frame.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    UnsupportedArch,
    /// The walk needed a register the capture did not have: the frame
    /// pointer (on aarch64, also the link register) of a thread read while
    /// blocked, before any frame had saved it on the stack.
    MissingRegister,
}

/// Why the unwinder could not go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnwindError {
    /// The stack pointer or frame pointer moved towards the innermost frame.
    #[error("the stack or frame pointer moved backwards")]
    MovedBackwards,
    /// Neither the address nor the stack pointer changed: the walk would
    /// loop.
    #[error("the walk did not advance")]
    DidNotAdvance,
    /// Address arithmetic overflowed.
    #[error("address arithmetic overflowed")]
    Overflow,
    /// A return address was zero.
    #[error("a return address was null")]
    NullReturnAddress,
}

/// The frames of a sampled stack, innermost first.
#[derive(Clone, Debug)]
pub struct UnwoundStack {
    /// The frames, innermost (the instruction pointer) first.
    pub frames: Vec<UnwoundFrame>,
    /// The thread has more frames than these: the walk needed bytes beyond
    /// the end of a stack copy that was cut at its size limit, or reached
    /// [`MAX_FRAMES`].
    pub truncated: bool,
    /// Why the walk stopped.
    #[cfg(feature = "test-util")]
    pub end: WalkEnd,
    /// How the sample was taken.
    pub method: CaptureMethod,
    /// The system call the thread was blocked in, if it was read while
    /// inside one.
    pub syscall: Option<u64>,
}

/// Unwinds samples of this process's threads. Owned by one worker thread.
pub struct Unwinder {
    modules: LiveModules,
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    walker: native::Walker,
}

impl Default for Unwinder {
    fn default() -> Unwinder {
        Unwinder::new()
    }
}

impl Unwinder {
    /// An unwinder with no module snapshot yet: the first unwind reads it.
    pub fn new() -> Unwinder {
        Unwinder {
            modules: LiveModules::new(),
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            walker: native::Walker::new(),
        }
    }

    /// The current module snapshot.
    #[cfg(feature = "test-util")]
    pub fn modules(&self) -> &Modules {
        self.modules.modules()
    }

    /// Rereads the module list now (for instance right after loading a
    /// library); returns whether it changed.
    #[cfg(feature = "test-util")]
    pub fn refresh_modules(&mut self) -> Result<bool, ModulesError> {
        self.modules.refresh()
    }

    /// Walks the stack of `sample`.
    pub fn unwind(&mut self, sample: &RawSample) -> UnwoundStack {
        let just_read = self.modules.refresh_if_stale();
        let stack = self.walk(sample);
        let snapshot = self.modules.modules();
        let missed = stack
            .frames
            .iter()
            .any(|frame| !snapshot.covers(frame.lookup_address()));
        if missed && !just_read && matches!(self.modules.refresh(), Ok(true)) {
            return self.walk(sample);
        }
        stack
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn walk(&mut self, sample: &RawSample) -> UnwoundStack {
        self.walker.sync(&self.modules);
        let copy = native::StackCopy::new(sample);
        let (frames, end) = self.walker.walk(sample, &copy, self.modules.modules());
        let truncated = match end {
            WalkEnd::Complete => false,
            WalkEnd::FrameLimit | WalkEnd::MissingRegister => true,
            WalkEnd::OutsideCopy { .. } | WalkEnd::Failed(_) => {
                sample.truncated && copy.read_past_end()
            }
        };
        UnwoundStack {
            frames,
            truncated,
            #[cfg(feature = "test-util")]
            end,
            method: sample.method,
            syscall: sample.syscall,
        }
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fn walk(&mut self, sample: &RawSample) -> UnwoundStack {
        let ip = sample.registers.ip;
        UnwoundStack {
            frames: vec![UnwoundFrame::new(
                ip,
                AddressKind::InstructionPointer,
                self.modules.modules(),
            )],
            truncated: true,
            #[cfg(feature = "test-util")]
            end: WalkEnd::UnsupportedArch,
            method: sample.method,
            syscall: sample.syscall,
        }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod native {
    use std::cell::Cell;
    use std::sync::Arc;

    use framehop::{
        CacheNative, Error, ExplicitModuleSectionInfo, FrameAddress, MayAllocateDuringUnwind,
        Unwinder as _, UnwinderNative,
    };

    use super::{AddressKind, UnwindError, UnwoundFrame, WalkEnd, MAX_FRAMES};
    use crate::stack::modules::{LiveModules, Module, Modules};
    use crate::stack::{CaptureMethod, RawSample, Registers};

    /// framehop's unwinder for the current snapshot, and its rule cache.
    pub(super) struct Walker {
        unwinder: UnwinderNative<Arc<[u8]>, MayAllocateDuringUnwind>,
        cache: CacheNative<MayAllocateDuringUnwind>,
        /// The snapshot generation `unwinder` was built from.
        generation: Option<u64>,
    }

    impl Walker {
        pub(super) fn new() -> Walker {
            Walker {
                unwinder: UnwinderNative::new(),
                cache: CacheNative::new(),
                generation: None,
            }
        }

        /// Rebuilds framehop's module list if the snapshot changed.
        pub(super) fn sync(&mut self, modules: &LiveModules) {
            if self.generation == Some(modules.generation()) {
                return;
            }
            self.unwinder = UnwinderNative::new();
            for module in modules.modules().iter() {
                if let Some(module) = framehop_module(module) {
                    self.unwinder.add_module(module);
                }
            }
            self.generation = Some(modules.generation());
        }

        /// Walks from the sample's registers, one frame at a time. For a
        /// sample read while blocked, the frame pointer starts as
        /// [`UNKNOWN`]: a step that needs it (its rule reads memory at or
        /// just above `UNKNOWN`) is tried again with the frame pointer the
        /// stack itself suggests ([`Walker::recover_frame_pointer`]); if the
        /// stack suggests none, the walk ends with
        /// [`WalkEnd::MissingRegister`].
        pub(super) fn walk(
            &mut self,
            sample: &RawSample,
            copy: &StackCopy<'_>,
            modules: &Modules,
        ) -> (Vec<UnwoundFrame>, WalkEnd) {
            let blocked = sample.method == CaptureMethod::Blocked;
            let mut registers = sample.registers;
            if blocked {
                registers.fp = UNKNOWN;
                registers.lr = UNKNOWN;
            }
            let mut regs = initial_regs(&registers, self.unwinder.max_known_code_address());
            let mut address = FrameAddress::InstructionPointer(sample.registers.ip);
            let mut found = vec![frame(address, modules)];
            let end = loop {
                if found.len() == MAX_FRAMES {
                    break WalkEnd::FrameLimit;
                }
                let step = match self.step(address, &regs, copy) {
                    Err(Error::CouldNotReadStack(at)) if blocked && is_unknown(at) => {
                        let limit = MAX_FRAMES - found.len();
                        match self.recover_frame_pointer(address, &regs, copy, modules, limit) {
                            Some(record) => {
                                set_frame_pointer(&mut regs, record);
                                self.step(address, &regs, copy)
                            }
                            // The record may lie past a copy cut short.
                            None if sample.truncated => {
                                let end = copy.end();
                                let _ = copy.read(end);
                                break WalkEnd::OutsideCopy { address: end };
                            }
                            None => break WalkEnd::MissingRegister,
                        }
                    }
                    step => step,
                };
                match step {
                    Ok(Some((return_address, _)))
                        if blocked && took_unknown_link(&found, return_address, modules) =>
                    {
                        break WalkEnd::MissingRegister
                    }
                    Ok(Some((return_address, stepped))) => {
                        match FrameAddress::from_return_address(return_address) {
                            Some(next) => {
                                address = next;
                                regs = stepped;
                                found.push(frame(address, modules));
                            }
                            None => break WalkEnd::Failed(UnwindError::NullReturnAddress),
                        }
                    }
                    Ok(None) => break WalkEnd::Complete,
                    Err(Error::CouldNotReadStack(at)) if blocked && is_unknown(at) => {
                        break WalkEnd::MissingRegister
                    }
                    Err(Error::CouldNotReadStack(address)) => {
                        break WalkEnd::OutsideCopy { address }
                    }
                    Err(Error::FramepointerUnwindingMovedBackwards) => {
                        break WalkEnd::Failed(UnwindError::MovedBackwards)
                    }
                    Err(Error::DidNotAdvance) => break WalkEnd::Failed(UnwindError::DidNotAdvance),
                    Err(Error::IntegerOverflow) => break WalkEnd::Failed(UnwindError::Overflow),
                    Err(Error::ReturnAddressIsNull) => {
                        break WalkEnd::Failed(UnwindError::NullReturnAddress)
                    }
                }
            };
            (found, end)
        }

        /// One step from the frame at `address` with `regs`: the return
        /// address and the caller's registers, or `None` at the outermost
        /// frame.
        fn step(
            &mut self,
            address: FrameAddress,
            regs: &framehop::UnwindRegsNative,
            copy: &StackCopy<'_>,
        ) -> Result<Option<(u64, framehop::UnwindRegsNative)>, Error> {
            let mut stepped = *regs;
            let mut read_stack = |at| copy.read(at);
            let return_address = self.unwinder.unwind_frame(
                address,
                &mut stepped,
                &mut self.cache,
                &mut read_stack,
            )?;
            Ok(return_address.map(|return_address| (return_address, stepped)))
        }

        /// How many frames a walk from `address` with `regs` finds, at most
        /// `limit`, recovering nothing on the way; `chain` gets the frame
        /// pointer of each frame it reached.
        fn frames_from(
            &mut self,
            mut address: FrameAddress,
            mut regs: framehop::UnwindRegsNative,
            copy: &StackCopy<'_>,
            limit: usize,
            chain: &mut Vec<u64>,
        ) -> usize {
            chain.clear();
            while chain.len() < limit {
                let Ok(Some((return_address, stepped))) = self.step(address, &regs, copy) else {
                    break;
                };
                let Some(next) = FrameAddress::from_return_address(return_address) else {
                    break;
                };
                (address, regs) = (next, stepped);
                chain.push(frame_pointer(&regs));
            }
            chain.len()
        }

        /// The frame pointer a frame that needs one most likely had, from
        /// the first few frame records above its stack pointer (see
        /// [`frame_records_above`]). The frame's own record holds the return
        /// address into its caller, right after a call of the frame's own
        /// function; a stale record among its locals holds one after a call
        /// of some other function. So the record whose return address
        /// follows a call to the start of the frame's function (its FDE's
        /// start) wins; one after a call elsewhere is out; among those after
        /// calls through a register, which cannot be checked, the one from
        /// which the walk goes furthest.
        fn recover_frame_pointer(
            &mut self,
            address: FrameAddress,
            regs: &framehop::UnwindRegsNative,
            copy: &StackCopy<'_>,
            modules: &Modules,
            limit: usize,
        ) -> Option<u64> {
            let start = function_start(modules, address.address_for_lookup());
            let mut unchecked: Option<(usize, u64)> = None;
            let (mut chain, mut longest_chain) = (Vec::new(), Vec::new());
            for record in frame_records_above(copy, regs.sp(), modules).take(CANDIDATES) {
                // A record the longest walk so far went through is a
                // caller's: a walk from it is that walk's tail, shorter.
                if longest_chain.contains(&record) {
                    continue;
                }
                let Ok(return_address) = copy.read(record + 8) else {
                    continue;
                };
                match (call_target(return_address), start) {
                    (Some(target), Some(start)) if target == start => return Some(record),
                    (Some(_), Some(_)) => {}
                    _ => {
                        let mut trial = *regs;
                        set_frame_pointer(&mut trial, record);
                        let frames = self.frames_from(address, trial, copy, limit, &mut chain);
                        if unchecked.is_none_or(|(most, _)| frames > most) {
                            unchecked = Some((frames, record));
                            std::mem::swap(&mut chain, &mut longest_chain);
                        }
                    }
                }
            }
            unchecked.map(|(_, record)| record)
        }
    }

    /// How many frame records [`Walker::recover_frame_pointer`] tries. A
    /// frame's locals may hold many stale records below its own (the 2 KiB
    /// stack-trace buffer of an AddressSanitizer interceptor holds dozens);
    /// most of them walk a frame or two, so trying them is cheap.
    const CANDIDATES: usize = 64;

    /// The start of the function `address` lies in: the initial location
    /// of the FDE that covers it, from its module's `.eh_frame_hdr` table.
    fn function_start(modules: &Modules, address: u64) -> Option<u64> {
        use gimli::{BaseAddresses, EhFrame, EhFrameHdr, NativeEndian, UnwindSection};
        let module = modules.find(address)?;
        let bias = module.bias()?;
        let sections = module.unwind_sections()?;
        let (hdr, frame) = (sections.eh_frame_hdr.as_ref()?, sections.eh_frame.as_ref()?);
        let mut bases = BaseAddresses::default()
            .set_eh_frame_hdr(hdr.svma.start)
            .set_eh_frame(frame.svma.start);
        if let Some(text) = &sections.text_svma {
            bases = bases.set_text(text.start);
        }
        if let Some(got) = &sections.got_svma {
            bases = bases.set_got(got.start);
        }
        let parsed = EhFrameHdr::new(&hdr.data[..], NativeEndian)
            .parse(&bases, 8)
            .ok()?;
        let eh_frame = EhFrame::new(&frame.data[..], NativeEndian);
        let fde = parsed
            .table()?
            .fde_for_address(
                &eh_frame,
                &bases,
                address.wrapping_sub(bias),
                EhFrame::cie_from_offset,
            )
            .ok()?;
        Some(fde.initial_address().wrapping_add(bias))
    }

    /// Where the call that returns to `return_address` went, if it was a
    /// call whose target the code says: x86-64 `call rel32`, or `call
    /// *disp32(%rip)` through the GOT (how Rust calls into other crates in
    /// position-independent code), followed through the stubs and
    /// trampolines that only jump on; aarch64 `bl`. Code and GOT are read
    /// through the kernel, so an address that is not code costs nothing.
    #[cfg(target_arch = "x86_64")]
    fn call_target(return_address: u64) -> Option<u64> {
        let mut call = [0u8; 6];
        if !read_code(return_address.checked_sub(6)?, &mut call) {
            return None;
        }
        if call[1] == 0xe8 {
            let target = return_address.wrapping_add_signed(rel32(&call[2..]));
            return Some(through_jumps(target));
        }
        if call[0] == 0xff && call[1] == 0x15 {
            return read_pointer(return_address.wrapping_add_signed(rel32(&call[2..])))
                .map(through_jumps);
        }
        None
    }

    /// Where the code at `target` goes if it only jumps on: a PLT stub's
    /// `jmp *disp32(%rip)` through its GOT slot, or a trampoline's `jmp
    /// rel32` (how AddressSanitizer's `read` reaches its interceptor), each
    /// after an `endbr64` and a `bnd` prefix if there are; followed for at
    /// most [`JUMPS`] hops.
    #[cfg(target_arch = "x86_64")]
    fn through_jumps(mut target: u64) -> u64 {
        for _ in 0..JUMPS {
            let mut code = [0u8; 11];
            if !read_code(target, &mut code) {
                break;
            }
            let start = if code[..4] == [0xf3, 0x0f, 0x1e, 0xfa] {
                4
            } else {
                0
            };
            let jump = if code[start] == 0xf2 {
                start + 1
            } else {
                start
            };
            let next = match code[jump] {
                0xe9 => {
                    let after = target + (jump + 5) as u64;
                    Some(after.wrapping_add_signed(rel32(&code[jump + 1..])))
                }
                0xff if code[jump + 1] == 0x25 => {
                    let after = target + (jump + 6) as u64;
                    read_pointer(after.wrapping_add_signed(rel32(&code[jump + 2..])))
                }
                _ => None,
            };
            match next {
                Some(next) => target = next,
                None => break,
            }
        }
        target
    }

    /// How many jumps [`through_jumps`] follows: a trampoline into a PLT
    /// stub into its target is two.
    #[cfg(target_arch = "x86_64")]
    const JUMPS: usize = 3;

    /// The signed 32-bit displacement in the first four of `bytes`.
    #[cfg(target_arch = "x86_64")]
    fn rel32(bytes: &[u8]) -> i64 {
        i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    #[cfg(target_arch = "x86_64")]
    fn read_pointer(at: u64) -> Option<u64> {
        let mut pointer = [0u8; 8];
        read_code(at, &mut pointer).then(|| u64::from_ne_bytes(pointer))
    }

    /// Reads this process's memory at `at` through the kernel.
    fn read_code(at: u64, bytes: &mut [u8]) -> bool {
        crate::stack::sampler::read_own_memory(at, bytes) == bytes.len()
    }

    #[cfg(target_arch = "aarch64")]
    fn call_target(return_address: u64) -> Option<u64> {
        let mut call = [0u8; 4];
        let at = return_address.checked_sub(4)?;
        if !read_code(at, &mut call) {
            return None;
        }
        let instruction = u32::from_le_bytes(call);
        // BL: 100101, then a signed 26-bit offset in words.
        if instruction >> 26 != 0b10_0101 {
            return None;
        }
        let words = ((instruction << 6) as i32) >> 6;
        Some(at.wrapping_add_signed(i64::from(words) * 4))
    }

    /// What a register the capture did not see starts as: an address far
    /// above any stack, so that a rule computing from it reads memory there
    /// (and fails, recognizably) rather than near zero, which framehop takes
    /// for the end of the frame-pointer chain.
    const UNKNOWN: u64 = 0xffff_ffff_ffff_0000;

    fn is_unknown(address: u64) -> bool {
        address >= UNKNOWN
    }

    #[cfg(target_arch = "x86_64")]
    fn set_frame_pointer(regs: &mut framehop::UnwindRegsNative, fp: u64) {
        regs.set_bp(fp);
    }

    #[cfg(target_arch = "x86_64")]
    fn frame_pointer(regs: &framehop::UnwindRegsNative) -> u64 {
        regs.bp()
    }

    #[cfg(target_arch = "aarch64")]
    fn frame_pointer(regs: &framehop::UnwindRegsNative) -> u64 {
        regs.fp()
    }

    #[cfg(target_arch = "aarch64")]
    fn set_frame_pointer(regs: &mut framehop::UnwindRegsNative, fp: u64) {
        regs.set_fp(fp);
    }

    /// Whether the first step of a sample read while blocked took its
    /// return address from the link register the capture did not see:
    /// aarch64 leaf functions (system-call wrappers among them) keep it
    /// there, so the frame that called them is unknown.
    fn took_unknown_link(found: &[UnwoundFrame], return_address: u64, modules: &Modules) -> bool {
        cfg!(target_arch = "aarch64")
            && found.len() == 1
            && !modules.covers(return_address.wrapping_sub(1))
    }

    /// Candidate frame records (saved frame pointer, then return address) at
    /// or above `sp`, lowest first: 16-byte aligned (where a standard
    /// prologue puts them) with a return address in known code. Nothing can
    /// be said of the saved frame pointer: a caller without frame pointers
    /// uses the register for anything. A frame that uses a frame pointer
    /// keeps its record where the frame pointer points, above its locals;
    /// stale records and code pointers may lie among those locals, which is
    /// why the caller tries several and keeps the one the walk agrees with.
    fn frame_records_above<'c>(
        copy: &'c StackCopy<'c>,
        sp: u64,
        modules: &'c Modules,
    ) -> impl Iterator<Item = u64> + 'c {
        let first = sp.checked_add(15).map(|at| at & !15);
        let end = copy.end();
        std::iter::successors(first, |at| at.checked_add(16))
            .take_while(move |at| at.checked_add(16).is_some_and(|next| next <= end))
            .filter(move |&at| {
                at.checked_add(8)
                    .and_then(|slot| copy.read(slot).ok())
                    .is_some_and(|returns| returns > 1 && modules.covers(returns - 1))
            })
    }

    fn frame(address: FrameAddress, modules: &Modules) -> UnwoundFrame {
        match address {
            FrameAddress::InstructionPointer(ip) => {
                UnwoundFrame::new(ip, AddressKind::InstructionPointer, modules)
            }
            FrameAddress::ReturnAddress(ra) => {
                UnwoundFrame::new(ra.get(), AddressKind::ReturnAddress, modules)
            }
        }
    }

    /// framehop's view of a module; `None` when it has no unwind data.
    fn framehop_module(module: &Module) -> Option<framehop::Module<Arc<[u8]>>> {
        let sections = module.unwind_sections()?;
        let svma = |section: &Option<crate::stack::modules::SectionData>| {
            section.as_ref().map(|s| s.svma.clone())
        };
        let data = |section: &Option<crate::stack::modules::SectionData>| {
            section.as_ref().map(|s| Arc::clone(&s.data))
        };
        let info = ExplicitModuleSectionInfo {
            base_svma: module.base_svma()?,
            text_svma: sections.text_svma.clone(),
            got_svma: sections.got_svma.clone(),
            eh_frame_svma: svma(&sections.eh_frame),
            eh_frame: data(&sections.eh_frame),
            eh_frame_hdr_svma: svma(&sections.eh_frame_hdr),
            eh_frame_hdr: data(&sections.eh_frame_hdr),
            debug_frame: sections.debug_frame.clone(),
            ..ExplicitModuleSectionInfo::default()
        };
        Some(framehop::Module::new(
            module.path().display().to_string(),
            module.avma_range(),
            module.base_address(),
            info,
        ))
    }

    #[cfg(target_arch = "x86_64")]
    fn initial_regs(registers: &Registers, _max_code_address: u64) -> framehop::UnwindRegsNative {
        framehop::UnwindRegsNative::new(registers.ip, registers.sp, registers.fp)
    }

    #[cfg(target_arch = "aarch64")]
    fn initial_regs(registers: &Registers, max_code_address: u64) -> framehop::UnwindRegsNative {
        // Return addresses signed with pointer authentication carry the
        // signature in the bits above the highest code address.
        let mask = framehop::aarch64::PtrAuthMask::from_max_known_address(max_code_address);
        framehop::UnwindRegsNative::new_with_ptr_auth_mask(
            mask,
            registers.lr,
            registers.sp,
            registers.fp,
        )
    }

    /// The copied stack, as the walk reads it.
    pub(super) struct StackCopy<'a> {
        start: u64,
        bytes: &'a [u8],
        /// A read failed because it reached past the end of the copy.
        read_past_end: Cell<bool>,
    }

    impl<'a> StackCopy<'a> {
        pub(super) fn new(sample: &'a RawSample) -> StackCopy<'a> {
            StackCopy {
                start: sample.stack_start,
                bytes: &sample.stack,
                read_past_end: Cell::new(false),
            }
        }

        /// The word at `address`, if the copy holds all of it.
        fn read(&self, address: u64) -> Result<u64, ()> {
            let offset = address.checked_sub(self.start).ok_or(())?;
            let word = usize::try_from(offset)
                .ok()
                .and_then(|offset| self.bytes.get(offset..offset.checked_add(8)?))
                .and_then(|word| <[u8; 8]>::try_from(word).ok());
            match word {
                Some(word) => Ok(u64::from_ne_bytes(word)),
                None => {
                    self.read_past_end.set(true);
                    Err(())
                }
            }
        }

        /// The address just past the copy.
        pub(super) fn end(&self) -> u64 {
            self.start.saturating_add(self.bytes.len() as u64)
        }

        /// Whether the last failed read reached past the end of the copy.
        pub(super) fn read_past_end(&self) -> bool {
            self.read_past_end.get()
        }
    }
}
