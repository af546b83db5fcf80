//! Image store: import, fingerprints, validation, cleanup on failure.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use kante_images::{
    read_stored, remove_stored, store_split, store_unified, store_upload, unpack, ImageError,
    Limits,
};

#[test]
fn unified_round_trip_in_every_compression() {
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    for comp in ["none", "gzip", "xz", "zstd", "bzip2"] {
        let images = tempfile::tempdir().unwrap();
        let bytes = tar_of(
            stage.path(),
            &["metadata.yaml", "templates", "rootfs"],
            comp,
        );
        let fp = sha256_hex(&[&bytes]);

        let img = store_unified(images.path(), &bytes[..], None, &Limits::none()).unwrap();
        assert_eq!(img.fingerprint, fp, "{comp}");
        assert_eq!(img.size, bytes.len() as u64);
        assert!(!img.split);
        assert_eq!(img.metadata.architecture, "x86_64");
        assert_eq!(img.metadata.properties["os"], "testos");
        assert_eq!(fs::read(images.path().join(&fp)).unwrap(), bytes);
        assert_eq!(entries(images.path()).len(), 1, "only the image is left");

        let again = read_stored(images.path(), &fp).unwrap();
        assert_eq!(again.size, img.size);
        assert_eq!(again.metadata.creation_date, 1_700_000_000);
        assert!(!again.split);

        let dup = store_unified(images.path(), &bytes[..], None, &Limits::none()).unwrap_err();
        assert!(
            matches!(dup, ImageError::AlreadyExists(ref f) if *f == fp),
            "{dup}"
        );
        let dup =
            store_unified(images.path(), &b"ignored"[..], Some(&fp), &Limits::none()).unwrap_err();
        assert!(matches!(dup, ImageError::AlreadyExists(_)), "{dup}");
        assert_eq!(entries(images.path()).len(), 1);

        remove_stored(images.path(), &fp).unwrap();
        assert!(entries(images.path()).is_empty());
        assert!(matches!(
            read_stored(images.path(), &fp),
            Err(ImageError::NotFound(_))
        ));
    }
}

#[test]
fn expected_fingerprint_is_checked() {
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    let bytes = tar_of(stage.path(), &["metadata.yaml", "rootfs"], "gzip");
    let images = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let err = store_unified(images.path(), &bytes[..], Some(&wrong), &Limits::none()).unwrap_err();
    assert!(
        matches!(err, ImageError::FingerprintMismatch { .. }),
        "{err}"
    );
    assert!(entries(images.path()).is_empty());
    // Upper-case expected fingerprints are accepted.
    let fp = sha256_hex(&[&bytes]);
    let img = store_unified(
        images.path(),
        &bytes[..],
        Some(&fp.to_uppercase()),
        &Limits::none(),
    )
    .unwrap();
    assert_eq!(img.fingerprint, fp);
}

#[test]
fn corrupt_and_truncated_tarballs_leave_nothing_behind() {
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    for comp in ["none", "gzip", "xz", "zstd", "bzip2"] {
        let bytes = tar_of(
            stage.path(),
            &["metadata.yaml", "templates", "rootfs"],
            comp,
        );
        let images = tempfile::tempdir().unwrap();
        let mut cuts = vec![bytes.len() / 3, bytes.len() / 2];
        if comp != "none" {
            // Only the compressed stream's trailer (checksum/size) is missing.
            cuts.push(bytes.len() - 8);
        }
        for cut in cuts {
            let err =
                store_unified(images.path(), &bytes[..cut], None, &Limits::none()).unwrap_err();
            assert!(
                matches!(err, ImageError::Corrupt(_)),
                "{comp} cut {cut}: {err}"
            );
            assert!(
                err.to_string()
                    .starts_with("image tarball is truncated or corrupt"),
                "{err}"
            );
            assert!(entries(images.path()).is_empty(), "{comp}: temp file left");
        }
        if comp == "none" {
            continue; // plain tar has no checksum over file data
        }
        // Flipped bytes in the middle of the compressed stream.
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let err = store_unified(images.path(), &bad[..], None, &Limits::none()).unwrap_err();
        assert!(
            matches!(err, ImageError::Corrupt(_)),
            "{comp} flipped: {err}"
        );
        assert!(entries(images.path()).is_empty());
    }
    let images = tempfile::tempdir().unwrap();
    for junk in [&b""[..], b"not an image at all", &[0x1f, 0x8b, 0, 0, 0]] {
        assert!(store_unified(images.path(), junk, None, &Limits::none()).is_err());
    }
    assert!(entries(images.path()).is_empty());
}

