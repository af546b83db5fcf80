//! Mount helpers: what is mounted where (from `/proc/self/mountinfo`),
//! mounting and unmounting.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::{Result, StorageError};

/// One line of mountinfo, the fields we use.
#[derive(Debug, Clone)]
pub(crate) struct MountEntry {
    pub fstype: String,
    pub source: String,
}

/// The mount on top at `path`, if `path` is a mount point.
pub(crate) fn mount_at(path: &Path) -> Option<MountEntry> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.split(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if f.len() < 5 || r.len() < 2 {
            continue;
        }
        if kante_syntax::unescape_mountinfo(f[4]).as_slice() == path.as_os_str().as_bytes() {
            found = Some(MountEntry {
                fstype: r[0].to_string(),
                source: String::from_utf8_lossy(&kante_syntax::unescape_mountinfo(r[1]))
                    .into_owned(),
            });
        }
    }
    found
}

/// Mounts filesystem `source` (a block device) of type `fstype` on `target`.
pub(crate) fn mount_fs(source: &Path, target: &Path, fstype: &str, options: &str) -> Result<()> {
    let data = (!options.is_empty()).then_some(options);
    nix::mount::mount(Some(source), target, Some(fstype), MsFlags::empty(), data).map_err(|e| {
        StorageError::Io {
            what: format!(
                "mounting {} ({fstype}, options {options:?}) on {}",
                source.display(),
                target.display()
            ),
            source: e.into(),
        }
    })
}

/// Bind-mounts directory `source` on `target`.
pub(crate) fn bind(source: &Path, target: &Path) -> Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| StorageError::Io {
        what: format!("bind-mounting {} on {}", source.display(), target.display()),
        source: e.into(),
    })
}

/// Unmounts `target`; not being mounted is no error.
pub(crate) fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => Err(StorageError::InUse(format!(
            "{} is busy (open files or processes using it)",
            target.display()
        ))),
        Err(e) => Err(StorageError::Io {
            what: format!("unmounting {}", target.display()),
            source: e.into(),
        }),
    }
}

/// A directory to mount on: creates `dir` if needed and says whether it did.
pub(crate) fn ensure_dir(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)
        .map_err(StorageError::io(format!("creating {}", dir.display())))?;
    Ok(true)
}

/// Whether `dir` has no entries (a missing directory counts as empty).
pub(crate) fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(StorageError::Io {
            what: format!("reading {}", dir.display()),
            source: e,
        }),
    }
}

/// `path` with symlinks resolved as far as it exists (the rest appended).
pub(crate) fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => resolve(parent).join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_mounted() {
        let m = mount_at(Path::new("/")).expect("/ is a mount point");
        assert!(!m.fstype.is_empty());
        assert!(mount_at(Path::new("/proc/self")).is_none());
    }
}
