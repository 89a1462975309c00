//! Symbolication: from an [`UnwoundStack`] to a [`Stack`] of functions,
//! files and lines, inlined calls expanded.
//!
//! # Algorithm
//!
//! For each frame, the lookup address (the instruction pointer, or the
//! return address minus one) is turned into the SVMA its module's file
//! states (`address - bias`, see [`modules`](crate::stack::modules)), and
//! looked up:
//!
//! 1. in the module's DWARF with addr2line, which yields the chain of
//!    inlined calls at that address, innermost first: each inlined callee
//!    with its own file and line, then the function they were inlined into,
//!    with the line of the call. All but the last of these frames are marked
//!    `inlined`;
//! 2. else (no DWARF, or DWARF that does not cover the address: assembly,
//!    libc from a distribution), in the symbol table: `.symtab`, or
//!    `.dynsym` when the file was stripped. This gives a function name and
//!    nothing else. The symbol table also names a DWARF function that has no
//!    name.
//!
//! Names are demangled with rustc-demangle in its alternate form, without
//! the hash (`hangwatch::stack::unwind::Unwinder::unwind`); names that are
//! not Rust's are left as they are.
//!
//! An address in no module, or in a module whose file cannot be read, gives
//! one frame with what is known (the address; the module and offset if any)
//! and no function; a module whose DWARF is corrupt is symbolicated from its
//! symbol table. Symbolication never fails as a whole.
//!
//! # Caches
//!
//! A [`Symbolizer`] is owned by one worker. It keeps, per module (by path,
//! device and inode, so that a library replaced on disk and loaded again is
//! read again), the file's bytes, its addr2line context and its symbol
//! table, and it remembers the modules that could not be read so that it
//! does not try again. addr2line parses each compilation unit's line table
//! and functions the first time an address in it is looked up. So reading a
//! large binary costs tens of milliseconds (in an optimized build), the first
//! stack through it a fraction of a millisecond more, and the next ones a
//! microsecond or two per frame. [`Symbolizer::preload`] pays the per-module
//! part ahead of time; [`Symbolizer::raw`] gives addresses, modules and offsets with no
//! symbolication at all, for when the deadline has passed.
//!
//! Files are read whole with `std::fs::read` (nothing is mapped); DWARF
//! sections are views into those bytes unless compressed. Split DWARF
//! (`.dwo`) and separate debug files (`/usr/lib/debug`) are not looked up.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use addr2line::gimli;
use object::{CompressionFormat, Object, ObjectSection, ObjectSymbol, SymbolKind};

use crate::stack::modules::{Identity, LiveModules, Module};
use crate::stack::unwind::UnwoundStack;
use crate::stack::{Frame, Stack};

/// A module's file, read whole and shared by its DWARF sections and its
/// symbol table.
type Bytes = Arc<Vec<u8>>;

