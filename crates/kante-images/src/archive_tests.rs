//! Unit tests of multi-section archives (backups): packing, caps, layouts, safe extraction.

use std::os::unix::fs::MetadataExt;

use super::*;

fn opts(compression: ArchiveCompression) -> PackOptions {
    PackOptions {
        compression,
        mode: 0o600,
        allow_changed_files: false,
        limits: Limits::none(),
    }
}

/// Two trees: `a` (a file, a hard link to it, a symlink) and `b`.
fn fixture(root: &Path) -> (PathBuf, PathBuf) {
    let a = root.join("a");
    let b = root.join("b");
    fs::create_dir_all(a.join("rootfs/etc")).unwrap();
    fs::create_dir_all(b.join("rootfs")).unwrap();
    fs::write(a.join("rootfs/etc/f"), b"one").unwrap();
    fs::hard_link(a.join("rootfs/etc/f"), a.join("rootfs/etc/g")).unwrap();
    std::os::unix::fs::symlink("../etc/f", a.join("rootfs/etc/s")).unwrap();
    fs::write(b.join("rootfs/x"), vec![7u8; 100_000]).unwrap();
    (a, b)
}

#[test]
fn sections_round_trip_under_their_prefixes() {
    for c in [
        ArchiveCompression::None,
        ArchiveCompression::Gzip,
        ArchiveCompression::Zstd { level: 3 },
    ] {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = fixture(t.path());
        let meta = t.path().join("meta");
        fs::create_dir(&meta).unwrap();
        fs::write(meta.join("index.yaml"), b"name: c1\n").unwrap();
        let out = t.path().join(format!("out.{}", c.extension()));
        let mut calls = Vec::new();
        let size = pack_sections(
            &[
                Section::tree(&meta, "backup"),
                Section::tree(&a, "backup/container"),
                Section::tree(&b, "backup/snapshots/s,&1"),
            ],
            &out,
            &opts(c),
            &mut |d, t| calls.push((d, t)),
        )
        .unwrap();
        assert_eq!(size, fs::metadata(&out).unwrap().len());
        assert_eq!(fs::metadata(&out).unwrap().mode() & 0o777, 0o600);
        let (d, t2) = *calls.last().unwrap();
        assert_eq!(d, t2, "{c:?}: progress ends at 100%");
        if c == ArchiveCompression::None {
            // One end marker, after whole blocks.
            assert_eq!(size % 512, 0);
        }
        assert_eq!(
            read_member(&out, "backup/index.yaml", Layout::Backup)
                .unwrap()
                .as_deref(),
            Some(&b"name: c1\n"[..])
        );
        assert_eq!(
            read_member(&out, "backup/nope.yaml", Layout::Backup).unwrap(),
            None
        );

        let x = t.path().join("x");
        fs::create_dir(&x).unwrap();
        extract(&out, &x, Layout::Backup, &Limits::none(), &mut |_, _| {}).unwrap();
        let f = x.join("backup/container/rootfs/etc/f");
        let g = x.join("backup/container/rootfs/etc/g");
        assert_eq!(fs::read(&f).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&f).unwrap().ino(),
            fs::metadata(&g).unwrap().ino(),
            "hard link kept"
        );
        assert_eq!(
            fs::read_link(x.join("backup/container/rootfs/etc/s")).unwrap(),
            Path::new("../etc/f"),
            "symlink target untouched"
        );
        assert_eq!(
            fs::read(x.join("backup/snapshots/s,&1/rootfs/x"))
                .unwrap()
                .len(),
            100_000
        );
        assert!(x.join("backup/index.yaml").is_file());
    }
}

#[test]
fn truncated_archives_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = fixture(t.path());
    let out = t.path().join("out.tar.gz");
    pack_sections(
        &[Section::tree(&a, "backup/container")],
        &out,
        &opts(ArchiveCompression::Gzip),
        &mut |_, _| {},
    )
    .unwrap();
    let data = fs::read(&out).unwrap();
    let cut = t.path().join("cut.tar.gz");
    fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let e = extract(&cut, &x, Layout::Backup, &Limits::none(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, ImageError::Corrupt(_)), "{e}");
}

