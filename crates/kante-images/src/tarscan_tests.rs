//! Tests of the tar scanner and filter, with hostile archives built by a
//! tiny ustar writer (real tools refuse to make most of them).

use super::*;

pub(crate) mod testtar {
    //! A tiny ustar writer for tests, able to produce hostile archives that
    //! real tools refuse to create.

    pub struct Entry<'a> {
        pub name: &'a str,
        pub kind: u8,
        pub link: &'a str,
        pub data: &'a [u8],
        pub mode: u32,
        pub dev: (u32, u32),
        /// pax records written in an `x` header before the entry.
        pub pax: Vec<(&'a str, &'a str)>,
    }

    impl<'a> Entry<'a> {
        fn new(name: &'a str, kind: u8, mode: u32) -> Self {
            Entry {
                name,
                kind,
                link: "",
                data: b"",
                mode,
                dev: (0, 0),
                pax: Vec::new(),
            }
        }
        pub fn file(name: &'a str, data: &'a [u8]) -> Self {
            Entry {
                data,
                ..Entry::new(name, b'0', 0o644)
            }
        }
        pub fn dir(name: &'a str) -> Self {
            Entry::new(name, b'5', 0o755)
        }
        pub fn symlink(name: &'a str, target: &'a str) -> Self {
            Entry {
                link: target,
                ..Entry::new(name, b'2', 0o777)
            }
        }
        pub fn hardlink(name: &'a str, target: &'a str) -> Self {
            Entry {
                link: target,
                ..Entry::new(name, b'1', 0o644)
            }
        }
        /// A character (`b'3'`) or block (`b'4'`) device, or a FIFO (`b'6'`).
        pub fn node(name: &'a str, kind: u8, major: u32, minor: u32, mode: u32) -> Self {
            Entry {
                dev: (major, minor),
                ..Entry::new(name, kind, mode)
            }
        }
        /// A global pax header.
        pub fn global(records: Vec<(&'a str, &'a str)>) -> Self {
            Entry {
                pax: records,
                ..Entry::new("pax_global_header", b'g', 0o644)
            }
        }
        pub fn with_pax(mut self, records: Vec<(&'a str, &'a str)>) -> Self {
            self.pax = records;
            self
        }
    }

    fn octal(dst: &mut [u8], v: u64) {
        let s = format!("{:0width$o}\0", v, width = dst.len() - 1);
        dst.copy_from_slice(s.as_bytes());
    }

    /// pax records with their length prefixes.
    pub fn pax_records(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while (len.to_string().len() + body.len()) != len {
                len += 1;
            }
            out.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        out
    }

    fn header(out: &mut Vec<u8>, name: &str, kind: u8, e: &Entry, size: u64) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], e.mode as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = kind;
        h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], e.dev.0 as u64);
        octal(&mut h[337..345], e.dev.1 as u64);
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
    }

    fn data(out: &mut Vec<u8>, d: &[u8]) {
        out.extend_from_slice(d);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    pub fn build(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            if e.kind == b'g' {
                let recs = pax_records(&e.pax);
                header(&mut out, e.name, b'g', e, recs.len() as u64);
                data(&mut out, &recs);
                continue;
            }
            if !e.pax.is_empty() {
                let recs = pax_records(&e.pax);
                header(&mut out, "PaxHeaders/x", b'x', e, recs.len() as u64);
                data(&mut out, &recs);
            }
            header(&mut out, e.name, e.kind, e, e.data.len() as u64);
            data(&mut out, e.data);
        }
        out.resize(out.len() + 1024, 0);
        out
    }
}

use testtar::{build, Entry};

fn scan_as(layout: Layout, data: &[u8], chunk: usize) -> Result<TarScanner, ImageError> {
    let mut s = TarScanner::new(layout, true);
    for c in data.chunks(chunk) {
        s.feed(c)?;
    }
    s.finish()?;
    Ok(s)
}

fn scan(data: &[u8], chunk: usize) -> Result<TarScanner, ImageError> {
    scan_as(Layout::Image, data, chunk)
}

