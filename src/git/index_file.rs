//! git's index file, read for [`super::tree_write`]: its entries and its cache tree (the `TREE`
//! extension), as git's `Documentation/gitformat-index.txt` lays them out. Only what a tree is
//! made from is read; an index this reader does not fully understand (a split or sparse index,
//! unmerged or intent-to-add entries, a required extension it does not know, a damaged file) is
//! `None`, and git writes the tree instead.

/// One entry: its path (bytes, `/`-separated), mode and object id (raw bytes), borrowed from
/// the index file's bytes where they are stored whole (a v4 path is rebuilt from the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::git) struct Entry<'a> {
    pub path: std::borrow::Cow<'a, [u8]>,
    pub mode: u32,
    pub oid: &'a [u8],
}

/// A node of the cache tree: a folder (`name`, one path component), and while git still holds it
/// valid, the number of index entries beneath it and its tree id; its subfolders' nodes.
#[derive(Debug, Clone, Default)]
pub(in crate::git) struct CacheTree {
    pub name: Vec<u8>,
    pub valid: Option<(usize, Vec<u8>)>,
    pub children: Vec<CacheTree>,
}

pub(in crate::git) struct Index<'a> {
    pub entries: Vec<Entry<'a>>,
    pub cache_tree: Option<CacheTree>,
}

/// Modes git writes into an index (and into trees).
pub(in crate::git) const FILE: u32 = 0o100644;
pub(in crate::git) const EXECUTABLE: u32 = 0o100755;
pub(in crate::git) const SYMLINK: u32 = 0o120000;
pub(in crate::git) const GITLINK: u32 = 0o160000;

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Up to (and past) the next NUL.
    fn until_nul(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let n = rest.iter().position(|b| *b == 0)?;
        self.at += n + 1;
        Some(&rest[..n])
    }

    /// v4's offset: a big-endian base-128 number where each continuation adds one (git's
    /// `decode_varint`, which gives up where the value would overflow).
    fn varint(&mut self) -> Option<usize> {
        let mut b = *self.take(1)?.first()?;
        let mut value = usize::from(b & 0x7f);
        while b & 0x80 != 0 {
            value = value.checked_add(1)?;
            if value >> (usize::BITS - 7) != 0 {
                return None;
            }
            b = *self.take(1)?.first()?;
            value = (value << 7) | usize::from(b & 0x7f);
        }
        Some(value)
    }
}

/// The index file's bytes, if it is a regular file (never a pipe or a device put in its place).
pub(in crate::git) fn read_regular(path: &std::path::Path) -> Option<Vec<u8>> {
    crate::files::read_regular(path, crate::files::Follow::Yes).map(|(_, bytes)| bytes)
}

/// The longest path read (git's own are bounded by the filesystem's, a few KiB): a crafted v4
/// index could otherwise grow each name from the last.
const MAX_PATH: usize = 64 * 1024;

/// Parse `bytes` (a whole index file) whose object ids are `hash_len` bytes long.
pub(in crate::git) fn parse(bytes: &[u8], hash_len: usize) -> Option<Index<'_>> {
    let body = bytes.get(..bytes.len().checked_sub(hash_len)?)?;
    let mut c = Cursor { bytes: body, at: 0 };
    if c.take(4)? != b"DIRC" {
        return None;
    }
    let version = c.u32()?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = c.u32()? as usize;
    let mut entries: Vec<Entry> = Vec::with_capacity(count.min(body.len() / 62));
    for _ in 0..count {
        let start = c.at;
        c.take(24)?; // ctime, mtime, dev, ino: stat data a tree does not need
        let mode = c.u32()?;
        c.take(12)?; // uid, gid, size
        let oid = c.take(hash_len)?;
        let flags = c.u16()?;
        let extended = flags & 0x4000 != 0;
        if flags & 0x3000 != 0 {
            return None; // unmerged: git write-tree refuses it, in its own words
        }
        if extended {
            if version < 3 {
                return None;
            }
            let more = c.u16()?;
            // Intent-to-add is not in a tree (git decides); a bit other than it and
            // skip-worktree is one git itself refuses.
            if more & 0x2000 != 0 || more & !0x6000 != 0 {
                return None;
            }
        }
        let previous: &[u8] = entries.last().map_or(&[], |e| &e.path);
        let path = if version == 4 {
            let strip = c.varint()?;
            let keep = previous.len().checked_sub(strip)?;
            let mut path = previous[..keep].to_vec();
            path.extend_from_slice(c.until_nul()?);
            std::borrow::Cow::Owned(path)
        } else {
            let path = c.until_nul()?;
            // NUL padding to a multiple of eight bytes (the name's own NUL included).
            let used = c.at - start;
            let padded = used.div_ceil(8) * 8;
            c.take(padded - used)?;
            std::borrow::Cow::Borrowed(path)
        };
        let named = usize::from(flags & 0x0fff);
        if !matches!(mode, FILE | EXECUTABLE | SYMLINK | GITLINK)
            || named != path.len().min(0x0fff)
            || path.len() > MAX_PATH
            || path.is_empty()
            || path.first() == Some(&b'/')
            || path.last() == Some(&b'/')
            || previous >= &path[..] && !entries.is_empty()
        {
            return None; // a sparse folder entry, or not in git's order
        }
        entries.push(Entry { path, mode, oid });
    }
    let mut cache_tree = None;
    while c.at < body.len() {
        let signature = c.take(4)?;
        let size = c.u32()? as usize;
        let data = c.take(size)?;
        match signature {
            b"TREE" => {
                let mut t = Cursor { bytes: data, at: 0 };
                let root = cache_tree_node(&mut t, hash_len, 0)?;
                // git ignores a cache tree whose root has a name.
                cache_tree = (t.at == data.len() && root.name.is_empty()).then_some(root);
            }
            // A required extension (any signature not starting with A-Z: `link` of a split
            // index, `sdir` of a sparse one) changes what the entries mean.
            s if !s[0].is_ascii_uppercase() => return None,
            _ => {}
        }
    }
    Some(Index {
        entries,
        cache_tree,
    })
}

fn cache_tree_node(c: &mut Cursor, hash_len: usize, depth: usize) -> Option<CacheTree> {
    if depth > 4096 {
        return None;
    }
    let name = c.until_nul()?.to_vec();
    let rest = c.bytes.get(c.at..)?;
    let line = rest.iter().position(|b| *b == b'\n')?;
    let text = std::str::from_utf8(&rest[..line]).ok()?;
    c.at += line + 1;
    let (count, subtrees) = text.split_once(' ')?;
    let count: i64 = count.parse().ok()?;
    let subtrees: usize = subtrees.parse().ok()?;
    let valid = match usize::try_from(count) {
        Ok(entries) => Some((entries, c.take(hash_len)?.to_vec())),
        Err(_) => None,
    };
    let mut children: Vec<CacheTree> = Vec::with_capacity(subtrees.min(1024));
    for _ in 0..subtrees {
        let child = cache_tree_node(c, hash_len, depth + 1)?;
        if children.iter().any(|n| n.name == child.name) {
            return None; // git stops on it ("internal error")
        }
        children.push(child);
    }
    Some(CacheTree {
        name,
        valid,
        children,
    })
}
