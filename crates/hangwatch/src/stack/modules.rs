//! The modules loaded in this process: a snapshot that the unwinder and the
//! symbolizer work from.
//!
//! A *module* is an ELF image with executable code mapped into this process:
//! the main executable, the shared libraries (libc among them) and the vDSO.
//! A [`Modules`] snapshot lists them with, for each, its address range, its
//! load bias, its base address and the unwind sections that framehop needs
//! (`.eh_frame`, `.eh_frame_hdr`, else `.debug_frame`; the addresses of
//! `.text` and `.got`).
//!
//! # Addresses
//!
//! The words are framehop's and samply's:
//!
//! - an **AVMA** (actual virtual memory address) is where a byte is in this
//!   process;
//! - an **SVMA** (stated virtual memory address) is where the ELF file says
//!   it is: `p_vaddr`, `sh_addr`, DWARF and symbol table addresses;
//! - the **bias** is `AVMA - SVMA`. The loader moves all the segments of an
//!   image by the same amount, so one bias serves the whole module (it is
//!   zero for a non-PIE executable);
//! - the **base address** is the AVMA of the image's lowest `PT_LOAD`
//!   address (zero for PIE executables and shared libraries, often `0x400000`
//!   for others), and a **module offset** is `AVMA - base address`, the
//!   "relative address" of the Firefox Profiler and samply. For PIE
//!   executables and shared libraries the module offset is the SVMA, what
//!   `addr2line -e FILE` expects.
//!
//! The bias comes from a mapping of executable code and the `PT_LOAD`
//! segment it maps. A mapping at AVMA `start` maps file offset `offset`; the
//! loader maps a segment from the page that holds its first byte, so the
//! segment whose `p_offset` is the smallest one in `offset..offset + 64 KiB`
//! (64 KiB being the largest page size) is the one mapped there, and
//! `bias = start + (p_offset - offset) - p_vaddr`. A mapping that starts
//! inside a segment instead (a program that maps part of a file itself) uses
//! the segment that contains `offset`. Mappings and segments that are both
//! executable are tried first, so that two segments sharing a file page
//! cannot be confused.
//!
//! # Where the list comes from
//!
//! On Linux and Android, `/proc/self/maps`, read with plain file reads: no
//! `unsafe`, no walk over the loader's own lists. Consecutive mappings of one
//! file (same path, device and inode, increasing file offsets) form one
//! module; a module needs at least one executable mapping. Each module file
//! is opened once when it is first listed and read through
//! [`object::ReadCache`], which reads only what is asked, not the whole
//! file, and maps nothing: the ELF headers and the build-id note. Its
//! unwind sections are read the first time the unwinder needs them (after
//! checking that the file is still the one mapped: the same inode),
//! so a snapshot that only normalizes or symbolicates reads none, and the
//! unwinder only those of modules its stacks go through.
//!
//! Special cases:
//!
//! - a file that was deleted or replaced after it was loaded (`(deleted)` in
//!   the maps) is listed without unwind data or bias: the file on disk is not
//!   what is mapped;
//! - the vDSO has no file. Its image is read from this process's memory
//!   through `/proc/self/mem`, a plain file read that fails cleanly where it
//!   is not allowed; the vDSO is then listed without unwind data;
//! - executable mappings of no file (JIT code, `[vsyscall]`) are remembered
//!   as *anonymous code*, so that an address there is not taken for a module
//!   that was loaded after the snapshot.
//!
//! Other platforms have no module list yet: [`Modules::load`] says
//! [`ModulesError::Unsupported`], and the unwinder falls back to frame
//! pointers.
//!
//! # Noticing loads and unloads
//!
//! [`LiveModules`] keeps the current snapshot and replaces it when the
//! process's modules change. It rereads the maps
//!
//! - when an address is in no module and no anonymous code (a library loaded
//!   after the snapshot): at most once per unwind or lookup, so an address
//!   that no module will ever cover (a garbage return address) costs one
//!   read of the maps, tens of microseconds, and nothing more;
//! - when the snapshot is older than a second at the start of an unwind, to
//!   notice unloads: an unloaded module covers no address the program runs,
//!   so no miss reveals it, but another library mapped at the same place
//!   later would otherwise be symbolicated with the old one's names.
//!
//! A cheaper fingerprint of the module list, such as glibc's
//! `dl_iterate_phdr` load and unload counters, would need `unsafe` here;
//! the maps are the fingerprint instead. Rereading them is cheap next to
//! parsing module files: a refresh hashes the executable mappings, and when
//! the hash is unchanged nothing else happens; when it changed, the modules
//! that are still mapped where they were are carried over, and only new
//! ones are read from disk.
//!
//! # Invariants
//!
//! - A snapshot never changes; a [`Module`] is shared (`Arc`) between
//!   snapshots and with the stacks unwound against it.
//! - Modules in a snapshot are sorted by start address.
//! - Building a snapshot never panics: an unreadable or corrupt file gives a
//!   module that carries its [`ModuleError`] and no unwind data.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{elf, Endianness, FileKind, ReadRef};