#[test]
fn invalid_images_are_refused() {
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    let images = tempfile::tempdir().unwrap();

    let no_meta = tar_of(stage.path(), &["rootfs"], "gzip");
    let err = store_unified(images.path(), &no_meta[..], None, &Limits::none()).unwrap_err();
    assert!(
        matches!(err, ImageError::InvalidImage(ref m) if m.contains("metadata.yaml")),
        "{err}"
    );

    let no_rootfs = tar_of(stage.path(), &["metadata.yaml"], "gzip");
    let err = store_unified(images.path(), &no_rootfs[..], None, &Limits::none()).unwrap_err();
    assert!(
        matches!(err, ImageError::InvalidImage(ref m) if m.contains("rootfs")),
        "{err}"
    );

    fs::write(stage.path().join("metadata.yaml"), "properties: {}\n").unwrap();
    let bad_meta = tar_of(stage.path(), &["metadata.yaml", "rootfs"], "gzip");
    let err = store_unified(images.path(), &bad_meta[..], None, &Limits::none()).unwrap_err();
    assert!(matches!(err, ImageError::InvalidMetadata(_)), "{err}");

    let sqfs = tempfile::tempdir().unwrap();
    let sq = sqfs.path().join("r.squashfs");
    if mksquashfs(&stage.path().join("rootfs"), &sq) {
        let err = store_unified(
            images.path(),
            &fs::read(&sq).unwrap()[..],
            None,
            &Limits::none(),
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::InvalidImage(_)), "{err}");
    }
    assert!(entries(images.path()).is_empty());
}

#[test]
fn hostile_paths_are_refused_at_import() {
    let images = tempfile::tempdir().unwrap();
    let meta = file("metadata.yaml", METADATA.as_bytes());
    for hostile in [
        vec![file("../evil", b"x")],
        vec![file("/abs", b"x")],
        vec![
            dir("rootfs/"),
            symlink("rootfs/l", "/tmp"),
            file("rootfs/l/evil", b"x"),
        ],
    ] {
        let mut all = vec![file("metadata.yaml", meta.data), dir("rootfs/")];
        all.extend(hostile);
        let bytes = raw_tar(&all);
        let err = store_unified(images.path(), &bytes[..], None, &Limits::none()).unwrap_err();
        assert!(matches!(err, ImageError::UnsafePath(_)), "{err}");
    }
    assert!(entries(images.path()).is_empty());
}

#[test]
fn bad_fingerprints_never_reach_the_filesystem() {
    let images = tempfile::tempdir().unwrap();
    for fp in ["../../etc/passwd", "abc", &"g".repeat(64), ""] {
        assert!(matches!(
            read_stored(images.path(), fp),
            Err(ImageError::InvalidFingerprint(_))
        ));
        assert!(matches!(
            remove_stored(images.path(), fp),
            Err(ImageError::InvalidFingerprint(_))
        ));
    }
}

fn mksquashfs(src: &std::path::Path, out: &std::path::Path) -> bool {
    match Command::new("mksquashfs")
        .arg(src)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress", "-comp", "gzip"])
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("mksquashfs: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => common::prerequisite(false, "mksquashfs (squashfs-tools)"),
    }
}

