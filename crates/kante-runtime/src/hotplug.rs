//! Disk hot-plug: bind mounts attached to and detached from a running
//! container, from the daemon (a multi-threaded process).
//!
//! The mount is prepared on the host as a detached tree (idmapped with the
//! container's own user namespace, or read-only), then a short-lived thread
//! leaves the shared fs context (`unshare(CLONE_FS)`, which is what lets one
//! thread of a threaded process `setns` into a mount namespace), enters the
//! container's mount namespace, chroots to its init's root so that every
//! path (and every symlink in it) resolves inside the container, and moves
//! the tree into place. Directories it creates belong to the container's root.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::spec::BindMount;
use crate::sys;

/// Host uid/gid of the container's root, for creating mount points.
pub type RootIds = Option<(u32, u32)>;

/// Mounts `m` inside the running container whose init is `pid`.
pub fn attach(pid: i32, m: &BindMount, root_ids: RootIds) -> io::Result<()> {
    let target = inside_path(&m.target)?;
    let tree = sys::open_tree_clone(&m.source, true)?;
    if m.idmapped {
        let userns = File::open(format!("/proc/{pid}/ns/user"))?;
        sys::mount_setattr_idmap(&tree, userns.as_raw_fd(), m.readonly)?;
    } else if m.readonly {
        sys::mount_setattr_readonly(&tree)?;
    }
    let is_dir = m.source.is_dir();
    in_container(pid, root_ids, move || {
        make_mount_point(&target, is_dir)?;
        sys::move_mount_to(tree.as_raw_fd(), &target)
    })
}

/// Unmounts whatever is mounted at `target` inside the container (lazily,
/// so a process using it does not block the detach).
pub fn detach(pid: i32, target: &str) -> io::Result<()> {
    let target = inside_path(target)?;
    in_container(pid, None, move || {
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
    })
}

/// `path` as an absolute, normalised path with no `..`.
fn inside_path(path: &str) -> io::Result<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mount path {path:?} must be absolute without \"..\""),
        ));
    }
    Ok(p.components().collect())
}

fn make_mount_point(target: &Path, dir: bool) -> io::Result<()> {
    let parent = if dir { Some(target) } else { target.parent() };
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    if !dir && !target.exists() {
        File::create(target)?;
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside the mount namespace and root of the
/// container whose init is `pid`; the thread ends with `f`.
fn in_container<T: Send + 'static>(
    pid: i32,
    root_ids: RootIds,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let mntns: OwnedFd = File::open(format!("/proc/{pid}/ns/mnt"))?.into();
    let root: OwnedFd = File::open(format!("/proc/{pid}/root"))?.into();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(io::Error::from)?;
        nix::sched::setns(&mntns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
        nix::unistd::fchdir(&root).map_err(io::Error::from)?;
        nix::unistd::chroot(".").map_err(io::Error::from)?;
        if let Some((uid, gid)) = root_ids {
            // Per-thread fs ids: new directories belong to the container's root.
            // SAFETY: plain syscalls affecting only this thread.
            unsafe {
                libc::setfsgid(gid);
                libc::setfsuid(uid);
            }
        }
        f()
    })
    .join()
    .map_err(|_| io::Error::other("hot-plug thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_stay_absolute_and_never_climb() {
        assert_eq!(
            inside_path("/var//lib/./docker/").expect("ok"),
            PathBuf::from("/var/lib/docker")
        );
        assert!(inside_path("var/lib").is_err());
        assert!(inside_path("/mnt/../etc").is_err());
    }
}
