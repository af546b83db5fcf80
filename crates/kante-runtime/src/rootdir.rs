//! A directory held open as a root ([`RootDir`]): every lookup in it is
//! resolved inside it (openat2 `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`),
//! so `..` and symlinks never lead out. With the few file calls around it
//! (fstat, readlink and listing of an open fd), it is what the engine uses
//! on a stopped instance's rootfs and an image's templates.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};

/// See the module docs.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
}

impl RootDir {
    /// Opens the directory at `path` (an `O_PATH` handle, close-on-exec).
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir { fd })
    }

    /// `rel` resolved inside the root (the root itself when empty).
    fn resolve(&self, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let p: &OsStr = if rel.as_os_str().is_empty() {
            OsStr::new(".")
        } else {
            rel.as_os_str()
        };
        Ok(rfs::openat2(
            &self.fd,
            p,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Whether `rel` exists inside the root (a dangling symlink does not).
    pub fn exists(&self, rel: &Path) -> bool {
        self.resolve(rel, OFlags::PATH, Mode::empty()).is_ok()
    }

    /// Whatever is at `rel` (a socket, say), as an `O_PATH` handle; a
    /// final symlink is followed, inside the root too.
    pub fn open_path(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.resolve(rel, OFlags::PATH, Mode::empty())
    }

    /// The directory at `rel`, as an `O_PATH` handle.
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.resolve(rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
    }

    /// The file at `rel`, for reading.
    pub fn open_read(&self, rel: &Path) -> io::Result<File> {
        Ok(File::from(self.resolve(
            rel,
            OFlags::RDONLY,
            Mode::empty(),
        )?))
    }

    /// Writes `data` at `rel`, creating missing parents (0755) and a
    /// missing file (0644), both owned by uid/gid 0 when we are root; an
    /// existing file keeps its owner and mode. Anything but a regular file
    /// there (a FIFO, socket or device a guest put) is refused, without
    /// blocking, as [`NOT_REGULAR`].
    pub fn write_file_as_root(&self, rel: &Path, data: &[u8]) -> io::Result<()> {
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.mkdir_p_as_root(parent)?;
        }
        let existed = self.exists(rel);
        let fd = regular_only(self.resolve(
            rel,
            OFlags::WRONLY | OFlags::CREATE | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o644),
        ))?;
        rfs::ftruncate(&fd, 0)?;
        if !existed {
            chown_root(&fd)?;
            rfs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
        }
        let mut f = File::from(fd);
        f.write_all(data)
    }

    /// `mkdir -p` inside the root, one component at a time; new
    /// directories are 0755 and belong to uid/gid 0 when we are root.
    fn mkdir_p_as_root(&self, dir: &Path) -> io::Result<()> {
        let mut sofar = PathBuf::new();
        for comp in dir.components() {
            let parent = sofar.clone();
            sofar.push(comp);
            match self.open_dir(&sofar) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
            let pfd = self.open_dir(&parent)?;
            match rfs::mkdirat(&pfd, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let d = rfs::openat(
                &pfd,
                comp.as_os_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            chown_root(&d)?;
            rfs::fchmod(&d, Mode::from_raw_mode(0o755))?;
        }
        Ok(())
    }
}

impl AsFd for RootDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for RootDir {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// New entries belong to uid/gid 0 (a setgid parent could give them another
/// group). Only root can do this; as any other user they keep our ids.
fn chown_root(fd: &OwnedFd) -> io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    Ok(rfs::fchown(fd, Some(rfs::Uid::ROOT), Some(rfs::Gid::ROOT))?)
}

/// Opens `name`, a plain name in `dir`, for reading; a symlink there is
/// refused (`ELOOP`).
pub fn open_nofollow(dir: impl AsFd, name: &str) -> io::Result<File> {
    let fd = regular_only(
        rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from),
    )?;
    Ok(File::from(fd))
}

/// Creates (or truncates) `name` in `dir` for writing with `mode`; a
/// symlink there is refused (`ELOOP`).
pub fn create_nofollow(dir: impl AsFd, name: &str, mode: u32) -> io::Result<File> {
    let fd = regular_only(
        rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(io::Error::from),
    )?;
    rfs::ftruncate(&fd, 0)?;
    Ok(File::from(fd))
}

/// What a write or read refuses when the path names a FIFO, socket or
/// device instead of a regular file (its `io::Error` kind is
/// `InvalidInput`, its message this text).
pub const NOT_REGULAR: &str = "not a regular file";

/// Keeps `opened` only if it is a regular file, in blocking mode again.
/// Opened with `O_NONBLOCK`, so a FIFO cannot hold the caller: without a
/// peer its open fails at once (`ENXIO` for a writer), with one it is
/// refused here.
fn regular_only(opened: io::Result<OwnedFd>) -> io::Result<OwnedFd> {
    let fd = match opened {
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(not_regular()),
        r => r?,
    };
    if stat(&fd)?.kind != EntryType::Regular {
        return Err(not_regular());
    }
    let flags = rfs::fcntl_getfl(&fd)?;
    rfs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
    Ok(fd)
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NOT_REGULAR)
}

/// What an open fd names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Regular,
    Directory,
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// What `fstat` says of an open fd.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub kind: EntryType,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with setuid, setgid and sticky (`& 0o7777`).
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

/// fstat of `fd` (an `O_PATH` one too).
pub fn stat(fd: impl AsFd) -> io::Result<Stat> {
    let st = rfs::fstat(fd)?;
    let kind = match rfs::FileType::from_raw_mode(st.st_mode) {
        rfs::FileType::RegularFile => EntryType::Regular,
        rfs::FileType::Directory => EntryType::Directory,
        rfs::FileType::Symlink => EntryType::Symlink,
        _ => EntryType::Other,
    };
    Ok(Stat {
        kind,
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
    })
}

/// The target of the symlink `fd` names (opened with `O_PATH | O_NOFOLLOW`).
pub fn read_link(fd: impl AsFd) -> io::Result<OsString> {
    use std::os::unix::ffi::OsStringExt;
    let target = rfs::readlinkat(fd, "", Vec::new())?;
    Ok(OsString::from_vec(target.into_bytes()))
}

/// The names in the directory `fd` names, without `.` and `..`, unsorted.
pub fn list_dir(fd: impl AsFd) -> io::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names = Vec::new();
    let mut dir = rfs::Dir::read_from(fd)?;
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO where the daemon writes or reads is refused at once, not
    /// waited on; a symlink is followed inside the root.
    #[test]
    fn fifos_are_refused_without_blocking_and_links_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let fifo = root.join("etc/hosts");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        std::os::unix::fs::symlink("/../../../../outside", root.join("etc/hostname")).unwrap();
        let r = RootDir::open(&root).unwrap();
        let e = r
            .write_file_as_root(Path::new("etc/hosts"), b"x")
            .unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (io::ErrorKind::InvalidInput, NOT_REGULAR.into())
        );
        let etc = r.open_dir(Path::new("etc")).unwrap();
        let e = create_nofollow(&etc, "hosts", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = open_nofollow(&etc, "hosts").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // The absolute link is re-rooted: the file lands in the root.
        r.write_file_as_root(Path::new("etc/hostname"), b"c1\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("outside")).unwrap(),
            "c1\n"
        );
        assert!(!dir.path().join("outside").exists());
        // A second write truncates.
        r.write_file_as_root(Path::new("etc/hostname"), b"c\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("outside")).unwrap(),
            "c\n"
        );
    }
}