#[test]
fn split_images_tar_and_squashfs() {
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    let meta = tar_of(stage.path(), &["metadata.yaml", "templates"], "xz");
    let rootfs = tar_of(&stage.path().join("rootfs"), &["."], "gzip");
    let images = tempfile::tempdir().unwrap();

    let img = store_split(images.path(), &meta[..], &rootfs[..], None, &Limits::none()).unwrap();
    assert_eq!(img.fingerprint, sha256_hex(&[&meta, &rootfs]));
    assert!(img.split);
    assert_eq!(img.size, (meta.len() + rootfs.len()) as u64);
    assert_eq!(
        fs::read(images.path().join(&img.fingerprint)).unwrap(),
        meta
    );
    assert_eq!(
        fs::read(images.path().join(format!("{}.rootfs", img.fingerprint))).unwrap(),
        rootfs
    );
    let again = read_stored(images.path(), &img.fingerprint).unwrap();
    assert!(again.split);
    assert_eq!(again.size, img.size);

    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("c1");
    unpack(
        images.path(),
        &img.fingerprint,
        &dest,
        &Limits::none(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("rootfs/etc/hostname")).unwrap(),
        "image\n"
    );
    assert!(dest.join("templates/hostname.tpl").is_file());
    assert_eq!(
        fs::read_to_string(dest.join("metadata.yaml")).unwrap(),
        METADATA
    );

    // Same meta with a different rootfs is a different image; a wrong
    // expectation leaves nothing behind.
    let before = entries(images.path()).len();
    let err = store_split(
        images.path(),
        &meta[..],
        &rootfs[..10],
        None,
        &Limits::none(),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Corrupt(_)), "{err}");
    assert_eq!(entries(images.path()).len(), before);

    let sq = work.path().join("rootfs.squashfs");
    if mksquashfs(&stage.path().join("rootfs"), &sq) {
        let sq_bytes = fs::read(&sq).unwrap();
        let img = store_split(
            images.path(),
            &meta[..],
            &sq_bytes[..],
            None,
            &Limits::none(),
        )
        .unwrap();
        assert_eq!(img.fingerprint, sha256_hex(&[&meta, &sq_bytes]));
        let dest = work.path().join("c2");
        let mut calls = Vec::new();
        unpack(
            images.path(),
            &img.fingerprint,
            &dest,
            &Limits::none(),
            &mut |d, t| calls.push((d, t)),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(dest.join("rootfs/etc/hostname")).unwrap(),
            "image\n"
        );
        assert_eq!(calls.last().unwrap().0, calls.last().unwrap().1);

        let mut broken = sq_bytes.clone();
        broken.truncate(200);
        let before = entries(images.path()).len();
        let err =
            store_split(images.path(), &meta[..], &broken[..], None, &Limits::none()).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt(_)), "{err}");
        assert_eq!(entries(images.path()).len(), before);
    }
}

#[test]
fn an_upload_read_once_is_split_or_unified_by_what_follows_its_first_part() {
    let stage = tempfile::tempdir().unwrap();
    stage_unified(stage.path());
    let meta = tar_of(stage.path(), &["metadata.yaml", "templates"], "xz");
    let rootfs = tar_of(&stage.path().join("rootfs"), &["."], "gzip");
    let unified = tar_of(stage.path(), &["metadata.yaml", "rootfs"], "zstd");
    let none = || Ok::<Option<&[u8]>, ImageError>(None);

    // A rootfs follows: a split image, as store_split makes it.
    let images = tempfile::tempdir().unwrap();
    let img = store_upload(
        images.path(),
        &meta[..],
        || Ok(Some(&rootfs[..])),
        None,
        &Limits::none(),
    )
    .unwrap();
    assert!(img.split);
    assert_eq!(img.fingerprint, sha256_hex(&[&meta, &rootfs]));
    assert_eq!(entries(images.path()).len(), 2);

    // Nothing follows: the first part is a unified image.
    let images = tempfile::tempdir().unwrap();
    let img = store_upload(images.path(), &unified[..], none, None, &Limits::none()).unwrap();
    assert!(!img.split);
    assert_eq!(img.fingerprint, sha256_hex(&[&unified]));

    // A unified tarball followed by a rootfs, a metadata tarball alone, a
    // broken second part: refused, nothing left.
    let images = tempfile::tempdir().unwrap();
    let e = store_upload(
        images.path(),
        &unified[..],
        || Ok(Some(&rootfs[..])),
        None,
        &Limits::none(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("contains rootfs/"), "{e}");
    let e = store_upload(images.path(), &meta[..], none, None, &Limits::none()).unwrap_err();
    assert!(e.to_string().contains("no rootfs/"), "{e}");
    let e = store_upload(
        images.path(),
        &meta[..],
        || Err::<Option<&[u8]>, _>(ImageError::Corrupt("cut".into())),
        None,
        &Limits::none(),
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::Corrupt(_)), "{e}");
    assert!(entries(images.path()).is_empty(), "temp files left");
}
