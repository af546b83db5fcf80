//! The `dir` driver's volume copy: a tree copied in-process by a few
//! threads (copies, snapshots and creates from an image all go through
//! it). On ext4 the cost of a copy is the inode allocations, not the bytes
//! (perf: `find_inode_bit`, `recently_deleted`; GNU cp's 12 syscalls a
//! file are noise), so the walk is parallel; data moves by FICLONE where
//! the file system shares extents, else `copy_file_range` with holes kept;
//! nothing is fsynced (a volume is only published by the rename that
//! follows, and a crash leaves a `.staging-` leftover).
//!
//! Exactness as GNU `cp -a`: owners, modes with set-id bits, xattrs (file
//! capabilities, ACLs), times, holes, symlinks, device nodes, fifos, and
//! the hard-link structure (the first name of an inode is copied, later
//! names are links to it; a name met while its first is still being
//! copied by another thread is linked at the end). A directory's times are
//! set once every entry in it exists (when the last job holding it ends).
//! The source is walked by `O_NOFOLLOW` directory fds, so a guest that
//! swaps a directory for a symlink mid-copy never sends it outside its tree.
//!
//! The same walk builds a `dir` restore's staging tree ([`walk`] with a
//! current tree): a regular file or symlink that `delta` finds equal in
//! the current volume is hard-linked from there instead of copied.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use nix::fcntl::AtFlags;
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};

use crate::delta::{Taker, COMPARE_BUF};
use crate::fileops::{copy_regular, copy_special, copy_xattrs, io, list, open_dir, set_times};

/// At most this many threads copy one tree.
const MAX_THREADS: usize = 4;

/// What a copy made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Copies `src` to `dst` (which must not exist; its parent must).
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<CopyStats> {
    let w = walk(src, None, dst)?;
    Ok(CopyStats {
        entries: w.dirs + w.copied + w.later_links,
        bytes: w.bytes,
    })
}

/// What one walk made.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WalkStats {
    pub dirs: u64,
    /// Entries written from the source (not directories, not later names
    /// of an inode).
    pub copied: u64,
    /// Entries taken from the current tree.
    pub linked: u64,
    /// Later names of an inode, linked to its first.
    pub later_links: u64,
    pub bytes: u64,
}

/// Makes `dst` (which must not exist) an exact copy of `src`, taking what
/// `delta` finds equal from `current` when there is one.
pub(crate) fn walk(src: &Path, current: Option<&Path>, dst: &Path) -> std::io::Result<WalkStats> {
    let s = open_dir(None, src.as_os_str())?;
    let cur = current.and_then(|c| open_dir(None, c.as_os_str()).ok());
    let st = fstat(s.as_fd()).map_err(io)?;
    std::fs::create_dir(dst)?;
    let d = open_dir(None, dst.as_os_str())?;
    apply_dir_meta(&s, &d, &st)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_THREADS);
    let shared = Shared {
        queue: Mutex::new(Queue {
            jobs: Vec::new(),
            busy: 0,
            failed: None,
        }),
        wake: Condvar::new(),
        links: Mutex::new(HashMap::new()),
        late: Mutex::new(Vec::new()),
        taker: current.map(|_| Taker::default()),
        counts: Default::default(),
    };
    let root = Arc::new(DirPair {
        src: s,
        cur,
        dst: d,
        st,
    });
    shared.push(Job::Dir(root));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| shared.work());
        }
    });
    let q = shared.queue.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = q.failed {
        return Err(e);
    }
    // Later names of inodes whose first name was still being made.
    let links = shared.links.into_inner().unwrap_or_else(|p| p.into_inner());
    for (dir, name, key) in shared.late.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let Some(Some((first_dir, first))) = links.get(&key) else {
            return Err(std::io::Error::other(
                "a hard link's first name was never made",
            ));
        };
        nix::unistd::linkat(
            first_dir.dst.as_fd(),
            first.as_c_str(),
            dir.dst.as_fd(),
            name.as_c_str(),
            AtFlags::empty(),
        )
        .map_err(io)?;
        shared.counts.later_links.fetch_add(1, Ordering::Relaxed);
    }
    drop(links);
    let c = &shared.counts;
    Ok(WalkStats {
        dirs: c.dirs.load(Ordering::Relaxed),
        copied: c.copied.load(Ordering::Relaxed),
        linked: c.linked.load(Ordering::Relaxed),
        later_links: c.later_links.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
    })
}

