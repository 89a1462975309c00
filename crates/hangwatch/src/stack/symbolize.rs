//! Symbolication: from normalized frames (a module's path and build id, an
//! offset in it) to functions, files and lines, inlined calls expanded.
//!
//! # Normalized frames
//!
//! What the capture side knows of a frame is process-independent: the
//! module's path, its GNU build id and the frame's *module offset*
//! (`address - base address`, see [`modules`](crate::stack::modules)). That
//! is all this module needs, so the same [`Symbolizer`] serves the process
//! that took the stack ([`Symbolizer::symbolize`]), a hub that receives
//! frames from many children, and a command that reads alerts from a file
//! long after the process ended ([`Symbolizer::symbolize_frames`]).
//!
//! # Where the symbols come from
//!
//! For each module (path and build id) the symbolizer picks, once, the file
//! to read:
//!
//! 1. the module's own file, if it is there and has the same build id (a
//!    file rebuilt since the stack was taken has another, and would give
//!    wrong names); blazesym then follows its `.gnu_debuglink` (beside the
//!    file, in its `.debug` directory, under `/usr/lib/debug`) and looks in
//!    `/usr/lib/debug/.build-id/xx/rest.debug`;
//! 2. else `/usr/lib/debug/.build-id/xx/rest.debug` itself;
//! 3. with the `debuginfod` feature, when neither gave a file and line (a
//!    stripped build, a system library, a module that is not on this
//!    machine), the debug file that a debuginfod server of `DEBUGINFOD_URLS`
//!    has for the build id, downloaded once into its cache directory.
//!
//! The vDSO has no file: its frames are looked up in this process's own
//! vDSO when its build id is the same (the same kernel).
//!
//! A module offset plus the file's lowest `PT_LOAD` address is the address
//! the file states (its SVMA), which is what DWARF and symbol tables use;
//! separate debug files keep the program headers of the file they were
//! split from, so the same sum holds for them.
//!
//! # Reading
//!
//! [blazesym] does the ELF and DWARF work: it maps files rather than reading
//! them into the heap (the pages are the page cache's, shared by every
//! process that maps the same file), parses DWARF lazily and caches per
//! file; it demangles Rust (without the hash) and C++ names. Each DWARF
//! lookup yields the chain of inlined calls at an address: the innermost
//! callee first, each with its own file and line, then the function they
//! were inlined into with the line of the call; all but that last frame are
//! marked `inlined`. Without DWARF the symbol table names the function.
//!
//! Symbolication never fails as a whole: a frame that cannot be resolved
//! stays as it came (address, module, offset), and
//! [`Symbolizer::problems`] says, per module, why.
//!
//! A `Symbolizer` is owned by one thread (blazesym's caches are not
//! shared); each stack worker, the hub's symbolizer thread and a command
//! have their own.
//!
//! [blazesym]: https://docs.rs/blazesym

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{CodeInfo, Input, Sym, Symbolized};
use object::{Object, ObjectSegment};

use crate::stack::modules::{LiveModules, Module};
use crate::stack::unwind::UnwoundStack;
use crate::stack::{Frame, Stack};
use crate::{Frames, Profile};

/// The pseudo-path of the vDSO.
const VDSO: &str = "[vdso]";

/// Where separate debug files are installed by build id.
const BUILD_ID_DIR: &str = "/usr/lib/debug/.build-id";

/// Why a module's frames could not be symbolicated.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolizeError {
    /// No file with the module's symbols was found.
    #[error(
        "no file with its symbols: {path} is {why}; no debug file for build id {build_id} \
         is installed in /usr/lib/debug/.build-id; debuginfod: {debuginfod}"
    )]
    NotFound {
        /// The module's path.
        path: String,
        /// What was wrong with the module's own file.
        why: String,
        /// The module's build id, or `none`.
        build_id: String,
        /// Why debuginfod gave no file.
        debuginfod: String,
    },
    /// The file could not be read as ELF.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The frame names no module (an address in no mapped file).
    #[error("the address is in no module")]
    NoModule,
}

/// Turns normalized frames into symbolicated ones. Owned by one thread;
/// caches what it parsed (see the module docs).
pub struct Symbolizer {
    blazesym: blazesym::symbolize::Symbolizer,
    /// Whether DWARF is read (else symbol tables only).
    debug_info: bool,
    /// The source chosen for each module, by path and build id.
    sources: HashMap<ModuleKey, Result<SymbolSource, SymbolizeError>>,
    /// This process's modules: for [`Symbolizer::symbolize_address`], and
    /// for the vDSO.
    modules: LiveModules,
    /// Made at the first question for it.
    #[cfg(feature = "debuginfod")]
    debuginfod: Option<crate::stack::debuginfod::Debuginfod>,
}

