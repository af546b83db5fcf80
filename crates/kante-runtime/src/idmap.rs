//! Idmapped mounts: the rootfs is shown to the container through a mount
//! that maps on-disk ids 0..N to the container's host range, so no file is
//! ever chowned (chowning would also strip file capabilities).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::spec::IdMap;
use crate::sys::{self, Forked};

/// The map of the running process `pid` (its first uid and gid lines), or
/// `None` when it runs in the host's user namespace.
pub fn of_process(pid: i32) -> Option<IdMap> {
    let first = |file: &str| -> Option<(u32, u32, u32)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
        let mut f = text
            .lines()
            .next()?
            .split_whitespace()
            .map(|n| n.parse::<u32>());
        Some((f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?))
    };
    let (uin, uhost, usize_) = first("uid_map")?;
    let (gin, ghost, _) = first("gid_map")?;
    // The initial namespace maps everything: 0 0 4294967295.
    (uin == 0 && gin == 0 && usize_ != u32::MAX).then_some(IdMap {
        host_uid: uhost,
        host_gid: ghost,
        size: usize_,
    })
}

/// A user namespace carrying `map`, kept only as an fd to idmap mounts with.
/// Must be called from a single-threaded process (it forks).
pub fn userns_fd(map: &IdMap) -> io::Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe().map_err(io::Error::from)?;
    match sys::clone_fork(libc::CLONE_NEWUSER as u64)? {
        Forked::Child => {
            drop(w);
            let mut buf = [0u8; 1];
            let _ = File::from(r).read(&mut buf);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        Forked::Parent { pid, pidfd: _pidfd } => {
            drop(r);
            let result = (|| {
                write_id_maps(pid, map)?;
                let f = File::open(format!("/proc/{pid}/ns/user"))?;
                Ok(OwnedFd::from(f))
            })();
            let mut w = File::from(w);
            let _ = w.write_all(b"x");
            drop(w);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            result
        }
    }
}

/// Writes uid_map and gid_map of a process in a fresh user namespace.
pub fn write_id_maps(pid: i32, map: &IdMap) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/uid_map"), map.uid_map_line())?;
    std::fs::write(format!("/proc/{pid}/gid_map"), map.gid_map_line())?;
    Ok(())
}

/// A detached, idmapped copy of the mount tree at `path`.
pub fn idmapped_tree(path: &Path, userns: &OwnedFd, readonly: bool) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let tree = sys::open_tree_clone(path, true)?;
    sys::mount_setattr_idmap(&tree, userns.as_raw_fd(), readonly)?;
    Ok(tree)
}