/// How old a snapshot may get before an unwind rereads the maps.
const MAX_AGE: Duration = Duration::from_secs(1);

/// The largest page size: a segment's mapping starts at most this far
/// before the segment's first byte.
const MAX_PAGE_SIZE: u64 = 64 * 1024;

/// Why no module list could be read.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// The process's memory map could not be read.
    #[error("cannot read /proc/self/maps: {0}")]
    Maps(#[source] io::Error),
    /// This platform has no module list yet.
    #[error("listing loaded modules is not supported on this platform")]
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    Unsupported,
}

/// Why a module has no unwind data or bias.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The module's file (or, for the vDSO, its memory) could not be read.
    #[error("cannot read the module: {0}")]
    Io(#[from] io::Error),
    /// The file was deleted or replaced after it was loaded.
    #[error("the file was deleted or replaced after it was loaded")]
    Deleted,
    /// The file is not an ELF image.
    #[error("not an ELF file")]
    NotElf,
    /// The file is a corrupt ELF image.
    #[error("corrupt ELF file: {0}")]
    Parse(#[from] object::read::Error),
    /// No `PT_LOAD` segment matches the module's mappings.
    #[error("no loadable segment matches the mapping at {start:#x} (file offset {offset:#x})")]
    NoMatchingSegment {
        /// The mapping's start address.
        start: u64,
        /// The file offset it maps.
        offset: u64,
    },
}

/// One module: an ELF image with executable code mapped into this process.
pub struct Module {
    path: PathBuf,
    name: String,
    avma_range: Range<u64>,
    base_address: u64,
    identity: Identity,
    layout: Result<Layout, ModuleError>,
    /// Read when the unwinder first needs them (see the module docs).
    unwind: OnceLock<Option<UnwindSections>>,
}

/// What a module was read from: it tells two loads of a path apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Identity {
    /// A file, as the maps name it.
    File {
        path: PathBuf,
        device: u64,
        inode: u64,
    },
    /// The vDSO, read from memory at this address.
    Vdso { start: u64 },
}

/// What the module's ELF headers say.
struct Layout {
    bias: u64,
    base_svma: u64,
    /// The GNU build id note, in lower-case hex.
    build_id: Option<String>,
}

/// A section's stated address range and its bytes.
// Only architectures with an unwinder read the unwind data.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
#[derive(Clone)]
pub(crate) struct SectionData {
    pub(crate) svma: Range<u64>,
    pub(crate) data: Arc<[u8]>,
}

/// The sections framehop unwinds an ELF module with.
// Only architectures with an unwinder read the unwind data.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
#[derive(Clone, Default)]
pub(crate) struct UnwindSections {
    pub(crate) eh_frame: Option<SectionData>,
    pub(crate) eh_frame_hdr: Option<SectionData>,
    /// Only read when there is no `.eh_frame`.
    pub(crate) debug_frame: Option<Arc<[u8]>>,
    pub(crate) text_svma: Option<Range<u64>>,
    pub(crate) got_svma: Option<Range<u64>>,
}