/// Why a module's symbols could not be read.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SymbolizeError {
    /// The module's file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Arc<io::Error>,
    },
    /// The module could not be read when it was listed (its file was
    /// deleted, or is not ELF), so its addresses cannot be mapped to the
    /// file's.
    #[error("the module could not be read: {0}")]
    Module(String),
    /// The file is corrupt.
    #[error("corrupt object file: {0}")]
    Object(#[from] object::read::Error),
    /// The file's DWARF is corrupt.
    #[error("corrupt DWARF: {0}")]
    Dwarf(#[from] gimli::Error),
}

/// Turns unwound stacks into symbolicated ones. Owned by one worker thread;
/// caches what it parsed (see the module docs).
#[derive(Default)]
pub struct Symbolizer {
    loaded: HashMap<Identity, Result<ModuleSymbols, SymbolizeError>>,
    /// For [`Symbolizer::symbolize_address`], which has no module at hand.
    modules: LiveModules,
}

impl Symbolizer {
    /// A symbolizer with empty caches.
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// The frames of `stack`, inlined calls expanded, innermost first.
    pub fn symbolize(&mut self, stack: &UnwoundStack) -> Stack {
        let mut frames = Vec::with_capacity(stack.frames.len());
        for frame in &stack.frames {
            let raw = raw_frame(
                frame.lookup_address(),
                frame.module.as_deref(),
                frame.module_offset,
            );
            self.expand(raw, frame.module.as_deref(), &mut frames);
        }
        Stack {
            frames,
            ..Symbolizer::raw_frameless(stack)
        }
    }

    /// The frames of one instruction address of this process (the inlined
    /// callees first, then the function they are in), looking its module up
    /// in a module snapshot of the symbolizer's own.
    pub fn symbolize_address(&mut self, address: u64) -> Vec<Frame> {
        let module = self.modules.find_or_refresh(address).cloned();
        let offset = module.as_ref().and_then(|m| m.offset_of(address));
        let raw = raw_frame(address, module.as_deref(), offset);
        let mut frames = Vec::new();
        self.expand(raw, module.as_deref(), &mut frames);
        frames
    }

    /// Reads `module`'s symbols now rather than at its first address. An
    /// error says what will be missing: everything, or (for a DWARF error)
    /// all but the symbol table's names.
    pub fn preload(&mut self, module: &Module) -> Result<(), SymbolizeError> {
        match self.symbols(module) {
            Ok(symbols) => symbols.dwarf_error.clone().map_or(Ok(()), Err),
            Err(error) => Err(error.clone()),
        }
    }

    /// The frames of `stack` with addresses, modules and offsets only: no
    /// file is read. For when symbolication would take too long.
    pub fn raw(stack: &UnwoundStack) -> Stack {
        Stack {
            frames: stack
                .frames
                .iter()
                .map(|frame| {
                    raw_frame(
                        frame.lookup_address(),
                        frame.module.as_deref(),
                        frame.module_offset,
                    )
                })
                .collect(),
            ..Symbolizer::raw_frameless(stack)
        }
    }

    /// `stack`'s truncation and capture, without frames.
    fn raw_frameless(stack: &UnwoundStack) -> Stack {
        Stack {
            frames: Vec::new(),
            truncated: stack.truncated,
            capture: Some(stack.method),
            blocked_in: stack.syscall.map(crate::stack::sampler::describe_syscall),
        }
    }

    fn symbols(&mut self, module: &Module) -> Result<&ModuleSymbols, &SymbolizeError> {
        self.loaded
            .entry(module.identity().clone())
            .or_insert_with(|| ModuleSymbols::load(module))
            .as_ref()
    }

    /// Pushes the frames at `raw.address`, or `raw` itself when nothing is
    /// known about it.
    fn expand(&mut self, raw: Frame, module: Option<&Module>, out: &mut Vec<Frame>) {
        let found = module.and_then(|module| {
            let svma = module.svma_of(raw.address)?;
            let symbols = self.symbols(module).ok()?;
            Some((svma, symbols))
        });
        match found {
            Some((svma, symbols)) => symbols.frames(svma, &raw, out),
            None => out.push(raw),
        }
    }
}

fn raw_frame(address: u64, module: Option<&Module>, module_offset: Option<u64>) -> Frame {
    Frame {
        address,
        module: module.map(|module| module.name().to_owned()),
        module_offset,
        ..Frame::default()
    }
}

/// What a module's file says about its addresses.
struct ModuleSymbols {
    dwarf: Option<addr2line::Context<SharedReader>>,
    /// Why the file's DWARF could not be used; the symbol table still is.
    dwarf_error: Option<SymbolizeError>,
    symbols: SymbolTable,
}

impl ModuleSymbols {
    fn load(module: &Module) -> Result<ModuleSymbols, SymbolizeError> {
        if let Some(error) = module.error() {
            return Err(SymbolizeError::Module(error.to_string()));
        }
        let data: Bytes = match module.image() {
            Some(image) => Arc::new(image.to_vec()),
            None => Arc::new(read_file(module.path())?),
        };
        let file = object::File::parse(data.as_slice())?;
        let (dwarf, dwarf_error) = match file.section_by_name(".debug_info") {
            Some(_) => match load_dwarf(&file, &data) {
                Ok(dwarf) => (Some(dwarf), None),
                Err(error) => (None, Some(error)),
            },
            None => (None, None),
        };
        Ok(ModuleSymbols {
            dwarf,
            dwarf_error,
            symbols: SymbolTable::new(&file, &data),
        })
    }

    /// Pushes the frames at `svma` (see the module docs), based on `raw`.
    fn frames(&self, svma: u64, raw: &Frame, out: &mut Vec<Frame>) {
        let first = out.len();
        if let Some(Ok(mut found)) = self
            .dwarf
            .as_ref()
            .map(|dwarf| dwarf.find_frames(svma).skip_all_loads())
        {
            while let Ok(Some(frame)) = found.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|name| name.raw_name().ok())
                    .map(|name: Cow<'_, str>| demangle(&name));
                let location = frame.location.as_ref();
                let file = location.and_then(|l| l.file).map(str::to_owned);
                let line = location.and_then(|l| l.line);
                if function.is_some() || file.is_some() {
                    out.push(Frame {
                        function,
                        file,
                        line,
                        inlined: true,
                        ..raw.clone()
                    });
                }
            }
        }
        match out.get_mut(first..).and_then(|frames| frames.last_mut()) {
            Some(outermost) => {
                outermost.inlined = false;
                if outermost.function.is_none() {
                    outermost.function = self.symbols.lookup(svma).map(demangle);
                }
            }
            None => out.push(Frame {
                function: self.symbols.lookup(svma).map(demangle),
                ..raw.clone()
            }),
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, SymbolizeError> {
    std::fs::read(path).map_err(|source| SymbolizeError::Read {
        path: path.to_owned(),
        source: Arc::new(source),
    })
}

fn load_dwarf(
    file: &object::File<'_>,
    data: &Bytes,
) -> Result<addr2line::Context<SharedReader>, SymbolizeError> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let sections = gimli::Dwarf::load(|id| dwarf_section(file, data, id, endian))?;
    Ok(addr2line::Context::from_dwarf(sections)?)
}

/// A DWARF section of `file`: a view into `data`, or a decompressed copy.
fn dwarf_section(
    file: &object::File<'_>,
    data: &Bytes,
    id: gimli::SectionId,
    endian: gimli::RunTimeEndian,
) -> Result<SharedReader, SymbolizeError> {
    let Some(section) = file.section_by_name(id.name()) else {
        return Ok(SharedReader::whole(Arc::default(), endian));
    };
    let compression = section.compressed_file_range()?.format;
    let in_file = section.file_range().and_then(|(offset, size)| {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        (end <= data.len()).then_some(start..end)
    });
    match in_file {
        Some(range) if compression == CompressionFormat::None => Ok(SharedReader {
            data: Arc::clone(data),
            range,
            endian,
        }),
        _ => Ok(SharedReader::whole(
            Arc::new(section.uncompressed_data()?.into_owned()),
            endian,
        )),
    }
}

/// A gimli reader over a range of shared bytes, so that an addr2line
/// context can own the file it reads (gimli's own `EndianArcSlice` needs a
/// gimli feature that addr2line does not enable).
///
/// Invariant: `range` lies within `data`.
#[derive(Clone)]
struct SharedReader {
    data: Bytes,
    range: Range<usize>,
    endian: gimli::RunTimeEndian,
}

impl SharedReader {
    fn whole(data: Bytes, endian: gimli::RunTimeEndian) -> SharedReader {
        SharedReader {
            range: 0..data.len(),
            data,
            endian,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.data.get(self.range.clone()).unwrap_or_default()
    }

    /// Checks that `len` more bytes are there.
    fn check(&self, len: usize) -> gimli::Result<()> {
        if len <= self.range.len() {
            Ok(())
        } else {
            Err(gimli::Error::UnexpectedEof(gimli::Reader::offset_id(self)))
        }
    }
}

impl fmt::Debug for SharedReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedReader({:?})", self.range)
    }
}

impl gimli::Reader for SharedReader {
    type Endian = gimli::RunTimeEndian;
    type Offset = usize;

    fn endian(&self) -> Self::Endian {
        self.endian
    }

    fn len(&self) -> usize {
        self.range.len()
    }

    fn empty(&mut self) {
        self.range.end = self.range.start;
    }

    fn truncate(&mut self, len: usize) -> gimli::Result<()> {
        self.check(len)?;
        self.range.end = self.range.start + len;
        Ok(())
    }

    fn offset_from(&self, base: &Self) -> usize {
        self.range.start.wrapping_sub(base.range.start)
    }

    fn offset_id(&self) -> gimli::ReaderOffsetId {
        let address = self.data.as_ptr() as usize + self.range.start;
        gimli::ReaderOffsetId(address as u64)
    }

    fn lookup_offset_id(&self, id: gimli::ReaderOffsetId) -> Option<usize> {
        let offset = id.0.checked_sub(self.offset_id().0)?;
        usize::try_from(offset)
            .ok()
            .filter(|&offset| offset <= self.range.len())
    }

    fn find(&self, byte: u8) -> gimli::Result<usize> {
        self.bytes()
            .iter()
            .position(|&b| b == byte)
            .ok_or(gimli::Error::UnexpectedEof(self.offset_id()))
    }

    fn skip(&mut self, len: usize) -> gimli::Result<()> {
        self.check(len)?;
        self.range.start += len;
        Ok(())
    }

    fn split(&mut self, len: usize) -> gimli::Result<Self> {
        self.check(len)?;
        let mut head = self.clone();
        head.range.end = head.range.start + len;
        self.range.start += len;
        Ok(head)
    }

    fn to_slice(&self) -> gimli::Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self.bytes()))
    }

    fn to_string(&self) -> gimli::Result<Cow<'_, str>> {
        std::str::from_utf8(self.bytes())
            .map(Cow::Borrowed)
            .map_err(|_| gimli::Error::BadUtf8)
    }

    fn to_string_lossy(&self) -> gimli::Result<Cow<'_, str>> {
        Ok(String::from_utf8_lossy(self.bytes()))
    }

    fn read_slice(&mut self, buf: &mut [u8]) -> gimli::Result<()> {
        let head = self.split(buf.len())?;
        buf.copy_from_slice(head.bytes());
        Ok(())
    }
}

