//! Writing the files the commands produce.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use hangwatch_export::{write_file, ExportError};

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
