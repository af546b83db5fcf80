//! Unpacking a stored image into an instance directory.
//!
//! GNU tar does the extraction (numeric owners, modes incl. setuid, xattrs such
//! as `security.capability`, device nodes, hard links, mtimes), fed from Rust
//! through our own decompressor so progress is exact and stream corruption is
//! reported as such. Every byte passes the [`TarScanner`] before tar sees it.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::compress::{decoder, sniff, Compression};
use crate::error::{ImageError, IoContext};
use crate::process::{collect_stderr, first_line, run, spawn_error};
use crate::store::{decode_error, stored_paths};
use crate::tarscan::TarScanner;

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
/// `dest/metadata.yaml`, `dest/rootfs/`, `dest/templates/` (if any).
/// Atomic: everything happens in a sibling temp dir renamed into place at the end.
pub fn unpack(
    images_dir: &Path,
    fingerprint: &str,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ImageError> {
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

    extract_tar(&main, tmp.path(), &mut progress)?;
    if let Some(r) = &rootfs {
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
            run(
                Command::new("unsquashfs")
                    .arg("-d")
                    .arg(&rootfs_dir)
                    .args(["-f", "-no-progress"])
                    .arg(r)
                    .stdout(Stdio::null()),
                "unsquashfs",
                "squashfs-tools",
            )?;
            progress.set(main_size + rootfs_size);
        } else {
            fs::create_dir(&rootfs_dir).ctx(|| format!("creating {}", rootfs_dir.display()))?;
            fs::set_permissions(&rootfs_dir, fs::Permissions::from_mode(0o755))
                .ctx(|| format!("chmod {}", rootfs_dir.display()))?;
            extract_tar(r, &rootfs_dir, &mut progress)?;
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

/// Extracts one (possibly compressed) tarball into the existing directory
/// `dir` through the scanner; `progress(done, total)` counts compressed bytes.
pub(crate) fn extract_file(
    archive: &Path,
    dir: &Path,
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
    extract_tar(archive, dir, &mut progress)?;
    progress.set(total);
    Ok(())
}

/// Extracts one (possibly compressed) tarball into `dir` with GNU tar.
fn extract_tar(archive: &Path, dir: &Path, progress: &mut Progress) -> Result<(), ImageError> {
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

    let mut child = Command::new("tar")
        .args([
            "--extract",
            "--file=-",
            "--numeric-owner",
            "--same-owner",
            "--preserve-permissions",
            "--xattrs",
            "--xattrs-include=*",
        ])
        .arg("--directory")
        .arg(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("tar", "tar", e))?;
    let stderr = collect_stderr(&mut child, 64 * 1024);
    let mut stdin = child.stdin.take();

    let fed = feed_tar(&mut dec, &mut stdin, compression);
    drop(stdin);
    let hung_up = match fed {
        Ok(hung_up) => hung_up,
        Err(e) => {
            // Our own check failed: stop tar before it does anything else.
            let _ = child.kill();
            let _ = child.wait();
            let _ = stderr.join();
            return Err(e);
        }
    };
    let status = child.wait().ctx(|| "waiting for tar".into())?;
    let err_text = stderr.join().unwrap_or_default();
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
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
    Ok(())
}

/// Pumps decompressed bytes through the scanner into tar's stdin.
/// Returns true if tar closed its input early (its exit status tells why).
fn feed_tar(
    dec: &mut dyn Read,
    stdin: &mut Option<std::process::ChildStdin>,
    compression: Compression,
) -> Result<bool, ImageError> {
    let mut scanner = TarScanner::new(false);
    let mut buf = vec![0u8; IO_BUF];
    loop {
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
        let keep = scanner.feed(&buf[..n])?;
        if let Some(pipe) = stdin.as_mut() {
            if let Err(e) = pipe.write_all(&buf[..keep]) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    *stdin = None;
                    return Ok(true);
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
    Ok(false)
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
