//! Unit tests of volume streams that need no root: negotiation, the
//! header codec and its checks, the section framing (cut anywhere,
//! corrupted, aborted, capped), and a dir → dir stream between two pools
//! in temporary directories.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::{DirDriver, Pool};

use MigrationType::{BtrfsSend, Tar};

fn header() -> StreamHeader {
    StreamHeader {
        version: STREAM_VERSION,
        migration_type: Tar,
        kind: VolumeKind::Custom,
        name: "v1".into(),
        snapshots: vec!["s0".into(), "s1".into()],
        size: Some(64 << 20),
        meta: Some(VolumeMeta {
            description: "data".into(),
            config: [("user.x".to_string(), "1".to_string())].into(),
            created_at: "2024-01-01T00:00:00Z".into(),
        }),
        base: None,
    }
}

#[test]
fn the_receiver_picks_its_best_type_that_is_offered() {
    // btrfs both ways: btrfs send.
    assert_eq!(
        negotiate(&[BtrfsSend, Tar], &[BtrfsSend, Tar]).unwrap(),
        BtrfsSend
    );
    // dir → btrfs and btrfs → dir: tar.
    assert_eq!(negotiate(&[Tar], &[BtrfsSend, Tar]).unwrap(), Tar);
    assert_eq!(negotiate(&[BtrfsSend, Tar], &[Tar]).unwrap(), Tar);
    // The receiver's order decides, not the sender's.
    assert_eq!(
        negotiate(&[Tar, BtrfsSend], &[BtrfsSend, Tar]).unwrap(),
        BtrfsSend
    );
    assert_eq!(
        negotiate(&[BtrfsSend, Tar], &[Tar, BtrfsSend]).unwrap(),
        Tar
    );
    // Nothing in common.
    let e = negotiate(&[BtrfsSend], &[Tar]).unwrap_err();
    assert!(matches!(e, StorageError::Unsupported(_)), "{e}");
    assert!(
        e.to_string().contains("offered: btrfs; accepted: tar"),
        "{e}"
    );
    assert!(negotiate(&[], &[Tar]).is_err());
    // Names on the wire.
    for t in [BtrfsSend, Tar] {
        assert_eq!(MigrationType::parse(t.name()), Some(t));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!("\"{}\"", t.name())
        );
    }
    assert_eq!(MigrationType::parse("rsync"), None);
}

#[test]
fn headers_round_trip_and_bad_ones_are_refused() {
    let h = header();
    let mut buf = Vec::new();
    write_header(&mut buf, &h).unwrap();
    assert_eq!(&buf[..8], MAGIC);
    let mut r = &buf[..];
    assert_eq!(read_header(&mut r).unwrap(), h);
    assert!(r.is_empty(), "read exactly the header");
    let json = String::from_utf8_lossy(&buf[12..]).into_owned();
    assert!(
        json.contains(r#""type":"tar""#) && json.contains(r#""kind":"custom""#),
        "{json}"
    );

    // Cut anywhere: an error, never a header.
    for cut in 0..buf.len() {
        let e = read_header(&mut &buf[..cut]).unwrap_err();
        assert!(matches!(e, StorageError::Stream(_)), "cut at {cut}: {e}");
    }
    // Not a stream.
    let e = read_header(&mut &b"GARBAGE!\0\0\0\x02{}"[..]).unwrap_err();
    assert!(e.to_string().contains("bad magic"), "{e}");
    // An absurd length is refused before anything is allocated.
    let mut huge = MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(read_header(&mut &huge[..]).is_err());

    let refused = |mutate: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::to_value(header()).unwrap();
        mutate(&mut v);
        let body = serde_json::to_vec(&v).unwrap();
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(&body);
        read_header(&mut &buf[..]).unwrap_err().to_string()
    };
    let e = refused(&|v| v["snapshots"] = serde_json::json!(["s0", "../x"]));
    assert!(e.contains("must not contain '/'"), "{e}");
    let e = refused(&|v| v["name"] = serde_json::json!(".."));
    assert!(e.contains("'..'"), "{e}");
    let e = refused(&|v| v["name"] = serde_json::json!(".staging-x"));
    assert!(e.contains("must not start with '.'"), "{e}");
    let e = refused(&|v| v["snapshots"] = serde_json::json!(["s0", "s0"]));
    assert!(e.contains("listed twice"), "{e}");
    let e = refused(&|v| v["kind"] = serde_json::json!("image"));
    assert!(e.contains("image volumes"), "{e}");
    let e = refused(&|v| v["version"] = serde_json::json!(2));
    assert!(e.contains("version 2"), "{e}");
    let e = refused(&|v| v["type"] = serde_json::json!("rsync"));
    assert!(e.contains("invalid stream header"), "{e}");
    let e = refused(&|v| v["parent"] = serde_json::json!("s0"));
    assert!(e.contains("unknown field"), "{e}");
    // A refresh's base: a snapshot name, and not one of those sent.
    let e = refused(&|v| v["base"] = serde_json::json!("s0"));
    assert!(e.contains("base snapshot \"s0\" is also sent"), "{e}");
    let e = refused(&|v| v["base"] = serde_json::json!("../x"));
    assert!(e.contains("must not contain '/'"), "{e}");
    let e = refused(&|v| v["kind"] = serde_json::json!("container"));
    assert!(e.contains("only custom volumes"), "{e}");
    let many: Vec<String> = (0..=MAX_SNAPSHOTS).map(|i| format!("s{i}")).collect();
    let e = refused(&|v| v["snapshots"] = serde_json::json!(many));
    assert!(e.contains("at most"), "{e}");
}

