//! Squashfs rootfs images: listed with `unsquashfs -lln` before anything is
//! extracted, and held to the tar rules: no absolute or `..` names, no
//! device nodes (they are left out of the extraction, and unsquashfs runs
//! without CAP_MKNOD, so one that slipped through fails the unpack), and
//! the bytes written stay within the import's cap.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{ImageError, IoContext};
use crate::limits::Limits;
use crate::process::{
    collect_stderr, dies_with_parent, first_line, spawn_error, wait_watched, without_mknod,
    Watchdog,
};
use crate::tarscan::normalize;

/// What the listing of a squashfs image says.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Entries, the root included.
    pub entries: u64,
    /// Bytes extraction writes: file sizes plus a block per entry.
    pub unpacked: u64,
    /// Character and block devices, relative to the root.
    pub devices: Vec<String>,
}

/// Lists `image` and checks every name; refuses it if it would unpack to
/// more than `limits` allow.
pub(crate) fn list(image: &Path, limits: &Limits) -> Result<Listing, ImageError> {
    let out = dies_with_parent(&mut Command::new("unsquashfs"))
        .args(["-lln", "-UTC"])
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error("unsquashfs", "squashfs-tools", e))?;
    if !out.status.success() {
        return Err(ImageError::Corrupt(format!(
            "squashfs rootfs: {}",
            first_line(&out.stderr, &out.stdout)
        )));
    }
    let listing = parse_listing(&out.stdout)?;
    if limits.exceeded_by(listing.unpacked) {
        return Err(limits.too_large("the squashfs rootfs unpacks to"));
    }
    Ok(listing)
}

/// Parses `unsquashfs -lln` output: `<mode> <uid>/<gid> <size | major, minor>
/// <date> <time> squashfs-root[/<path>][ -> <target>]`, one entry a line. A
/// line that does not read this way (a name with a newline, say) refuses
/// the image.
pub(crate) fn parse_listing(text: &[u8]) -> Result<Listing, ImageError> {
    let mut l = Listing::default();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let shown = String::from_utf8_lossy(line).into_owned();
        let bad =
            || ImageError::InvalidImage(format!("unexpected squashfs listing line {shown:?}"));
        let (kind, size, path) = parse_line(line).ok_or_else(bad)?;
        let rel = match path.strip_prefix(b"squashfs-root") {
            Some([]) => &[][..],
            Some([b'/', rest @ ..]) => rest,
            _ => return Err(bad()),
        };
        let name = normalize(rel)
            .map_err(|why| ImageError::UnsafePath(format!("squashfs entry {shown:?}: {why}")))?;
        if name.contains(&b'\n') {
            return Err(bad());
        }
        l.entries += 1;
        l.unpacked = l.unpacked.saturating_add(512);
        match kind {
            b'-' => l.unpacked = l.unpacked.saturating_add(size),
            b'c' | b'b' => l.devices.push(String::from_utf8(name).map_err(|_| {
                ImageError::InvalidImage(format!("non-UTF-8 device name in {shown:?}"))
            })?),
            _ => {}
        }
    }
    if l.entries == 0 {
        return Err(ImageError::InvalidImage(
            "the squashfs rootfs is empty".into(),
        ));
    }
    Ok(l)
}

/// (type, size, path) of one listing line; symlink targets are cut off.
fn parse_line(line: &[u8]) -> Option<(u8, u64, &[u8])> {
    let kind = *line.first()?;
    if !b"-dlcbps".contains(&kind) || line.get(10) != Some(&b' ') {
        return None;
    }
    let mut rest = &line[11..];
    let mut token = || -> Option<&[u8]> {
        let start = rest.iter().position(|&b| b != b' ')?;
        let len = rest[start..]
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(rest.len() - start);
        let t = &rest[start..start + len];
        rest = &rest[start + len..];
        Some(t)
    };
    let owner = token()?;
    if !owner.contains(&b'/') {
        return None;
    }
    let mut size: u64 = 0;
    let first = token()?;
    if kind == b'c' || kind == b'b' {
        // "major, minor"
        first.strip_suffix(b",")?;
        token()?;
    } else {
        size = std::str::from_utf8(first).ok()?.parse().ok()?;
    }
    let date = token()?;
    let time = token()?;
    if date.len() != 10 || time.len() != 5 {
        return None;
    }
    let path = rest.strip_prefix(b" ")?;
    let path = if kind == b'l' {
        let arrow = path.windows(4).position(|w| w == b" -> ")?;
        &path[..arrow]
    } else {
        path
    };
    Some((kind, size, path))
}