/// A module as a normalized frame names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ModuleKey {
    path: String,
    build_id: Option<String>,
}

/// The file a module's frames are looked up in.
#[derive(Clone, Debug)]
struct SymbolSource {
    kind: SourceKind,
    /// The file's lowest `PT_LOAD` address: module offset + this = SVMA.
    base_svma: u64,
    /// The module offset of the file's entry point (none for the vDSO): an
    /// address a preload can look up.
    entry_offset: Option<u64>,
    /// Whether debuginfod may still be asked for a better file (this one
    /// gave no file and line).
    may_ask_debuginfod: bool,
}

impl SymbolSource {
    /// The ELF file at `path`, which says `facts` of itself.
    fn file(path: PathBuf, facts: &FileFacts, may_ask_debuginfod: bool) -> SymbolSource {
        SymbolSource {
            kind: SourceKind::File(path),
            base_svma: facts.base_svma,
            entry_offset: Some(facts.entry.wrapping_sub(facts.base_svma)),
            may_ask_debuginfod,
        }
    }
}

#[derive(Clone, Debug)]
enum SourceKind {
    /// An ELF file on this machine.
    File(PathBuf),
    /// This process's vDSO, whose base address is given.
    OwnVdso(u64),
}

/// What an ELF file says of itself.
struct FileFacts {
    build_id: Option<String>,
    base_svma: u64,
    /// The entry point's stated address.
    entry: u64,
    has_dwarf: bool,
}

impl Default for Symbolizer {
    fn default() -> Symbolizer {
        Symbolizer::new()
    }
}

