//! Unpacking a stored image into an instance directory.
//!
//! GNU tar does the extraction (numeric owners, modes incl. setuid, xattrs such
//! as `security.capability`, FIFOs, hard links, mtimes), fed from Rust
//! through our own decompressor so progress is exact and stream corruption is
//! reported as such. Every byte passes the [`TarScanner`] before tar sees it,
//! and tar is fed the scanner's filtered stream: device entries arrive as
//! empty regular files, and tar runs without CAP_MKNOD besides. Squashfs
//! rootfs images go through [`crate::squashfs`] (listed and checked first).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::compress::{decoder, sniff, Compression};
use crate::error::{ImageError, IoContext};
use crate::limits::{Deadline, Limits};
use crate::process::{
    collect_stderr, dies_with_parent, first_line, spawn_error, wait_watched, without_mknod,
    Watchdog,
};
use crate::store::{decode_error, stored_paths};
use crate::tarscan::{Layout, TarScanner};

const IO_BUF: usize = 256 * 1024;
/// Report progress at most every this many input bytes.
const PROGRESS_STEP: u64 = 4 << 20;

struct Progress<'a> {
    done: u64,
    total: u64,
    reported: u64,
    cb: &'a mut dyn FnMut(u64, u64),
}

impl Progress<'_> {
    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.done - self.reported >= PROGRESS_STEP {
            self.reported = self.done;
            (self.cb)(self.done.min(self.total), self.total);
        }
    }

    fn set(&mut self, done: u64) {
        self.done = done;
        self.reported = done;
        (self.cb)(done.min(self.total), self.total);
    }
}

/// Counts compressed bytes as they are read from the stored file.
struct Counting<'p, 'a, R> {
    inner: R,
    progress: &'p mut Progress<'a>,
}

impl<R: Read> Read for Counting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Unpacks stored image `fingerprint` into `dest` (which must not exist):
/// `dest/metadata.yaml`, `dest/rootfs/`, `dest/templates/` (if any), within
/// `limits` (bytes written, time).
/// Atomic: everything happens in a sibling temp dir renamed into place at the end.
pub fn unpack(
    images_dir: &Path,
    fingerprint: &str,
    dest: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ImageError> {
    let deadline = limits.deadline();
    let (main, rootfs) = stored_paths(images_dir, fingerprint)?;
    if dest.symlink_metadata().is_ok() {
        return Err(ImageError::DestinationExists(dest.to_path_buf()));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;

    let size_of = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.len())
            .ctx(|| format!("stat {}", p.display()))
    };
    let main_size = size_of(&main)?;
    let rootfs_size = match &rootfs {
        Some(r) => size_of(r)?,
        None => 0,
    };
    let mut progress = Progress {
        done: 0,
        total: main_size + rootfs_size,
        reported: 0,
        cb: progress,
    };
    progress.set(0);

    // Dropping `tmp` (any early return) removes the partial tree.
    let tmp = tempfile::Builder::new()
        .prefix(".kante-unpack-")
        .tempdir_in(parent)
        .ctx(|| format!("creating a temporary directory in {}", parent.display()))?;

    let main_layout = if rootfs.is_some() {
        Layout::ImageMeta
    } else {
        Layout::Image
    };
    let used = extract_tar(
        &main,
        tmp.path(),
        &Job {
            layout: main_layout,
            limits,
            deadline,
            acls: false,
            refuse_devices: false,
        },
        &mut progress,
    )?;
    if let Some(r) = &rootfs {
        let rest = limits.less(used, &deadline);
        let rootfs_dir = tmp.path().join("rootfs");
        if rootfs_dir.symlink_metadata().is_ok() {
            return Err(ImageError::InvalidImage(
                "the metadata tarball of a split image contains rootfs/".into(),
            ));
        }
        let mut head = [0u8; crate::compress::MAGIC_LEN];
        let n = File::open(r)
            .and_then(|mut f| f.read(&mut head))
            .ctx(|| format!("reading {}", r.display()))?;
        if crate::detect_compression(&head[..n]) == Compression::Squashfs {
            crate::squashfs::extract(r, &rootfs_dir, &rest)?;
            progress.set(main_size + rootfs_size);
        } else {
            fs::create_dir(&rootfs_dir).ctx(|| format!("creating {}", rootfs_dir.display()))?;
            fs::set_permissions(&rootfs_dir, fs::Permissions::from_mode(0o755))
                .ctx(|| format!("chmod {}", rootfs_dir.display()))?;
            let job = Job {
                layout: Layout::Any,
                limits: &rest,
                deadline,
                acls: false,
                refuse_devices: false,
            };
            extract_tar(r, &rootfs_dir, &job, &mut progress)?;
        }
    }

    // The archive's own entries must have produced a real file and a real dir.
    let meta = tmp.path().join("metadata.yaml");
    if !meta
        .symlink_metadata()
        .map(|m| m.is_file())
        .unwrap_or(false)
    {
        return Err(ImageError::InvalidImage(
            "metadata.yaml is missing or not a regular file".into(),
        ));
    }
    let rootfs_dir = tmp.path().join("rootfs");
    if !rootfs_dir
        .symlink_metadata()
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        return Err(ImageError::InvalidImage(
            "rootfs is missing or not a directory".into(),
        ));
    }
    // tempdir is 0700; the instance directory is traversed by the runtime.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .ctx(|| format!("chmod {}", tmp.path().display()))?;

    let tmp_path = tmp.keep();
    if let Err(e) = rename_noreplace(&tmp_path, dest) {
        let _ = fs::remove_dir_all(&tmp_path);
        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
            ImageError::DestinationExists(dest.to_path_buf())
        } else {
            ImageError::io(format!("renaming unpacked image to {}", dest.display()), e)
        });
    }
    progress.set(progress.total);
    Ok(())
}

