//! The `btrfs` driver: every volume is a subvolume. An instance made from an
//! image is a writable snapshot of the image's (read-only) subvolume, made in
//! constant time whatever the image size, sharing all its extents; snapshots
//! are read-only subvolume snapshots; `size` limits are qgroup limits.
//!
//! Where the filesystem comes from (the pool's `source`, written back by
//! `create_pool` so that `mount_pool` can bring the pool back at start):
//!
//! * no `source` (optionally `size`, default 20% of the free space, between
//!   5 GiB and 30 GiB): a sparse loop file `<KANTE_DIR>/disks/<pool>.img`,
//!   where `<KANTE_DIR>/disks` is found from the pool's base path as
//!   `<base>/../../disks` (the base being `<KANTE_DIR>/storage-pools/<pool>`).
//!   It is formatted with `mkfs.btrfs`, attached to a loop device (with
//!   autoclear: the kernel detaches it when the pool is unmounted) and
//!   mounted at the base path. `source` becomes the loop file's path and
//!   `size` is recorded; the loop device itself is never recorded.
//! * `source=/dev/<block device>`: an unformatted device is formatted (a
//!   device holding any other filesystem or a partition table is refused);
//!   one already holding btrfs is used if that filesystem is empty.
//! * `source=<directory>` on a btrfs filesystem: an empty directory or
//!   subvolume there is used, a missing one is created as a subvolume, and it
//!   is bind-mounted at the base path (or used in place if it *is* the base
//!   path). Deleting the pool empties it but leaves it.
//!
//! Other keys: `btrfs.mount_options` (default `user_subvol_rm_allowed`) and
//! `user.*`.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kante_api::ConfigMap;

use crate::btrfs_ioctl as ioctl;
use crate::loopdev::{self, LoopDevice};
use crate::mounts::{self, ensure_dir, is_empty_dir, resolve};
use crate::{
    clear_unused_pool, create_layout, format_size, parse_size, run, stream, DriverInfo,
    MigrationType, Result, Revert, SectionTarget, StorageDriver, StorageError, LAYOUT,
};

pub struct BtrfsDriver;

const DEFAULT_MOUNT_OPTIONS: &str = "user_subvol_rm_allowed";
/// mkfs.btrfs needs about 109 MiB for a single device.
const MIN_SIZE: u64 = 128 << 20;

/// Where a pool's filesystem lives, decided from `source` at mount time.
enum Backing {
    Loop(PathBuf),
    Block(PathBuf),
    Dir(PathBuf),
}

fn invalid(msg: impl Into<String>) -> StorageError {
    StorageError::InvalidConfig(msg.into())
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    StorageError::io(what)
}

/// `<base>/../../disks`: `<KANTE_DIR>/disks` for `<KANTE_DIR>/storage-pools/<pool>`.
pub(crate) fn disks_dir(base: &Path) -> Result<PathBuf> {
    base.parent()
        .and_then(Path::parent)
        .map(|d| d.join("disks"))
        .ok_or_else(|| {
            invalid(format!(
                "no disks directory for a pool at {}",
                base.display()
            ))
        })
}

fn pool_name(base: &Path) -> Result<String> {
    base.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| invalid(format!("bad pool path {}", base.display())))
}

fn mount_options(config: &ConfigMap) -> &str {
    config
        .get("btrfs.mount_options")
        .map(String::as_str)
        .unwrap_or(DEFAULT_MOUNT_OPTIONS)
}

fn backing(config: &ConfigMap) -> Result<Backing> {
    let source = config
        .get("source")
        .ok_or_else(|| invalid("the btrfs pool has no source"))?;
    let path = PathBuf::from(source);
    let md = match std::fs::metadata(&path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound(format!("pool source {source}")))
        }
        Err(e) => return Err(io_err(format!("stat {source}"))(e)),
    };
    Ok(if md.file_type().is_block_device() {
        Backing::Block(path)
    } else if md.is_file() {
        Backing::Loop(path)
    } else if md.is_dir() {
        Backing::Dir(path)
    } else {
        return Err(invalid(format!("unusable pool source {source}")));
    })
}

/// 20% of the free space where the loop file goes, within [5 GiB, 30 GiB].
fn default_loop_size(disks: &Path) -> u64 {
    let free = nix::sys::statvfs::statvfs(disks)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0);
    let gib = 1u64 << 30;
    ((free / 5) / gib * gib).clamp(5 * gib, 30 * gib)
}