impl fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Symbolizer")
            .field("modules", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// A symbolizer with empty caches. With the `debuginfod` feature it
    /// asks the servers `DEBUGINFOD_URLS` names (none if it is unset).
    pub fn new() -> Symbolizer {
        Symbolizer {
            blazesym: blazesym::symbolize::Symbolizer::new(),
            debug_info: true,
            sources: HashMap::new(),
            modules: LiveModules::new(),
            #[cfg(feature = "debuginfod")]
            debuginfod: None,
        }
    }

    /// A symbolizer that names functions from symbol tables only: no
    /// DWARF (so no files, lines or inlined calls) and no debuginfod. Its
    /// memory does not grow with the binary's debug info.
    pub fn function_names_only() -> Symbolizer {
        Symbolizer {
            debug_info: false,
            ..Symbolizer::new()
        }
    }

    /// The frames of `stack`, a stack of this process, inlined calls
    /// expanded, innermost first.
    pub(crate) fn symbolize(&mut self, stack: &UnwoundStack) -> Stack {
        let raw = Symbolizer::raw(stack);
        Stack {
            frames: self.symbolize_frames(&raw.frames),
            ..raw
        }
    }

    /// `frames`, normalized frames of any process (of this machine or
    /// another), symbolicated: each frame that [needs
    /// symbols](Frame::needs_symbols) becomes the frames at its address,
    /// inlined callees first; the others stay (a chain of inlined calls
    /// already expanded stays as it is).
    pub fn symbolize_frames(&mut self, frames: &[Frame]) -> Vec<Frame> {
        let mut out = Vec::with_capacity(frames.len());
        for (frame, sym) in frames.iter().zip(self.resolve(frames)) {
            match sym {
                Some(sym) => push_frames(&sym, frame, &mut out),
                None => out.push(frame.clone()),
            }
        }
        out
    }

    /// `stack` with its frames symbolicated (see
    /// [`symbolize_frames`](Symbolizer::symbolize_frames)).
    pub fn symbolize_stack(&mut self, stack: &mut Stack) {
        if stack.frames.iter().any(Frame::needs_symbols) {
            stack.frames = self.symbolize_frames(&stack.frames);
        }
    }

    /// `profile` with its frame table symbolicated: each frame that has no
    /// function yet becomes the frames at its address, and every sample
    /// through it is renumbered to them.
    pub fn symbolize_profile(&mut self, profile: &mut Profile) {
        let old: Vec<Frame> = std::mem::take(&mut profile.frames).into();
        if !old.iter().any(Frame::needs_symbols) {
            profile.frames = old.into();
            return;
        }
        let mut table = Frames::default();
        let renumbered: Vec<Vec<u32>> = old
            .iter()
            .zip(self.resolve(&old))
            .map(|(frame, sym)| {
                let mut expanded = Vec::new();
                match sym {
                    Some(sym) => push_frames(&sym, frame, &mut expanded),
                    None => expanded.push(frame.clone()),
                }
                expanded.iter().map(|frame| table.intern(frame)).collect()
            })
            .collect();
        for sample in profile
            .threads
            .iter_mut()
            .flat_map(|thread| thread.samples.iter_mut())
        {
            sample.frames = sample
                .frames
                .iter()
                .filter_map(|&n| renumbered.get(n as usize))
                .flatten()
                .copied()
                .collect();
        }
        profile.frames = table;
    }

    /// The frames of one instruction address of this process (the inlined
    /// callees first, then the function they are in).
    pub fn symbolize_address(&mut self, address: u64) -> Vec<Frame> {
        let frame = normalize_address(&mut self.modules, address);
        self.symbolize_frames(&[frame])
    }

    /// Reads `module`'s symbols now rather than at its first address. An
    /// error says why its frames will have no names.
    pub(crate) fn preload(&mut self, module: &Module) -> Result<(), SymbolizeError> {
        self.preload_key(ModuleKey {
            path: module.path().to_string_lossy().into_owned(),
            build_id: module.build_id().map(str::to_owned),
        })
    }

    /// Reads the symbols of the module file at `path` (whatever its build)
    /// now: for a hub, as a child of that program connects, so that the
    /// child's first stack is named as fast as the later ones.
    pub fn preload_file(&mut self, path: &Path) -> Result<(), SymbolizeError> {
        let facts = file_facts(path).map_err(|why| SymbolizeError::Read {
            path: path.to_owned(),
            why,
        })?;
        self.preload_key(ModuleKey {
            path: path.to_string_lossy().into_owned(),
            build_id: facts.build_id,
        })
    }

    fn preload_key(&mut self, key: ModuleKey) -> Result<(), SymbolizeError> {
        let source = self.source(&key).map_err(Clone::clone)?.clone();
        // One lookup, of the entry point, makes blazesym open the file and
        // its DWARF; what it parses stays cached.
        if let Some(entry) = source.entry_offset {
            let _ = self.lookup(&source, &[entry]);
        }
        Ok(())
    }

    /// Per module that some frame named, why its frames have no names (the
    /// modules whose symbols were found are not listed).
    pub fn problems(&self) -> impl Iterator<Item = (&str, &SymbolizeError)> {
        self.sources
            .iter()
            .filter_map(|(key, source)| Some((key.path.as_str(), source.as_ref().err()?)))
    }

    /// The frames of `stack` normalized: addresses, modules, build ids and
    /// offsets, no file read. What leaves the process when symbolication
    /// happens elsewhere, or when it would take too long.
    pub(crate) fn raw(stack: &UnwoundStack) -> Stack {
        Stack {
            frames: stack
                .frames
                .iter()
                .map(|frame| {
                    normalized(
                        frame.lookup_address(),
                        frame.module.as_deref(),
                        frame.module_offset,
                    )
                })
                .collect(),
            truncated: stack.truncated,
            capture: Some(stack.method),
            blocked_in: stack.syscall.map(crate::stack::sampler::describe_syscall),
        }
    }

    /// The symbol at each frame's address, `None` for a frame that is
    /// already named or cannot be. The frames of one module are looked up
    /// together: one look into blazesym's cache per module, not per frame.
    fn resolve(&mut self, frames: &[Frame]) -> Vec<Option<Sym<'static>>> {
        let mut found = vec![None; frames.len()];
        let mut by_module: Vec<(ModuleKey, Vec<usize>)> = Vec::new();
        for (n, frame) in frames.iter().enumerate() {
            // A frame of an expanded chain of inlined calls (an inlined one,
            // or the caller right after them at their address) was named
            // from DWARF already: resolving it again would expand the chain
            // again.
            let in_chain = frame.inlined
                || (n > 0 && frames[n - 1].inlined && frames[n - 1].address == frame.address);
            let Some(path) = &frame.module_path else {
                continue;
            };
            // A build id that is not one matches no file.
            let bad_build_id = frame.build_id.as_deref().is_some_and(|id| !is_build_id(id));
            if in_chain || bad_build_id || !frame.needs_symbols() {
                continue;
            }
            let key = ModuleKey {
                path: path.clone(),
                build_id: frame.build_id.clone(),
            };
            match by_module.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(n),
                None => by_module.push((key, vec![n])),
            }
        }
        for (key, members) in by_module {
            let Ok(source) = self.source(&key).cloned() else {
                continue;
            };
            let offsets: Vec<u64> = members
                .iter()
                .filter_map(|&n| frames[n].module_offset)
                .collect();
            let mut syms = self.lookup(&source, &offsets);
            let lacks_lines = syms
                .iter()
                .any(|sym| sym.as_ref().is_none_or(|sym| sym.code_info.is_none()));
            if lacks_lines && source.may_ask_debuginfod && self.debug_info {
                match self.ask_debuginfod(&key) {
                    Ok(better) => {
                        syms = self.lookup(&better, &offsets);
                        self.sources.insert(key, Ok(better));
                    }
                    Err(_) => {
                        if let Some(Ok(source)) = self.sources.get_mut(&key) {
                            source.may_ask_debuginfod = false;
                        }
                    }
                }
            }
            for (n, sym) in members.into_iter().zip(syms) {
                found[n] = sym;
            }
        }
        found
    }

    /// The symbols at `offsets` in `source`'s module, owned; `None` where
    /// there is none.
    fn lookup(&self, source: &SymbolSource, offsets: &[u64]) -> Vec<Option<Sym<'static>>> {
        let (src, addresses): (Source<'_>, Vec<u64>) = match &source.kind {
            SourceKind::File(path) => (
                Source::Elf(Elf {
                    debug_syms: self.debug_info,
                    ..Elf::new(path.clone())
                }),
                offsets
                    .iter()
                    .map(|offset| offset.wrapping_add(source.base_svma))
                    .collect(),
            ),
            SourceKind::OwnVdso(base) => {
                let mut process = Process::new(blazesym::Pid::Slf);
                process.debug_syms = self.debug_info;
                process.map_files = false;
                process.perf_map = false;
                (
                    Source::Process(process),
                    offsets
                        .iter()
                        .map(|offset| base.wrapping_add(*offset))
                        .collect(),
                )
            }
        };
        let input = match source.kind {
            SourceKind::File(_) => Input::VirtOffset(addresses.as_slice()),
            SourceKind::OwnVdso(_) => Input::AbsAddr(addresses.as_slice()),
        };
        match self.blazesym.symbolize(&src, input) {
            Ok(symbolized) => symbolized
                .into_iter()
                .map(|symbolized| match symbolized {
                    Symbolized::Sym(sym) => Some(sym.into_owned()),
                    Symbolized::Unknown(_) => None,
                })
                .collect(),
            Err(_) => vec![None; offsets.len()],
        }
    }

    /// The source for `key`, chosen once (see the module docs).
    fn source(&mut self, key: &ModuleKey) -> Result<&SymbolSource, &SymbolizeError> {
        if !self.sources.contains_key(key) {
            let chosen = self.choose(key);
            self.sources.insert(key.clone(), chosen);
        }
        self.sources[key].as_ref()
    }

    fn choose(&mut self, key: &ModuleKey) -> Result<SymbolSource, SymbolizeError> {
        if key.path == VDSO {
            return self.own_vdso(key);
        }
        let own = Path::new(&key.path);
        let why = match file_facts(own) {
            Ok(facts) if key.build_id.is_none() || facts.build_id == key.build_id => {
                let may_ask = !facts.has_dwarf && key.build_id.is_some();
                return Ok(SymbolSource::file(own.to_owned(), &facts, may_ask));
            }
            Ok(facts) => format!(
                "another build now (build id {})",
                facts.build_id.as_deref().unwrap_or("none")
            ),
            Err(error) => error,
        };
        if let Some(build_id) = &key.build_id {
            if let Some(source) = installed_debug_file(build_id) {
                return Ok(source);
            }
        }
        let debuginfod = match self.ask_debuginfod(key) {
            Ok(source) => return Ok(source),
            Err(why) => why,
        };
        Err(SymbolizeError::NotFound {
            path: key.path.clone(),
            why,
            build_id: key.build_id.clone().unwrap_or_else(|| "none".into()),
            debuginfod,
        })
    }

    /// This process's vDSO, if it is the one `key` names.
    fn own_vdso(&mut self, key: &ModuleKey) -> Result<SymbolSource, SymbolizeError> {
        self.modules.refresh_if_stale();
        let vdso = self
            .modules
            .modules()
            .iter()
            .find(|module| module.path() == Path::new(VDSO));
        match vdso {
            Some(vdso) if key.build_id.is_none() || vdso.build_id() == key.build_id.as_deref() => {
                Ok(SymbolSource {
                    kind: SourceKind::OwnVdso(vdso.base_address()),
                    base_svma: 0,
                    entry_offset: None,
                    may_ask_debuginfod: false,
                })
            }
            _ => Err(SymbolizeError::NotFound {
                path: key.path.clone(),
                why: "the vDSO of another kernel".into(),
                build_id: key.build_id.clone().unwrap_or_else(|| "none".into()),
                debuginfod: "not asked for a vDSO".into(),
            }),
        }
    }

    /// The debug file a debuginfod server has for `key`'s build id, or why
    /// there is none.
    #[cfg(feature = "debuginfod")]
    fn ask_debuginfod(&mut self, key: &ModuleKey) -> Result<SymbolSource, String> {
        let build_id = key
            .build_id
            .as_deref()
            .ok_or("the module has no build id")?;
        if !is_build_id(build_id) {
            return Err(format!("{build_id:?} is not a build id"));
        }
        let path = self
            .debuginfod
            .get_or_insert_with(crate::stack::debuginfod::Debuginfod::from_env)
            .debug_file(build_id)?;
        let facts = file_facts(&path)?;
        if facts.build_id.as_deref() != Some(build_id) {
            return Err(format!("{} is not of build id {build_id}", path.display()));
        }
        Ok(SymbolSource::file(path, &facts, false))
    }

    #[cfg(not(feature = "debuginfod"))]
    fn ask_debuginfod(&mut self, _key: &ModuleKey) -> Result<SymbolSource, String> {
        Err("not built in (the `debuginfod` feature of hangwatch is off)".into())
    }
}

