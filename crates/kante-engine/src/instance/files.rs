//! File transfer in and out of instances.
//!
//! The operations themselves live in `kante_runtime::fileio`: for a running
//! instance its file server (`kante_runtime::fileserver`, one helper per
//! instance, started on first use) sits in its user and mount namespaces
//! and acts as its root, so a guest's symlink can lead a push or a pull only to
//! what the guest could reach itself (audit F3); for a stopped one the
//! daemon works on the rootfs, every lookup inside it (openat2
//! RESOLVE_IN_ROOT). Either way FIFOs, sockets and device nodes are refused
//! without blocking and the helper's life is bounded (F6). This module maps
//! API requests to those operations and their outcomes to API errors.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use kante_runtime::fileio::{self, FileOp, Outcome, Reply};
use kante_runtime::rootdir::{self, EntryType, RootDir};
use kante_runtime::sys::Errno;

use crate::error::{EngineError, Result};
use crate::Engine;

pub use kante_api::file::FileKind;

/// `X-LXD-type` as a kind, or a 400.
pub fn parse_file_kind(s: &str) -> Result<FileKind> {
    FileKind::parse(s).ok_or_else(|| EngineError::bad(format!("Invalid file type {s:?}")))
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

/// Where an instance's file operations happen.
enum Place {
    /// Running: inside its namespaces, as its root. `shift` is the host id
    /// of its root (what stat shows through the idmapped rootfs), `ids` the
    /// size of its id range.
    Guest {
        running: std::sync::Arc<super::Running>,
        runtime: std::sync::Arc<dyn kante_runtime::Runtime>,
        shift: Option<(u32, u32)>,
        ids: u32,
    },
    /// Stopped: its rootfs, whose files carry the guest's own ids.
    Rootfs(RootDir),
}

impl Place {
    fn container_ids(&self, uid: u32, gid: u32) -> (i64, i64) {
        match self {
            Place::Guest {
                shift: Some((u, g)),
                ..
            } => (uid as i64 - *u as i64, gid as i64 - *g as i64),
            _ => (uid as i64, gid as i64),
        }
    }

    /// Owner ids of a new entry, as the guest sees them (refused when
    /// outside its range: `X-LXD-uid` is the client's).
    fn owner(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(u32, u32)> {
        let (uid, gid) = (uid.unwrap_or(0), gid.unwrap_or(0));
        let limit = match self {
            Place::Guest { ids, .. } => *ids,
            Place::Rootfs(_) => 65536,
        };
        if uid >= limit || gid >= limit {
            return Err(EngineError::bad(format!(
                "Owner {uid}:{gid} is outside the instance's id range (0-{})",
                limit - 1
            )));
        }
        Ok((uid, gid))
    }

    /// Runs one operation (blocking; off the async runtime).
    fn run(&self, op: &FileOp) -> std::io::Result<Reply> {
        match self {
            Place::Guest {
                running, runtime, ..
            } => {
                // One request at a time per guest; the server is started on
                // first use, and dropped (killed) after any failure, so the
                // next operation starts afresh.
                let mut files = crate::lock(&running.files);
                let server = match files.take() {
                    Some(s) => s,
                    None => {
                        let guard = crate::lock(&running.container);
                        let c = guard.as_ref().ok_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                "the instance stopped",
                            )
                        })?;
                        runtime.file_server(c)?
                    }
                };
                let reply = server.call(op, file_timeout())?;
                *files = Some(server);
                Ok(reply)
            }
            Place::Rootfs(root) => Ok(fileio::perform(root.as_raw_fd(), op)),
        }
    }
}

/// How long a file helper may take before it is killed (a guest's FUSE
/// mount can stall any call); `KANTE_FILE_TIMEOUT` seconds, 30 by default.
fn file_timeout() -> Duration {
    Duration::from_secs(crate::util::env_secs("KANTE_FILE_TIMEOUT", 30))
}