impl Module {
    /// The module's path; `[vdso]` for the vDSO.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file name of the module: `libc.so.6`, `[vdso]`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The addresses the module's mappings span.
    pub fn avma_range(&self) -> Range<u64> {
        self.avma_range.clone()
    }

    /// Whether `address` lies in the module's mappings.
    pub fn contains(&self, address: u64) -> bool {
        self.avma_range.contains(&address)
    }

    /// The address of the module's image base; module offsets are relative
    /// to it.
    ///
    /// When the module's file could not be read, this is the start of its
    /// first mapping minus that mapping's file offset: right for the usual
    /// layout, where the first segment starts the file at address zero.
    pub fn base_address(&self) -> u64 {
        self.base_address
    }

    /// `address - base_address`, for an address in the module.
    pub fn offset_of(&self, address: u64) -> Option<u64> {
        self.contains(address)
            .then(|| address.wrapping_sub(self.base_address))
    }

    /// The load bias, `AVMA - SVMA`; `None` when the module's file could not
    /// be read.
    pub fn bias(&self) -> Option<u64> {
        self.layout.as_ref().ok().map(|layout| layout.bias)
    }

    /// The address the ELF file states for `address`, an address in the
    /// module; what DWARF and symbol tables use.
    #[cfg(feature = "test-util")]
    pub fn svma_of(&self, address: u64) -> Option<u64> {
        let bias = self.bias()?;
        self.contains(address).then(|| address.wrapping_sub(bias))
    }

    /// The module's GNU build id (its `NT_GNU_BUILD_ID` note) in lower-case
    /// hex, the key debug files are found by (`/usr/lib/debug/.build-id`,
    /// debuginfod); `None` when the file has none or could not be read.
    pub fn build_id(&self) -> Option<&str> {
        self.layout.as_ref().ok()?.build_id.as_deref()
    }

    /// Why the module has no unwind data or bias, if so.
    pub fn error(&self) -> Option<&ModuleError> {
        self.layout.as_ref().err()
    }

    /// The image's stated base address (its lowest `PT_LOAD` address).
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub(crate) fn base_svma(&self) -> Option<u64> {
        self.layout.as_ref().ok().map(|layout| layout.base_svma)
    }

    /// The unwind sections, if the module could be read; read from its
    /// file the first time they are asked for.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub(crate) fn unwind_sections(&self) -> Option<&UnwindSections> {
        self.layout.as_ref().ok()?;
        self.unwind
            .get_or_init(|| match &self.identity {
                Identity::File { path, inode, .. } => read_unwind_sections(path, *inode).ok(),
                // Read with the layout; nothing to read now.
                Identity::Vdso { .. } => None,
            })
            .as_ref()
    }
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Module");
        s.field("path", &self.path)
            .field(
                "avma_range",
                &format_args!("{:#x}..{:#x}", self.avma_range.start, self.avma_range.end),
            )
            .field("base_address", &format_args!("{:#x}", self.base_address));
        match &self.layout {
            Ok(layout) => s
                .field("bias", &format_args!("{:#x}", layout.bias))
                .field("unwind", &self.unwind.get()),
            Err(error) => s.field("error", error),
        };
        s.finish()
    }
}

impl fmt::Debug for UnwindSections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |data: &Option<SectionData>| data.as_ref().map(|d| d.data.len());
        f.debug_struct("UnwindSections")
            .field("eh_frame_len", &len(&self.eh_frame))
            .field("eh_frame_hdr_len", &len(&self.eh_frame_hdr))
            .field(
                "debug_frame_len",
                &self.debug_frame.as_ref().map(|d| d.len()),
            )
            .finish()
    }
}

/// A snapshot of the modules loaded in this process.
#[derive(Debug, Default)]
pub struct Modules {
    modules: Vec<Arc<Module>>,
    anonymous_code: Vec<Range<u64>>,
    /// `None` before the first read.
    fingerprint: Option<u64>,
}

impl Modules {
    /// Reads the modules loaded now.
    pub fn load() -> Result<Modules, ModulesError> {
        Ok(Modules::default().refresh()?.unwrap_or_default())
    }

