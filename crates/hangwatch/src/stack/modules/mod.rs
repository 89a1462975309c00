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
//!
//! # Where the code is
//!
//! This file has the types and the snapshot; `maps` reads and parses
//! `/proc/self/maps`, `elf` reads a module's image (bias, build id, unwind
//! sections), `refresh` keeps the live snapshot and decides when to reread.

mod elf;
mod maps;
mod refresh;

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub(crate) use elf::hex;
use maps::{fingerprint, hull, identity, read_maps, Mapping, MappingKind};
pub use refresh::LiveModules;

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
                Identity::File { path, inode, .. } => elf::read_unwind_sections(path, *inode).ok(),
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
