//! Unpacking: fidelity (owners, modes, xattrs/capabilities, FIFOs, links,
//! mtimes; device nodes become empty files), confinement to dest, atomicity
//! and clear errors on corruption.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use kante_images::{store_unified, unpack, xattr, ImageError, Limits};

/// security.capability for `cap_net_raw=ep` (struct vfs_cap_data, revision 2).
fn cap_net_raw_ep() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // rev 2 | effective
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted (high)
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable (high)
    v
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::lchown(c(p).as_ptr(), uid, gid) }, 0);
}

/// Sets atime/mtime without following symlinks.
fn set_mtime(p: &Path, secs: i64) {
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c(p).as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn unpack_preserves_ownership_modes_xattrs_and_links_but_no_devices() {
    if !common::prerequisite(is_root(), "root (chown, security.* xattrs)") {
        return;
    }
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    let r = stage.path().join("rootfs");
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    fs::create_dir_all(r.join("dev")).unwrap();

    let ping = r.join("usr/bin/ping");
    fs::write(&ping, b"\x7fELF fake ping").unwrap();
    fs::set_permissions(&ping, fs::Permissions::from_mode(0o755)).unwrap();
    xattr::set(&ping, "security.capability", &cap_net_raw_ep()).unwrap();
    xattr::set(&ping, "user.kante", b"hello").unwrap();

    let su = r.join("usr/bin/su");
    fs::write(&su, b"su").unwrap();
    fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();

    let owned = r.join("usr/bin/owned");
    fs::write(&owned, b"owned").unwrap();
    lchown(&owned, 1234, 5678);
    fs::set_permissions(&owned, fs::Permissions::from_mode(0o2750)).unwrap();

    fs::hard_link(&owned, r.join("usr/bin/owned-link")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/owned", r.join("usr/bin/abs-link")).unwrap();
    lchown(&r.join("usr/bin/abs-link"), 1234, 5678);
    // SAFETY: valid path; char device 1:3 (/dev/null).
    let rc = unsafe {
        libc::mknod(
            c(&r.join("dev/null")).as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        )
    };
    assert_eq!(rc, 0);
    let fifo = c(&r.join("dev/fifo"));
    // SAFETY: valid path.
    let made = unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };
    assert_eq!(made, 0);
    set_mtime(&su, 1_234_567_890);
    set_mtime(&r.join("usr/bin/abs-link"), 1_111_111_111);
    set_mtime(&r.join("usr/bin"), 1_222_222_222);

    let bytes = tar_of(
        stage.path(),
        &["metadata.yaml", "templates", "rootfs"],
        "zstd",
    );
    let images = tempfile::tempdir().unwrap();
    let img = store_unified(images.path(), &bytes[..], None, &Limits::none()).unwrap();

    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("instance");
    let mut calls: Vec<(u64, u64)> = Vec::new();
    unpack(
        images.path(),
        &img.fingerprint,
        &dest,
        &Limits::none(),
        &mut |d, t| calls.push((d, t)),
    )
    .unwrap();
    assert_eq!(calls.first(), Some(&(0, bytes.len() as u64)));
    assert_eq!(
        calls.last(),
        Some(&(bytes.len() as u64, bytes.len() as u64))
    );

    let u = dest.join("rootfs");
    assert_eq!(
        fs::read_to_string(dest.join("metadata.yaml")).unwrap(),
        METADATA
    );
    assert!(dest.join("templates/hostname.tpl").is_file());

    let p = u.join("usr/bin/ping");
    assert_eq!(
        xattr::get(&p, "security.capability").unwrap(),
        cap_net_raw_ep()
    );
    assert_eq!(xattr::get(&p, "user.kante").unwrap(), b"hello");
    if let Ok(out) = std::process::Command::new("getcap").arg(&p).output() {
        assert!(String::from_utf8_lossy(&out.stdout).contains("cap_net_raw=ep"));
    }

    let m = fs::metadata(u.join("usr/bin/su")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert_eq!(m.mtime(), 1_234_567_890);

    let m = fs::metadata(u.join("usr/bin/owned")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o2750));
    let l = fs::metadata(u.join("usr/bin/owned-link")).unwrap();
    assert_eq!(m.ino(), l.ino(), "hard link preserved");
    assert_eq!(m.nlink(), 2);

    let s = fs::symlink_metadata(u.join("usr/bin/abs-link")).unwrap();
    assert!(s.file_type().is_symlink());
    assert_eq!((s.uid(), s.gid()), (1234, 5678));
    assert_eq!(s.mtime(), 1_111_111_111);
    assert_eq!(
        fs::read_link(u.join("usr/bin/abs-link")).unwrap(),
        Path::new("/usr/bin/owned")
    );
    assert_eq!(
        fs::metadata(u.join("usr/bin")).unwrap().mtime(),
        1_222_222_222
    );

    // Device nodes are never made from an image: an empty regular file
    // stands in (setuid/setgid never set); FIFOs are harmless and kept.
    let d = fs::symlink_metadata(u.join("dev/null")).unwrap();
    assert!(d.file_type().is_file(), "{:?}", d.file_type());
    assert_eq!((d.len(), d.mode() & 0o6000), (0, 0));
    assert!(fs::symlink_metadata(u.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    // Only the instance directory appeared, no temp leftovers.
    assert_eq!(entries(work.path()), vec![dest.clone()]);
    let err = unpack(
        images.path(),
        &img.fingerprint,
        &dest,
        &Limits::none(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::DestinationExists(_)), "{err}");
}

/// Puts raw bytes into the store under their sha256, bypassing import checks
/// (as if written by an older version or tampered with on disk).
fn plant(images: &Path, bytes: &[u8]) -> String {
    let fp = sha256_hex(&[bytes]);
    fs::write(images.join(&fp), bytes).unwrap();
    fp
}

#[test]
fn unpack_never_writes_outside_dest() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let abs_name = format!("{target}/abs-evil");
    let meta = METADATA.as_bytes();
    let cases: Vec<Vec<Entry>> = vec![
        vec![file("../evil", b"x")],
        vec![file("rootfs/../../evil", b"x")],
        vec![file(&abs_name, b"x")],
        vec![
            symlink("rootfs/link", &target),
            file("rootfs/link/through-symlink", b"x"),
        ],
        vec![
            symlink("rootfs/up", "../.."),
            dir("rootfs/up/dir-through-symlink/"),
        ],
    ];
    for (i, hostile) in cases.into_iter().enumerate() {
        let mut all = vec![file("metadata.yaml", meta), dir("rootfs/")];
        all.extend(hostile);
        let bytes = raw_tar(&all);
        let images = tempfile::tempdir().unwrap();
        let fp = plant(images.path(), &bytes);
        let work = tempfile::tempdir().unwrap();
        let dest = work.path().join("a/b/instance");
        let err = unpack(images.path(), &fp, &dest, &Limits::none(), &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, ImageError::UnsafePath(_)), "case {i}: {err}");
        assert!(!dest.exists(), "case {i}");
        assert!(
            entries(&work.path().join("a/b")).is_empty(),
            "case {i}: temp dir left"
        );
        assert!(
            entries(outside.path()).is_empty(),
            "case {i}: wrote outside"
        );
        assert!(!work.path().join("a/evil").exists() && !work.path().join("evil").exists());
    }
}

#[test]
fn corrupt_stored_image_gives_a_clear_error_and_no_dest() {
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    for comp in ["zstd", "gzip", "xz", "none"] {
        let bytes = tar_of(
            stage.path(),
            &["metadata.yaml", "templates", "rootfs"],
            comp,
        );
        let truncated = &bytes[..bytes.len() / 2];
        let images = tempfile::tempdir().unwrap();
        let fp = plant(images.path(), truncated);
        let work = tempfile::tempdir().unwrap();
        let dest = work.path().join("c");
        let err = unpack(images.path(), &fp, &dest, &Limits::none(), &mut |_, _| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("image tarball is truncated or corrupt:"),
            "{comp}: {msg}"
        );
        assert!(!dest.exists());
        assert!(entries(work.path()).is_empty(), "{comp}: temp dir left");

        if comp != "none" {
            let mut flipped = bytes.clone();
            let mid = flipped.len() / 2;
            for b in &mut flipped[mid..mid + 32] {
                *b = !*b;
            }
            let fp = plant(images.path(), &flipped);
            let err =
                unpack(images.path(), &fp, &dest, &Limits::none(), &mut |_, _| {}).unwrap_err();
            assert!(
                matches!(err, ImageError::Corrupt(_) | ImageError::Tool { .. }),
                "{comp}: {err}"
            );
            assert!(!dest.exists());
            assert!(entries(work.path()).is_empty());
        }
    }
}

#[test]
fn missing_image_and_bad_fingerprint() {
    let images = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("x");
    let err = unpack(
        images.path(),
        &"a".repeat(64),
        &dest,
        &Limits::none(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    let err = unpack(
        images.path(),
        "../../etc",
        &dest,
        &Limits::none(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::InvalidFingerprint(_)), "{err}");
    assert!(entries(work.path()).is_empty());
}
