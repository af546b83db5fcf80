//! File transfer in and out of instances.
//!
//! Every path is resolved with openat2(RESOLVE_IN_ROOT) against the
//! instance's root, so `..` and symlinks (absolute or relative) stay inside
//! it. A running instance is reached through /proc/<init>/root, which shows
//! its own mounts (/run, /tmp, disks); a stopped one through its rootfs.
//! Through a running unprivileged instance's idmapped rootfs, files must be
//! created by the container's root id, so those operations run on a
//! throw-away thread whose fsuid/fsgid are set to it.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};

use crate::error::{EngineError, Result};
use crate::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "file" => Ok(FileKind::File),
            "directory" => Ok(FileKind::Directory),
            "symlink" => Ok(FileKind::Symlink),
            other => Err(EngineError::bad(format!("Invalid file type {other:?}"))),
        }
    }
}

/// Owner and mode as seen inside the instance.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub uid: i64,
    pub gid: i64,
    pub mode: u32,
    pub kind: FileKind,
    pub modified: kante_api::Timestamp,
}

pub enum FileGet {
    File(File, FileMeta),
    Directory(Vec<String>, FileMeta),
    Symlink(String, FileMeta),
}

/// A write request (`X-LXD-*` headers). Owner and mode apply only to new files.
#[derive(Debug, Clone)]
pub struct FilePut {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub kind: FileKind,
    pub append: bool,
}

/// Turns an API path into a path relative to the instance root, refusing
/// anything that climbs above it.
pub fn relative_path(path: &str) -> Result<PathBuf> {
    if path.as_bytes().contains(&0) {
        return Err(EngineError::bad("Path contains a NUL byte"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(EngineError::bad(format!(
                        "Path {path:?} escapes the instance's root"
                    )));
                }
            }
            Component::Prefix(_) => return Err(EngineError::bad("Invalid path")),
        }
    }
    Ok(out)
}

/// Where to resolve paths, and which host ids mean container root.
struct RootView {
    root: OwnedFd,
    /// Host uid/gid base when going through an idmapped rootfs.
    shift: Option<(u32, u32)>,
}

impl RootView {
    fn host_ids(&self, uid: u32, gid: u32) -> (u32, u32) {
        match self.shift {
            Some((u, g)) => (u + uid, g + gid),
            None => (uid, gid),
        }
    }

    fn container_ids(&self, uid: u32, gid: u32) -> (i64, i64) {
        match self.shift {
            Some((u, g)) => (uid as i64 - u as i64, gid as i64 - g as i64),
            None => (uid as i64, gid as i64),
        }
    }

    fn resolve(&self, rel: &Path, flags: OFlags, mode: Mode) -> std::io::Result<OwnedFd> {
        let p: &OsStr = if rel.as_os_str().is_empty() {
            OsStr::new(".")
        } else {
            rel.as_os_str()
        };
        Ok(rfs::openat2(
            &self.root,
            p,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    fn parent_and_name<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        let name = rel
            .file_name()
            .ok_or_else(|| EngineError::bad("Path names the instance's root"))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self
            .resolve(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(io_to_engine)?;
        Ok((fd, name))
    }
}

fn io_to_engine(e: std::io::Error) -> EngineError {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            EngineError::NotFound("No such file or directory".into())
        }
        Some(libc::EXDEV) | Some(libc::ELOOP) => {
            EngineError::bad("Path escapes the instance's root")
        }
        Some(libc::EISDIR) => EngineError::bad("Path is a directory"),
        Some(libc::EEXIST) => EngineError::Conflict("Path already exists".into()),
        Some(libc::ENOTEMPTY) => EngineError::bad("Directory is not empty"),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            EngineError::Forbidden(format!("Permission denied: {e}"))
        }
        _ => EngineError::internal(e),
    }
}

fn meta_of(view: &RootView, fd: &OwnedFd) -> Result<FileMeta> {
    let st = rfs::fstat(fd).map_err(|e| io_to_engine(e.into()))?;
    let ft = rfs::FileType::from_raw_mode(st.st_mode);
    let kind = match ft {
        rfs::FileType::Directory => FileKind::Directory,
        rfs::FileType::Symlink => FileKind::Symlink,
        _ => FileKind::File,
    };
    let (uid, gid) = view.container_ids(st.st_uid, st.st_gid);
    let modified = chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
        .unwrap_or_else(kante_api::zero_time);
    Ok(FileMeta {
        uid,
        gid,
        mode: st.st_mode & 0o7777,
        kind,
        modified,
    })
}

/// Runs `f` on a fresh thread acting with the fs ids of the container's
/// root, so creations through an idmapped mount are allowed and owned right.
fn as_container_root<T: Send + 'static>(
    shift: Option<(u32, u32)>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::spawn(move || {
        if let Some((uid, gid)) = shift {
            // setfsuid/setfsgid and capset are per-thread syscalls; this thread ends afterwards.
            unsafe {
                libc::setfsgid(gid);
                libc::setfsuid(uid);
            }
            raise_effective_caps();
        }
        f()
    })
    .join()
    .map_err(|_| EngineError::internal("file operation thread panicked"))?
}

