//! File operations on an instance's tree, done with the guest's powers.
//!
//! For a running container they happen in its file server
//! (`fileserver.rs`): a helper in the container's user and mount namespaces,
//! acting as its root, that hands back an open fd (SCM_RIGHTS) or an
//! outcome. So a guest symlink can only lead a push or a pull to what the
//! guest's root could open itself, never to a host file, a host-owned disk
//! or a kernel knob behind `/proc/sys` (audit F3). For a stopped instance
//! the daemon does the same operation on the rootfs itself (no namespaces
//! to join; the storage holds the guest's own ids).
//!
//! Either way the operation never blocks on what it finds: targets are
//! opened `O_NONBLOCK | O_NOCTTY`, anything but a regular file, a directory
//! or a symlink is refused, and the caller bounds the helper's answer (a
//! guest's FUSE mount can stall any call), so a FIFO or a hung filesystem
//! cannot stall the daemon (audit F6). `perform` makes no allocation.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// One operation. Paths are relative to the instance's root (never empty:
/// the root itself is "."); `parent`/`name` split the same path.
#[derive(Debug, Clone, Copy)]
pub enum FileOp<'a> {
    /// The entry at `path`, a final symlink not followed: a directory or a
    /// regular file opened for reading, a symlink as an `O_PATH` fd.
    Get { path: &'a CStr },
    /// A regular file opened for writing (truncated unless `append`),
    /// created with `mode` and `owner` if new. A final symlink is followed
    /// inside the root.
    Write {
        path: &'a CStr,
        parent: &'a CStr,
        name: &'a CStr,
        mode: u32,
        owner: (u32, u32),
        append: bool,
    },
    /// A directory (`Existed` if one is there already).
    Mkdir {
        parent: &'a CStr,
        name: &'a CStr,
        mode: u32,
        owner: (u32, u32),
    },
    /// A symlink to `target` (`Existed` if that very link is there).
    Symlink {
        parent: &'a CStr,
        name: &'a CStr,
        target: &'a CStr,
        owner: (u32, u32),
    },
    /// Removes a file, a symlink or an empty directory.
    Delete { parent: &'a CStr, name: &'a CStr },
}

/// How an operation ended (besides an errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The directory or the identical symlink already existed.
    Existed,
    /// Something else is in the way (a file where a directory is asked…).
    InTheWay,
    /// The target is a FIFO, a socket or a device node.
    NotRegular,
    /// A file was asked for and this is a directory.
    IsDirectory,
    /// The operation failed with `Reply::errno`.
    Failed,
}

impl Outcome {
    fn code(self) -> u32 {
        self as u32
    }

    fn from_code(c: u32) -> Option<Self> {
        [
            Outcome::Done,
            Outcome::Existed,
            Outcome::InTheWay,
            Outcome::NotRegular,
            Outcome::IsDirectory,
            Outcome::Failed,
        ]
        .into_iter()
        .find(|o| o.code() == c)
    }
}

#[derive(Debug)]
pub struct Reply {
    pub outcome: Outcome,
    pub errno: i32,
    pub fd: Option<OwnedFd>,
}

impl Reply {
    pub(crate) fn failed(errno: i32) -> Self {
        Reply {
            outcome: Outcome::Failed,
            errno,
            fd: None,
        }
    }

    fn of(outcome: Outcome) -> Self {
        Reply {
            outcome,
            errno: 0,
            fd: None,
        }
    }

    /// The errno as an `io::Error` (for `Outcome::Failed`).
    pub fn error(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// openat2 inside `root`: `..` and symlinks never leave it.
fn open_in(root: RawFd, path: &CStr, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & libc::O_CREAT != 0 {
            u64::from(mode & 0o7777)
        } else {
            0
        },
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid C string and open_how, its size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            path.as_ptr(),
            &how as *const OpenHow,
            size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a new fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn fstat(fd: RawFd) -> Result<libc::stat, i32> {
    // SAFETY: st is written by the kernel.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: as above; fd is the caller's.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(errno());
    }
    Ok(st)
}

fn lstat_at(dir: RawFd, name: &CStr) -> Result<Option<libc::stat>, i32> {
    // SAFETY: st is written by the kernel; valid C string.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return match errno() {
            libc::ENOENT => Ok(None),
            e => Err(e),
        };
    }
    Ok(Some(st))
}