/// Extracts one (possibly compressed) tarball of `layout` into the existing
/// directory `dir` through the scanner, within `limits`; `progress(done,
/// total)` counts compressed bytes.
pub(crate) fn extract_file(
    archive: &Path,
    dir: &Path,
    layout: Layout,
    limits: &Limits,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ImageError> {
    let total = fs::metadata(archive)
        .map(|m| m.len())
        .ctx(|| format!("stat {}", archive.display()))?;
    let mut progress = Progress {
        done: 0,
        total,
        reported: 0,
        cb: progress,
    };
    progress.set(0);
    let job = Job {
        layout,
        limits,
        deadline: limits.deadline(),
        acls: false,
        refuse_devices: false,
    };
    extract_tar(archive, dir, &job, &mut progress)?;
    progress.set(total);
    Ok(())
}

/// What one extraction is held to.
pub(crate) struct Job<'a> {
    pub(crate) layout: Layout,
    pub(crate) limits: &'a Limits,
    pub(crate) deadline: Deadline,
    /// Restore POSIX ACLs too (`tar --acls`).
    pub(crate) acls: bool,
    /// Refuse device nodes rather than unpack them as empty files.
    pub(crate) refuse_devices: bool,
}

/// Extracts one (possibly compressed) tarball into `dir` with GNU tar.
/// Returns the bytes it wrote, as the scanner counts them.
fn extract_tar(
    archive: &Path,
    dir: &Path,
    job: &Job,
    progress: &mut Progress,
) -> Result<u64, ImageError> {
    let file = File::open(archive).ctx(|| format!("opening {}", archive.display()))?;
    let counting = Counting {
        inner: file,
        progress,
    };
    let (compression, head) = sniff(counting).ctx(|| format!("reading {}", archive.display()))?;
    if compression == Compression::Squashfs {
        return Err(ImageError::InvalidImage(
            "unexpected squashfs where a tarball was expected".into(),
        ));
    }
    let mut dec = decoder(compression, BufReader::with_capacity(IO_BUF, head));
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
    run_tar(&mut dec, compression, dir, job, &name)
}

