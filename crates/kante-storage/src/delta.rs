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
//!
//! The walk is `copytree`'s (a few threads; directories' times set once
//! their entries are made): this file decides, for each regular file and
//! symlink, whether the current volume's inode may be taken.

use std::collections::HashSet;
use std::ffi::CStr;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};

use crate::fileops::{io, symlink_xattrs, xattrs};

/// What a delta build did: files taken from the current volume (hard
/// links) and files (or other entries) written from the snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeltaStats {
    pub linked: u64,
    pub copied: u64,
    pub bytes_copied: u64,
}

/// Builds `staging` (which must not exist) as an exact copy of `snapshot`,
/// hard-linking unchanged regular files and symlinks from `current` (which
/// may be missing). All three are on one filesystem.
pub fn build(snapshot: &Path, current: &Path, staging: &Path) -> std::io::Result<DeltaStats> {
    let s = crate::copytree::walk(snapshot, Some(current), staging)?;
    Ok(DeltaStats {
        linked: s.linked,
        copied: s.copied,
        bytes_copied: s.bytes,
    })
}

/// The size of each comparison buffer (a pair per thread).
pub(crate) const COMPARE_BUF: usize = 256 * 1024;

/// The current volume's inodes already taken: each at most once, for one
/// name of one snapshot inode.
#[derive(Default)]
pub(crate) struct Taker {
    used: Mutex<HashSet<(u64, u64)>>,
}

impl Taker {
    fn is_used(&self, st: &FileStat) -> bool {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(st.st_dev, st.st_ino))
    }

    /// Claims the compared inode and links it into the staging tree.
    fn take(
        &self,
        fd: &OwnedFd,
        st: &FileStat,
        stg: &OwnedFd,
        name: &CStr,
    ) -> std::io::Result<bool> {
        let claimed = self
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((st.st_dev, st.st_ino));
        if !claimed {
            return Ok(false);
        }
        link_fd(fd.as_fd(), stg.as_fd(), name)?;
        Ok(true)
    }

    /// Links `name` from the current volume if it is the snapshot's file in
    /// every respect; `Ok(false)` when it is not (or is not there).
    pub(crate) fn try_link(
        &self,
        snap: &OwnedFd,
        cur: &OwnedFd,
        stg: &OwnedFd,
        name: &CStr,
        st: &FileStat,
        bufs: &mut (Vec<u8>, Vec<u8>),
    ) -> std::io::Result<bool> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        let Ok(cfd) = openat(cur.as_fd(), name, flags, Mode::empty()) else {
            return Ok(false);
        };
        let cst = fstat(cfd.as_fd()).map_err(io)?;
        let same_meta = cst.st_mode == st.st_mode
            && cst.st_size == st.st_size
            && cst.st_uid == st.st_uid
            && cst.st_gid == st.st_gid
            && cst.st_mtime == st.st_mtime
            && cst.st_mtime_nsec == st.st_mtime_nsec;
        if !same_meta || self.is_used(&cst) {
            return Ok(false);
        }
        let sfd = openat(snap.as_fd(), name, flags, Mode::empty()).map_err(io)?;
        if xattrs(sfd.as_fd())? != xattrs(cfd.as_fd())? || !same_bytes(&sfd, &cfd, bufs)? {
            return Ok(false);
        }
        // The inode compared, whatever the name now points to.
        self.take(&cfd, &cst, stg, name)
    }

    /// Links the symlink `name` from the current volume if it is the
    /// snapshot's in target, owner, times and xattrs (a symlink is an inode
    /// too: linking it spares the allocation, which dominates on ext4).
    pub(crate) fn try_link_symlink(
        &self,
        snap: &OwnedFd,
        cur: &OwnedFd,
        stg: &OwnedFd,
        name: &CStr,
        st: &FileStat,
    ) -> std::io::Result<bool> {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let Ok(cfd) = openat(cur.as_fd(), name, flags, Mode::empty()) else {
            return Ok(false);
        };
        let cst = fstat(cfd.as_fd()).map_err(io)?;
        let same_meta = cst.st_mode == st.st_mode
            && cst.st_uid == st.st_uid
            && cst.st_gid == st.st_gid
            && cst.st_mtime == st.st_mtime
            && cst.st_mtime_nsec == st.st_mtime_nsec;
        if !same_meta || self.is_used(&cst) {
            return Ok(false);
        }
        let want = nix::fcntl::readlinkat(snap.as_fd(), name).map_err(io)?;
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
        let again = fstatat(cur.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)?;
        if sx != cx || (again.st_dev, again.st_ino) != (cst.st_dev, cst.st_ino) {
            return Ok(false);
        }
        self.take(&cfd, &cst, stg, name)
    }
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
