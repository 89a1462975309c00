//! The pre-blazesym symbolizer, kept for side-by-side measurement only
//! (`symbolize_*_reference` in [`Report`](crate::Report)); nothing but the
//! bench uses it.
//!
//! It is hangwatch's symbolizer as it was before symbolication moved to
//! blazesym, ported to the crate's public API: modules are keyed by
//! [`Module::path`] (the original keyed them by path, device and inode, a
//! crate-private identity), and the vDSO, which the original read from
//! memory, is not symbolicated (its frames keep their address). Otherwise
//! it does what it did:
//!
//! - each module's file is read **whole into the heap** with
//!   `std::fs::read` (nothing is mapped); DWARF sections are views into those
//!   bytes unless compressed (then decompressed copies);
//! - addresses are looked up with addr2line (inlined calls expanded,
//!   innermost first), else in the symbol table (`.symtab`, or `.dynsym`
//!   for a stripped file); addr2line parses each compilation unit's line
//!   table and functions the first time an address in it is looked up;
//! - names are demangled with rustc-demangle's alternate form (no hash).
//!
//! A module whose file cannot be read gives frames with no function.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use addr2line::gimli;
use object::{CompressionFormat, Object, ObjectSection, ObjectSymbol, SymbolKind};

use hangwatch::test_util::{normalize, Module, UnwoundStack};
use hangwatch::{Frame, Stack};

/// A module's file, read whole and shared by its DWARF sections and its
/// symbol table.
type Bytes = Arc<Vec<u8>>;

/// Why a module's symbols could not be read (the original's error type,
/// flattened to its message).
type SymbolizeError = String;

/// Turns unwound stacks into symbolicated ones, caching per module path
/// what it read (see the module docs).
#[derive(Default)]
pub struct ReferenceSymbolizer {
    loaded: HashMap<PathBuf, Result<ModuleSymbols, SymbolizeError>>,
}

impl ReferenceSymbolizer {
    /// A symbolizer with empty caches.
    pub fn new() -> ReferenceSymbolizer {
        ReferenceSymbolizer::default()
    }

    /// The frames of `stack`, inlined calls expanded, innermost first.
    pub fn symbolize(&mut self, stack: &UnwoundStack) -> Stack {
        // hangwatch's normalized frames (address, module, path, build id,
        // offset), one per unwound frame, and the stack's other fields.
        let raw = normalize(stack);
        let mut frames = Vec::with_capacity(stack.frames.len());
        for (frame, normalized) in stack.frames.iter().zip(&raw.frames) {
            self.expand(normalized.clone(), frame.module.as_deref(), &mut frames);
        }
        Stack { frames, ..raw }
    }

    fn symbols(&mut self, module: &Module) -> Result<&ModuleSymbols, &SymbolizeError> {
        self.loaded
            .entry(module.path().to_owned())
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

/// What a module's file says about its addresses.
struct ModuleSymbols {
    dwarf: Option<addr2line::Context<SharedReader>>,
    symbols: SymbolTable,
}

impl ModuleSymbols {
    fn load(module: &Module) -> Result<ModuleSymbols, SymbolizeError> {
        if let Some(error) = module.error() {
            return Err(format!("the module could not be read: {error}"));
        }
        let data: Bytes = Arc::new(read_file(module.path())?);
        let file = object::File::parse(data.as_slice())
            .map_err(|error| format!("corrupt object file: {error}"))?;
        // A module whose DWARF is corrupt is symbolicated from its symbol
        // table.
        let dwarf = file
            .section_by_name(".debug_info")
            .and_then(|_| load_dwarf(&file, &data).ok());
        Ok(ModuleSymbols {
            dwarf,
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
    std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
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
    addr2line::Context::from_dwarf(sections).map_err(|error| format!("corrupt DWARF: {error}"))
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
    let compression = section
        .compressed_file_range()
        .map_err(|error| format!("corrupt object file: {error}"))?
        .format;
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
            Arc::new(
                section
                    .uncompressed_data()
                    .map_err(|error| format!("corrupt object file: {error}"))?
                    .into_owned(),
            ),
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
