//! Files read around every step (the repository's config and hooks, every config file git
//! reads), kept with the stat they had: a fingerprint taken again reads only those whose stat
//! moved. A stat is one syscall; a read is four, and a repository's hooks folder alone holds a
//! dozen sample files.
//!
//! A file is kept only when it was last changed well before it was looked at (its ctime): a
//! change within the filesystem clock's granularity of an earlier one could leave its stat as it
//! was. Every later change moves the ctime, which no program can set back (unlike the mtime).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::files::{SETTLED_NS, Stamp, now_ns, stamp};

/// A file's bytes as last read, with the stat it had then.
type Kept = (Stamp, Arc<Vec<u8>>);

#[derive(Debug, Default)]
pub struct Reread(Mutex<HashMap<PathBuf, Kept>>);

impl Reread {
    /// The bytes of `path`, following symlinks; `None` when it is not a regular file or cannot be
    /// read.
    pub fn read(&self, path: &Path) -> Option<Arc<Vec<u8>>> {
        self.read_settled(path, now_ns() - SETTLED_NS)
    }

    /// [`Reread::read`], keeping what was last changed before `settled` (ns since the epoch).
    fn read_settled(&self, path: &Path, settled: i128) -> Option<Arc<Vec<u8>>> {
        // The stat of what a read reaches (a symlink's target): re-pointing the link reaches
        // another file, with another stamp.
        let Ok(meta) = std::fs::metadata(path) else {
            self.forget(path);
            return None;
        };
        let now = stamp(&meta);
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, bytes)) = kept.get(path)
            && *s == now
        {
            return Some(bytes.clone());
        }
        drop(kept);
        // Kept with the stat of the very file read: the path may reach another since the stat.
        let Some((meta, bytes)) = crate::files::read_regular(path, crate::files::Follow::Yes)
        else {
            self.forget(path);
            return None;
        };
        let read = stamp(&meta);
        let bytes = Arc::new(bytes);
        kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if read.2 < settled {
            kept.insert(path.to_path_buf(), (read, bytes.clone()));
        } else {
            kept.remove(path);
        }
        Some(bytes)
    }

    fn forget(&self, path: &Path) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rewritten in place to the same length with its mtime put back, or replaced through a
    /// symlink re-pointed: read again either way. Just written: never kept.
    #[test]
    fn a_file_is_read_again_whenever_its_stat_moved() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("config");
        std::fs::write(&file, "[core]\n\tbare = false\n").expect("write");
        let cache = Reread::default();
        let everything = now_ns() + 60_000_000_000;
        let read = |p: &Path| cache.read_settled(p, everything).map(|b| b.to_vec());
        assert_eq!(
            read(&file).as_deref(),
            Some(&b"[core]\n\tbare = false\n"[..])
        );
        let mtime = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&file, "[core]\n\tbare = truee\n").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime back");
        assert_eq!(
            read(&file).as_deref(),
            Some(&b"[core]\n\tbare = truee\n"[..])
        );
        let other = tmp.path().join("other");
        std::fs::write(&other, "[core]\n\tbare = other\n").expect("write");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("link");
        assert_eq!(
            read(&link).as_deref(),
            Some(&b"[core]\n\tbare = truee\n"[..])
        );
        std::fs::remove_file(&link).expect("rm");
        std::os::unix::fs::symlink(&other, &link).expect("link");
        assert_eq!(
            read(&link).as_deref(),
            Some(&b"[core]\n\tbare = other\n"[..])
        );
        std::fs::remove_file(&file).expect("rm");
        assert_eq!(read(&file), None);
        // A hook made a link to a pipe: never waited on (no writer will ever come).
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        std::fs::remove_file(&link).expect("rm");
        std::os::unix::fs::symlink(&fifo, &link).expect("link");
        assert_eq!(read(&link), None);
        let fresh = Reread::default();
        fresh.read(&other);
        assert!(
            fresh.0.lock().expect("lock").is_empty(),
            "just written: not kept"
        );
    }
}
