//! Reading a module's ELF image: its load bias and base address from the
//! `PT_LOAD` segments that its mappings map, its GNU build id, and the
//! sections framehop unwinds it with.
//!
//! Invariants: nothing here panics on a corrupt or hostile file (every
//! failure is a [`ModuleError`] that the module carries); files are read
//! through [`object::ReadCache`], only the parts asked for, never mapped;
//! unwind sections are read from a file only while it is still the one the
//! maps named (the same inode).

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{elf, Endianness, FileKind, ReadRef};

use super::maps::{Mapping, DELETED};
use super::{Identity, Layout, Module, ModuleError, SectionData, UnwindSections};

/// The largest page size: a segment's mapping starts at most this far
/// before the segment's first byte.
const MAX_PAGE_SIZE: u64 = 64 * 1024;

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
    pub(super) fn read(group: &[&Mapping], identity: Identity, avma_range: Range<u64>) -> Module {
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
pub(super) fn read_unwind_sections(path: &Path, inode: u64) -> Result<UnwindSections, ModuleError> {
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
    use crate::stack::modules::maps::tests::mapping;

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