/// Leaving fsuid 0 drops the filesystem capabilities from the effective set;
/// the thread still has them permitted, so take them back.
fn raise_effective_caps() {
    let _ = kante_runtime::sys::set_effective_caps(|permitted| permitted);
}

impl Engine {
    fn root_view(&self, name: &str) -> Result<RootView> {
        let row = self.instance_row(name)?;
        if let Some(r) = self.running(name) {
            if let Some(c) = crate::lock(&r.container).as_ref() {
                let root = rfs::open(
                    format!("/proc/{}/root", c.pid()),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_to_engine(e.into()))?;
                let shift = c.record.idmap.map(|m| (m.host_uid, m.host_gid));
                return Ok(RootView { root, shift });
            }
        }
        let rootfs = self.instance_rootfs(&row)?;
        let root = rfs::open(
            &rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_to_engine(e.into()))?;
        Ok(RootView { root, shift: None })
    }

    pub async fn file_get(&self, name: &str, path: &str) -> Result<FileGet> {
        let rel = relative_path(path)?;
        let view = self.root_view(name)?;
        let shift = view.shift;
        as_container_root(shift, move || {
            let fd = view
                .resolve(&rel, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())
                .map_err(io_to_engine)?;
            let meta = meta_of(&view, &fd)?;
            match meta.kind {
                FileKind::Symlink => {
                    let target =
                        rfs::readlinkat(&fd, "", Vec::new()).map_err(|e| io_to_engine(e.into()))?;
                    Ok(FileGet::Symlink(
                        absolute_link_target(&rel, &target.to_string_lossy()),
                        meta,
                    ))
                }
                FileKind::Directory => {
                    let dfd = view
                        .resolve(&rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                        .map_err(io_to_engine)?;
                    let mut names = Vec::new();
                    let mut dir = rfs::Dir::read_from(&dfd).map_err(|e| io_to_engine(e.into()))?;
                    while let Some(entry) = dir.read() {
                        let entry = entry.map_err(|e| io_to_engine(e.into()))?;
                        let n = entry.file_name().to_string_lossy().into_owned();
                        if n != "." && n != ".." {
                            names.push(n);
                        }
                    }
                    names.sort();
                    Ok(FileGet::Directory(names, meta))
                }
                FileKind::File => {
                    let f = view
                        .resolve(&rel, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty())
                        .map_err(io_to_engine)?;
                    Ok(FileGet::File(File::from(f), meta))
                }
            }
        })
    }

    /// Creates or opens the target; for a file, returns it for the caller
    /// to stream the body into.
    pub async fn file_put(
        &self,
        name: &str,
        path: &str,
        put: FilePut,
        symlink_target: Option<String>,
    ) -> Result<Option<File>> {
        let rel = relative_path(path)?;
        let view = self.root_view(name)?;
        let shift = view.shift;
        as_container_root(shift, move || {
            let (parent, fname) = view.parent_and_name(&rel)?;
            let exists = rfs::statat(&parent, fname, rfs::AtFlags::SYMLINK_NOFOLLOW).ok();
            let (uid, gid) = view.host_ids(put.uid.unwrap_or(0), put.gid.unwrap_or(0));
            match put.kind {
                FileKind::Directory => {
                    if let Some(st) = exists {
                        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                            return Ok(None);
                        }
                        return Err(EngineError::Conflict(
                            "Path exists and is not a directory".into(),
                        ));
                    }
                    let mode = put.mode.unwrap_or(0o750);
                    rfs::mkdirat(&parent, fname, Mode::from_raw_mode(mode))
                        .map_err(|e| io_to_engine(e.into()))?;
                    let d = rfs::openat(
                        &parent,
                        fname,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io_to_engine(e.into()))?;
                    rfs::fchown(
                        &d,
                        Some(rfs::Uid::from_raw(uid)),
                        Some(rfs::Gid::from_raw(gid)),
                    )
                    .map_err(|e| io_to_engine(e.into()))?;
                    rfs::fchmod(&d, Mode::from_raw_mode(mode))
                        .map_err(|e| io_to_engine(e.into()))?;
                    Ok(None)
                }
                FileKind::Symlink => {
                    let target = symlink_target.unwrap_or_default();
                    if target.is_empty() {
                        return Err(EngineError::bad("Symlink target is empty"));
                    }
                    if let Some(st) = exists {
                        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink {
                            let cur = rfs::readlinkat(&parent, fname, Vec::new())
                                .map_err(|e| io_to_engine(e.into()))?;
                            if cur.as_bytes() == target.as_bytes() {
                                return Ok(None);
                            }
                        }
                        return Err(EngineError::Conflict("Path already exists".into()));
                    }
                    rfs::symlinkat(target.as_str(), &parent, fname)
                        .map_err(|e| io_to_engine(e.into()))?;
                    rfs::chownat(
                        &parent,
                        fname,
                        Some(rfs::Uid::from_raw(uid)),
                        Some(rfs::Gid::from_raw(gid)),
                        rfs::AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_to_engine(e.into()))?;
                    Ok(None)
                }
                FileKind::File => {
                    if let Some(st) = &exists {
                        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                            return Err(EngineError::bad("Path is a directory"));
                        }
                    }
                    let mut flags = OFlags::WRONLY | OFlags::CREATE;
                    flags |= if put.append {
                        OFlags::APPEND
                    } else {
                        OFlags::TRUNC
                    };
                    let mode = put.mode.unwrap_or(0o644);
                    // Resolve again in the root so a symlink at the target stays inside.
                    let f = view
                        .resolve(&rel, flags, Mode::from_raw_mode(mode))
                        .map_err(io_to_engine)?;
                    if exists.is_none() {
                        rfs::fchown(
                            &f,
                            Some(rfs::Uid::from_raw(uid)),
                            Some(rfs::Gid::from_raw(gid)),
                        )
                        .map_err(|e| io_to_engine(e.into()))?;
                        rfs::fchmod(&f, Mode::from_raw_mode(mode))
                            .map_err(|e| io_to_engine(e.into()))?;
                    }
                    Ok(Some(File::from(f)))
                }
            }
        })
    }

    pub async fn file_delete(&self, name: &str, path: &str) -> Result<()> {
        let rel = relative_path(path)?;
        let view = self.root_view(name)?;
        let shift = view.shift;
        as_container_root(shift, move || {
            let (parent, fname) = view.parent_and_name(&rel)?;
            let st = rfs::statat(&parent, fname, rfs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_to_engine(e.into()))?;
            let flags = if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                rfs::AtFlags::REMOVEDIR
            } else {
                rfs::AtFlags::empty()
            };
            rfs::unlinkat(&parent, fname, flags).map_err(|e| io_to_engine(e.into()))?;
            Ok(())
        })
    }
}

