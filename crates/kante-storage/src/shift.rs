//! Shifting a received tree back: LXD keeps a container's files shifted by
//! its disk id map and sends them so; Kante keeps them unshifted (its
//! rootfs is idmapped at mount), so a tree from LXD has its owners mapped
//! back (host ids of the map's ranges to the container's), with the
//! set-id bits and file capabilities a chown clears put back (a v3
//! capability, which names a root id, written as v2). Symlinks are not
//! followed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// One range of an id map: `range` ids from `host` are the container's
/// from `ns`; for uids, gids or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdShift {
    pub uid: bool,
    pub gid: bool,
    pub host: u32,
    pub ns: u32,
    pub range: u32,
}

/// The id `id` had before `map` shifted it (uids with `uid`, else gids);
/// `None` when no range holds it.
pub fn unshifted(map: &[IdShift], id: u32, uid: bool) -> Option<u32> {
    map.iter()
        .filter(|m| if uid { m.uid } else { m.gid })
        .find_map(|m| {
            let (host, ns, range) = (i64::from(m.host), i64::from(m.ns), i64::from(m.range));
            let id = i64::from(id);
            (id >= host && id < host + range).then(|| (ns + id - host) as u32)
        })
}

/// Shifts the tree at `root` back by `map`; returns the entries changed.
pub fn unshift_tree(root: &Path, map: &[IdShift]) -> std::io::Result<u64> {
    if map.is_empty() {
        return Ok(0);
    }
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let uid = unshifted(map, meta.uid(), true);
        let gid = unshifted(map, meta.gid(), false);
        if uid.is_some() || gid.is_some() {
            let caps = meta.is_file().then(|| get_caps(&path)).flatten();
            std::os::unix::fs::lchown(&path, uid, gid)?;
            if !meta.file_type().is_symlink() && meta.mode() & 0o6000 != 0 {
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(meta.mode() & 0o7777),
                )?;
            }
            if let Some(c) = caps {
                set_caps(&path, &c)?;
            }
            changed += 1;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&path)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(changed)
}

const CAPS: &[u8] = b"security.capability\0";

fn cpath(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

fn get_caps(path: &Path) -> Option<Vec<u8>> {
    let p = cpath(path).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and a buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            CAPS.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| buf[..n as usize].to_vec())
}

/// Writes a capability back, a v3 one (24 bytes, a root id) as v2.
fn set_caps(path: &Path, caps: &[u8]) -> std::io::Result<()> {
    let mut v = caps.to_vec();
    if v.len() == 24 && v[3] == 0x03 {
        v.truncate(20);
        v[3] = 0x02;
    }
    let p = cpath(path)?;
    // SAFETY: valid C strings and a value of the length given.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            CAPS.as_ptr().cast(),
            v.as_ptr().cast(),
            v.len(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lxd_map() -> Vec<IdShift> {
        vec![
            IdShift {
                uid: true,
                gid: false,
                host: 100000,
                ns: 0,
                range: 65536,
            },
            IdShift {
                uid: false,
                gid: true,
                host: 200000,
                ns: 0,
                range: 65536,
            },
        ]
    }

    #[test]
    fn ids_are_shifted_back_by_their_own_range() {
        let m = lxd_map();
        assert_eq!(unshifted(&m, 100000, true), Some(0));
        assert_eq!(unshifted(&m, 101000, true), Some(1000));
        assert_eq!(unshifted(&m, 200005, false), Some(5));
        // A gid in the uid range, an id outside every range: unchanged.
        assert_eq!(unshifted(&m, 100000, false), None);
        assert_eq!(unshifted(&m, 5, true), None);
        assert_eq!(unshifted(&m, 165536, true), None);
    }
}
