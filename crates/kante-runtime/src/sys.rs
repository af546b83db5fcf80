//! Thin wrappers over the syscalls the libc crate has numbers for but no
//! functions: the new mount API, pidfds, pivot_root. Each returns
//! `io::Result` and does nothing else.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const AT_RECURSIVE: libc::c_uint = 0x8000;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// The errors callers tell apart, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// `ENOENT`
    NoEntry,
    /// `ENOTDIR`
    NotDirectory,
    /// `EISDIR`
    IsDirectory,
    /// `EEXIST`
    Exists,
    /// `ENOTEMPTY`
    NotEmpty,
    /// `EACCES`
    Access,
    /// `EPERM`
    Permission,
    /// `EXDEV`: with `RESOLVE_IN_ROOT`, a path that would leave the root.
    CrossDevice,
    /// `ELOOP`: too many symlinks, or one where none may be.
    Loop,
    /// `ESRCH`
    NoProcess,
    /// `EMFILE`
    TooManyFiles,
}

impl Errno {
    const ALL: [Errno; 11] = [
        Errno::NoEntry,
        Errno::NotDirectory,
        Errno::IsDirectory,
        Errno::Exists,
        Errno::NotEmpty,
        Errno::Access,
        Errno::Permission,
        Errno::CrossDevice,
        Errno::Loop,
        Errno::NoProcess,
        Errno::TooManyFiles,
    ];

    /// The error number of `e`, if it is one of these.
    pub fn of(e: &io::Error) -> Option<Errno> {
        let raw = e.raw_os_error()?;
        Self::ALL.into_iter().find(|e| e.raw() == raw)
    }

    fn raw(self) -> i32 {
        match self {
            Errno::NoEntry => libc::ENOENT,
            Errno::NotDirectory => libc::ENOTDIR,
            Errno::IsDirectory => libc::EISDIR,
            Errno::Exists => libc::EEXIST,
            Errno::NotEmpty => libc::ENOTEMPTY,
            Errno::Access => libc::EACCES,
            Errno::Permission => libc::EPERM,
            Errno::CrossDevice => libc::EXDEV,
            Errno::Loop => libc::ELOOP,
            Errno::NoProcess => libc::ESRCH,
            Errno::TooManyFiles => libc::EMFILE,
        }
    }
}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.raw())
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// A non-blocking pipe for [`splice`] (both ends close-on-exec), grown
/// to `size` bytes where the system allows: (read end, write end).
pub fn splice_pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::PipeFlags;
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    // A smaller pipe only means more splices (the per-user pipe limit).
    let _ = rustix::pipe::fcntl_setpipe_size(&w, size);
    Ok((r, w))
}

/// `splice(2)` of up to `len` bytes from `from` to `to` (one of them a
/// pipe), moving pages rather than copying where it can, never blocking:
/// `WouldBlock` when `from` has nothing or `to` has no room; 0 at the end
/// of `from`'s stream.
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    use rustix::pipe::SpliceFlags;
    Ok(rustix::pipe::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
    )?)
}

/// Shuts down the writing side of a connected stream socket (TCP or
/// unix): the peer reads the end of the stream, the other direction goes on.
pub fn shutdown_write(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(sock, rustix::net::Shutdown::Write)?)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mount tree at `path`.
pub fn open_tree_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: valid C string, flags as documented in open_tree(2).
    let fd =
        check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) })?;
    // SAFETY: the kernel returned a new fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mount_setattr` on a whole detached tree.
fn mount_setattr(mount_fd: &OwnedFd, mut attr: MountAttr) -> io::Result<()> {
    let empty = c"";
    // SAFETY: attr lives across the call and its size is passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount_fd.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// Sets an idmapping (and optionally read-only) on a detached mount.
pub fn mount_setattr_idmap(mount_fd: &OwnedFd, userns_fd: RawFd, readonly: bool) -> io::Result<()> {
    let rdonly = if readonly { MOUNT_ATTR_RDONLY } else { 0 };
    mount_setattr(
        mount_fd,
        MountAttr {
            // Never device nodes through it: an image or a guest cannot
            // give itself a host device by making its node.
            attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV | rdonly,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns_fd as u64,
        },
    )
}

/// Makes a detached mount tree read-only (no idmapping).
pub fn mount_setattr_readonly(mount_fd: &OwnedFd) -> io::Result<()> {
    mount_setattr(
        mount_fd,
        MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        },
    )
}

/// Attaches a detached mount at `target`.
pub fn move_mount_to(mount_fd: RawFd, target: &Path) -> io::Result<()> {
    let c = cpath(target)?;
    let empty = c"";
    // SAFETY: valid C strings; flags per move_mount(2).
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount_fd,
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// A pidfd for `pid` (works for processes that are not our children).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` through a pidfd: no risk of hitting a recycled pid.
pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall, null siginfo.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<u8>(),
            0,
        )
    })?;
    Ok(())
}

/// pivot_root(".", ".") from inside the new root, then detach the old one.
pub fn pivot_into(new_root: &Path) -> io::Result<()> {
    std::env::set_current_dir(new_root)?;
    pivot_into_cwd()
}

/// `pivot_into` for a new root that is already the current directory.
pub fn pivot_into_cwd() -> io::Result<()> {
    let dot = c".";
    // SAFETY: valid C strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) })?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    Ok(())
}

/// The start time of a process in clock ticks since boot (field 22 of
/// /proc/<pid>/stat): with the pid it identifies a process across pid reuse.
pub fn process_start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/<pid>/stat"))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process is a zombie or gone.
pub fn process_is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .map(|s| s == "Z" || s == "X")
            .unwrap_or(true),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_round_trip() {
        for e in Errno::ALL {
            assert_eq!(Errno::of(&io::Error::from(e)), Some(e));
        }
        assert_eq!(
            io::Error::from(Errno::NoEntry).raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            Errno::of(&io::Error::from_raw_os_error(libc::ELOOP)),
            Some(Errno::Loop)
        );
        assert_eq!(Errno::of(&io::Error::other("no errno")), None);
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_start_time(stat), Some(987654));
        let me = std::process::id() as i32;
        assert!(process_start_time(me).unwrap() > 0);
        assert!(!process_is_dead(me));
    }
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What `clone_fork` returned.
pub enum Forked {
    Child,
    Parent { pid: i32, pidfd: OwnedFd },
}

/// clone3 without a new stack: behaves like fork(2) but can create
/// namespaces and hands the parent a pidfd. Only call from a single-threaded
/// process (the monitor) or be async-signal-safe in the child.
pub fn clone_fork(namespaces: u64) -> io::Result<Forked> {
    const CLONE_PIDFD: u64 = 0x1000;
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: namespaces | CLONE_PIDFD,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args (version 2 size); stack 0 = share a COW copy.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    if ret == 0 {
        Ok(Forked::Child)
    } else {
        // SAFETY: the kernel stored a new pidfd for us.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        Ok(Forked::Parent {
            pid: ret as i32,
            pidfd,
        })
    }
}

/// Sets the calling thread's effective capabilities to `choose(permitted)`
/// (bit n = capability n). Per-thread: used after fs-id changes, which drop
/// the filesystem capabilities from the effective set.
pub fn set_effective_caps(choose: impl FnOnce(u64) -> u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: two data words.
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with the v3 layout; header and data outlive the calls.
    check(unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) })?;
    let permitted = u64::from(d[0].permitted) | (u64::from(d[1].permitted) << 32);
    let effective = choose(permitted) & permitted;
    d[0].effective = effective as u32;
    d[1].effective = (effective >> 32) as u32;
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) })?;
    Ok(())
}