#[derive(Default)]
struct Counts {
    dirs: AtomicU64,
    copied: AtomicU64,
    linked: AtomicU64,
    later_links: AtomicU64,
    bytes: AtomicU64,
}

/// A directory of the source and its copy. Its times are set when the last
/// holder lets go: every entry is in place by then.
struct DirPair {
    src: OwnedFd,
    /// The same directory in the current tree, if a restore has one there.
    cur: Option<OwnedFd>,
    dst: OwnedFd,
    st: FileStat,
}

impl Drop for DirPair {
    fn drop(&mut self) {
        if let Err(e) = set_times(self.dst.as_fd(), None, Some(self.dst.as_fd()), &self.st) {
            tracing::warn!("setting a copied directory's times: {e}");
        }
    }
}

enum Job {
    /// Copy the entries of this directory.
    Dir(Arc<DirPair>),
    /// Open the subdirectory `name` (made already, empty) of a copied
    /// directory and copy its entries: a queued job holds no fd of its own.
    Sub(Arc<DirPair>, CString, Box<FileStat>),
}

struct Queue {
    jobs: Vec<Job>,
    /// Threads working on a job.
    busy: usize,
    failed: Option<std::io::Error>,
}

type Key = (u64, u64);
/// Where the first name of an inode went (`None` while it is being copied).
type FirstName = Option<(Arc<DirPair>, CString)>;

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Inodes with more than one name: `None` while the first is being
    /// copied, then where it went.
    links: Mutex<HashMap<Key, FirstName>>,
    /// Names to link once every thread is done.
    late: Mutex<Vec<(Arc<DirPair>, CString, Key)>>,
    /// A restore's: what may be taken from the current tree.
    taker: Option<Taker>,
    counts: Counts,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().jobs.push(job);
        self.wake.notify_one();
    }

    /// Takes jobs until none is left and no thread can make more.
    fn work(&self) {
        let mut bufs = match self.taker {
            Some(_) => (vec![0u8; COMPARE_BUF], vec![0u8; COMPARE_BUF]),
            None => (Vec::new(), Vec::new()),
        };
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    if q.failed.is_some() {
                        q.jobs.clear();
                        self.wake.notify_all();
                        return;
                    }
                    if let Some(j) = q.jobs.pop() {
                        q.busy += 1;
                        break j;
                    }
                    if q.busy == 0 {
                        self.wake.notify_all();
                        return;
                    }
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let r = match job {
                Job::Dir(d) => self.copy_dir(&d, &mut bufs),
                Job::Sub(parent, name, st) => self.open_sub(parent, &name, *st, &mut bufs),
            };
            let mut q = self.lock();
            q.busy -= 1;
            if let Err(e) = r {
                q.failed.get_or_insert(e);
            }
            if q.busy == 0 || q.failed.is_some() {
                self.wake.notify_all();
            }
        }
    }

    fn open_sub(
        &self,
        parent: Arc<DirPair>,
        name: &CString,
        st: FileStat,
        bufs: &mut Bufs,
    ) -> std::io::Result<()> {
        let s = open_dir(Some(parent.src.as_fd()), name.as_os())?;
        // Not there, or not a directory (a symlink is not followed): nothing
        // below is taken from the current tree.
        let cur = (parent.cur.as_ref()).and_then(|c| open_dir(Some(c.as_fd()), name.as_os()).ok());
        let d = open_dir(Some(parent.dst.as_fd()), name.as_os())?;
        // The parent's entries are all made: its times may be set.
        drop(parent);
        apply_dir_meta(&s, &d, &st)?;
        let dir = Arc::new(DirPair {
            src: s,
            cur,
            dst: d,
            st,
        });
        self.copy_dir(&dir, bufs)
    }

    /// Copies the entries of one directory; subdirectories become jobs.
    fn copy_dir(&self, dir: &Arc<DirPair>, bufs: &mut Bufs) -> std::io::Result<()> {
        for name in list(&dir.src)? {
            let st = fstatat(
                dir.src.as_fd(),
                name.as_c_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io)?;
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            if kind == SFlag::S_IFDIR {
                mkdirat(
                    dir.dst.as_fd(),
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(io)?;
                self.counts.dirs.fetch_add(1, Ordering::Relaxed);
                self.push(Job::Sub(dir.clone(), name, Box::new(st)));
                continue;
            }
            let key = (st.st_dev, st.st_ino);
            if st.st_nlink > 1 {
                let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
                match links.get(&key) {
                    Some(Some((first_dir, first))) => {
                        nix::unistd::linkat(
                            first_dir.dst.as_fd(),
                            first.as_c_str(),
                            dir.dst.as_fd(),
                            name.as_c_str(),
                            AtFlags::empty(),
                        )
                        .map_err(io)?;
                        self.counts.later_links.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Some(None) => {
                        self.late.lock().unwrap_or_else(|p| p.into_inner()).push((
                            dir.clone(),
                            name,
                            key,
                        ));
                        continue;
                    }
                    None => {
                        links.insert(key, None);
                    }
                }
            }
            if self.take(dir, &name, &st, kind, bufs)? {
                self.counts.linked.fetch_add(1, Ordering::Relaxed);
            } else if kind == SFlag::S_IFREG {
                let n = copy_regular(dir.src.as_fd(), dir.dst.as_fd(), &name, &st)?;
                self.counts.bytes.fetch_add(n, Ordering::Relaxed);
                self.counts.copied.fetch_add(1, Ordering::Relaxed);
            } else {
                copy_special(dir.src.as_fd(), dir.dst.as_fd(), &name, &st, kind)?;
                self.counts.copied.fetch_add(1, Ordering::Relaxed);
            }
            if st.st_nlink > 1 {
                self.links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, Some((dir.clone(), name)));
            }
        }
        Ok(())
    }
}

