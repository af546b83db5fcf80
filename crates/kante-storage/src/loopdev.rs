//! Loop devices through the kernel's interface (`/dev/loop-control`,
//! `LOOP_CONFIGURE`), no `losetup`.
//!
//! Devices are attached with `LO_FLAGS_AUTOCLEAR`: the kernel detaches one
//! by itself at its last close, i.e. once the [`LoopDevice`] handle is
//! dropped *and* the filesystem on it is unmounted. A failure anywhere
//! therefore leaves no device behind, and unmounting a pool is enough to
//! free its device.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{Result, StorageError};

const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// An attached loop device; dropping the handle lets the kernel detach it
/// as soon as nothing else (a mount) holds it.
pub(crate) struct LoopDevice {
    _dev: File,
    pub path: PathBuf,
}

impl LoopDevice {
    /// Attaches `backing` (read-write) to a free loop device.
    pub(crate) fn attach(backing: &Path) -> Result<LoopDevice> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(backing)
            .map_err(StorageError::io(format!("opening {}", backing.display())))?;
        let ctl = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/loop-control")
            .map_err(StorageError::io("opening /dev/loop-control"))?;
        let mut name = [0u8; LO_NAME_SIZE];
        let shown = backing.as_os_str().as_encoded_bytes();
        let n = shown.len().min(LO_NAME_SIZE - 1);
        name[..n].copy_from_slice(&shown[..n]);
        let mut last = None;
        // Another process may take the free device between the two calls.
        for _ in 0..32 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns an index.
            let idx = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
            if idx < 0 {
                return Err(StorageError::Io {
                    what: "finding a free loop device".into(),
                    source: std::io::Error::last_os_error(),
                });
            }
            let path = PathBuf::from(format!("/dev/loop{idx}"));
            let dev = match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(d) => d,
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
            };
            let config = LoopConfig {
                fd: file.as_raw_fd() as u32,
                block_size: 0,
                info: LoopInfo64 {
                    lo_device: 0,
                    lo_inode: 0,
                    lo_rdevice: 0,
                    lo_offset: 0,
                    lo_sizelimit: 0,
                    lo_number: 0,
                    lo_encrypt_type: 0,
                    lo_encrypt_key_size: 0,
                    lo_flags: LO_FLAGS_AUTOCLEAR,
                    lo_file_name: name,
                    lo_crypt_name: [0; LO_NAME_SIZE],
                    lo_encrypt_key: [0; 32],
                    lo_init: [0; 2],
                },
                reserved: [0; 8],
            };
            // SAFETY: `config` is a valid `struct loop_config` for the call.
            let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
            if r == 0 {
                return Ok(LoopDevice { _dev: dev, path });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(StorageError::Io {
                    what: format!("attaching {} to {}", backing.display(), path.display()),
                    source: e,
                });
            }
            last = Some(e);
        }
        Err(StorageError::Io {
            what: format!("attaching {} to a loop device", backing.display()),
            source: last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EBUSY)),
        })
    }
}

/// Loop devices whose backing file is `file`.
pub(crate) fn devices_backing(file: &Path) -> Vec<PathBuf> {
    let want = crate::mounts::resolve(file);
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return found;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            let b = b.trim_end_matches('\n');
            let b = b.strip_suffix(" (deleted)").unwrap_or(b);
            if Path::new(b) == want {
                found.push(PathBuf::from(format!("/dev/{name}")));
            }
        }
    }
    found.sort();
    found
}

/// Detaches a loop device (if it is still in use, the kernel detaches it at
/// its last close).
pub(crate) fn detach(dev: &Path) -> Result<()> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dev)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StorageError::Io {
                what: format!("opening {}", dev.display()),
                source: e,
            })
        }
    };
    // SAFETY: LOOP_CLR_FD takes no argument.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD as _, 0) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        // ENXIO: not attached (any more).
        if e.raw_os_error() != Some(libc::ENXIO) {
            return Err(StorageError::Io {
                what: format!("detaching {}", dev.display()),
                source: e,
            });
        }
    }
    Ok(())
}

/// Detaches every loop device backed by `file`, waiting a little for those
/// the kernel is already letting go (autoclear after an unmount).
pub(crate) fn detach_all(file: &Path) -> Result<()> {
    for _ in 0..50 {
        let devs = devices_backing(file);
        if devs.is_empty() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for dev in devices_backing(file) {
        tracing::info!(device = %dev.display(), file = %file.display(), "detaching a loop device");
        detach(&dev)?;
    }
    Ok(())
}