    /// The modules loaded now, reusing this snapshot's modules that are
    /// still mapped where they were; `None` when nothing changed.
    pub fn refresh(&self) -> Result<Option<Modules>, ModulesError> {
        let maps = read_maps()?;
        let mappings: Vec<Mapping> = maps
            .split(|&b| b == b'\n')
            .filter_map(Mapping::parse)
            .collect();
        let fingerprint = fingerprint(&mappings);
        if self.fingerprint == Some(fingerprint) {
            return Ok(None);
        }
        Ok(Some(self.rebuild(&mappings, fingerprint)))
    }

    /// Groups the mappings into modules, carrying over the ones this
    /// snapshot already has.
    fn rebuild(&self, mappings: &[Mapping], fingerprint: u64) -> Modules {
        let mut groups: Vec<Vec<&Mapping>> = Vec::new();
        let mut anonymous_code = Vec::new();
        for mapping in mappings {
            match mapping.kind() {
                MappingKind::File => {
                    let continues =
                        groups
                            .last()
                            .and_then(|group| group.last())
                            .is_some_and(|last| {
                                last.kind() == MappingKind::File
                                    && last.name == mapping.name
                                    && last.device == mapping.device
                                    && last.inode == mapping.inode
                                    && last.offset <= mapping.offset
                            });
                    match groups.last_mut() {
                        Some(group) if continues => group.push(mapping),
                        _ => groups.push(vec![mapping]),
                    }
                }
                MappingKind::Vdso => groups.push(vec![mapping]),
                MappingKind::Other if mapping.executable => {
                    anonymous_code.push(mapping.range.clone())
                }
                MappingKind::Other => {}
            }
        }
        let mut modules: Vec<Arc<Module>> = groups
            .iter()
            .filter(|group| group.iter().any(|mapping| mapping.executable))
            .map(|group| {
                let identity = identity(group[0]);
                let avma_range = hull(group);
                self.modules
                    .iter()
                    .find(|module| module.identity == identity && module.avma_range == avma_range)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Module::read(group, identity, avma_range)))
            })
            .collect();
        modules.sort_by_key(|module| module.avma_range.start);
        Modules {
            modules,
            anonymous_code,
            fingerprint: Some(fingerprint),
        }
    }

    /// The module that `address` lies in.
    pub fn find(&self, address: u64) -> Option<&Arc<Module>> {
        let after = self
            .modules
            .partition_point(|module| module.avma_range.start <= address);
        let module = self.modules.get(after.checked_sub(1)?)?;
        module.contains(address).then_some(module)
    }

    /// The modules, by address.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Module>> {
        self.modules.iter()
    }

    /// How many modules there are.
    #[cfg(feature = "test-util")]
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether there are none (the list could not be read).
    #[cfg(feature = "test-util")]
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Whether `address` is known code: in a module, or in executable memory
    /// of no file.
    pub fn covers(&self, address: u64) -> bool {
        self.find(address).is_some()
            || self
                .anonymous_code
                .iter()
                .any(|range| range.contains(&address))
    }
}

/// The current module snapshot of a worker, replaced when modules are loaded
/// or unloaded (see the module docs for when it rereads the maps).
#[derive(Debug, Default)]
pub struct LiveModules {
    current: Modules,
    loaded_at: Option<Instant>,
    generation: u64,
}

impl LiveModules {
    /// No snapshot yet: the first use reads one.
    pub fn new() -> LiveModules {
        LiveModules::default()
    }

    /// The current snapshot.
    pub fn modules(&self) -> &Modules {
        &self.current
    }

    /// Counts snapshot changes, so that what is derived from the snapshot
    /// knows when to rebuild.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Rereads the maps now; returns whether the modules changed. On error
    /// the current snapshot stays.
    pub fn refresh(&mut self) -> Result<bool, ModulesError> {
        let refreshed = self.current.refresh();
        self.loaded_at = Some(Instant::now());
        let changed = refreshed?.map(|modules| self.current = modules).is_some();
        if changed {
            self.generation += 1;
        }
        Ok(changed)
    }