#[test]
fn a_missing_end_marker_is_an_error() {
    let mut out = Vec::new();
    let mut data = vec![1u8; 512];
    data.extend_from_slice(&[0u8; 1024]);
    strip_end_marker(&mut &data[..], &mut out, &mut |_| Ok(())).unwrap();
    assert_eq!(out, vec![1u8; 512]);
    let bad = vec![1u8; 2048];
    assert!(strip_end_marker(&mut &bad[..], &mut Vec::new(), &mut |_| Ok(())).is_err());
}

#[test]
fn transforms_escape_the_prefix() {
    assert_eq!(sed_escape(r"a,b&c\d"), r"a\,b\&c\\d");
    let s = Section::tree("/x", "backup/container");
    assert_eq!(
        s.tar_args().unwrap(),
        vec!["--transform=s,^\\.,backup/container,S", "."]
    );
    assert!(Section::tree("/x", "").tar_args().is_err());
    let m = Section {
        dir: "/x".into(),
        prefix: String::new(),
        members: vec!["metadata.yaml".into()],
    };
    assert_eq!(m.tar_args().unwrap(), vec!["--", "metadata.yaml"]);
}

#[test]
fn compression_names() {
    assert_eq!(
        ArchiveCompression::parse("gzip"),
        Some(ArchiveCompression::Gzip)
    );
    assert_eq!(
        ArchiveCompression::parse("zstd").unwrap().extension(),
        "tar.zst"
    );
    assert_eq!(ArchiveCompression::parse("none").unwrap().name(), "none");
    assert_eq!(ArchiveCompression::parse("xz"), None);
}

#[test]
fn sparse_files_stay_sparse_through_pack_and_extract() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    fs::create_dir_all(a.join("rootfs")).unwrap();
    let sparse = fs::File::create(a.join("rootfs/sparse")).unwrap();
    sparse.set_len(1 << 30).unwrap();
    fs::write(a.join("rootfs/small"), b"data").unwrap();
    let out = t.path().join("out.tar");
    let size = pack_sections(
        &[Section::tree(&a, "backup/container")],
        &out,
        &opts(ArchiveCompression::None),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(size < 64 << 10, "a 1 GiB hole packs small: {size} bytes");
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    // The sparse entry (pax GNU.sparse.name, header name GNUSparseFile.N/…)
    // is judged by its real name: inside the backup layout.
    extract(&out, &x, Layout::Backup, &Limits::none(), &mut |_, _| {}).unwrap();
    let m = fs::metadata(x.join("backup/container/rootfs/sparse")).unwrap();
    assert_eq!(m.len(), 1 << 30);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "still sparse: {} blocks",
        m.blocks()
    );
    assert_eq!(
        fs::read(x.join("backup/container/rootfs/small")).unwrap(),
        b"data"
    );
}

#[test]
fn packing_past_the_cap_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("big"), vec![1u8; 256 << 10]).unwrap();
    let outdir = t.path().join("out");
    fs::create_dir(&outdir).unwrap();
    let out = outdir.join("b.tar.gz");
    let mut o = opts(ArchiveCompression::Gzip);
    o.limits = Limits::bytes(64 << 10, "KANTE_MAX_BACKUP_BYTES");
    let e = pack_sections(
        &[Section::tree(&a, "backup/container")],
        &out,
        &o,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::TooLarge(_)), "{e}");
    assert!(e.to_string().contains("KANTE_MAX_BACKUP_BYTES"), "{e}");
    assert_eq!(fs::read_dir(&outdir).unwrap().count(), 0, "nothing left");
    // Past the estimate, the output itself is capped: 400 empty files are
    // estimated at a block each but tar writes pax headers too.
    let many = t.path().join("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..400 {
        fs::write(many.join(format!("f{i}")), b"").unwrap();
    }
    let estimate = tree_size(&many);
    o.limits = Limits::bytes(estimate + 4096, "KANTE_MAX_BACKUP_BYTES");
    let e = pack_sections(
        &[Section::tree(&many, "backup/container")],
        &out,
        &o,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::TooLarge(_)), "{e}");
    assert_eq!(fs::read_dir(&outdir).unwrap().count(), 0, "nothing left");
    // Out of time: refused at once, nothing left either.
    o.limits = Limits {
        timeout: Some(std::time::Duration::ZERO),
        ..Limits::none()
    };
    let e = pack_sections(
        &[Section::tree(&a, "backup/container")],
        &out,
        &o,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::TimedOut(_)), "{e}");
    assert_eq!(fs::read_dir(&outdir).unwrap().count(), 0, "nothing left");
}

