//! Restore on `dir` by delta: the staging tree of a restore is built from
//! the snapshot, but a regular file whose bytes, size, mode, owner, times
//! and xattrs are those of the same path in the current volume is not
//! copied: the current volume's inode is hard-linked in its place. The
//! swap that follows is the same atomic exchange as before, so a failed
//! restore still leaves the instance as it was; what changes is that only
//! what differs is written (LXD's `dir` restore, rsync in place, writes the
//! differences too, but onto the live tree, which a failure leaves half
//! restored).
//!
//! Exactness: a file is taken from the current volume only after its
//! content compared equal byte for byte (metadata alone can be forged from
//! inside the guest: `touch -d` after a same-size write), and each current
//! inode is used at most once, for one name of one snapshot inode, so the
//! staging tree has exactly the snapshot's hard-link structure.
//!
//! Safety: the current volume is the guest's tree. It is walked only by
//! directory fds opened `O_NOFOLLOW`, entries are looked up one name at a
//! time relative to those fds, a file is opened `O_NOFOLLOW | O_NONBLOCK`
//! and checked by `fstat` to be the regular file that was compared, and it
//! is linked from that very fd (`linkat(AT_EMPTY_PATH)`): a guest that
//! swaps a path for a symlink or another file mid-restore gets the
//! snapshot's copy, never a link to anything outside its tree.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};

use crate::fileops::{
    copy_regular, copy_special, copy_xattrs, io, list, open_dir, set_times, symlink_xattrs, xattrs,
};

/// What a delta build did: files taken from the current volume (hard
/// links) and files (or other entries) written from the snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeltaStats {
    pub linked: u64,
    pub copied: u64,
    pub bytes_copied: u64,
}

/// Builds `staging` (which must not exist) as an exact copy of `snapshot`,
/// hard-linking unchanged regular files from `current` (which may be
/// missing). All three are on one filesystem.
pub fn build(snapshot: &Path, current: &Path, staging: &Path) -> std::io::Result<DeltaStats> {
    let snap = open_dir(None, snapshot.as_os_str())?;
    let cur = open_dir(None, current.as_os_str()).ok();
    let st = fstat(snap.as_fd()).map_err(io)?;
    std::fs::create_dir(staging)?;
    let stg = open_dir(None, staging.as_os_str())?;
    let mut b = Builder {
        stats: DeltaStats::default(),
        seen: HashMap::new(),
        used: HashSet::new(),
        bufs: (vec![0u8; COMPARE_BUF], vec![0u8; COMPARE_BUF]),
    };
    b.walk(&snap, cur.as_ref(), &stg)?;
    finish_dir(&snap, &stg, &st)?;
    Ok(b.stats)
}

struct Builder {
    stats: DeltaStats,
    /// Snapshot inodes with more than one name: where the first name went.
    seen: HashMap<(u64, u64), (Arc<OwnedFd>, CString)>,
    /// Current inodes already linked into the staging tree.
    used: HashSet<(u64, u64)>,
    /// The two buffers every byte comparison reads into (allocated once:
    /// a fresh pair per file cost more than the reads themselves).
    bufs: (Vec<u8>, Vec<u8>),
}

/// The size of each comparison buffer.
const COMPARE_BUF: usize = 256 * 1024;

impl Builder {
    fn walk(
        &mut self,
        snap: &OwnedFd,
        cur: Option<&OwnedFd>,
        stg: &OwnedFd,
    ) -> std::io::Result<()> {
        let stg_shared = Arc::new(stg.try_clone()?);
        for name in list(snap)? {
            let st =
                fstatat(snap.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)?;
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            if kind == SFlag::S_IFDIR {
                mkdirat(
                    stg.as_fd(),
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(io)?;
                let s = open_dir(Some(snap.as_fd()), name.as_bytes_os())?;
                let c = cur.and_then(|c| open_dir(Some(c.as_fd()), name.as_bytes_os()).ok());
                let t = open_dir(Some(stg.as_fd()), name.as_bytes_os())?;
                self.walk(&s, c.as_ref(), &t)?;
                finish_dir(&s, &t, &st)?;
                continue;
            }
            let key = (st.st_dev, st.st_ino);
            if st.st_nlink > 1 {
                if let Some((dir, first)) = self.seen.get(&key) {
                    link_at(dir.as_fd(), first, stg.as_fd(), &name)?;
                    continue;
                }
            }
            if kind == SFlag::S_IFREG {
                if !(cur.is_some_and(|c| self.try_link(snap, c, stg, &name, &st).unwrap_or(false)))
                {
                    self.copy_file(snap, stg, &name, &st)?;
                }
            } else if kind == SFlag::S_IFLNK {
                if !(cur.is_some_and(|c| {
                    self.try_link_symlink(snap, c, stg, &name, &st)
                        .unwrap_or(false)
                })) {
                    self.copy_special(snap, stg, &name, &st, kind)?;
                }
            } else {
                self.copy_special(snap, stg, &name, &st, kind)?;
            }
            if st.st_nlink > 1 {
                self.seen.insert(key, (stg_shared.clone(), name.clone()));
            }
        }
        Ok(())
    }

    /// Links `name` from the current volume if it is the snapshot's file in
    /// every respect; `Ok(false)` when it is not (or is not there).
    fn try_link(
        &mut self,
        snap: &OwnedFd,
        cur: &OwnedFd,
        stg: &OwnedFd,
        name: &CString,
        st: &FileStat,
    ) -> std::io::Result<bool> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        let Ok(cfd) = openat(cur.as_fd(), name.as_c_str(), flags, Mode::empty()) else {
            return Ok(false);
        };
        let cst = fstat(cfd.as_fd()).map_err(io)?;
        let same_meta = cst.st_mode == st.st_mode
            && cst.st_size == st.st_size
            && cst.st_uid == st.st_uid
            && cst.st_gid == st.st_gid
            && cst.st_mtime == st.st_mtime
            && cst.st_mtime_nsec == st.st_mtime_nsec;
        if !same_meta || self.used.contains(&(cst.st_dev, cst.st_ino)) {
            return Ok(false);
        }
        let sfd = openat(snap.as_fd(), name.as_c_str(), flags, Mode::empty()).map_err(io)?;
        if xattrs(sfd.as_fd())? != xattrs(cfd.as_fd())? || !same_bytes(&sfd, &cfd, &mut self.bufs)?
        {
            return Ok(false);
        }
        // The inode compared, whatever the name now points to.
        link_fd(cfd.as_fd(), stg.as_fd(), name)?;
        self.used.insert((cst.st_dev, cst.st_ino));
        self.stats.linked += 1;
        Ok(true)
    }