/// Whether `dev` carries a btrfs superblock (magic at 64 KiB + 0x40).
fn has_btrfs_magic(dev: &Path) -> Result<bool> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dev)
        .map_err(io_err(format!("opening {}", dev.display())))?;
    let mut buf = vec![0u8; 0x10048];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(io_err(format!("reading {}", dev.display()))(e)),
        }
    }
    Ok(got == buf.len() && &buf[0x10040..0x10048] == b"_BHRfS_M")
}

fn mkfs(target: &Path) -> Result<()> {
    run(
        Command::new("mkfs.btrfs").arg("-q").arg(target),
        &format!("mkfs.btrfs {}", target.display()),
    )
    .map(drop)
    .map_err(|e| match e {
        StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            StorageError::Unsupported(
                "the btrfs driver needs mkfs.btrfs (install btrfs-progs)".into(),
            )
        }
        e => e,
    })
}

/// An undo step unmounting `base` (lazily if it is busy).
fn undo_mount(revert: &mut Revert, base: &Path) {
    let b = base.to_path_buf();
    revert.add(move || {
        if mounts::unmount(&b).is_err() {
            let _ = nix::mount::umount2(&b, nix::mount::MntFlags::MNT_DETACH);
        }
    });
}

/// An undo step removing the layout directories (if empty).
fn undo_layout(revert: &mut Revert, base: &Path) {
    let b = base.to_path_buf();
    revert.add(move || {
        for d in LAYOUT {
            let _ = std::fs::remove_dir(b.join(d));
        }
    });
}

/// Mounts the pool's filesystem at `base` (creating `base` if needed),
/// registering the undo steps on `revert`.
fn mount_backing(backing: &Backing, base: &Path, options: &str, revert: &mut Revert) -> Result<()> {
    if let Backing::Dir(src) = backing {
        if resolve(src) == resolve(base) {
            return Ok(());
        }
    }
    if ensure_dir(base)? {
        let b = base.to_path_buf();
        revert.add(move || {
            let _ = std::fs::remove_dir(&b);
        });
    }
    match backing {
        Backing::Loop(img) => {
            // Reuse a device already backed by the file (attached by hand,
            // say): a second one would show btrfs the same filesystem twice.
            let (dev, _handle) = match loopdev::devices_backing(img).into_iter().next() {
                Some(dev) => (dev, None),
                None => {
                    let h = LoopDevice::attach(img)?;
                    (h.path.clone(), Some(h))
                }
            };
            mounts::mount_fs(&dev, base, "btrfs", options)?;
            // `_handle` closes on return: from then on the mount holds the
            // device, and unmounting detaches it (autoclear).
        }
        Backing::Block(dev) => mounts::mount_fs(dev, base, "btrfs", options)?,
        Backing::Dir(src) => mounts::bind(src, base)?,
    }
    undo_mount(revert, base);
    Ok(())
}

fn btrfs_version() -> String {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        Command::new("btrfs")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .find(|w| {
                        w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit())
                    })
                    .map(|w| w[1..].to_string())
            })
            .unwrap_or_else(|| "unknown".into())
    })
    .clone()
}

/// One qgroup's figures, from `btrfs qgroup show`.
struct Qgroup {
    referenced: u64,
    max_referenced: Option<u64>,
}

