//! Btrfs subvolume operations through the kernel's ioctls (linux/btrfs.h):
//! creating, snapshotting, deleting (nested subvolumes first) and the
//! read-only flag. Constant-time, no `btrfs` process per call, and errors
//! keep their errno (EXDEV for a snapshot across filesystems, …).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MAGIC: u8 = 0x94;
/// Inode number of every subvolume's root directory.
const FIRST_FREE_OBJECTID: u64 = 256;
const SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_vol_args_v2`.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

/// `struct btrfs_ioctl_get_subvol_rootref_args`.
#[repr(C)]
struct RootrefArgs {
    min_treeid: u64,
    rootref: [[u64; 2]; 255],
    num_items: u8,
    align: [u8; 7],
}

/// `struct btrfs_ioctl_ino_lookup_user_args`.
#[repr(C)]
struct InoLookupUserArgs {
    dirid: u64,
    treeid: u64,
    name: [u8; 256],
    path: [u8; 3824],
}

/// `struct btrfs_ioctl_timespec`.
#[repr(C)]
#[allow(dead_code)] // Filled in by the kernel; only some fields are read.
struct Timespec {
    sec: u64,
    nsec: u32,
}

/// `struct btrfs_ioctl_get_subvol_info_args`.
#[repr(C)]
#[allow(dead_code)] // Filled in by the kernel; only some fields are read.
struct SubvolInfoArgs {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    ctime: Timespec,
    otime: Timespec,
    stime: Timespec,
    rtime: Timespec,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<VolArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<SubvolInfoArgs>() == 504);
const _: () = assert!(std::mem::offset_of!(SubvolInfoArgs, received_uuid) == 328);
const _: () = assert!(std::mem::offset_of!(SubvolInfoArgs, ctime) == 376);
const _: () = assert!(std::mem::size_of::<VolArgsV2>() == 4096);
const _: () = assert!(std::mem::size_of::<RootrefArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<InoLookupUserArgs>() == 4096);

const SUBVOL_CREATE: libc::c_ulong =
    nix::request_code_write!(MAGIC, 14, std::mem::size_of::<VolArgs>()) as _;
const SNAP_DESTROY: libc::c_ulong =
    nix::request_code_write!(MAGIC, 15, std::mem::size_of::<VolArgs>()) as _;
const SNAP_CREATE_V2: libc::c_ulong =
    nix::request_code_write!(MAGIC, 23, std::mem::size_of::<VolArgsV2>()) as _;
const SUBVOL_GETFLAGS: libc::c_ulong =
    nix::request_code_read!(MAGIC, 25, std::mem::size_of::<u64>()) as _;
const SUBVOL_SETFLAGS: libc::c_ulong =
    nix::request_code_write!(MAGIC, 26, std::mem::size_of::<u64>()) as _;
const GET_SUBVOL_INFO: libc::c_ulong =
    nix::request_code_read!(MAGIC, 60, std::mem::size_of::<SubvolInfoArgs>()) as _;
const GET_SUBVOL_ROOTREF: libc::c_ulong =
    nix::request_code_readwrite!(MAGIC, 61, std::mem::size_of::<RootrefArgs>()) as _;
const INO_LOOKUP_USER: libc::c_ulong =
    nix::request_code_readwrite!(MAGIC, 62, std::mem::size_of::<InoLookupUserArgs>()) as _;

fn open_dir(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

/// Splits `path` into its parent directory (opened) and final name.
fn parent_and_name(path: &Path) -> std::io::Result<(File, &OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((open_dir(parent)?, name))
}

fn copy_name<const N: usize>(dst: &mut [u8; N], name: &OsStr) -> std::io::Result<()> {
    let b = name.as_bytes();
    if b.len() >= N || b.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    dst[..b.len()].copy_from_slice(b);
    Ok(())
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether `path` is on a btrfs filesystem.
pub(crate) fn is_btrfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Whether `path` is the root of a btrfs subvolume (not following symlinks).
pub(crate) fn is_subvolume(path: &Path) -> bool {
    match path.symlink_metadata() {
        Ok(md) => md.is_dir() && md.ino() == FIRST_FREE_OBJECTID && is_btrfs(path),
        Err(_) => false,
    }
}

/// Creates an empty subvolume at `path` (its parent must exist on btrfs).
pub(crate) fn create_subvolume(path: &Path) -> std::io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let mut args = VolArgs {
        fd: 0,
        name: [0; 4088],
    };
    copy_name(&mut args.name, name)?;
    // SAFETY: `args` is a valid btrfs_ioctl_vol_args.
    check(unsafe { libc::ioctl(parent.as_raw_fd(), SUBVOL_CREATE as _, &args) })
}

/// Snapshots subvolume `src` as `dst` (whose parent must be on the same
/// filesystem: EXDEV otherwise), read-only if asked.
pub(crate) fn snapshot(src: &Path, dst: &Path, readonly: bool) -> std::io::Result<()> {
    let source = open_dir(src)?;
    let (parent, name) = parent_and_name(dst)?;
    let mut args = VolArgsV2 {
        fd: source.as_raw_fd() as i64,
        transid: 0,
        flags: if readonly { SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; 4040],
    };
    copy_name(&mut args.name, name)?;
    // SAFETY: `args` is a valid btrfs_ioctl_vol_args_v2.
    check(unsafe { libc::ioctl(parent.as_raw_fd(), SNAP_CREATE_V2 as _, &args) })
}

fn get_flags(f: &File) -> std::io::Result<u64> {
    let mut flags = 0u64;
    // SAFETY: the ioctl writes one u64.
    check(unsafe { libc::ioctl(f.as_raw_fd(), SUBVOL_GETFLAGS as _, &mut flags) })?;
    Ok(flags)
}

fn set_flags(f: &File, flags: u64) -> std::io::Result<()> {
    // SAFETY: the ioctl reads one u64.
    check(unsafe { libc::ioctl(f.as_raw_fd(), SUBVOL_SETFLAGS as _, &flags) })
}

/// Sets or clears a subvolume's read-only flag.
pub(crate) fn set_readonly(path: &Path, readonly: bool) -> std::io::Result<()> {
    let f = open_dir(path)?;
    let flags = get_flags(&f)?;
    let new = if readonly {
        flags | SUBVOL_RDONLY
    } else {
        flags & !SUBVOL_RDONLY
    };
    if new != flags {
        set_flags(&f, new)?;
    }
    Ok(())
}

pub(crate) fn is_readonly(path: &Path) -> std::io::Result<bool> {
    Ok(get_flags(&open_dir(path)?)? & SUBVOL_RDONLY != 0)
}

/// What the kernel says of one subvolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubvolInfo {
    pub uuid: [u8; 16],
    /// All zeros unless the subvolume was made by `btrfs receive`.
    pub received_uuid: [u8; 16],
    /// The transaction of its last change.
    pub ctransid: u64,
    /// For a received subvolume, the sender's `ctransid`.
    pub stransid: u64,
    pub readonly: bool,
}

/// The UUIDs and read-only flag of subvolume `path`.
pub(crate) fn subvolume_info(path: &Path) -> std::io::Result<SubvolInfo> {
    let f = open_dir(path)?;
    // SAFETY: the all-zero bit pattern is a valid value of this plain C struct.
    let mut args: SubvolInfoArgs = unsafe { std::mem::zeroed() };
    // SAFETY: `args` is a valid btrfs_ioctl_get_subvol_info_args that the
    // kernel fills in.
    check(unsafe { libc::ioctl(f.as_raw_fd(), GET_SUBVOL_INFO as _, &mut args) })?;
    Ok(SubvolInfo {
        uuid: args.uuid,
        received_uuid: args.received_uuid,
        ctransid: args.ctransid,
        stransid: args.stransid,
        // `args.flags` holds the root item's flags, whose read-only bit is
        // not SUBVOL_RDONLY: ask the flags ioctl, as `is_readonly` does.
        readonly: get_flags(&f)? & SUBVOL_RDONLY != 0,
    })
}

/// The subvolumes directly below subvolume `path`, as paths.
pub(crate) fn child_subvolumes(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let f = open_dir(path)?;
    let mut refs = Vec::new();
    let mut min = 0u64;
    loop {
        let mut args = RootrefArgs {
            min_treeid: min,
            rootref: [[0; 2]; 255],
            num_items: 0,
            align: [0; 7],
        };
        // SAFETY: `args` is a valid btrfs_ioctl_get_subvol_rootref_args.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), GET_SUBVOL_ROOTREF as _, &mut args) };
        let more = if r < 0 {
            let e = std::io::Error::last_os_error();
            // EOVERFLOW: the buffer is full, call again from min_treeid.
            if e.raw_os_error() != Some(libc::EOVERFLOW) {
                return Err(e);
            }
            true
        } else {
            false
        };
        for item in &args.rootref[..args.num_items as usize] {
            refs.push((item[0], item[1]));
        }
        if !more || args.min_treeid <= min {
            break;
        }
        min = args.min_treeid;
    }
    let mut out = Vec::with_capacity(refs.len());
    for (treeid, dirid) in refs {
        let mut args = InoLookupUserArgs {
            dirid,
            treeid,
            name: [0; 256],
            path: [0; 3824],
        };
        // SAFETY: `args` is a valid btrfs_ioctl_ino_lookup_user_args.
        check(unsafe { libc::ioctl(f.as_raw_fd(), INO_LOOKUP_USER as _, &mut args) })?;
        let cstr = |b: &[u8]| {
            let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
            OsStr::from_bytes(&b[..end]).to_os_string()
        };
        let dir = cstr(&args.path);
        let name = cstr(&args.name);
        out.push(path.join(dir).join(name));
    }
    Ok(out)
}

/// Deletes subvolume `path` and, first, every subvolume nested in it.
pub(crate) fn delete_subvolume(path: &Path) -> std::io::Result<()> {
    let children = child_subvolumes(path)?;
    if !children.is_empty() && is_readonly(path)? {
        // Removing the children changes this subvolume's directories.
        set_readonly(path, false)?;
    }
    for child in children {
        if is_subvolume(&child) {
            delete_subvolume(&child)?;
        }
    }
    let (parent, name) = parent_and_name(path)?;
    let mut args = VolArgs {
        fd: 0,
        name: [0; 4088],
    };
    copy_name(&mut args.name, name)?;
    // SAFETY: `args` is a valid btrfs_ioctl_vol_args.
    check(unsafe { libc::ioctl(parent.as_raw_fd(), SNAP_DESTROY as _, &args) })
}