#[test]
fn scans_metadata_and_rootfs_in_any_chunking() {
    let tar = build(&[
        Entry::file("./metadata.yaml", b"architecture: x86_64\n"),
        Entry::dir("rootfs/"),
        Entry::file("rootfs/etc/hostname", b"x\n"),
    ]);
    for chunk in [1, 7, 512, 100_000] {
        let s = scan(&tar, chunk).unwrap();
        assert_eq!(s.metadata.as_deref(), Some(&b"architecture: x86_64\n"[..]));
        assert!(s.has_rootfs);
        assert_eq!(s.entries, 3);
        // Three entries of a block each, and their data.
        assert_eq!(s.unpacked, 3 * 512 + 21 + 2);
    }
}

#[test]
fn rejects_escapes() {
    for entries in [
        vec![Entry::file("../evil", b"x")],
        vec![Entry::file("/abs", b"x")],
        vec![Entry::file("rootfs/../../evil", b"x")],
        vec![
            Entry::symlink("rootfs/l", "/tmp"),
            Entry::file("rootfs/l/evil", b"x"),
        ],
        vec![Entry::symlink("rootfs/l", "."), Entry::dir("rootfs/l/sub/")],
        vec![
            Entry::symlink("rootfs/l", "/etc"),
            Entry::hardlink("rootfs/h", "rootfs/l/shadow"),
        ],
        vec![Entry::hardlink("rootfs/h", "../outside")],
    ] {
        let err = scan(&build(&entries), 512).err().expect("must fail");
        assert!(matches!(err, ImageError::UnsafePath(_)), "{err}");
    }
    // Replacing a symlink with a directory makes later entries fine.
    let ok = build(&[
        Entry::symlink("rootfs/a", "/tmp"),
        Entry::dir("rootfs/a/"),
        Entry::file("rootfs/a/f", b"x"),
    ]);
    scan(&ok, 512).unwrap();
}

#[test]
fn only_the_layout_may_be_unpacked() {
    let refused = |layout, entries: &[Entry]| {
        let err = scan_as(layout, &build(entries), 512)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("outside the archive's layout"),
            "{err}"
        );
    };
    let accepted = |layout, entries: &[Entry]| {
        scan_as(layout, &build(entries), 512).unwrap();
    };
    accepted(
        Layout::Image,
        &[
            Entry::dir("./"),
            Entry::file("metadata.yaml", b"a: 1\n"),
            Entry::dir("rootfs"),
            Entry::file("rootfs/etc/x", b"x"),
            Entry::file("templates/hostname.tpl", b"x"),
        ],
    );
    refused(Layout::Image, &[Entry::file("backup.yaml", b"x")]);
    refused(Layout::Image, &[Entry::file("rootfsx/a", b"x")]);
    refused(Layout::Image, &[Entry::dir("etc/")]);
    refused(
        Layout::Image,
        &[
            Entry::file("rootfs/a", b"x"),
            Entry::hardlink("rootfs/h", "other"),
        ],
    );
    accepted(Layout::ImageMeta, &[Entry::file("templates/a.tpl", b"x")]);
    refused(Layout::ImageMeta, &[Entry::dir("rootfs/")]);
    accepted(Layout::Any, &[Entry::file("etc/passwd", b"x")]);
    accepted(
        Layout::Backup,
        &[
            Entry::dir("backup/"),
            Entry::file("backup/index.yaml", b"name: c1\n"),
            Entry::dir("backup/container/"),
            Entry::file("backup/container/rootfs/etc/x", b"x"),
            Entry::dir("backup/snapshots/"),
            Entry::file("backup/snapshots/s0/rootfs/x", b"x"),
        ],
    );
    for bad in [
        "backup/other",
        "backup/containers/x",
        "evil",
        "rootfs/x",
        "backup/index.yaml.d/x",
    ] {
        refused(Layout::Backup, &[Entry::file(bad, b"x")]);
    }
}

