//! File-level copies shared by the `dir` restore delta and the tree copy:
//! a regular file (data with its holes, or its extents cloned; owner,
//! mode, xattrs, times), a symlink or special file, an fd-relative
//! directory walk (`O_NOFOLLOW` at every step), xattrs read and written
//! through fds.

use std::ffi::{CStr, CString, OsStr};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{mknodat, FileStat, Mode, SFlag};

/// Copies the regular file `name` of `from` (whose stat is `st`) as a new
/// file `name` in `to`: data (holes kept, extents cloned where the file
/// system can), owner, mode, xattrs, times. Returns the bytes copied.
pub(crate) fn copy_regular(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    name: &CStr,
    st: &FileStat,
) -> std::io::Result<u64> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let src = openat(from, name, flags, Mode::empty()).map_err(io)?;
    let dst = openat(
        to,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(io)?;
    let bytes = copy_data(&src, &dst, st.st_size as u64)?;
    // Owner before mode (chown clears set-id bits), xattrs after chown
    // (it clears file capabilities), times last.
    nix::unistd::fchown(dst.as_fd(), Some(st.st_uid.into()), Some(st.st_gid.into())).map_err(io)?;
    nix::sys::stat::fchmod(dst.as_fd(), Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(io)?;
    copy_xattrs(src.as_fd(), dst.as_fd())?;
    set_times(to, None, Some(dst.as_fd()), st)?;
    Ok(bytes)
}

/// Makes `name` in `to` the symlink, fifo, socket or device node `name`
/// of `from`, with its owner, mode and times.
pub(crate) fn copy_special(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    name: &CStr,
    st: &FileStat,
    kind: SFlag,
) -> std::io::Result<()> {
    if kind == SFlag::S_IFLNK {
        let target = nix::fcntl::readlinkat(from, name).map_err(io)?;
        nix::unistd::symlinkat(target.as_os_str(), to, name).map_err(io)?;
    } else {
        mknodat(to, name, kind, Mode::from_bits_truncate(0o600), st.st_rdev).map_err(io)?;
    }
    nix::unistd::fchownat(
        to,
        name,
        Some(st.st_uid.into()),
        Some(st.st_gid.into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io)?;
    if kind != SFlag::S_IFLNK {
        nix::sys::stat::fchmodat(
            to,
            name,
            Mode::from_bits_truncate(st.st_mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(io)?;
    }
    set_times(to, Some(name), None, st)
}

pub(crate) fn io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

pub(crate) fn open_dir(at: Option<BorrowedFd<'_>>, name: &OsStr) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match at {
        Some(d) => openat(d, name, flags, Mode::empty()).map_err(io),
        None => nix::fcntl::open(name, flags, Mode::empty()).map_err(io),
    }
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn list(dir: &OwnedFd) -> std::io::Result<Vec<CString>> {
    let mut d = Dir::from_fd(dir.try_clone()?).map_err(io)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io)?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// Whether FICLONE has failed on this system's pools (then it is not
/// tried again: `copy_file_range` clones where it can anyway).
static NO_CLONE: AtomicBool = AtomicBool::new(false);

/// Copies a whole file's data: one FICLONE where the file system shares
/// extents (btrfs, xfs), else [`copy_sparse`].
fn copy_data(src: &OwnedFd, dst: &OwnedFd, len: u64) -> std::io::Result<u64> {
    if len > 0 && !NO_CLONE.load(Ordering::Relaxed) {
        // SAFETY: FICLONE takes the source fd as its argument; both fds
        // are ours and open.
        let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
        if r == 0 {
            return Ok(len);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP)
            | Some(libc::ENOTTY)
            | Some(libc::EINVAL)
            | Some(libc::EXDEV) => {
                NO_CLONE.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    copy_sparse(src, dst, len)
}

/// Copies `len` bytes of data, leaving holes where the source has them.
fn copy_sparse(src: &OwnedFd, dst: &OwnedFd, len: u64) -> std::io::Result<u64> {
    let mut copied = 0u64;
    let mut pos: i64 = 0;
    let end = len as i64;
    while pos < end {
        // SAFETY: lseek on an fd we own; no memory is touched.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole up to the end
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) }.min(end);
        let mut off_in = data;
        let mut off_out = data;
        while off_in < hole {
            let want = (hole - off_in) as usize;
            // SAFETY: both fds are ours and open; the offsets are live i64s
            // the kernel advances.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                break;
            }
            copied += n as u64;
        }
        pos = hole.max(off_in);
    }
    nix::unistd::ftruncate(dst.as_fd(), end).map_err(io)?;
    Ok(copied)
}

/// The xattrs of an open file, names and values, sorted.
pub(crate) fn xattrs(fd: BorrowedFd<'_>) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = xattr_call(|buf, len| {
        // SAFETY: buf points to len writable bytes (or is null with len 0).
        unsafe { libc::flistxattr(fd.as_raw_fd(), buf.cast(), len) }
    })?;
    let mut out = Vec::new();
    for n in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(n).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
        let value = xattr_call(|buf, len| {
            // SAFETY: cname is NUL-terminated; buf points to len writable bytes.
            unsafe { libc::fgetxattr(fd.as_raw_fd(), cname.as_ptr(), buf.cast(), len) }
        })?;
        out.push((n.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Calls a size-then-fill xattr function until the buffer is big enough.
fn xattr_call(mut f: impl FnMut(*mut u8, usize) -> isize) -> std::io::Result<Vec<u8>> {
    loop {
        let n = f(std::ptr::null_mut(), 0);
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // Filesystems without xattr support have none.
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; n as usize];
        let m = f(buf.as_mut_ptr(), buf.len());
        if m >= 0 {
            buf.truncate(m as usize);
            return Ok(buf);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

/// The xattrs of the symlink `name` in `dir` itself (not followed),
/// names and values, sorted.
pub(crate) fn symlink_xattrs(
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.to_bytes());
    let path = CString::new(path).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
    let names = xattr_call(|buf, len| {
        // SAFETY: path is NUL-terminated; buf points to len writable bytes.
        unsafe { libc::llistxattr(path.as_ptr(), buf.cast(), len) }
    })?;
    let mut out = Vec::new();
    for n in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(n).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
        let value = xattr_call(|buf, len| {
            // SAFETY: both strings are NUL-terminated; buf as above.
            unsafe { libc::lgetxattr(path.as_ptr(), cname.as_ptr(), buf.cast(), len) }
        })?;
        out.push((n.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

pub(crate) fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> std::io::Result<()> {
    for (name, value) in xattrs(src)? {
        let cname =
            CString::new(name).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
        // SAFETY: cname is NUL-terminated; value is a live slice of its length.
        let r = unsafe {
            libc::fsetxattr(
                dst.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets atime and mtime from `st`: through `fd` when there is one, else on
/// `name` in `dir` without following a symlink.
pub(crate) fn set_times(
    dir: BorrowedFd<'_>,
    name: Option<&CStr>,
    fd: Option<BorrowedFd<'_>>,
    st: &FileStat,
) -> std::io::Result<()> {
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    let r = match (fd, name) {
        // SAFETY: times is a live array of two timespecs; a null path with
        // an fd is futimens.
        (Some(fd), _) => unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) },
        // SAFETY: name is NUL-terminated; times as above.
        (None, Some(n)) => unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                n.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        },
        (None, None) => 0,
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
