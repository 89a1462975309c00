//! Writing the files the commands produce.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use hangwatch_export::{write_file, ExportError};

/// Whether two paths name one existing file (an output that would
/// overwrite an input): the same path once links are followed, or, on
/// Unix, the same inode (a hard link).
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(a), Ok(b)) = (a.canonicalize(), b.canonicalize()) {
        if a == b {
            return true;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
    }
    false
}

/// Whether two outputs would land in one file: the same file now, or the
/// same name in the same directory (for files not written yet).
pub fn same_output(a: &Path, b: &Path) -> bool {
    same_file(a, b) || matches!((resolved(a), resolved(b)), (Some(a), Some(b)) if a == b)
}

/// `path` with its directory resolved (links, `..`), whether or not the
/// file itself exists yet.
fn resolved(path: &Path) -> Option<std::path::PathBuf> {
    if let Ok(path) = path.canonicalize() {
        return Some(path);
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Some(directory.canonicalize().ok()?.join(path.file_name()?))
}

/// Writes `what` to `path`: a line saying where, or why not.
pub fn save(
    path: &Path,
    what: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), ExportError>,
) -> Result<String, String> {
    match write_file(path, write) {
        Ok(()) => Ok(format!("wrote {what} to {}", path.display())),
        Err(error) => Err(format!("{what} not written: {error}")),
    }
}