#[test]
fn gnu_sparse_name_is_the_name_that_is_checked() {
    let sparse = |name: &'static str| {
        vec![
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", name),
            ("GNU.sparse.realsize", "0"),
        ]
    };
    // An innocent header name and path do not hide the name tar uses.
    for (entries, what) in [
        (
            vec![Entry::file("rootfs/ok", b"").with_pax(sparse("../../evil"))],
            "..",
        ),
        (
            vec![Entry::file("rootfs/ok", b"").with_pax(sparse("/etc/evil"))],
            "absolute",
        ),
        (
            vec![Entry::file("rootfs/ok", b"").with_pax(sparse("top-level-file"))],
            "layout",
        ),
        (
            vec![
                Entry::symlink("rootfs/lnk", "etc"),
                Entry::file("rootfs/ok", b"").with_pax(sparse("rootfs/lnk/through-link")),
            ],
            "symlink",
        ),
        (
            // GNU tar ignores `path` once it has GNU.sparse.name, in either order.
            vec![Entry::file("rootfs/ok", b"")
                .with_pax(vec![("GNU.sparse.name", "/abs"), ("path", "rootfs/fine")])],
            "absolute",
        ),
    ] {
        let err = scan(&build(&entries), 512).err().expect(what);
        assert!(matches!(err, ImageError::UnsafePath(_)), "{what}: {err}");
    }
    // The header name of a real sparse entry is not the one judged.
    let ok = build(&[
        Entry::file("metadata.yaml", b"a: 1\n"),
        Entry::file("./GNUSparseFile.12/sp", b"").with_pax(sparse("rootfs/sp")),
    ]);
    scan(&ok, 512).unwrap();
    // Sparse keys make sense only on regular files.
    let err = scan(
        &build(&[Entry::symlink("rootfs/l", "x").with_pax(sparse("rootfs/l"))]),
        512,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("GNU.sparse"), "{err}");
}

#[test]
fn unknown_gnu_keys_and_naming_global_keys_are_refused() {
    for key in ["GNU.volume.label", "GNU.dumpdir", "GNU.sparse.future"] {
        let tar = build(&[Entry::file("rootfs/a", b"x").with_pax(vec![(key, "v")])]);
        let err = scan(&tar, 512).err().expect(key);
        assert!(err.to_string().contains(key), "{err}");
    }
    for key in ["path", "linkpath", "size", "GNU.sparse.name"] {
        let tar = build(&[
            Entry::global(vec![(key, "rootfs/x")]),
            Entry::file("rootfs/a", b"x"),
        ]);
        let err = scan(&tar, 512).err().expect(key);
        assert!(err.to_string().contains("global"), "{err}");
    }
    // What does not name an entry is fine, globally or per entry.
    let tar = build(&[
        Entry::global(vec![("comment", "hello")]),
        Entry::file("rootfs/a", b"x")
            .with_pax(vec![("mtime", "1.5"), ("SCHILY.xattr.user.a", "b")]),
    ]);
    scan(&tar, 512).unwrap();
}