    /// Rereads the maps if there is no snapshot yet or it is older than a
    /// second; returns whether the maps were read.
    pub(crate) fn refresh_if_stale(&mut self) -> bool {
        let stale = !matches!(self.loaded_at, Some(at) if at.elapsed() < MAX_AGE);
        if stale {
            // An error keeps the old snapshot; the next miss tries again.
            let _ = self.refresh();
        }
        stale
    }

    /// The module of `address`, rereading the maps once if `address` is not
    /// known code.
    pub(crate) fn find_or_refresh(&mut self, address: u64) -> Option<&Arc<Module>> {
        if !self.refresh_if_stale() && !self.current.covers(address) {
            let _ = self.refresh();
        }
        self.current.find(address)
    }
}

/// One line of `/proc/self/maps`.
#[derive(Debug, Hash)]
struct Mapping {
    range: Range<u64>,
    executable: bool,
    offset: u64,
    device: u64,
    inode: u64,
    /// The path or pseudo-path (`[vdso]`, `[heap]`), empty for anonymous
    /// memory.
    name: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MappingKind {
    File,
    Vdso,
    Other,
}

const DELETED: &[u8] = b" (deleted)";

impl Mapping {
    /// Parses `start-end perms offset major:minor inode   path`.
    fn parse(line: &[u8]) -> Option<Mapping> {
        let mut rest = line;
        let range = next_field(&mut rest)?;
        let perms = next_field(&mut rest)?;
        let offset = next_field(&mut rest)?;
        let device = next_field(&mut rest)?;
        let inode = next_field(&mut rest)?;
        let dash = range.iter().position(|&b| b == b'-')?;
        let colon = device.iter().position(|&b| b == b':')?;
        let major = parse_hex(&device[..colon])?;
        let minor = parse_hex(&device[colon + 1..])?;
        Some(Mapping {
            range: parse_hex(&range[..dash])?..parse_hex(&range[dash + 1..])?,
            executable: perms.get(2) == Some(&b'x'),
            offset: parse_hex(offset)?,
            device: (major << 32) | minor,
            inode: std::str::from_utf8(inode).ok()?.parse().ok()?,
            name: rest.trim_ascii_start().to_vec(),
        })
    }

    fn kind(&self) -> MappingKind {
        match self.name.first() {
            Some(b'/') => MappingKind::File,
            _ if self.name == b"[vdso]" => MappingKind::Vdso,
            _ => MappingKind::Other,
        }
    }

