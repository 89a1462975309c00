//! Writing the files the commands produce.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use hangwatch_export::{write_file, ExportError};

/// Whether two paths name one existing file (an output that would
/// overwrite an input).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
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