/// Headers of a tar stream: (offset, block).
fn headers(tar: &[u8]) -> Vec<(usize, [u8; 512])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 512 <= tar.len() {
        let h: [u8; 512] = tar[pos..pos + 512].try_into().unwrap();
        if h.iter().all(|&b| b == 0) {
            break;
        }
        out.push((pos, h));
        let size = parse_numeric(&h[124..136]).unwrap() as usize;
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn device_nodes_become_empty_files_in_every_chunking() {
    let tar = build(&[
        Entry::file("metadata.yaml", b"a: 1\n"),
        Entry::dir("rootfs/"),
        Entry::node("rootfs/kmsg", b'3', 1, 11, 0o6644),
        Entry::file("rootfs/between", &[7u8; 700]),
        Entry::node("rootfs/hostloop", b'4', 7, 0, 0o4660).with_pax(vec![("mtime", "1")]),
        Entry::node("rootfs/fifo", b'6', 0, 0, 0o644),
        Entry::file("rootfs/last", b"z"),
    ]);
    let mut whole = Vec::new();
    let mut s = TarScanner::new(Layout::Image, false);
    let used = s.filter(&tar, &mut whole).unwrap();
    assert!(s.ended());
    assert_eq!(s.devices_dropped, 2);
    assert_eq!(s.dropped_names, ["rootfs/kmsg", "rootfs/hostloop"]);
    // Everything up to the first end block, same length, other bytes unchanged.
    assert_eq!(whole.len(), used);
    let (before, after) = (headers(&tar), headers(&whole));
    assert_eq!(before.len(), after.len());
    for ((at, b), (at2, a)) in before.iter().zip(&after) {
        assert_eq!(at, at2);
        let name = String::from_utf8_lossy(field(&a[..100])).into_owned();
        verify_checksum(a).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "rootfs/kmsg" || name == "rootfs/hostloop" {
            assert_eq!(a[156], b'0', "{name} is a regular file now");
            assert_eq!(parse_numeric(&a[124..136]), Some(0));
            assert_eq!(parse_numeric(&a[329..337]), Some(0));
            assert_eq!(parse_numeric(&a[337..345]), Some(0));
            let mode = parse_numeric(&a[100..108]).unwrap();
            assert_eq!(mode, parse_numeric(&b[100..108]).unwrap() & 0o1777);
            assert_eq!(mode & 0o6000, 0, "{name}: setuid/setgid cleared");
        } else {
            assert_eq!(a, b, "{name} untouched");
        }
    }
    let data_equal = |range: std::ops::Range<usize>| tar[range.clone()] == whole[range];
    assert!(
        data_equal(before[3].0 + 512..before[4].0),
        "file data passed on"
    );
    // The filtered stream scans clean, and GNU tar sees no device.
    let again = {
        let mut s = TarScanner::new(Layout::Image, false);
        s.feed(&whole).unwrap();
        s
    };
    assert_eq!((again.devices_dropped, again.entries), (0, s.entries));
    let listing = gnu_tar_listing(&whole);
    assert!(
        listing.lines().all(|l| !l.starts_with(['b', 'c'])),
        "{listing}"
    );
    assert!(
        listing.lines().any(|l| l.starts_with('p')),
        "FIFO kept: {listing}"
    );

    // Any chunking gives the same bytes: headers split anywhere.
    for chunk in (1..=1600).chain([4095, 4096, 4097, tar.len()]) {
        let mut s = TarScanner::new(Layout::Image, false);
        let mut out = Vec::new();
        let mut used = 0;
        for c in tar.chunks(chunk) {
            used += s.filter(c, &mut out).unwrap();
        }
        s.finish().unwrap();
        assert_eq!(out, whole, "chunk size {chunk}");
        assert_eq!(used, whole.len(), "chunk size {chunk}");
        assert_eq!(s.devices_dropped, 2, "chunk size {chunk}");
    }
}

fn gnu_tar_listing(tar: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("tar")
        .args(["-tvf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("GNU tar");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(tar).unwrap();
    stdin.write_all(&[0u8; 1024]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn unpacked_bytes_are_capped_before_the_data_comes() {
    let big = vec![0u8; 1 << 20];
    let tar = build(&[
        Entry::file("metadata.yaml", b"a: 1\n"),
        Entry::file("rootfs/big", &big),
    ]);
    let s = scan(&tar, 4096).unwrap();
    assert_eq!(s.unpacked, 2 * 512 + 5 + (1 << 20));
    let limits = Limits::bytes(100_000, "KANTE_MAX_IMPORT_BYTES");
    let mut s = TarScanner::new(Layout::Image, false).with_limits(&limits);
    let mut out = Vec::new();
    // The two headers and metadata.yaml's block: not one byte of the big file.
    let err = s.filter(&tar[..3 * 512], &mut out).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("KANTE_MAX_IMPORT_BYTES"), "{err}");
    assert_eq!(out.len(), 2 * 512, "the big file's header is not passed on");
    // Exactly at the cap is fine.
    let exact = Limits::bytes(s.unpacked, "x");
    let mut s = TarScanner::new(Layout::Image, false).with_limits(&exact);
    s.feed(&tar).unwrap();
}

#[test]
fn detects_truncation_and_garbage() {
    let tar = build(&[Entry::file("metadata.yaml", &[b'a'; 3000])]);
    for cut in [100, 512, 1500, 3584] {
        let err = scan(&tar[..cut], 512).err().expect("truncated");
        assert!(matches!(err, ImageError::Corrupt(_)), "{cut}: {err}");
    }
    let err = scan(&[0x55; 2048], 512).err().unwrap();
    assert!(err.to_string().contains("invalid tar header"), "{err}");
    assert!(scan(&[], 512).is_err());
}

#[test]
fn numeric_fields() {
    assert_eq!(parse_numeric(b"00000000012\0"), Some(10));
    assert_eq!(parse_numeric(b"     12 \0\0\0\0"), Some(10));
    let mut b256 = [0u8; 12];
    b256[0] = 0x80;
    b256[11] = 1;
    b256[10] = 2;
    assert_eq!(parse_numeric(&b256), Some(513));
    assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
    assert_eq!(normalize(b"./").unwrap(), b"");
}

/// An entry whose size (pax `size`, or a base-256 header field) is within
/// a block of `u64::MAX`: its data plus padding overflowed, a panic in a
/// debug build and, wrapped to 0 in a release one, a scanner that stopped
/// consuming its input and spun forever.
#[test]
fn a_size_near_u64_max_is_an_error_not_an_overflow() {
    let tar =
        build(&[Entry::file("rootfs/a", b"x").with_pax(vec![("size", "18446744073709551615")])]);
    for chunk in [1, 512, tar.len()] {
        let mut out = Vec::new();
        let mut s = TarScanner::new(Layout::Image, true);
        let r = tar
            .chunks(chunk)
            .try_for_each(|c| s.filter(c, &mut out).map(drop))
            .and_then(|()| s.finish());
        assert!(r.is_err(), "chunk {chunk}");
    }
}

/// Found by fuzzing (fuzz/fuzz_targets/tar_filter.rs): GNU tar gives a
/// pending GNU long name or pax header to a volume label (`V`) like to any
/// other entry, but the filter kept it for the entry after the label, so
/// it checked that entry under a name tar does not use (here `evil`,
/// outside an image's layout, passed as `rootfs/ok`).
#[test]
fn a_volume_label_takes_the_long_name_and_pax_keys_before_it() {
    let label = |pax| Entry {
        name: "label",
        kind: b'V',
        link: "",
        data: b"",
        mode: 0o644,
        dev: (0, 0),
        pax,
    };
    let long_name = Entry {
        name: "././@LongLink",
        kind: b'L',
        link: "",
        data: b"rootfs/ok\0",
        mode: 0o644,
        dev: (0, 0),
        pax: Vec::new(),
    };
    let through_pax = build(&[
        label(vec![("path", "rootfs/ok")]),
        Entry::file("evil", b"x"),
    ]);
    let through_long_name = build(&[long_name, label(Vec::new()), Entry::file("evil", b"x")]);
    for tar in [through_pax, through_long_name] {
        let err = scan(&tar, 512).err().expect("evil is outside the layout");
        assert!(matches!(err, ImageError::UnsafePath(_)), "{err}");
    }
}

/// Found by fuzzing: GNU tar stops reading a pax header at its first
/// malformed record (no `=`, or no newline) and ignores the records after
/// it; the filter skipped such a record and applied the rest. A `size`
/// after it made the filter take the next header for data, so tar
/// extracted an entry (here `evil`) the filter never checked.
#[test]
fn a_malformed_pax_record_is_refused_not_skipped() {
    for recs in [
        &b"20 pathYrootfs/long\n9 size=3\n"[..],
        &b"20 path=rootfs/longX9 size=3\n"[..],
    ] {
        let pax = Entry {
            name: "PaxHeaders/x",
            kind: b'x',
            link: "",
            data: recs,
            mode: 0o644,
            dev: (0, 0),
            pax: Vec::new(),
        };
        let tar = build(&[
            Entry::file("metadata.yaml", b"architecture: x86_64\n"),
            pax,
            Entry::file("rootfs/x", b""),
            Entry::file("evil", b""),
        ]);
        let r = scan(&tar, 512);
        assert!(r.is_err(), "{:?}", String::from_utf8_lossy(recs));
    }
}