    /// Links the symlink `name` from the current volume if it is the
    /// snapshot's in target, owner, times and xattrs (a symlink is an inode
    /// too: linking it spares the allocation, which dominates on ext4).
    fn try_link_symlink(
        &mut self,
        snap: &OwnedFd,
        cur: &OwnedFd,
        stg: &OwnedFd,
        name: &CString,
        st: &FileStat,
    ) -> std::io::Result<bool> {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let Ok(cfd) = openat(cur.as_fd(), name.as_c_str(), flags, Mode::empty()) else {
            return Ok(false);
        };
        let cst = fstat(cfd.as_fd()).map_err(io)?;
        let same_meta = cst.st_mode == st.st_mode
            && cst.st_uid == st.st_uid
            && cst.st_gid == st.st_gid
            && cst.st_mtime == st.st_mtime
            && cst.st_mtime_nsec == st.st_mtime_nsec;
        if !same_meta || self.used.contains(&(cst.st_dev, cst.st_ino)) {
            return Ok(false);
        }
        let want = nix::fcntl::readlinkat(snap.as_fd(), name.as_c_str()).map_err(io)?;
        // The fd's own target (an empty path names the O_PATH fd itself).
        let got = nix::fcntl::readlinkat(cfd.as_fd(), c"").map_err(io)?;
        if want != got {
            return Ok(false);
        }
        // Symlinks carry xattrs only in trusted./security. namespaces, which
        // a guest cannot set; still, both must have the same set.
        let (sx, cx) = (
            symlink_xattrs(snap.as_fd(), name)?,
            symlink_xattrs(cur.as_fd(), name)?,
        );
        let again =
            fstatat(cur.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)?;
        if sx != cx || (again.st_dev, again.st_ino) != (cst.st_dev, cst.st_ino) {
            return Ok(false);
        }
        link_fd(cfd.as_fd(), stg.as_fd(), name)?;
        self.used.insert((cst.st_dev, cst.st_ino));
        self.stats.linked += 1;
        Ok(true)
    }

    fn copy_file(
        &mut self,
        snap: &OwnedFd,
        stg: &OwnedFd,
        name: &CString,
        st: &FileStat,
    ) -> std::io::Result<()> {
        self.stats.bytes_copied += copy_regular(snap.as_fd(), stg.as_fd(), name, st)?;
        self.stats.copied += 1;
        Ok(())
    }

    fn copy_special(
        &mut self,
        snap: &OwnedFd,
        stg: &OwnedFd,
        name: &CString,
        st: &FileStat,
        kind: SFlag,
    ) -> std::io::Result<()> {
        copy_special(snap.as_fd(), stg.as_fd(), name, st, kind)?;
        self.stats.copied += 1;
        Ok(())
    }
}

/// A directory's own metadata, applied once its entries are in place.
fn finish_dir(snap: &OwnedFd, stg: &OwnedFd, st: &FileStat) -> std::io::Result<()> {
    nix::unistd::fchown(stg.as_fd(), Some(st.st_uid.into()), Some(st.st_gid.into())).map_err(io)?;
    nix::sys::stat::fchmod(stg.as_fd(), Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(io)?;
    copy_xattrs(snap.as_fd(), stg.as_fd())?;
    set_times(stg.as_fd(), None, Some(stg.as_fd()), st)
}

trait AsBytesOs {
    fn as_bytes_os(&self) -> &OsStr;
}

impl AsBytesOs for CString {
    fn as_bytes_os(&self) -> &OsStr {
        OsStr::from_bytes(self.as_bytes())
    }
}

/// Links `old` in `from` as `new` in `to` (a name, not followed).
fn link_at(
    from: BorrowedFd<'_>,
    old: &CStr,
    to: BorrowedFd<'_>,
    new: &CStr,
) -> std::io::Result<()> {
    nix::unistd::linkat(from, old, to, new, AtFlags::empty()).map_err(io)
}

/// Links the inode open at `fd` as `name` in `dir` (`AT_EMPTY_PATH`: needs
/// CAP_DAC_READ_SEARCH, which the daemon has).
fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> std::io::Result<()> {
    nix::unistd::linkat(fd, c"", dir, name, AtFlags::AT_EMPTY_PATH).map_err(io)
}

fn same_bytes(
    a: &OwnedFd,
    b: &OwnedFd,
    (ba, bb): &mut (Vec<u8>, Vec<u8>),
) -> std::io::Result<bool> {
    let mut fa = File::from(a.try_clone()?);
    let mut fb = File::from(b.try_clone()?);
    loop {
        let na = read_full(&mut fa, ba)?;
        let nb = read_full(&mut fb, bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