/// What the instance's filesystem answered, as a client reads it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("No such file or directory")]
    NotFound(#[source] std::io::Error),
    #[error("Path escapes the instance's root")]
    Escapes(#[source] std::io::Error),
    #[error("Path is a directory")]
    IsDirectory,
    #[error("Path already exists")]
    Exists,
    #[error("Path exists and is not a directory")]
    NotADirectory,
    #[error("Directory is not empty")]
    NotEmpty,
    #[error("Permission denied: {0}")]
    PermissionDenied(#[source] std::io::Error),
    #[error("Path is not a regular file, a directory or a symlink")]
    NotRegular,
}

fn io_to_engine(e: std::io::Error) -> EngineError {
    match Errno::of(&e) {
        Some(Errno::NoEntry | Errno::NotDirectory) => FileError::NotFound(e).into(),
        Some(Errno::CrossDevice | Errno::Loop) => FileError::Escapes(e).into(),
        Some(Errno::IsDirectory) => FileError::IsDirectory.into(),
        Some(Errno::Exists) => FileError::Exists.into(),
        Some(Errno::NotEmpty) => FileError::NotEmpty.into(),
        Some(Errno::Access | Errno::Permission) => FileError::PermissionDenied(e).into(),
        _ => EngineError::from(e),
    }
}

/// An outcome that is not success, as an API error.
fn outcome_error(r: &Reply) -> EngineError {
    match r.outcome {
        Outcome::Failed => io_to_engine(r.error()),
        Outcome::NotRegular => FileError::NotRegular.into(),
        Outcome::IsDirectory => FileError::IsDirectory.into(),
        Outcome::InTheWay => FileError::Exists.into(),
        Outcome::Done | Outcome::Existed => EngineError::internal("unexpected file outcome"),
    }
}

fn meta_of(place: &Place, fd: &OwnedFd) -> Result<FileMeta> {
    let st = rootdir::stat(fd).map_err(io_to_engine)?;
    let kind = match st.kind {
        EntryType::Directory => FileKind::Directory,
        EntryType::Symlink => FileKind::Symlink,
        _ => FileKind::File,
    };
    let (uid, gid) = place.container_ids(st.uid, st.gid);
    let modified = chrono::DateTime::from_timestamp(st.mtime, st.mtime_nsec)
        .unwrap_or_else(kante_api::zero_time);
    Ok(FileMeta {
        uid,
        gid,
        mode: st.mode,
        kind,
        modified,
    })
}

fn cstr(p: &Path) -> Result<CString> {
    let b = if p.as_os_str().is_empty() {
        b"."
    } else {
        p.as_os_str().as_bytes()
    };
    CString::new(b).map_err(|_| EngineError::bad("Path contains a NUL byte"))
}

/// `rel` as (whole path, parent, final name); refuses the root itself.
fn split(rel: &Path) -> Result<(CString, CString, CString)> {
    let name = rel
        .file_name()
        .ok_or_else(|| EngineError::bad("Path names the instance's root"))?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    Ok((cstr(rel)?, cstr(parent)?, cstr(Path::new(name))?))
}

/// Runs `f` (which does blocking file work) on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| EngineError::internal("file operation task failed"))?
}

impl Engine {
    async fn place(&self, name: &str) -> Result<Place> {
        let row = self.instance_row(name).await?;
        if let Some(r) = self.running(name) {
            if let Some(c) = crate::lock(&r.container).as_ref() {
                let map = c.record.idmap;
                return Ok(Place::Guest {
                    running: r.clone(),
                    runtime: self.runtime.clone(),
                    shift: map.map(|m| (m.host_uid, m.host_gid)),
                    ids: map.map(|m| m.size).unwrap_or(65536),
                });
            }
        }
        let rootfs = self.instance_rootfs(&row).await?;
        let root = RootDir::open(&rootfs).map_err(io_to_engine)?;
        Ok(Place::Rootfs(root))
    }

    pub(crate) async fn file_get(&self, name: &str, path: &str) -> Result<FileGet> {
        let rel = relative_path(path)?;
        let place = self.place(name).await?;
        blocking(move || {
            let p = cstr(&rel)?;
            let r = place.run(&FileOp::Get { path: &p })?;
            let fd = match (r.outcome, r.fd) {
                (Outcome::Done, Some(fd)) => fd,
                (_, _) => return Err(outcome_error(&Reply { fd: None, ..r })),
            };
            let meta = meta_of(&place, &fd)?;
            match meta.kind {
                FileKind::Symlink => {
                    let target = rootdir::read_link(&fd).map_err(io_to_engine)?;
                    Ok(FileGet::Symlink(
                        absolute_link_target(&rel, &target.to_string_lossy()),
                        meta,
                    ))
                }
                FileKind::Directory => {
                    let mut names: Vec<String> = rootdir::list_dir(&fd)
                        .map_err(io_to_engine)?
                        .into_iter()
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    Ok(FileGet::Directory(names, meta))
                }
                FileKind::File => Ok(FileGet::File(File::from(fd), meta)),
            }
        })
        .await
    }

    /// Creates or opens the target; for a file, returns it for the caller
    /// to stream the body into.
    pub(crate) async fn file_put(
        &self,
        name: &str,
        path: &str,
        put: FilePut,
        symlink_target: Option<String>,
    ) -> Result<Option<File>> {
        let rel = relative_path(path)?;
        let place = self.place(name).await?;
        let owner = place.owner(put.uid, put.gid)?;
        blocking(move || {
            let (whole, parent, fname) = split(&rel)?;
            let r = match put.kind {
                FileKind::Directory => place.run(&FileOp::Mkdir {
                    parent: &parent,
                    name: &fname,
                    mode: put.mode.unwrap_or(0o750),
                    owner,
                })?,
                FileKind::Symlink => {
                    let target = symlink_target.unwrap_or_default();
                    if target.is_empty() {
                        return Err(EngineError::bad("Symlink target is empty"));
                    }
                    let target = CString::new(target)
                        .map_err(|_| EngineError::bad("Symlink target contains a NUL byte"))?;
                    place.run(&FileOp::Symlink {
                        parent: &parent,
                        name: &fname,
                        target: &target,
                        owner,
                    })?
                }
                FileKind::File => place.run(&FileOp::Write {
                    path: &whole,
                    parent: &parent,
                    name: &fname,
                    mode: put.mode.unwrap_or(0o644),
                    owner,
                    append: put.append,
                })?,
            };
            match (r.outcome, put.kind) {
                (Outcome::InTheWay, FileKind::Directory) => Err(FileError::NotADirectory.into()),
                (Outcome::Done | Outcome::Existed, FileKind::File) => match r.fd {
                    Some(fd) => Ok(Some(File::from(fd))),
                    None => Err(EngineError::internal("no file came back")),
                },
                (Outcome::Done | Outcome::Existed, _) => Ok(None),
                _ => Err(outcome_error(&r)),
            }
        })
        .await
    }

    pub(crate) async fn file_delete(&self, name: &str, path: &str) -> Result<()> {
        let rel = relative_path(path)?;
        let place = self.place(name).await?;
        blocking(move || {
            let (_, parent, fname) = split(&rel)?;
            let r = place.run(&FileOp::Delete {
                parent: &parent,
                name: &fname,
            })?;
            match r.outcome {
                Outcome::Done => Ok(()),
                _ => Err(outcome_error(&r)),
            }
        })
        .await
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

/// Writes /etc/hostname of a (stopped) rootfs, resolving inside it: a
/// symlink there is followed within the root (as a guest's own tools
/// would), and a FIFO, socket or device is refused without blocking.
pub fn write_hostname(rootfs: &Path, name: &str) -> Result<()> {
    let root = RootDir::open(rootfs).map_err(io_to_engine)?;
    if root.open_dir(Path::new("etc")).is_err() {
        return Ok(()); // an image without /etc (empty instance): nothing to name
    }
    root.write_file_as_root(Path::new("etc/hostname"), format!("{name}\n").as_bytes())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => {
                EngineError::bad(format!("/etc/hostname: {}", rootdir::NOT_REGULAR))
            }
            _ => io_to_engine(e),
        })
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
        let view = RootDir::open(&dir.join("root")).unwrap();
        let read = |p: &str| {
            let f = view.open_read(Path::new(p)).unwrap();
            std::io::read_to_string(f).unwrap()
        };
        // An absolute symlink means the container's /etc, not the host's.
        assert_eq!(read("abs/hostname"), "inside");
        // A relative one cannot climb out either.
        assert!(view.open_read(Path::new("etc/up")).is_err());
        write_hostname(&dir.join("root"), "c1").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("root/etc/hostname")).unwrap(),
            "c1\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