    fn path(&self) -> PathBuf {
        let name = self.name.strip_suffix(DELETED).unwrap_or(&self.name);
        path_from_bytes(name)
    }
}

fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let trimmed = rest.trim_ascii_start();
    let end = trimmed
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(trimmed.len());
    let (field, tail) = trimmed.split_at(end);
    *rest = tail;
    (!field.is_empty()).then_some(field)
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// A hash of the executable mappings: it changes when code is mapped or
/// unmapped.
fn fingerprint(mappings: &[Mapping]) -> u64 {
    let mut hasher = DefaultHasher::new();
    mappings
        .iter()
        .filter(|mapping| mapping.executable)
        .for_each(|mapping| mapping.hash(&mut hasher));
    hasher.finish()
}

fn identity(first: &Mapping) -> Identity {
    match first.kind() {
        MappingKind::Vdso => Identity::Vdso {
            start: first.range.start,
        },
        _ => Identity::File {
            path: first.path(),
            device: first.device,
            inode: first.inode,
        },
    }
}

fn hull(group: &[&Mapping]) -> Range<u64> {
    let start = group.iter().map(|m| m.range.start).min().unwrap_or(0);
    let end = group.iter().map(|m| m.range.end).max().unwrap_or(0);
    start..end
}

/// Reads `/proc/self/maps` until two reads in a row agree.
///
/// The kernel produces the file a buffer at a time, and a mapping made or
/// removed between two of those reads (another thread starting, and mapping
/// its stack) can make a line go missing from one read: once, the C
/// library's, which left a hung thread's stack unwound to a single unknown
/// frame. Two identical reads mean nothing moved while reading.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_maps() -> Result<Vec<u8>, ModulesError> {
    const ATTEMPTS: usize = 8;
    let read = || std::fs::read("/proc/self/maps").map_err(ModulesError::Maps);
    let mut previous = read()?;
    for _ in 1..ATTEMPTS {
        let current = read()?;
        if current == previous {
            return Ok(current);
        }
        previous = current;
    }
    // Still moving: the latest read is the best there is.
    Ok(previous)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_maps() -> Result<Vec<u8>, ModulesError> {
    Err(ModulesError::Unsupported)
}

/// Reads `range` of this process's memory through `/proc/self/mem`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_own_memory(range: &Range<u64>) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(range.end.saturating_sub(range.start))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut image = vec![0; len];
    std::fs::File::open("/proc/self/mem")?.read_exact_at(&mut image, range.start)?;
    Ok(image)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_own_memory(_range: &Range<u64>) -> io::Result<Vec<u8>> {
    Err(io::ErrorKind::Unsupported.into())
}

impl Module {
    /// Reads the module made of `group`'s mappings.
    fn read(group: &[&Mapping], identity: Identity, avma_range: Range<u64>) -> Module {
        let first = group[0];
        let path = match &identity {
            Identity::File { path, .. } => path.clone(),
            Identity::Vdso { .. } => PathBuf::from("[vdso]"),
        };
        let name = path
            .file_name()
            .map_or_else(|| path.to_string_lossy(), |name| name.to_string_lossy())
            .into_owned();
        let unwind = OnceLock::new();
        let layout = match &identity {
            Identity::Vdso { .. } => read_own_memory(&first.range)
                .map_err(ModuleError::from)
                .and_then(|image| {
                    // The image is read now, so its unwind sections too.
                    let _ = unwind.set(UnwindSections::parse(&*image).ok());
                    Layout::parse(&*image, group)
                }),
            Identity::File { .. } if first.name.ends_with(DELETED) => Err(ModuleError::Deleted),
            Identity::File { path, .. } => std::fs::File::open(path)
                .map_err(ModuleError::from)
                .and_then(|file| Layout::parse(&object::ReadCache::new(file), group)),
        };
        let base_address = match &layout {
            Ok(layout) => layout.bias.wrapping_add(layout.base_svma),
            Err(_) => first.range.start.wrapping_sub(first.offset),
        };
        Module {
            path,
            name,
            avma_range,
            base_address,
            identity,
            layout,
            unwind,
        }
    }
}

/// The unwind sections of the file at `path`, if it is still the one the
/// maps named: the same inode. (Not the device: on overlayfs, as in
/// containers, the maps may name the underlying file's device while the
/// path's `stat` gives the overlay's.)
fn read_unwind_sections(path: &Path, inode: u64) -> Result<UnwindSections, ModuleError> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.ino() != inode {
        return Err(ModuleError::Deleted);
    }
    UnwindSections::parse(&object::ReadCache::new(file))
}

/// A `PT_LOAD` segment.
struct Segment {
    file_offset: u64,
    file_size: u64,
    svma: u64,
    executable: bool,
}

impl Layout {
    fn parse<'data, R: ReadRef<'data>>(data: R, group: &[&Mapping]) -> Result<Layout, ModuleError> {
        match FileKind::parse(data)? {
            FileKind::Elf64 => Layout::parse_elf::<elf::FileHeader64<Endianness>, R>(data, group),
            FileKind::Elf32 => Layout::parse_elf::<elf::FileHeader32<Endianness>, R>(data, group),
            _ => Err(ModuleError::NotElf),
        }
    }