impl Shared {
    /// In a restore, links `name` from the current tree if `delta` finds
    /// it equal to the snapshot's (a failed comparison is a copy, not an
    /// error: the current tree is the guest's).
    fn take(
        &self,
        dir: &DirPair,
        name: &CString,
        st: &FileStat,
        kind: SFlag,
        bufs: &mut Bufs,
    ) -> std::io::Result<bool> {
        let (Some(t), Some(cur)) = (&self.taker, &dir.cur) else {
            return Ok(false);
        };
        Ok(if kind == SFlag::S_IFREG {
            t.try_link(&dir.src, cur, &dir.dst, name, st, bufs)
                .unwrap_or(false)
        } else if kind == SFlag::S_IFLNK {
            t.try_link_symlink(&dir.src, cur, &dir.dst, name, st)
                .unwrap_or(false)
        } else {
            false
        })
    }
}

/// A thread's two comparison buffers.
type Bufs = (Vec<u8>, Vec<u8>);

/// A copied directory's owner, mode and xattrs (its times come last).
fn apply_dir_meta(src: &OwnedFd, dst: &OwnedFd, st: &FileStat) -> std::io::Result<()> {
    nix::unistd::fchown(dst.as_fd(), Some(st.st_uid.into()), Some(st.st_gid.into())).map_err(io)?;
    nix::sys::stat::fchmod(dst.as_fd(), Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(io)?;
    copy_xattrs(src.as_fd(), dst.as_fd())
}

trait AsOs {
    fn as_os(&self) -> &std::ffi::OsStr;
}
impl AsOs for CString {
    fn as_os(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(self.as_bytes())
    }
}