/// Rust names demangled without their hash; other names as they are.
fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.to_owned(),
    }
}

/// The function symbols of a file, sorted by address; names are ranges of
/// the file's bytes.
struct SymbolTable {
    data: Bytes,
    symbols: Vec<Symbol>,
}

struct Symbol {
    address: u64,
    size: u64,
    name: Range<usize>,
}

impl SymbolTable {
    fn new(file: &object::File<'_>, data: &Bytes) -> SymbolTable {
        let functions = |symbols: object::SymbolIterator<'_, '_>| -> Vec<Symbol> {
            symbols
                .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
                .filter_map(|s| {
                    Some(Symbol {
                        address: s.address(),
                        size: s.size(),
                        name: range_within(data, s.name_bytes().ok()?)?,
                    })
                })
                .collect()
        };
        let mut symbols = functions(file.symbols());
        if symbols.is_empty() {
            symbols = functions(file.dynamic_symbols());
        }
        // Of the aliases at one address (`getpid`, `__getpid`), keep the
        // one with the fewest leading underscores: the public name.
        let underscores = |name: &Range<usize>| {
            data.get(name.clone())
                .map_or(0, |name| name.iter().take_while(|&&b| b == b'_').count())
        };
        symbols.sort_by_cached_key(|s| (s.address, underscores(&s.name)));
        symbols.dedup_by_key(|s| s.address);
        SymbolTable {
            data: Arc::clone(data),
            symbols,
        }
    }

    /// The name of the function that contains `svma`.
    fn lookup(&self, svma: u64) -> Option<&str> {
        let after = self.symbols.partition_point(|s| s.address <= svma);
        let symbol = self.symbols.get(after.checked_sub(1)?)?;
        let inside = symbol.size == 0 || svma - symbol.address < symbol.size;
        let name = self.data.get(symbol.name.clone())?;
        inside.then(|| std::str::from_utf8(name).ok()).flatten()
    }
}

/// Where `inner`, a slice of `outer`, lies in it.
fn range_within(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_names_without_hash() {
        assert_eq!(
            demangle("_ZN9hangwatch5stack6unwind8Unwinder6unwind17h0123456789abcdefE"),
            "hangwatch::stack::unwind::Unwinder::unwind"
        );
        assert_eq!(demangle("getpid"), "getpid");
    }

    #[test]
    fn range_within_rejects_foreign_slices() {
        let outer = [0u8; 16];
        let other = [0u8; 4];
        assert_eq!(range_within(&outer, &outer[3..7]), Some(3..7));
        assert_eq!(range_within(&outer, &other), None);
    }
}