/// A section holding `data`, written in pieces of `piece` bytes.
fn section(data: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = SectionWriter::new(&mut out);
    for c in data.chunks(piece.max(1)) {
        w.write_all(c).unwrap();
    }
    assert_eq!(w.finish().unwrap(), data.len() as u64);
    out
}

fn read_section(buf: &[u8]) -> (std::result::Result<Vec<u8>, String>, usize) {
    let mut r = buf;
    let mut s = SectionReader::new(&mut r, "snapshot s0");
    let mut got = Vec::new();
    let res = s
        .read_to_end(&mut got)
        .map(|_| got)
        .map_err(|e| e.to_string());
    let res = res.and_then(|g| s.finish().map(|_| g).map_err(|e| e.to_string()));
    (res, r.len())
}

#[test]
fn sections_hand_out_exactly_their_bytes_or_an_error() {
    let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i * 7 % 251) as u8).collect();
    let mut buf = section(&data, 100_000);
    buf.extend_from_slice(TRAILER);
    let (got, left) = read_section(&buf);
    assert_eq!(got.unwrap(), data);
    assert_eq!(left, TRAILER.len(), "the next frame is left alone");
    read_trailer(&mut &buf[buf.len() - 8..]).unwrap();
    // An empty section.
    let (got, _) = read_section(&section(b"", 1));
    assert_eq!(got.unwrap(), b"");

    // Cut at any frame boundary and inside frames: an error.
    let small = section(&data[..5000], 700);
    for cut in (0..small.len()).step_by(97).chain([small.len() - 1]) {
        let (got, _) = read_section(&small[..cut]);
        let e = got.unwrap_err();
        assert!(e.contains("ended inside snapshot s0"), "cut at {cut}: {e}");
    }
    // A flipped data byte: the CRC says so.
    let mut bad = small.clone();
    bad[10] ^= 1;
    let e = read_section(&bad).0.unwrap_err();
    assert!(e.contains("does not check out"), "{e}");
    // A wrong count too.
    let mut bad = small.clone();
    let at = bad.len() - 5;
    bad[at] ^= 1;
    let e = read_section(&bad).0.unwrap_err();
    assert!(e.contains("does not check out"), "{e}");
    // A chunk too large to be one of ours.
    let mut bad = (64u32 << 20).to_be_bytes().to_vec();
    bad.extend_from_slice(&[0; 64]);
    let e = read_section(&bad).0.unwrap_err();
    assert!(e.contains("a chunk of"), "{e}");
    // The sender's failure arrives as such.
    let mut aborted = Vec::new();
    let mut w = SectionWriter::new(&mut aborted);
    w.write_all(b"partial").unwrap();
    w.flush().unwrap();
    w.abort("tar failed: disk on fire");
    let e = read_section(&aborted).0.unwrap_err();
    assert!(
        e.contains("the sender failed in snapshot s0: tar failed: disk on fire"),
        "{e}"
    );
    // What follows a stream's last section must be its trailer.
    assert!(read_trailer(&mut &b"KANTEVS1"[..]).is_err());
    assert!(read_trailer(&mut &b"KANTE"[..]).is_err());
}

