//! What the inotify watches of git-pipeline's own files (other runs' records, the refs) share:
//! what each watch listens for, how many watches a run may take, and the rules that keep a watch
//! honest. A watch that cannot vouch for what it watches says so (blind), and the caller then
//! stats or walks everything, as where there is no watch.
//!
//! - A file is watched itself (its inode), so a write through a hard link made elsewhere shows.
//! - A file something happened to since the watch began (opened, written, made or moved in) is
//!   looked at again (stat'ed) at every look: a write through a shared memory map sends no event
//!   (it moves the file's mtime and ctime), and a file moved in may have been mapped before.
//!   A file mapped before the watch began and never touched since is the one thing a watch
//!   cannot see (docs/security.md).
//! - A watched folder is the folder at its path at every look (device, inode): a folder above
//!   it renamed and another made in its place sends the watch nothing.
//! - Only "not there" and "not a folder" are expected when adding a watch; anything else (no
//!   permission to read, out of watches) leaves the watch blind.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, Inotify, InotifyEvent, WatchDescriptor};

/// The most watches one watch of git-pipeline's files takes: a thirty-second of the user's limit
/// (`max_user_watches`), never more than 20,000, so a run (a records watch and a refs watch)
/// takes a sixteenth at most. inotify watches are shared with the user's own tools (an editor, a
/// file-watching build): a run must never leave them short. Past it (a history of thousands of
/// runs) the caller stats everything at every check, as without a watch.
pub fn most_watches() -> usize {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    share_of(limit)
}

fn share_of(limit: Option<usize>) -> usize {
    // 8,192 is the kernel's smallest default.
    (limit.unwrap_or(8192) / 32).min(20_000)
}

pub fn folder_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

pub fn file_mask() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_OPEN
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_CLOSE_NOWRITE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// What adding a watch came to.
pub enum Added {
    Watch(WatchDescriptor),
    /// Not there, or not a folder where one was asked for: nothing to watch.
    Absent,
    /// Anything else: the watch can no longer vouch for what it watches.
    Failed,
}

pub fn add(
    inotify: &Inotify,
    path: &Path,
    mask: AddWatchFlags,
    taken: usize,
    most: usize,
) -> Added {
    if taken >= most {
        return Added::Failed;
    }
    match inotify.add_watch(path, mask) {
        Ok(wd) => Added::Watch(wd),
        Err(Errno::ENOENT | Errno::ENOTDIR) => Added::Absent,
        Err(_) => Added::Failed,
    }
}

/// Every event queued since the last read; `None` when events were lost (the queue overflowed)
/// or could not be read: the watch can then no longer vouch for anything.
pub fn drain(inotify: &Inotify) -> Option<Vec<InotifyEvent>> {
    let mut all = Vec::new();
    loop {
        match inotify.read_events() {
            Ok(events) if !events.is_empty() => all.extend(events),
            Ok(_) | Err(Errno::EAGAIN) => break,
            Err(_) => return None,
        }
    }
    if all
        .iter()
        .any(|ev| ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW))
    {
        return None;
    }
    Some(all)
}

/// A folder's device and inode, its path not followed.
pub fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A process that maps a file (shared, writable) and writes through the map when told:
    /// the write sends no inotify event, only the file's mtime and ctime move.
    pub struct MappedWriter {
        child: std::process::Child,
    }

    const WRITER: &str = "import mmap, os, sys\n\
fd = os.open(sys.argv[1], os.O_RDWR)\n\
m = mmap.mmap(fd, 0)\n\
os.close(fd)\n\
print('mapped', flush=True)\n\
sys.stdin.readline()\n\
m[0:1] = b'#'\n\
print('written', flush=True)\n\
sys.stdin.readline()\n";

    impl MappedWriter {
        pub fn start(path: &Path) -> MappedWriter {
            use std::io::BufRead;
            let mut child = std::process::Command::new("python3")
                .args(["-c", WRITER])
                .arg(path)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python3");
            let mut line = String::new();
            let out = child.stdout.as_mut().expect("stdout");
            std::io::BufReader::new(out)
                .read_line(&mut line)
                .expect("read");
            assert_eq!(line.trim(), "mapped");
            MappedWriter { child }
        }

        pub fn write(&mut self) {
            use std::io::{BufRead, Write};
            self.child
                .stdin
                .as_mut()
                .expect("stdin")
                .write_all(b"go\n")
                .expect("tell");
            let mut line = String::new();
            let out = self.child.stdout.as_mut().expect("stdout");
            std::io::BufReader::new(out)
                .read_line(&mut line)
                .expect("read");
            assert_eq!(line.trim(), "written");
        }
    }

    impl Drop for MappedWriter {
        fn drop(&mut self) {
            drop(self.child.stdin.take());
            let _ = self.child.wait();
        }
    }

    #[test]
    fn a_watch_takes_a_thirty_second_of_the_users_watches_at_most() {
        assert_eq!(share_of(Some(8192)), 256);
        assert_eq!(share_of(Some(192_530)), 6_016);
        assert_eq!(share_of(Some(1_048_576)), 20_000);
        assert_eq!(share_of(None), 256);
    }
}