#[test]
fn extracting_past_the_caps_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("big"), vec![0u8; 1 << 20]).unwrap();
    let out = t.path().join("bomb.tar.zst");
    pack_sections(
        &[Section::tree(&a, "backup/container")],
        &out,
        &opts(ArchiveCompression::Zstd { level: 3 }),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(fs::metadata(&out).unwrap().len() < 4096, "a small bomb");
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let cap = Limits::bytes(256 << 10, "KANTE_MAX_IMPORT_BYTES");
    let e = extract(&out, &x, Layout::Backup, &cap, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, ImageError::TooLarge(_)), "{e}");
    assert!(
        !x.join("backup/container/big").exists(),
        "the big file never reached tar"
    );
    let late = Limits {
        timeout: Some(std::time::Duration::ZERO),
        ..Limits::none()
    };
    let e = extract(&out, &x, Layout::Backup, &late, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, ImageError::TimedOut(_)), "{e}");
    // Outside the backup layout.
    let e = extract(&out, &x, Layout::Image, &Limits::none(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, ImageError::UnsafePath(_)), "{e}");
}

#[test]
fn streams_are_extracted_through_the_scanner_and_read_to_their_end() {
    use crate::tarscan::tests::testtar::{build, Entry};
    let t = tempfile::tempdir().unwrap();
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let mut data = build(&[
        Entry::dir("./rootfs"),
        Entry::file("./rootfs/f", b"one"),
        Entry::hardlink("./rootfs/g", "./rootfs/f"),
    ]);
    // What follows the end-of-archive marker is read and dropped.
    data.extend_from_slice(&[0u8; 4096]);
    let mut input = &data[..];
    let written = extract_stream(&mut input, &x, Layout::Any, &Limits::none()).unwrap();
    assert!(input.is_empty(), "read to its end");
    assert!(written >= 3);
    assert_eq!(fs::read(x.join("rootfs/f")).unwrap(), b"one");
    assert_eq!(
        fs::metadata(x.join("rootfs/f")).unwrap().ino(),
        fs::metadata(x.join("rootfs/g")).unwrap().ino()
    );

    // A device node is refused (a stream is a volume's copy: whole or not
    // at all), where an image's is rewritten; tar is stopped before it.
    let z = t.path().join("z");
    fs::create_dir(&z).unwrap();
    let dev = build(&[
        Entry::node("./null", b'3', 1, 3, 0o666),
        Entry::file("./after", b"x"),
    ]);
    let e = extract_stream(&mut &dev[..], &z, Layout::Any, &Limits::none()).unwrap_err();
    assert!(matches!(e, ImageError::UnsafePath(_)), "{e}");
    assert!(e.to_string().contains("device node"), "{e}");
    assert!(!z.join("null").exists() && !z.join("after").exists());

    // An escaping name is refused before tar sees it; nothing lands outside.
    let y = t.path().join("y");
    fs::create_dir(&y).unwrap();
    let bad = build(&[Entry::file("../escaped", b"x")]);
    let e = extract_stream(&mut &bad[..], &y, Layout::Any, &Limits::none()).unwrap_err();
    assert!(matches!(e, ImageError::UnsafePath(_)), "{e}");
    assert!(!t.path().join("escaped").exists());
    assert_eq!(fs::read_dir(&y).unwrap().count(), 0);

    // A cut stream is corrupt.
    let whole = build(&[Entry::file("f", &[7u8; 2000])]);
    let e = extract_stream(&mut &whole[..1024], &y, Layout::Any, &Limits::none()).unwrap_err();
    assert!(matches!(e, ImageError::Corrupt(_)), "{e}");
    // And the caps hold.
    let cap = Limits::bytes(1000, "a test");
    let e = extract_stream(&mut &whole[..], &y, Layout::Any, &cap).unwrap_err();
    assert!(matches!(e, ImageError::TooLarge(_)), "{e}");
}