    fn parse_elf<'data, Elf, R>(data: R, group: &[&Mapping]) -> Result<Layout, ModuleError>
    where
        Elf: FileHeader<Endian = Endianness>,
        R: ReadRef<'data>,
    {
        let header = Elf::parse(data)?;
        let endian = header.endian()?;
        let segments: Vec<Segment> = header
            .program_headers(endian, data)?
            .iter()
            .filter(|segment| segment.p_type(endian) == elf::PT_LOAD)
            .map(|segment| Segment {
                file_offset: segment.p_offset(endian).into(),
                file_size: segment.p_filesz(endian).into(),
                svma: segment.p_vaddr(endian).into(),
                executable: segment.p_flags(endian).contains(elf::PF_X),
            })
            .collect();
        let bias = compute_bias(&segments, group)?;
        let base_svma = segments.iter().map(|s| s.svma).min().unwrap_or(0);

        let sections = header.sections(endian, data)?;
        let build_id = build_id::<Elf, R>(&sections, endian, data)?;
        Ok(Layout {
            bias,
            base_svma,
            build_id,
        })
    }
}

impl UnwindSections {
    fn parse<'data, R: ReadRef<'data>>(data: R) -> Result<UnwindSections, ModuleError> {
        match FileKind::parse(data)? {
            FileKind::Elf64 => UnwindSections::parse_elf::<elf::FileHeader64<Endianness>, R>(data),
            FileKind::Elf32 => UnwindSections::parse_elf::<elf::FileHeader32<Endianness>, R>(data),
            _ => Err(ModuleError::NotElf),
        }
    }

    fn parse_elf<'data, Elf, R>(data: R) -> Result<UnwindSections, ModuleError>
    where
        Elf: FileHeader<Endian = Endianness>,
        R: ReadRef<'data>,
    {
        let header = Elf::parse(data)?;
        let endian = header.endian()?;
        let sections = header.sections(endian, data)?;
        let find = |name: &[u8]| sections.section_by_name(endian, name).map(|(_, s)| s);
        let svma = |section: &Elf::SectionHeader| {
            let start: u64 = section.sh_addr(endian).into();
            start..start.saturating_add(section.sh_size(endian).into())
        };
        let read = |name: &[u8]| -> Result<Option<SectionData>, ModuleError> {
            let Some(section) = find(name) else {
                return Ok(None);
            };
            Ok(Some(SectionData {
                svma: svma(section),
                data: section.data(endian, data)?.into(),
            }))
        };
        let eh_frame = read(b".eh_frame")?;
        let debug_frame = match eh_frame {
            Some(_) => None,
            None => read(b".debug_frame")?.map(|section| section.data),
        };
        Ok(UnwindSections {
            eh_frame_hdr: read(b".eh_frame_hdr")?,
            eh_frame,
            debug_frame,
            text_svma: find(b".text").map(svma),
            got_svma: find(b".got").map(svma),
        })
    }
}

/// The descriptor of the image's `NT_GNU_BUILD_ID` note, in hex.
fn build_id<'data, Elf, R>(
    sections: &object::read::elf::SectionTable<'data, Elf, R>,
    endian: Endianness,
    data: R,
) -> Result<Option<String>, ModuleError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    for section in sections.iter() {
        let Some(mut notes) = section.notes(endian, data)? else {
            continue;
        };
        while let Some(note) = notes.next()? {
            if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                return Ok(Some(hex(note.desc())));
            }
        }
    }
    Ok(None)
}