#[test]
fn sections_stop_at_their_caps() {
    let data = vec![1u8; 10_000];
    let buf = section(&data, 3000);
    let mut r = &buf[..];
    let mut s = SectionReader::new(&mut r, "the volume").with_caps(Some(5000), None);
    let e = s.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("cap of 5000 bytes"), "{e}");
    assert!(s.failure().unwrap().contains("cap"));
    let mut r = &buf[..];
    let past = Instant::now() - std::time::Duration::from_secs(1);
    let mut s = SectionReader::new(&mut r, "the volume").with_caps(None, Some(past));
    let e = s.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("took too long"), "{e}");
    // A consumer's error is explained by the framing failure behind it.
    let explained = s.explain(StorageError::Command("tar: unexpected EOF".into()));
    assert!(
        explained.to_string().contains("took too long"),
        "{explained}"
    );
}

fn dir_pool(root: &Path, name: &str) -> Pool {
    let base = root.join(name);
    crate::create_layout(&base).unwrap();
    Pool {
        name: name.into(),
        base,
        config: Default::default(),
        driver: Arc::new(DirDriver),
    }
}

/// Every entry (hidden ones included) below the pool's volume and
/// snapshot directories.
fn everything(pool: &Pool) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["custom", "custom-snapshots", "custom-meta"] {
        for e in std::fs::read_dir(pool.base.join(d)).unwrap().flatten() {
            out.push(format!("{d}/{}", e.file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_custom_volume_streams_between_dir_pools_all_or_nothing() {
    let t = std::env::temp_dir().join(format!("kstorage-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&t);
    let (a, b) = (dir_pool(&t, "a"), dir_pool(&t, "b"));
    let meta = VolumeMeta {
        description: "data".into(),
        config: [("user.k".to_string(), "v".to_string())].into(),
        created_at: "2024-01-01T00:00:00Z".into(),
    };
    let v = a.create_custom_volume("v1", None).unwrap();
    std::fs::write(v.join("f"), "0").unwrap();
    a.snapshot(VolumeKind::Custom, "v1", "s0").unwrap();
    std::fs::write(v.join("f"), "1").unwrap();
    let snaps = vec!["s0".to_string()];
    assert_eq!(
        a.send_types(VolumeKind::Custom, "v1", &snaps).unwrap(),
        [Tar]
    );

    let mut stream = Vec::new();
    let sent = a
        .send_volume(
            VolumeKind::Custom,
            "v1",
            &snaps,
            Tar,
            Some(&meta),
            &mut stream,
        )
        .unwrap();
    assert_eq!(sent.sections, 2);

    // Cut anywhere (a sample of places): an error, and nothing left.
    let before = everything(&b);
    let step = (stream.len() / 23).max(1);
    for cut in (0..stream.len()).step_by(step).chain([stream.len() - 1]) {
        let e = b
            .receive_volume(&mut &stream[..cut], &ReceiveOptions::default())
            .unwrap_err();
        assert!(matches!(e, StorageError::Stream(_)), "cut at {cut}: {e}");
        assert_eq!(everything(&b), before, "cut at {cut} left something");
    }

    let got = b
        .receive_volume(&mut &stream[..], &ReceiveOptions::default())
        .unwrap();
    assert_eq!(
        (got.name.as_str(), got.snapshots.as_slice()),
        ("v1", &snaps[..])
    );
    assert_eq!(got.meta.as_ref(), Some(&meta));
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(b.volume_path(VolumeKind::Custom, "v1").join("f")), "1");
    assert_eq!(
        read(
            b.snapshot_path(VolumeKind::Custom, "v1", "s0")
                .unwrap()
                .join("f")
        ),
        "0"
    );
    // Once there, a second receive of the name is refused up front.
    let e = b
        .receive_volume(&mut &stream[..], &ReceiveOptions::default())
        .unwrap_err();
    assert!(matches!(e, StorageError::Exists(_)), "{e}");
    // A size limit a dir pool cannot enforce is refused before anything is
    // made, unless the receiver drops it.
    let sized = ReceiveOptions {
        name: Some("v2".into()),
        size: Some(Some(1 << 30)),
        ..Default::default()
    };
    let e = b.receive_volume(&mut &stream[..], &sized).unwrap_err();
    assert!(matches!(e, StorageError::Unsupported(_)), "{e}");
    // A type the receiver did not accept.
    let only_btrfs = ReceiveOptions {
        accept: vec![BtrfsSend],
        ..Default::default()
    };
    let e = b.receive_volume(&mut &stream[..], &only_btrfs).unwrap_err();
    assert!(e.to_string().contains("accepts"), "{e}");
    // The volume and its snapshots; its record is the caller's to keep.
    assert_eq!(everything(&b), ["custom-snapshots/v1", "custom/v1"]);
    std::fs::remove_dir_all(&t).unwrap();
}