fn kind(st: &libc::stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

fn check(r: libc::c_int) -> Result<(), i32> {
    if r != 0 {
        return Err(errno());
    }
    Ok(())
}

fn set_owner_mode(fd: RawFd, owner: (u32, u32), mode: u32) -> Result<(), i32> {
    // SAFETY: plain syscalls on our fd.
    check(unsafe { libc::fchown(fd, owner.0, owner.1) })?;
    // SAFETY: as above.
    check(unsafe { libc::fchmod(fd, mode & 0o7777) })
}

/// Does `op` under `root` with the caller's own powers. No allocation.
pub fn perform(root: RawFd, op: &FileOp) -> Reply {
    match perform_inner(root, op) {
        Ok(r) => r,
        Err(e) => Reply::failed(e),
    }
}

fn perform_inner(root: RawFd, op: &FileOp) -> Result<Reply, i32> {
    const OPEN: i32 = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW;
    match *op {
        FileOp::Get { path } => {
            let at = open_in(root, path, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
            let st = fstat(at.as_raw_fd())?;
            let fd = match kind(&st) {
                libc::S_IFLNK => at,
                libc::S_IFDIR => open_in(root, path, libc::O_RDONLY | libc::O_DIRECTORY | OPEN, 0)?,
                libc::S_IFREG => {
                    let f = open_in(root, path, libc::O_RDONLY | OPEN, 0)?;
                    let again = fstat(f.as_raw_fd())?;
                    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                        // Swapped between the two looks: a racing guest.
                        return Err(libc::EAGAIN);
                    }
                    f
                }
                _ => return Ok(Reply::of(Outcome::NotRegular)),
            };
            Ok(Reply {
                outcome: Outcome::Done,
                errno: 0,
                fd: Some(fd),
            })
        }
        FileOp::Write {
            path,
            parent,
            name,
            mode,
            owner,
            append,
        } => {
            let dir = open_in(root, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            let existed = lstat_at(dir.as_raw_fd(), name)?.is_some();
            // A final symlink is followed, inside the root; O_NOFOLLOW is
            // not set here, the type is checked on what was opened.
            let mut flags = libc::O_WRONLY | libc::O_CREAT | libc::O_NONBLOCK | libc::O_NOCTTY;
            if append {
                flags |= libc::O_APPEND;
            }
            let f = match open_in(root, path, flags, mode) {
                Ok(f) => f,
                Err(libc::EISDIR) => return Ok(Reply::of(Outcome::IsDirectory)),
                // A FIFO without a reader.
                Err(libc::ENXIO) => return Ok(Reply::of(Outcome::NotRegular)),
                Err(e) => return Err(e),
            };
            let st = fstat(f.as_raw_fd())?;
            if kind(&st) != libc::S_IFREG {
                return Ok(Reply::of(Outcome::NotRegular));
            }
            if !append {
                // SAFETY: plain syscall on our fd.
                check(unsafe { libc::ftruncate(f.as_raw_fd(), 0) })?;
            }
            if !existed {
                set_owner_mode(f.as_raw_fd(), owner, mode)?;
            }
            Ok(Reply {
                outcome: Outcome::Done,
                errno: 0,
                fd: Some(f),
            })
        }
        FileOp::Mkdir {
            parent,
            name,
            mode,
            owner,
        } => {
            let dir = open_in(root, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            if let Some(st) = lstat_at(dir.as_raw_fd(), name)? {
                return Ok(Reply::of(match kind(&st) {
                    libc::S_IFDIR => Outcome::Existed,
                    _ => Outcome::InTheWay,
                }));
            }
            // SAFETY: valid C string.
            check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode & 0o7777) })?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            // SAFETY: valid C string.
            let d = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
            if d < 0 {
                return Err(errno());
            }
            // SAFETY: a new fd from the kernel.
            let d = unsafe { OwnedFd::from_raw_fd(d) };
            set_owner_mode(d.as_raw_fd(), owner, mode)?;
            Ok(Reply::of(Outcome::Done))
        }
        FileOp::Symlink {
            parent,
            name,
            target,
            owner,
        } => {
            let dir = open_in(root, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            if let Some(st) = lstat_at(dir.as_raw_fd(), name)? {
                if kind(&st) == libc::S_IFLNK {
                    let mut buf = [0u8; 4096];
                    // SAFETY: buf is ours, its length passed.
                    let n = unsafe {
                        libc::readlinkat(
                            dir.as_raw_fd(),
                            name.as_ptr(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                        )
                    };
                    if n >= 0 && &buf[..n as usize] == target.to_bytes() {
                        return Ok(Reply::of(Outcome::Existed));
                    }
                }
                return Ok(Reply::of(Outcome::InTheWay));
            }
            // SAFETY: valid C strings.
            check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
            // SAFETY: valid C string.
            check(unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    owner.0,
                    owner.1,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
            Ok(Reply::of(Outcome::Done))
        }
        FileOp::Delete { parent, name } => {
            let dir = open_in(root, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            let st = lstat_at(dir.as_raw_fd(), name)?.ok_or(libc::ENOENT)?;
            let flags = if kind(&st) == libc::S_IFDIR {
                libc::AT_REMOVEDIR
            } else {
                0
            };
            // SAFETY: valid C string.
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
            Ok(Reply::of(Outcome::Done))
        }
    }
}

/// The reply on the wire: outcome and errno (4 bytes each), and the fd as
/// SCM_RIGHTS when there is one.
pub(crate) fn send(sock: RawFd, reply: &Reply) -> io::Result<()> {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&reply.outcome.code().to_ne_bytes());
    payload[4..].copy_from_slice(&reply.errno.to_ne_bytes());
    let fd = reply.fd.as_ref().map(AsRawFd::as_raw_fd);
    crate::notify::send_with_fd(sock, &payload, fd)
}

pub(crate) fn receive(sock: &OwnedFd, timeout: Duration) -> io::Result<Reply> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the file operation did not finish in time (a FIFO or a stalled filesystem in the instance?)",
        ));
    }
    let mut payload = [0u8; 8];
    let (n, fd) = crate::notify::recv_with_fd(sock.as_raw_fd(), &mut payload)?;
    if n != payload.len() {
        return Err(io::Error::other("the file helper exited without an answer"));
    }
    let code = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let errno = i32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]);
    let outcome = Outcome::from_code(code)
        .ok_or_else(|| io::Error::other("the file helper sent a bad answer"))?;
    Ok(Reply { outcome, errno, fd })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kante-fileio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        d
    }

    fn root_fd(d: &std::path::Path) -> OwnedFd {
        std::fs::File::open(d.join("root")).unwrap().into()
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let d = scratch("fifo");
        let fifo = std::ffi::CString::new(d.join("root/fifo").to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let root = root_fd(&d);
        let r = perform(root.as_raw_fd(), &FileOp::Get { path: c"fifo" });
        assert_eq!(r.outcome, Outcome::NotRegular);
        let w = FileOp::Write {
            path: c"fifo",
            parent: c".",
            name: c"fifo",
            mode: 0o644,
            owner: (0, 0),
            append: false,
        };
        assert_eq!(perform(root.as_raw_fd(), &w).outcome, Outcome::NotRegular);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writes_follow_symlinks_only_inside_the_root() {
        let d = scratch("link");
        std::fs::write(d.join("outside"), "host").unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("root/abs")).unwrap();
        let root = root_fd(&d);
        let w = FileOp::Write {
            path: c"abs",
            parent: c".",
            name: c"abs",
            mode: 0o600,
            owner: (0, 0),
            append: false,
        };
        // The absolute target means the root's own path, which has no such
        // directory: the host file is never opened.
        let r = perform(root.as_raw_fd(), &w);
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(std::fs::read_to_string(d.join("outside")).unwrap(), "host");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn mkdir_symlink_delete() {
        let d = scratch("ops");
        let root = root_fd(&d);
        let r = root.as_raw_fd();
        let mk = FileOp::Mkdir {
            parent: c"etc",
            name: c"sub",
            mode: 0o750,
            owner: (0, 0),
        };
        assert_eq!(perform(r, &mk).outcome, Outcome::Done);
        assert_eq!(perform(r, &mk).outcome, Outcome::Existed);
        let ln = FileOp::Symlink {
            parent: c"etc",
            name: c"l",
            target: c"sub",
            owner: (0, 0),
        };
        assert_eq!(perform(r, &ln).outcome, Outcome::Done);
        assert_eq!(perform(r, &ln).outcome, Outcome::Existed);
        let other = FileOp::Symlink {
            parent: c"etc",
            name: c"l",
            target: c"else",
            owner: (0, 0),
        };
        assert_eq!(perform(r, &other).outcome, Outcome::InTheWay);
        for name in [c"l", c"sub"] {
            let del = FileOp::Delete {
                parent: c"etc",
                name,
            };
            assert_eq!(perform(r, &del).outcome, Outcome::Done);
        }
        assert!(std::fs::read_dir(d.join("root/etc"))
            .unwrap()
            .next()
            .is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
