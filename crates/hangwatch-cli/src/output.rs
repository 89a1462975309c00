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