/// LXD hands symlink targets back as absolute paths inside the instance
/// (lxc then fetches that path): resolve a relative target against the
/// link's directory, never above the root.
fn absolute_link_target(link: &Path, target: &str) -> String {
    let base = if target.starts_with('/') {
        PathBuf::new()
    } else {
        link.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut out = PathBuf::from("/");
    for c in base.join(target).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

/// Writes /etc/hostname of a (stopped) rootfs, resolving inside it.
pub fn write_hostname(rootfs: &Path, name: &str) -> Result<()> {
    let root = rfs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_to_engine(e.into()))?;
    let view = RootView { root, shift: None };
    let etc = match view.resolve(
        Path::new("etc"),
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(_) => return Ok(()), // an image without /etc (empty instance): nothing to name
    };
    let f = rfs::openat(
        &etc,
        "hostname",
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| io_to_engine(e.into()))?;
    let f = File::from(f);
    use std::io::Write;
    (&f).write_all(format!("{name}\n").as_bytes())?;
    let _ = f.as_fd();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_never_climb_out() {
        assert_eq!(
            relative_path("/etc/hostname").unwrap(),
            PathBuf::from("etc/hostname")
        );
        assert_eq!(
            relative_path("etc/os-release").unwrap(),
            PathBuf::from("etc/os-release")
        );
        assert_eq!(relative_path("/a/b/../c").unwrap(), PathBuf::from("a/c"));
        assert_eq!(relative_path("/").unwrap(), PathBuf::new());
        assert!(relative_path("/../etc/shadow").is_err());
        assert!(relative_path("a/../../x").is_err());
        assert!(relative_path("a\0b").is_err());
    }

    #[test]
    fn link_targets_become_absolute() {
        assert_eq!(
            absolute_link_target(Path::new("etc/os-release"), "../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(
            absolute_link_target(Path::new("etc/localtime"), "/usr/share/zoneinfo/UTC"),
            "/usr/share/zoneinfo/UTC"
        );
        assert_eq!(absolute_link_target(Path::new("a"), "../../../x"), "/x");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("kfiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/etc")).unwrap();
        std::fs::write(dir.join("root/etc/hostname"), "inside").unwrap();
        std::fs::write(dir.join("secret"), "outside").unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("root/abs")).unwrap();
        std::os::unix::fs::symlink("../../secret", dir.join("root/etc/up")).unwrap();
        let root = rfs::open(
            dir.join("root"),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let view = RootView { root, shift: None };
        let read = |p: &str| {
            let fd = view
                .resolve(Path::new(p), OFlags::RDONLY, Mode::empty())
                .unwrap();
            std::io::read_to_string(File::from(fd)).unwrap()
        };
        // An absolute symlink means the container's /etc, not the host's.
        assert_eq!(read("abs/hostname"), "inside");
        // A relative one cannot climb out either.
        assert!(view
            .resolve(Path::new("etc/up"), OFlags::RDONLY, Mode::empty())
            .is_err());
        write_hostname(&dir.join("root"), "c1").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("root/etc/hostname")).unwrap(),
            "c1\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