/// Feeds the decompressed tar stream `dec` through the scanner into GNU
/// tar extracting into `dir`; `name` names the archive in messages.
/// Returns the bytes extraction wrote, as the scanner counts them.
pub(crate) fn run_tar(
    dec: &mut dyn Read,
    compression: Compression,
    dir: &Path,
    job: &Job,
    name: &str,
) -> Result<u64, ImageError> {
    let mut cmd = Command::new("tar");
    cmd.args([
        "--extract",
        "--file=-",
        "--numeric-owner",
        "--same-owner",
        "--preserve-permissions",
        "--xattrs",
        "--xattrs-include=*",
    ])
    .args(job.acls.then_some("--acls"))
    .arg("--directory")
    .arg(dir)
    .env("LC_ALL", "C")
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = without_mknod(dies_with_parent(&mut cmd))
        .spawn()
        .map_err(|e| spawn_error("tar", "tar", e))?;
    let stderr = collect_stderr(&mut child, 64 * 1024);
    let watchdog = Watchdog::start(&child, job.deadline.remaining());
    let mut stdin = child.stdin.take();

    let mut scanner = TarScanner::new(job.layout, false).with_limits(job.limits);
    if job.refuse_devices {
        scanner = scanner.refusing_devices();
    }
    let fed = feed_tar(dec, &mut stdin, compression, scanner, &job.deadline);
    drop(stdin);
    let (hung_up, scanner) = match fed {
        Ok(r) => r,
        Err(e) => {
            // Our own check failed: stop tar before it does anything else.
            let _ = child.kill();
            let _ = wait_watched(&mut child, watchdog);
            let _ = stderr.join();
            return Err(e);
        }
    };
    let (status, fired) = wait_watched(&mut child, watchdog).ctx(|| "waiting for tar".into())?;
    let err_text = stderr.join().unwrap_or_default();
    if fired {
        return Err(job.deadline.error(&format!("unpacking {name}")));
    }
    if !status.success() {
        return Err(ImageError::tool(
            "tar",
            format!(
                "extracting {name} failed ({status}): {}",
                first_line(&err_text, b"")
            ),
        ));
    }
    if hung_up {
        return Err(ImageError::tool(
            "tar",
            format!("stopped reading {name} before its end"),
        ));
    }
    if scanner.devices_dropped > 0 {
        tracing::warn!(
            archive = %name,
            count = scanner.devices_dropped,
            first = ?scanner.dropped_names,
            "device nodes in the archive were unpacked as empty regular files"
        );
    }
    Ok(scanner.unpacked)
}

/// Pumps decompressed bytes through the scanner's filter into tar's stdin.
/// Returns true if tar closed its input early (its exit status tells why),
/// and the scanner.
fn feed_tar(
    dec: &mut dyn Read,
    stdin: &mut Option<std::process::ChildStdin>,
    compression: Compression,
    mut scanner: TarScanner,
    deadline: &Deadline,
) -> Result<(bool, TarScanner), ImageError> {
    let mut buf = vec![0u8; IO_BUF];
    let mut out = Vec::with_capacity(IO_BUF + 512);
    loop {
        deadline.check("unpacking the archive")?;
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decode_error(compression, e)),
        };
        if scanner.ended() {
            // Keep decoding: checksums of the compressed stream are verified at its end.
            continue;
        }
        out.clear();
        scanner.filter(&buf[..n], &mut out)?;
        if let Some(pipe) = stdin.as_mut() {
            if let Err(e) = pipe.write_all(&out) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    *stdin = None;
                    return Ok((true, scanner));
                }
                return Err(ImageError::io("feeding tar", e));
            }
        }
        if scanner.ended() {
            if let Some(mut pipe) = stdin.take() {
                // Hand tar a complete end-of-archive marker, then EOF.
                let _ = pipe.write_all(&[0u8; 1024]);
            }
        }
    }
    scanner.finish()?;
    Ok((false, scanner))
}

/// rename(2) that fails instead of replacing an (empty) directory at `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    let cfrom = CString::new(from.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let cto = CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cfrom.as_ptr(),
            libc::AT_FDCWD,
            cto.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        // Filesystem without RENAME_NOREPLACE: best effort.
        if to.symlink_metadata().is_ok() {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        return fs::rename(from, to);
    }
    Err(err)
}
