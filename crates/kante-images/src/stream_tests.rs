//! Unit tests of archives read once from a stream: the first member found
//! before anything is unpacked, every compression, the spool fallback
//! when the member is not first, and a source that breaks half-way.

use std::fs;
use std::io::Write;

use super::*;
use crate::tarscan::tests::testtar::{build, Entry};

/// A small backup: index first (after the `backup` directory), then a tree.
fn backup(index_first: bool) -> Vec<u8> {
    // Incompressible, so every compression keeps the stream long.
    let mut x = 0x2545_f491u32;
    let big: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut entries = vec![Entry::dir("backup")];
    let index = Entry::file("backup/index.yaml", b"name: c1\nconfig: {}\n");
    if index_first {
        entries.push(index);
    }
    entries.push(Entry::dir("backup/container"));
    entries.push(Entry::file("backup/container/backup.yaml", b"x: 1\n"));
    entries.push(Entry::dir("backup/container/rootfs"));
    entries.push(Entry::file("backup/container/rootfs/big", &big));
    if !index_first {
        entries.push(Entry::file("backup/index.yaml", b"name: c1\n"));
    }
    build(&entries)
}

fn compressed(tar: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(tar).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(tar).unwrap();
    vec![
        ("tar", tar.to_vec()),
        ("gzip", gz.finish().unwrap()),
        ("xz", xz.finish().unwrap()),
        ("zstd", zstd::encode_all(tar, 1).unwrap()),
        ("bzip2", bz.finish().unwrap()),
    ]
}

/// A source handing out `data` in small reads, as a socket would.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    /// Fail once this many bytes are read.
    fail_at: Option<usize>,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fail_at.is_some_and(|f| self.pos >= f) {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"));
        }
        let n = buf.len().min(4096).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn source(data: Vec<u8>, fail_at: Option<usize>) -> Box<dyn Read + Send> {
    Box::new(Trickle {
        data,
        pos: 0,
        fail_at,
    })
}

#[test]
fn the_index_comes_first_and_the_rest_unpacks_in_every_compression() {
    for (name, data) in compressed(&backup(true)) {
        let size = data.len() as u64;
        let (index, archive) =
            open_stream(source(data, None), Layout::Backup, "backup/index.yaml").unwrap();
        assert_eq!(
            index.as_deref(),
            Some(&b"name: c1\nconfig: {}\n"[..]),
            "{name}"
        );
        // Only the head was read: not the whole stream.
        assert!(archive.bytes_read() < size, "{name}: read it all first");
        let t = tempfile::tempdir().unwrap();
        let mut last = 0;
        let written = archive
            .extract(t.path(), &Limits::none(), &mut |n| last = n)
            .unwrap();
        assert!(written >= 300_000, "{name}");
        assert_eq!(last, size, "{name}: progress ends at the stream's size");
        let big = fs::read(t.path().join("backup/container/rootfs/big")).unwrap();
        assert_eq!(big.len(), 300_000, "{name}");
        assert!(t.path().join("backup/index.yaml").is_file(), "{name}");
    }
}

#[test]
fn an_index_not_first_leaves_the_whole_stream_to_spool() {
    for (name, data) in compressed(&backup(false)) {
        let (index, archive) = open_stream(
            source(data.clone(), None),
            Layout::Backup,
            "backup/index.yaml",
        )
        .unwrap();
        assert_eq!(index, None, "{name}");
        let mut out = Vec::new();
        let n = archive.spool(&mut out).unwrap();
        assert_eq!(n as usize, data.len(), "{name}");
        assert_eq!(out, data, "{name}: the spool is the stream, byte for byte");
    }
}

#[test]
fn checks_and_caps_hold_on_the_stream() {
    // Outside the backup layout, in the head: refused before anything unpacks.
    let tar = build(&[Entry::file("etc/passwd", b"x")]);
    let e = open_stream(source(tar, None), Layout::Backup, "backup/index.yaml").unwrap_err();
    assert!(matches!(e, ImageError::UnsafePath(_)), "{e}");
    // Past the byte cap: refused while unpacking.
    let (_, archive) = open_stream(
        source(backup(true), None),
        Layout::Backup,
        "backup/index.yaml",
    )
    .unwrap();
    let t = tempfile::tempdir().unwrap();
    let e = archive
        .extract(t.path(), &Limits::bytes(100_000, "TEST"), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, ImageError::TooLarge(_)), "{e}");
    // A squashfs is no tarball.
    let e = open_stream(
        source(b"hsqs\0\0\0\0".to_vec(), None),
        Layout::Backup,
        "backup/index.yaml",
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::InvalidImage(_)), "{e}");
}

#[test]
fn a_source_breaking_half_way_fails_the_extraction() {
    for (name, data) in compressed(&backup(true)) {
        let half = data.len() / 2;
        let (index, archive) = open_stream(
            source(data, Some(half)),
            Layout::Backup,
            "backup/index.yaml",
        )
        .unwrap();
        assert!(index.is_some(), "{name}");
        let t = tempfile::tempdir().unwrap();
        let e = archive
            .extract(t.path(), &Limits::none(), &mut |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("gone"), "{name}: {e}");
    }
}