/// `bytes` in lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// `AVMA - SVMA` for the module, from the first mapping that a segment
/// explains (see the module docs).
fn compute_bias(segments: &[Segment], group: &[&Mapping]) -> Result<u64, ModuleError> {
    let executable_first = [true, false];
    for want_executable in executable_first {
        for mapping in group.iter().filter(|m| m.executable || !want_executable) {
            let candidates = || segments.iter().filter(|s| s.executable || !want_executable);
            let size = mapping.range.end.saturating_sub(mapping.range.start);
            let window = mapping.offset..mapping.offset.saturating_add(MAX_PAGE_SIZE.min(size));
            let starts_here = candidates()
                .filter(|s| window.contains(&s.file_offset))
                .min_by_key(|s| s.file_offset);
            if let Some(segment) = starts_here {
                let avma = mapping
                    .range
                    .start
                    .wrapping_add(segment.file_offset - mapping.offset);
                return Ok(avma.wrapping_sub(segment.svma));
            }
            let contains = candidates().find(|s| {
                (s.file_offset..s.file_offset.saturating_add(s.file_size)).contains(&mapping.offset)
            });
            if let Some(segment) = contains {
                let svma = segment
                    .svma
                    .wrapping_add(mapping.offset - segment.file_offset);
                return Ok(mapping.range.start.wrapping_sub(svma));
            }
        }
    }
    let first = group[0];
    Err(ModuleError::NoMatchingSegment {
        start: first.range.start,
        offset: first.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(line: &str) -> Mapping {
        Mapping::parse(line.as_bytes()).expect("a valid maps line")
    }

    #[test]
    fn parses_maps_lines() {
        let m =
            mapping("7f59065b1000-7f5906707000 r-xp 00026000 fe:01 326279     /usr/lib/libc.so.6");
        assert_eq!(m.range, 0x7f59065b1000..0x7f5906707000);
        assert!(m.executable);
        assert_eq!(m.offset, 0x26000);
        assert_eq!(m.device, (0xfe << 32) | 1);
        assert_eq!(m.inode, 326279);
        assert_eq!(m.kind(), MappingKind::File);
        assert_eq!(m.path(), Path::new("/usr/lib/libc.so.6"));

        let spaces = mapping("1000-2000 r-xp 00000000 fe:01 7 /tmp/a b (deleted)");
        assert_eq!(spaces.path(), Path::new("/tmp/a b"));
        assert!(spaces.name.ends_with(DELETED));

        assert_eq!(
            mapping("1000-2000 r-xp 00000000 00:00 0  [vdso]").kind(),
            MappingKind::Vdso
        );
        assert_eq!(
            mapping("1000-2000 rw-p 00000000 00:00 0").kind(),
            MappingKind::Other
        );
        assert!(Mapping::parse(b"garbage").is_none());
        assert!(Mapping::parse(b"").is_none());
    }

    fn segment(file_offset: u64, file_size: u64, svma: u64, executable: bool) -> Segment {
        Segment {
            file_offset,
            file_size,
            svma,
            executable,
        }
    }

    #[test]
    fn bias_of_an_lld_style_layout() {
        // Offsets packed in the file, addresses one page apart: the
        // executable segment starts inside the page that the mapping maps.
        let segments = [
            segment(0, 0x3c5a0, 0, false),
            segment(0x3c5a0, 0x100000, 0x3d5a0, true),
        ];
        let text = mapping("55d000003000-55d000200000 r-xp 0003c000 fe:01 1 /bin/x");
        let bias = compute_bias(&segments, &[&text]).unwrap();
        assert_eq!(bias, 0x55d000003000 - 0x3d000);
    }

    #[test]
    fn bias_of_a_non_pie_executable_is_zero() {
        let segments = [
            segment(0, 0x1000, 0x400000, false),
            segment(0x1000, 0x5000, 0x401000, true),
        ];
        let first = mapping("400000-401000 r--p 00000000 fe:01 1 /bin/x");
        let text = mapping("401000-406000 r-xp 00001000 fe:01 1 /bin/x");
        assert_eq!(compute_bias(&segments, &[&first, &text]).unwrap(), 0);
    }

    #[test]
    fn bias_of_a_partial_mapping_inside_a_segment() {
        let segments = [segment(0x1000, 0x100000, 0x2000, true)];
        let part = mapping("7000000-7001000 r-xp 00005000 fe:01 1 /bin/x");
        assert_eq!(
            compute_bias(&segments, &[&part]).unwrap(),
            0x7000000 - 0x6000
        );
    }

    #[test]
    fn no_segment_is_an_error_not_a_panic() {
        let part = mapping("7000000-7001000 r-xp 00900000 fe:01 1 /bin/x");
        assert!(matches!(
            compute_bias(&[segment(0, 0x1000, 0, true)], &[&part]),
            Err(ModuleError::NoMatchingSegment { .. })
        ));
    }
}