impl BtrfsDriver {
    fn create_loop(
        &self,
        base: &Path,
        size: Option<(u64, String)>,
        config: &mut ConfigMap,
    ) -> Result<()> {
        let disks = disks_dir(base)?;
        ensure_dir(&disks)?;
        let img = disks.join(format!("{}.img", pool_name(base)?));
        let (size, size_text) = size.unwrap_or_else(|| {
            let s = default_loop_size(&disks);
            (s, format_size(s))
        });
        let mut revert = Revert::new();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&img)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    StorageError::Exists(format!("loop file {}", img.display()))
                } else {
                    io_err(format!("creating {}", img.display()))(e)
                }
            })?;
        {
            let i = img.clone();
            revert.add(move || {
                let _ = loopdev::detach_all(&i);
                let _ = std::fs::remove_file(&i);
            });
        }
        file.set_len(size)
            .map_err(io_err(format!("sizing {}", img.display())))?;
        drop(file);
        mkfs(&img)?;
        mount_backing(
            &Backing::Loop(img.clone()),
            base,
            mount_options(config),
            &mut revert,
        )?;
        undo_layout(&mut revert, base);
        create_layout(base)?;
        config.insert("source".into(), img.display().to_string());
        config.insert("size".into(), size_text);
        revert.success();
        Ok(())
    }

    fn create_block(&self, dev: &Path, base: &Path, config: &mut ConfigMap) -> Result<()> {
        let options = mount_options(config).to_string();
        let mut revert = Revert::new();
        if has_btrfs_magic(dev)? {
            mount_backing(&Backing::Block(dev.into()), base, &options, &mut revert)?;
            if !is_empty_dir(base)? {
                return Err(invalid(format!(
                    "{} holds a btrfs filesystem that is not empty",
                    dev.display()
                )));
            }
        } else {
            // mkfs.btrfs (without -f) refuses a device with any other
            // filesystem or partition table on it, or one that is mounted.
            mkfs(dev).map_err(|e| match e {
                StorageError::Command(m) => invalid(format!("refusing {}: {m}", dev.display())),
                e => e,
            })?;
            mount_backing(&Backing::Block(dev.into()), base, &options, &mut revert)?;
        }
        undo_layout(&mut revert, base);
        create_layout(base)?;
        config.insert("source".into(), dev.display().to_string());
        revert.success();
        Ok(())
    }

    fn create_on_path(&self, src: &Path, base: &Path, config: &mut ConfigMap) -> Result<()> {
        let (rsrc, rbase) = (resolve(src), resolve(base));
        if let Some(pools) = rbase.parent() {
            if rsrc != rbase && (rsrc.starts_with(pools) || rbase.starts_with(&rsrc)) {
                return Err(invalid(format!(
                    "source {} may not be another pool's path or contain the pool itself",
                    src.display()
                )));
            }
        }
        let mut revert = Revert::new();
        match rsrc.symlink_metadata() {
            Ok(md) => {
                if !md.is_dir() {
                    return Err(invalid(format!(
                        "source {} is neither a block device nor a directory",
                        src.display()
                    )));
                }
                if !ioctl::is_btrfs(&rsrc) {
                    return Err(invalid(format!(
                        "source {} is not on a btrfs filesystem",
                        src.display()
                    )));
                }
                if !is_empty_dir(&rsrc)? {
                    return Err(invalid(format!("source {} is not empty", src.display())));
                }
            }
            Err(_) => {
                let parent = rsrc.parent().unwrap_or(Path::new("/"));
                if !parent.is_dir() {
                    return Err(invalid(format!(
                        "the parent of source {} does not exist",
                        src.display()
                    )));
                }
                if !ioctl::is_btrfs(parent) {
                    return Err(invalid(format!(
                        "source {} is not on a btrfs filesystem",
                        src.display()
                    )));
                }
                ioctl::create_subvolume(&rsrc)
                    .map_err(io_err(format!("creating subvolume {}", rsrc.display())))?;
                let s = rsrc.clone();
                revert.add(move || {
                    let _ = ioctl::delete_subvolume(&s);
                });
            }
        }
        mount_backing(
            &Backing::Dir(rsrc.clone()),
            base,
            mount_options(config),
            &mut revert,
        )?;
        undo_layout(&mut revert, base);
        create_layout(base)?;
        config.insert("source".into(), rsrc.display().to_string());
        revert.success();
        Ok(())
    }

    /// The qgroup of subvolume `path`; `None` when quotas are off.
    fn qgroup(&self, path: &Path) -> Result<Option<Qgroup>> {
        let out = Command::new("btrfs")
            .args(["qgroup", "show", "-re", "--raw", "-f"])
            .arg(path)
            .output()
            .map_err(io_err("running btrfs qgroup show"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("not enabled") || err.contains("quota") {
                return Ok(None);
            }
            return Err(StorageError::Command(format!(
                "btrfs qgroup show {}: {}",
                path.display(),
                err.trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 4 && f[0].starts_with("0/") {
                let num = |s: &str| s.parse::<u64>().ok();
                return Ok(Some(Qgroup {
                    referenced: num(f[1]).unwrap_or(0),
                    max_referenced: num(f[3]),
                }));
            }
        }
        Ok(None)
    }

    fn require_subvolume(&self, path: &Path) -> Result<()> {
        if ioctl::is_subvolume(path) {
            Ok(())
        } else {
            Err(StorageError::Unsupported(format!(
                "{} is not a btrfs subvolume",
                path.display()
            )))
        }
    }

    /// Plain copy into a new subvolume (a source on another filesystem, or
    /// not a subvolume).
    fn copy_slow(&self, src: &Path, dst: &Path) -> Result<()> {
        self.create_volume(dst)?;
        let mut from = src.as_os_str().to_owned();
        from.push("/.");
        run(
            Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg("--")
                .arg(from)
                .arg(dst),
            &format!("copying {} to {}", src.display(), dst.display()),
        )
        .map(drop)
    }
}

impl StorageDriver for BtrfsDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: "btrfs",
            version: btrfs_version(),
            remote: false,
        }
    }

    fn validate_config(&self, config: &ConfigMap) -> Result<()> {
        for (key, value) in config {
            match key.as_str() {
                "size" => {
                    let n = parse_size(value)?;
                    if n < MIN_SIZE {
                        return Err(invalid(format!(
                            "size {value:?} is too small for btrfs (at least {})",
                            format_size(MIN_SIZE)
                        )));
                    }
                }
                "source" => {
                    if !value.starts_with('/') {
                        return Err(invalid(format!(
                            "source {value:?} must be an absolute path (a block device or a directory on btrfs)"
                        )));
                    }
                }
                "btrfs.mount_options" => {
                    if value.contains('\0') {
                        return Err(invalid("btrfs.mount_options contains a NUL byte"));
                    }
                }
                k if k.starts_with("user.") => {}
                k => {
                    return Err(invalid(format!(
                        "unknown key {k:?} for the btrfs driver (known: size, source, btrfs.mount_options, user.*)"
                    )))
                }
            }
        }
        Ok(())
    }

    fn create_pool(&self, base: &Path, config: &mut ConfigMap) -> Result<()> {
        self.validate_config(config)?;
        if mounts::mount_at(base).is_some() {
            return Err(StorageError::Exists(format!(
                "a mount at {}",
                base.display()
            )));
        }
        if !is_empty_dir(base)? {
            return Err(invalid(format!("{} is not empty", base.display())));
        }
        let size = match config.get("size") {
            Some(s) => Some((parse_size(s)?, s.clone())),
            None => None,
        };
        let Some(source) = config.get("source").cloned() else {
            return self.create_loop(base, size, config);
        };
        if size.is_some() {
            return Err(invalid(
                "size only applies to a loop-backed pool (one without source)",
            ));
        }
        let src = PathBuf::from(&source);
        match std::fs::metadata(&src) {
            Ok(md) if md.file_type().is_block_device() => self.create_block(&src, base, config),
            Ok(md) if md.is_file() => Err(invalid(format!(
                "source {source} is a regular file: give a block device or a directory on btrfs \
                 (without source, a loop file is made)"
            ))),
            _ => self.create_on_path(&src, base, config),
        }
    }

    fn mount_pool(&self, base: &Path, config: &ConfigMap) -> Result<()> {
        let backing = backing(config)?;
        if let Some(m) = mounts::mount_at(base) {
            if m.fstype != "btrfs" {
                return Err(StorageError::Command(format!(
                    "{} is mounted, but as {} (from {}) rather than btrfs",
                    base.display(),
                    m.fstype,
                    m.source
                )));
            }
            return create_layout(base);
        }
        if let Backing::Dir(src) = &backing {
            if resolve(src) == resolve(base) && !ioctl::is_btrfs(base) {
                return Err(StorageError::Command(format!(
                    "{} is not on a btrfs filesystem",
                    base.display()
                )));
            }
        }
        let mut revert = Revert::new();
        mount_backing(&backing, base, mount_options(config), &mut revert)?;
        create_layout(base)?;
        revert.success();
        Ok(())
    }

    fn delete_pool(&self, base: &Path, config: &ConfigMap) -> Result<()> {
        crate::background::wait_under(base);
        let backing = match backing(config) {
            Ok(b) => b,
            Err(StorageError::NotFound(_)) => {
                // The filesystem is gone: only the mount point is left to free.
                if mounts::mount_at(base).is_some() {
                    mounts::unmount(base)?;
                }
                let _ = std::fs::remove_dir(base);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.mount_pool(base, config)?;
        clear_unused_pool(self, base)?;
        match backing {
            Backing::Loop(img) => {
                mounts::unmount(base)?;
                loopdev::detach_all(&img)?;
                match std::fs::remove_file(&img) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(format!("removing {}", img.display()))(e)),
                }
            }
            Backing::Block(_) => mounts::unmount(base)?,
            Backing::Dir(src) => {
                if resolve(&src) == resolve(base) {
                    if ioctl::is_subvolume(base) {
                        ioctl::delete_subvolume(base)
                            .map_err(io_err(format!("deleting subvolume {}", base.display())))?;
                    }
                } else {
                    mounts::unmount(base)?;
                }
            }
        }
        match std::fs::remove_dir(base) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", base.display()))(e)),
        }
    }

    fn create_volume(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        ioctl::create_subvolume(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EEXIST) {
                StorageError::Exists(path.display().to_string())
            } else {
                io_err(format!("creating subvolume {}", path.display()))(e)
            }
        })
    }

    fn copy_volume(&self, src: &Path, dst: &Path) -> Result<()> {
        if ioctl::is_subvolume(src) {
            match ioctl::snapshot(src, dst, false) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(e) => {
                    return Err(io_err(format!(
                        "snapshotting {} as {}",
                        src.display(),
                        dst.display()
                    ))(e))
                }
            }
        }
        self.copy_slow(src, dst)
    }

    fn seal_volume(&self, path: &Path) -> Result<()> {
        if !ioctl::is_subvolume(path) {
            return Ok(());
        }
        // Write the image's data out now, so that the snapshots taken of it
        // later have no dirty data to flush and stay fast.
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        // SAFETY: syncfs on a valid descriptor.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io_err(format!("syncing {}", path.display()))(
                std::io::Error::last_os_error(),
            ));
        }
        ioctl::set_readonly(path, true)
            .map_err(io_err(format!("making {} read-only", path.display())))
    }

    fn delete_volume(&self, path: &Path) -> Result<()> {
        let md = match path.symlink_metadata() {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("stat {}", path.display()))(e)),
        };
        if ioctl::is_subvolume(path) {
            return ioctl::delete_subvolume(path)
                .map_err(io_err(format!("deleting subvolume {}", path.display())));
        }
        let r = if md.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        r.map_err(io_err(format!("removing {}", path.display())))
    }

    fn snapshot_volume(&self, src: &Path, dst: &Path) -> Result<()> {
        if ioctl::is_subvolume(src) {
            match ioctl::snapshot(src, dst, true) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(e) => {
                    return Err(io_err(format!(
                        "snapshotting {} as {}",
                        src.display(),
                        dst.display()
                    ))(e))
                }
            }
        }
        self.copy_slow(src, dst)?;
        ioctl::set_readonly(dst, true)
            .map_err(io_err(format!("making {} read-only", dst.display())))
    }

    fn set_volume_size(&self, path: &Path, size: Option<u64>) -> Result<()> {
        self.require_subvolume(path)?;
        let limit = match size.filter(|n| *n > 0) {
            Some(n) => {
                // Idempotent: a no-op once quotas are on.
                run(
                    Command::new("btrfs").args(["quota", "enable"]).arg(path),
                    &format!("enabling quotas for {}", path.display()),
                )?;
                n.to_string()
            }
            None => {
                if self.qgroup(path)?.is_none() {
                    return Ok(());
                }
                "none".to_string()
            }
        };
        run(
            Command::new("btrfs")
                .args(["qgroup", "limit", &limit])
                .arg(path),
            &format!("limiting {} to {limit}", path.display()),
        )
        .map(drop)
    }

    fn volume_size(&self, path: &Path) -> Result<Option<u64>> {
        if !ioctl::is_subvolume(path) {
            return Ok(None);
        }
        Ok(self.qgroup(path)?.and_then(|q| q.max_referenced))
    }

    fn volume_usage(&self, path: &Path) -> Result<Option<u64>> {
        if !ioctl::is_subvolume(path) {
            return Ok(None);
        }
        Ok(self.qgroup(path)?.map(|q| q.referenced))
    }

    fn migration_types(&self) -> Vec<MigrationType> {
        vec![MigrationType::BtrfsSend, MigrationType::Tar]
    }

    fn can_send(&self, ty: MigrationType, path: &Path) -> bool {
        ty == MigrationType::Tar || ioctl::is_subvolume(path)
    }

    fn freeze_for_send(&self, src: &Path, dst: &Path) -> Result<bool> {
        stream::btrfs::freeze(src, dst)
    }

    fn tree_identity(&self, path: &Path) -> Option<stream::TreeIdentity> {
        stream::btrfs::identity(path)
    }

    fn send_section(
        &self,
        ty: MigrationType,
        src: &Path,
        parent: Option<&Path>,
        out: &mut dyn Write,
    ) -> Result<()> {
        match ty {
            MigrationType::BtrfsSend => stream::btrfs::send_subvolume(src, parent, out),
            MigrationType::Tar => stream::send_tar_section(src, out),
        }
    }

    fn receive_section(
        &self,
        ty: MigrationType,
        input: &mut dyn Read,
        target: &SectionTarget,
    ) -> Result<()> {
        match ty {
            MigrationType::BtrfsSend => stream::btrfs::receive_subvolume(input, target),
            MigrationType::Tar => stream::receive_tar_section(self, input, target),
        }
    }
}