/// Whether `text` can be a build id (hex digits, as frames carry them): a
/// frame from another process may say anything, and a build id becomes a
/// path and a URL.
fn is_build_id(text: &str) -> bool {
    (2..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The debug file installed for `build_id` under `/usr/lib/debug/.build-id`.
fn installed_debug_file(build_id: &str) -> Option<SymbolSource> {
    let (head, rest) = (build_id.get(..2)?, build_id.get(2..)?);
    let path = Path::new(BUILD_ID_DIR)
        .join(head)
        .join(format!("{rest}.debug"));
    let facts = file_facts(&path).ok()?;
    let may_ask = !facts.has_dwarf;
    (facts.build_id.as_deref() == Some(build_id)).then(|| SymbolSource::file(path, &facts, may_ask))
}

/// Reads `path`'s ELF headers (not the whole file).
fn file_facts(path: &Path) -> Result<FileFacts, String> {
    // A path from another process may name a FIFO or a device, whose open
    // or read would block: only regular files are opened.
    let metadata = std::fs::metadata(path).map_err(|error| format!("not readable ({error})"))?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    let file = std::fs::File::open(path).map_err(|error| format!("not readable ({error})"))?;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).map_err(|error| format!("not ELF ({error})"))?;
    let build_id = elf
        .build_id()
        .ok()
        .flatten()
        .map(crate::stack::modules::hex);
    Ok(FileFacts {
        build_id,
        base_svma: elf.segments().map(|s| s.address()).min().unwrap_or(0),
        entry: elf.entry(),
        has_dwarf: elf.section_by_name(".debug_info").is_some(),
    })
}

/// Pushes the frames of `sym`: its inlined callees, innermost first, then
/// the function itself; each based on `raw`.
fn push_frames(sym: &Sym<'_>, raw: &Frame, out: &mut Vec<Frame>) {
    let located = |name: &str, code_info: Option<&CodeInfo<'_>>, inlined: bool| Frame {
        function: Some(name.to_owned()),
        file: code_info.map(|info| info.to_path().to_string_lossy().into_owned()),
        line: code_info.and_then(|info| info.line),
        inlined,
        ..raw.clone()
    };
    for callee in sym.inlined.iter().rev() {
        out.push(located(&callee.name, callee.code_info.as_ref(), true));
    }
    out.push(located(&sym.name, sym.code_info.as_deref(), false));
}

/// The normalized frame of an address of this process.
pub(crate) fn normalize_address(modules: &mut LiveModules, address: u64) -> Frame {
    let module = modules.find_or_refresh(address).cloned();
    let offset = module.as_ref().and_then(|m| m.offset_of(address));
    normalized(address, module.as_deref(), offset)
}

/// A frame with what the capture side knows: the address, and the module's
/// name, path, build id and the offset in it when the module could be read.
fn normalized(address: u64, module: Option<&Module>, module_offset: Option<u64>) -> Frame {
    let readable = module.filter(|module| module.error().is_none());
    Frame {
        address,
        module: module.map(|module| module.name().to_owned()),
        module_path: readable.map(|module| module.path().to_string_lossy().into_owned()),
        build_id: readable.and_then(Module::build_id).map(str::to_owned),
        module_offset,
        ..Frame::default()
    }
}

impl Frame {
    /// Whether symbolication could still add to this frame: it names its
    /// module and offset, and has no function, or no source file (named
    /// from a symbol table only).
    pub fn needs_symbols(&self) -> bool {
        self.module_path.is_some()
            && self.module_offset.is_some()
            && (self.function.is_none() || self.file.is_none())
    }
}
