//! Crash-safe file replacement: a reader sees the old file or the new one, never half of either.

use std::io::Write;
use std::path::Path;

use crate::error::Error;

use crate::error::Result;

/// Write to a temp file in the same folder, fsync it, rename it over `path`, fsync the folder.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    put(path, bytes, true)
}

/// The same replacement without the folder's fsync: readers and a killed process see the old
/// file or the new one; after a power loss the rename may be lost (the file is the one before)
/// but never leaves an empty file (the new content is synced before the rename). For progress
/// that a later durable write (a checkpoint, the run's end) supersedes; on a journaled disk each
/// fsync costs a journal commit.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    put(path, bytes, false)
}

fn put(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::other(format!("{} has no parent folder", path.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io_path("create a temp file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_data())
        .map_err(|e| Error::io_path("write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io_path("replace", path, e.error))?;
    if durable {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io_path("sync", dir, e))?;
    }
    Ok(())
}
