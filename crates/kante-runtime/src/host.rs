//! What the daemon reads and sets of its own process and of the host's
//! kernel: the open-file limit, the kernel's names (uname), its effective ids.

/// Raises the soft open-file limit to the hard one. Returns the new soft
/// limit, `None` if it could not be read or raised.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return None;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// The soft open-file limit, if it can be read.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a local struct.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// The kernel's release and this host's node name (uname); empty if unknown.
pub fn kernel_names() -> (String, String) {
    let u = nix::sys::utsname::uname().ok();
    let release = u
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let node = u
        .as_ref()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    (release, node)
}

/// This process's effective uid and gid.
pub fn effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// A file system's size and use (statvfs) and its type (statfs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsSpace {
    /// Bytes.
    pub size: u64,
    /// Bytes not in use.
    pub free: u64,
    /// Bytes an unprivileged user may still use.
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
    /// `ext4`, `btrfs`, `xfs`, `tmpfs`, `zfs`, `overlay` or `unknown`.
    pub fs_type: &'static str,
}

/// The file system holding `path`.
pub fn fs_space(path: &std::path::Path) -> std::io::Result<FsSpace> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let frag = st.fragment_size();
    let fs_type = match nix::sys::statfs::statfs(path).map(|f| f.filesystem_type().0) {
        Ok(0xEF53) => "ext4",
        Ok(0x9123_683E) => "btrfs",
        Ok(0x5846_5342) => "xfs",
        Ok(0x0102_1994) => "tmpfs",
        Ok(0x2FC1_2FC1) => "zfs",
        Ok(0x794C_7630) => "overlay",
        _ => "unknown",
    };
    Ok(FsSpace {
        size: st.blocks() * frag,
        free: st.blocks_free() * frag,
        available: st.blocks_available() * frag,
        inodes: st.files(),
        inodes_free: st.files_free(),
        fs_type,
    })
}
