//! `/proc/self/maps`: reading it whole, parsing its lines into
//! [`Mapping`]s, and what a group of mappings says about the module they
//! form (its identity, its address range, the fingerprint that tells a
//! snapshot whether anything changed).
//!
//! Invariants: parsing never panics (a line it does not understand is
//! skipped); a read of the maps is one that two reads in a row agreed on,
//! when the kernel lets it settle.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;
use std::path::PathBuf;

use super::{Identity, ModulesError};

/// One line of `/proc/self/maps`.
#[derive(Debug, Hash)]
pub(super) struct Mapping {
    pub(super) range: Range<u64>,
    pub(super) executable: bool,
    pub(super) offset: u64,
    pub(super) device: u64,
    pub(super) inode: u64,
    /// The path or pseudo-path (`[vdso]`, `[heap]`), empty for anonymous
    /// memory.
    pub(super) name: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MappingKind {
    File,
    Vdso,
    Other,
}

pub(super) const DELETED: &[u8] = b" (deleted)";

impl Mapping {
    /// Parses `start-end perms offset major:minor inode   path`.
    pub(super) fn parse(line: &[u8]) -> Option<Mapping> {
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

    pub(super) fn kind(&self) -> MappingKind {
        match self.name.first() {
            Some(b'/') => MappingKind::File,
            _ if self.name == b"[vdso]" => MappingKind::Vdso,
            _ => MappingKind::Other,
        }
    }

    pub(super) fn path(&self) -> PathBuf {
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
pub(super) fn fingerprint(mappings: &[Mapping]) -> u64 {
    let mut hasher = DefaultHasher::new();
    mappings
        .iter()
        .filter(|mapping| mapping.executable)
        .for_each(|mapping| mapping.hash(&mut hasher));
    hasher.finish()
}

pub(super) fn identity(first: &Mapping) -> Identity {
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

pub(super) fn hull(group: &[&Mapping]) -> Range<u64> {
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
pub(super) fn read_maps() -> Result<Vec<u8>, ModulesError> {
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
pub(super) fn read_maps() -> Result<Vec<u8>, ModulesError> {
    Err(ModulesError::Unsupported)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::path::Path;

    /// A mapping parsed from `line`, which must be a valid maps line.
    pub(in crate::stack::modules) fn mapping(line: &str) -> Mapping {
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
}
