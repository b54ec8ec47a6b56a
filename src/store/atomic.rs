//! Crash-safe file replacement: a reader sees the old file or the new one, never half of either.

use std::io::Write;
use std::path::Path;

use crate::error::Error;

use crate::error::Result;

/// Write to a temp file in the same folder, fsync it, rename it over `path`, fsync the folder.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    put(path, bytes, Sync::Durable(None))
}

/// [`write`], and the same file (a hard link, else a second copy) under `copy` in the same
/// folder, both made durable by the one fsync of the folder: the last durable version, which
/// [`replace`]s of `path` after it leave alone.
pub fn write_with_copy(path: &Path, copy: &Path, bytes: &[u8]) -> Result<()> {
    put(path, bytes, Sync::Durable(Some(copy)))
}

/// The same replacement without any fsync: readers and a killed process see the old file or
/// the new one. After a power loss `path` may be the one before, or empty, or hold NUL bytes
/// where its data never reached the disk ([`lost_to_power`]); the copy the last [`write_with_copy`]
/// made is then what is left. For progress that a later durable write supersedes: on a
/// journaled disk each fsync costs a journal commit.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    put(path, bytes, Sync::None)
}

/// What a file written by [`replace`] may look like after a power loss: empty, or with NUL bytes
/// where its blocks were never written (JSON and text files never hold a raw NUL).
pub fn lost_to_power(bytes: &[u8]) -> bool {
    bytes.is_empty() || bytes.contains(&0)
}

enum Sync<'a> {
    None,
    Durable(Option<&'a Path>),
}

fn put(path: &Path, bytes: &[u8], sync: Sync) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::other(format!("{} has no parent folder", path.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io_path("create a temp file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| match sync {
            Sync::None => Ok(()),
            Sync::Durable(_) => tmp.as_file().sync_data(),
        })
        .map_err(|e| Error::io_path("write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io_path("replace", path, e.error))?;
    let Sync::Durable(copy) = sync else {
        return Ok(());
    };
    if let Some(copy) = copy {
        link_or_copy(path, copy, bytes)?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io_path("sync", dir, e))
}

/// `copy` becomes `path`'s file: a hard link renamed into place (no second write), or where the
/// filesystem has no hard links a synced copy of the bytes.
fn link_or_copy(path: &Path, copy: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::other(format!("{} has no parent folder", path.display())))?;
    let link = dir.join(format!(".tmp-link-{}", uuid::Uuid::new_v4().simple()));
    match std::fs::hard_link(path, &link) {
        Ok(()) => {
            let renamed = std::fs::rename(&link, copy);
            // rename(2) leaves both names when they already were one file.
            let _ = std::fs::remove_file(&link);
            renamed.map_err(|e| Error::io_path("replace", copy, e))
        }
        Err(_) => put(copy, bytes, Sync::Durable(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The durable copy is the last durable version: later replacements leave it alone.
    #[test]
    fn the_copy_keeps_the_last_durable_version_through_later_replacements() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (file, copy) = (
            tmp.path().join("run.json"),
            tmp.path().join("checkpoint.json"),
        );
        write_with_copy(&file, &copy, b"one\n").expect("durable");
        assert_eq!(std::fs::read(&copy).expect("copy"), b"one\n");
        replace(&file, b"two\n").expect("progress");
        assert_eq!(std::fs::read(&file).expect("file"), b"two\n");
        assert_eq!(std::fs::read(&copy).expect("copy"), b"one\n");
        write_with_copy(&file, &copy, b"three\n").expect("durable");
        assert_eq!(std::fs::read(&copy).expect("copy"), b"three\n");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    }

    #[test]
    fn what_a_power_loss_leaves_is_told_from_text() {
        assert!(lost_to_power(b""));
        assert!(lost_to_power(b"{\n  \"version\": 1,\0\0\0"));
        assert!(!lost_to_power(b"{\"a\": \"\\u0000\"}\n"));
    }
}
