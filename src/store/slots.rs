//! What git-pipeline knows of each worktree slot, beside its lock (`pipeline/slots/<n>`):
//! `<n>.json` (the folder it made, who used it last, which setup steps ran there) and
//! `<n>.index` (the index of the last run's last snapshot: ours, never the agent's, so that the
//! next run's checkout can trust its cached file stats and write only what differs).
//!
//! Nothing here is trusted for where the slot is: its path is always `<worktree_root>/slot-<n>`,
//! computed, and the folder must still be the one recorded (device and inode) and registered
//! with git before anything enters it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::git::TreeId;

/// Where a run's worktree goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A folder of its own, removed at the end (slots off, or all in use).
    OwnFolder,
    /// Slot `n`, made for this run.
    NewSlot(u32),
    /// Slot `n`, reset from an earlier run.
    Reused(u32),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotState {
    /// The folder's device and inode when it was made.
    pub identity: Option<(u64, u64)>,
    /// The run that has it, or had it last while it was not given back (killed, interrupted).
    pub run: Option<String>,
    /// Kept out of the pool for a person to look at (`--keep`, `run.keep_failed`) until
    /// `abandon` or `clean`.
    #[serde(default)]
    pub kept: bool,
    /// The tree `<n>.index` holds; `None`: there is no index to trust (every file is written).
    pub index_tree: Option<TreeId>,
    /// Each `[[setup]]` step that succeeded here, by name: the digest of its `when_changed`
    /// files then.
    #[serde(default)]
    pub setup: BTreeMap<String, String>,
}

/// The folder of slot files (also where the slot locks are).
fn dir(pipeline_dir: &Path) -> PathBuf {
    pipeline_dir.join("slots")
}

pub fn state_path(pipeline_dir: &Path, number: u32) -> PathBuf {
    dir(pipeline_dir).join(format!("{number}.json"))
}

pub fn index_path(pipeline_dir: &Path, number: u32) -> PathBuf {
    dir(pipeline_dir).join(format!("{number}.index"))
}

/// Where slot `number` of a worktree root is.
pub fn folder(worktree_root: &Path, number: u32) -> PathBuf {
    worktree_root.join(format!("{FOLDER_PREFIX}{number}"))
}

pub const FOLDER_PREFIX: &str = "slot-";

/// The slot number of a folder named like one (`slot-3`).
pub fn number_of(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix(FOLDER_PREFIX)?;
    let canonical = digits == "0"
        || (!digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()));
    if canonical { digits.parse().ok() } else { None }
}

/// The state of slot `number`; `None` when there is none (never made, or forgotten). A state
/// that does not parse is treated as none: the slot's folder is then not recognised as ours and
/// is left alone.
pub fn read(pipeline_dir: &Path, number: u32) -> Result<Option<SlotState>> {
    let path = state_path(pipeline_dir, number);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_path("read", &path, e)),
    }
}

pub fn write(pipeline_dir: &Path, number: u32, state: &SlotState) -> Result<()> {
    let path = state_path(pipeline_dir, number);
    let dir = dir(pipeline_dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io_path("create", &dir, e))?;
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::other(format!("cannot serialise slot state: {e}")))?;
    super::atomic::write(&path, &bytes)
}

/// Forget slot `number` (its folder was removed).
pub fn forget(pipeline_dir: &Path, number: u32) -> Result<()> {
    for path in [
        state_path(pipeline_dir, number),
        index_path(pipeline_dir, number),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_path("remove", &path, e)),
        }
    }
    Ok(())
}

/// Drop the slot's trusted index: the next checkout there writes every file.
pub fn forget_index(pipeline_dir: &Path, number: u32) -> Result<()> {
    let path = index_path(pipeline_dir, number);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io_path("remove", &path, e)),
    }
}

/// Keep `index` (an index file of ours that holds `tree`) as the slot's trusted index, with its
/// modification time: git trusts an entry's cached stat only when the entry is older than the
/// index file.
pub fn keep_index(pipeline_dir: &Path, number: u32, index: &Path) -> Result<()> {
    let to = index_path(pipeline_dir, number);
    let modified = std::fs::metadata(index)
        .and_then(|m| m.modified())
        .map_err(|e| Error::io_path("read the time of", index, e))?;
    std::fs::copy(index, &to).map_err(|e| Error::io_path("copy the index to", &to, e))?;
    std::fs::File::options()
        .write(true)
        .open(&to)
        .and_then(|f| f.set_modified(modified))
        .map_err(|e| Error::io_path("set the time of", &to, e))
}

/// Put the slot's trusted index in place as the worktree's index (`into`); `false` when there is
/// none, and then the worktree has no index at all, so that a checkout writes every file.
pub fn install_index(pipeline_dir: &Path, number: u32, into: &Path) -> Result<bool> {
    let from = index_path(pipeline_dir, number);
    match std::fs::remove_file(into) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io_path("remove", into, e)),
    }
    if !from.exists() {
        return Ok(false);
    }
    let modified = std::fs::metadata(&from)
        .and_then(|m| m.modified())
        .map_err(|e| Error::io_path("read the time of", &from, e))?;
    std::fs::copy(&from, into).map_err(|e| Error::io_path("copy the index to", into, e))?;
    std::fs::File::options()
        .write(true)
        .open(into)
        .and_then(|f| f.set_modified(modified))
        .map_err(|e| Error::io_path("set the time of", into, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slot_folder_names_have_a_number() {
        assert_eq!(number_of(Path::new("/wt/slot-0")), Some(0));
        assert_eq!(number_of(Path::new("/wt/slot-12")), Some(12));
        for other in [
            "/wt/slot-",
            "/wt/slot-01",
            "/wt/slot-1a",
            "/wt/20261202-101502-1234",
            "/wt/slot--1",
        ] {
            assert_eq!(number_of(Path::new(other)), None, "{other}");
        }
    }

    #[test]
    fn state_round_trips_and_garbage_reads_as_none() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        assert_eq!(read(tmp.path(), 0)?, None);
        let state = SlotState {
            identity: Some((1, 2)),
            run: Some("r".to_owned()),
            ..SlotState::default()
        };
        write(tmp.path(), 0, &state)?;
        assert_eq!(read(tmp.path(), 0)?, Some(state));
        std::fs::write(state_path(tmp.path(), 1), b"{not json")
            .map_err(|e| Error::io("write", e))?;
        assert_eq!(read(tmp.path(), 1)?, None);
        forget(tmp.path(), 0)?;
        assert_eq!(read(tmp.path(), 0)?, None);
        Ok(())
    }
}