/// Extracts `image` to `dest` (which must not exist) without its device
/// nodes, after [`list`] has checked it. Returns the listing.
pub(crate) fn extract(image: &Path, dest: &Path, limits: &Limits) -> Result<Listing, ImageError> {
    let deadline = limits.deadline();
    let listing = list(image, limits)?;
    let mut exclude = tempfile::NamedTempFile::new().ctx(|| "creating an exclude list".into())?;
    for d in &listing.devices {
        writeln!(exclude, "{d}").ctx(|| "writing an exclude list".into())?;
    }
    exclude.flush().ctx(|| "writing an exclude list".into())?;
    let mut cmd = Command::new("unsquashfs");
    cmd.arg("-d")
        .arg(dest)
        .args(["-f", "-no-progress", "-no-wildcards", "-exclude-file"])
        .arg(exclude.path())
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = without_mknod(dies_with_parent(&mut cmd))
        .spawn()
        .map_err(|e| spawn_error("unsquashfs", "squashfs-tools", e))?;
    let stderr = collect_stderr(&mut child, 64 * 1024);
    let watchdog = Watchdog::start(&child, deadline.remaining());
    let (status, fired) =
        wait_watched(&mut child, watchdog).ctx(|| "waiting for unsquashfs".into())?;
    let err_text = stderr.join().unwrap_or_default();
    if fired {
        return Err(deadline.error("unpacking the squashfs rootfs"));
    }
    if !status.success() {
        return Err(ImageError::tool(
            "unsquashfs",
            format!("{status}: {}", first_line(&err_text, b"")),
        ));
    }
    if !listing.devices.is_empty() {
        tracing::warn!(
            image = %image.display(),
            count = listing.devices.len(),
            first = ?listing.devices.iter().take(8).collect::<Vec<_>>(),
            "device nodes in the squashfs rootfs were left out"
        );
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listings() {
        let text = b"drwxr-xr-x 0/0                      53 2026-12-05 10:36 squashfs-root
drwxr-xr-x 0/0                      27 2026-12-05 10:36 squashfs-root/dev
crw-r--r-- 0/0                   1, 11 2026-12-05 10:36 squashfs-root/dev/kmsg
-rw-r--r-- 0/0                       3 2026-12-05 10:36 squashfs-root/etc/f with space
lrwxrwxrwx 0/0                       3 2026-12-05 10:36 squashfs-root/l -> ../x
brw------- 0/0                   7,  0 2026-12-05 10:36 squashfs-root/hostloop
-rwsr-xr-x 1000/1000           1048576 2026-12-05 10:36 squashfs-root/big
";
        let l = parse_listing(text).unwrap();
        assert_eq!(l.entries, 7);
        assert_eq!(l.devices, ["dev/kmsg", "hostloop"]);
        assert_eq!(l.unpacked, 7 * 512 + 3 + 1048576);
        for bad in [
            &b"-rw-r--r-- 0/0 3 2026-12-05 10:36 squashfs-root/../../etc/x\n"[..],
            b"-rw-r--r-- 0/0 3 2026-12-05 10:36 squashfs-root/a/../../x\n",
        ] {
            let e = parse_listing(bad).unwrap_err();
            assert!(matches!(e, ImageError::UnsafePath(_)), "{e}");
        }
        for bad in [
            &b"-rw-r--r-- 0/0 3 2026-12-05 10:36 elsewhere/x\n"[..],
            b"second line of a name with a newline\n",
            b"Xrw-r--r-- 0/0 3 2026-12-05 10:36 squashfs-root/x\n",
            b"",
        ] {
            let e = parse_listing(bad).unwrap_err();
            assert!(matches!(e, ImageError::InvalidImage(_)), "{e}");
        }
    }

    fn mksquashfs(src: &Path, out: &Path, pseudo: &[&str]) {
        let mut cmd = Command::new("mksquashfs");
        cmd.arg(src)
            .arg(out)
            .args(["-quiet", "-noappend", "-no-progress"]);
        for p in pseudo {
            cmd.args(["-p", p]);
        }
        let st = cmd.stdout(Stdio::null()).status().expect("mksquashfs");
        assert!(st.success());
    }

    #[test]
    fn extraction_leaves_device_nodes_out() {
        use std::os::unix::fs::FileTypeExt;
        if Command::new("mksquashfs").arg("-version").output().is_err() {
            eprintln!("mksquashfs missing: skipped");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::create_dir_all(src.join("dev")).unwrap();
        std::fs::write(src.join("etc/f"), b"hi\n").unwrap();
        std::fs::write(src.join("dev/kx"), b"kept\n").unwrap();
        let img = t.path().join("img.sqfs");
        // Pseudo definitions add devices without any mknod on this host.
        mksquashfs(
            &src,
            &img,
            &[
                "dev/kmsg c 644 0 0 1 11",
                "dev/k* c 644 0 0 1 3",
                "hostloop b 600 0 0 7 0",
            ],
        );
        let dest = t.path().join("out");
        let l = extract(&img, &dest, &Limits::none()).unwrap();
        assert_eq!(l.devices.len(), 3);
        assert_eq!(std::fs::read(dest.join("etc/f")).unwrap(), b"hi\n");
        // Names are literal: `dev/k*` leaves out that device only.
        assert_eq!(std::fs::read(dest.join("dev/kx")).unwrap(), b"kept\n");
        for d in ["dev/kmsg", "dev/k*", "hostloop"] {
            assert!(dest.join(d).symlink_metadata().is_err(), "{d} left out");
        }
        let nodes = std::fs::read_dir(dest.join("dev"))
            .unwrap()
            .flatten()
            .filter(|e| {
                let t = e.file_type().unwrap();
                t.is_char_device() || t.is_block_device()
            })
            .count();
        assert_eq!(nodes, 0);

        // The cap counts file sizes.
        let dest2 = t.path().join("out2");
        let e = extract(&img, &dest2, &Limits::bytes(1000, "KANTE_MAX_IMPORT_BYTES")).unwrap_err();
        assert!(matches!(e, ImageError::TooLarge(_)), "{e}");
        assert!(dest2.symlink_metadata().is_err(), "nothing extracted");
    }
}
