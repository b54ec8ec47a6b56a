//! Reading a file that another process (an agent with the user's rights) may swap while it is
//! read: one open, and the stat and the bytes both from that descriptor, so that what is kept
//! as "this stat, these bytes" is one file's. A pipe or a device put in the file's place is
//! never waited on.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A file's stat as a fingerprint keeps it: size, mtime and ctime in nanoseconds, inode, device,
/// birth time in nanoseconds (0 where the filesystem keeps none). The ctime moves with every
/// write and no program can set it back, as it can the mtime; the device moves with a
/// filesystem mounted over the folder; the birth time tells a file rewritten in place from a
/// new one given a freed inode's number.
pub type Stamp = (u64, i128, i128, u64, u64, i128);

/// How long after its last change (its ctime) a file's stat is trusted to show the next one:
/// the filesystem clock is coarse, and two writes close together could share a ctime.
pub const SETTLED_NS: i128 = 2_000_000_000;

pub fn stamp(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let birth = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
    (
        m.len(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        m.ino(),
        m.dev(),
        birth,
    )
}

/// Now, in nanoseconds since the epoch (as stamps count).
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Whether a symlink at the path itself is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Yes,
    /// A symlink there is not read (`None`).
    No,
}

/// The stat and the bytes of the regular file at `path`, read no further than the size its
/// stat gave; `None` for anything else (a folder, a pipe, a device, a symlink with
/// [`Follow::No`]) or when it cannot be read.
pub fn read_regular(path: &Path, follow: Follow) -> Option<(std::fs::Metadata, Vec<u8>)> {
    let mut flags = nix::fcntl::OFlag::O_NONBLOCK;
    if follow == Follow::No {
        flags |= nix::fcntl::OFlag::O_NOFOLLOW;
    }
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 20));
    file.take(meta.len()).read_to_end(&mut bytes).ok()?;
    Some((meta, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_a_pipe_is_not_waited_on() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("f");
        std::fs::write(&file, "bytes").expect("write");
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&file, &link).expect("link");
        let fifo = tmp.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        let read = |p: &Path, f| read_regular(p, f).map(|(_, b)| b);
        assert_eq!(read(&file, Follow::No).as_deref(), Some(&b"bytes"[..]));
        assert_eq!(read(&link, Follow::Yes).as_deref(), Some(&b"bytes"[..]));
        assert_eq!(read(&link, Follow::No), None);
        assert_eq!(read(&fifo, Follow::Yes), None);
        assert_eq!(read(tmp.path(), Follow::Yes), None);
    }
}
