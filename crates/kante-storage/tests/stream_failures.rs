//! Volume streams that fail: cut anywhere, corrupted, aborted by their
//! sender, carrying an entry the receiver refuses (an escaping name or
//! symlink, a device node, a btrfs section that is not one read-only
//! subvolume), or naming a volume that exists. Each leaves the receiving
//! pool exactly as it was (nothing made, nothing lost, on dir and btrfs),
//! and a good stream is received after them. Root only for btrfs; the
//! tests take the host-wide test lock and clean up what they make.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::streams::*;
use common::*;
use kante_storage::stream::{write_header, write_trailer, SectionWriter, STREAM_VERSION};
use kante_storage::{MigrationType, Pool, ReceiveOptions, StorageError, StreamHeader, VolumeKind};

const CUSTOM: VolumeKind = VolumeKind::Custom;

fn make_pool(s: &Scratch, driver: &str, name: &str) -> Pool {
    match driver {
        "btrfs" => s.pool("btrfs", name, &[("size", "512MiB")]),
        _ => s.pool("dir", name, &[]),
    }
}

/// Custom volume `name` with snapshots s0 and s1 and a live generation.
fn make_volume(pool: &Pool, name: &str) -> Vec<String> {
    let root = pool.create_custom_volume(name, None).unwrap();
    populate(&root, 0, 256 << 10);
    pool.snapshot(CUSTOM, name, "s0").unwrap();
    populate(&root, 1, 0);
    pool.snapshot(CUSTOM, name, "s1").unwrap();
    populate(&root, 2, 0);
    vec!["s0".into(), "s1".into()]
}

type Trees = Vec<std::collections::BTreeMap<String, Node>>;

/// The receiving pool as a test sees it: the state of the whole pool and
/// the trees of the volume `name` it holds, with its snapshots `snaps`.
fn picture_of(pool: &Pool, name: &str, snaps: &[&str]) -> (Vec<String>, Trees) {
    let trees = trees_of(pool, CUSTOM, name, snaps)
        .iter()
        .map(|p| tree(p))
        .collect();
    (pool_state(pool), trees)
}

fn picture(pool: &Pool) -> (Vec<String>, Trees) {
    picture_of(pool, "keep", &["s0", "s1"])
}

fn receive(pool: &Pool, stream: &[u8]) -> kante_storage::Result<kante_storage::stream::Received> {
    pool.receive_volume(&mut &stream[..], &ReceiveOptions::default())
}

fn cuts_and_corruption(driver: &str, ty: MigrationType) {
    let _l = lock();
    if driver == "btrfs" && !btrfs_ready() {
        return;
    }
    let s = Scratch::new(&format!("streamcut-{driver}-{}", ty.name()));
    let (a, b) = (make_pool(&s, driver, "a"), make_pool(&s, driver, "b"));
    let snaps = make_volume(&a, "v");
    make_volume(&b, "keep");
    let stream = send_to_vec(&a, CUSTOM, "v", &snaps, ty);
    let ends = section_ends(&stream);
    let [head, s0, s1, vol] = ends[..] else {
        panic!("sections at {ends:?}")
    };
    let before = picture(&b);
    let check = |bytes: &[u8], says: &str, what: &str| {
        let e = receive(&b, bytes).map(|r| r.name).unwrap_err();
        assert!(matches!(e, StorageError::Stream(_)), "{what}: {e}");
        assert!(e.to_string().contains(says), "{what}: {e}");
        assert_eq!(picture(&b), before, "{what}: the receiving pool changed");
    };

    // Cut anywhere: in the header, inside and between sections, in the
    // trailer. Only the trailer makes a stream whole.
    let mut cuts = vec![0, 5, head - 1, head, vol + 4, stream.len() - 1];
    for (start, end) in [(head, s0), (s0, s1), (s1, vol)] {
        cuts.extend([start + 3, (start + end) / 2, end - 1, end]);
    }
    for cut in cuts {
        check(
            &stream[..cut],
            "",
            &format!("cut at {cut} of {}", stream.len()),
        );
    }
    // A flipped byte in any section.
    for (start, end) in [(head, s0), (s0, s1), (s1, vol)] {
        let mut bad = stream.clone();
        bad[(start + end) / 2] ^= 0x20;
        check(
            &bad,
            "",
            &format!("a byte flipped at {}", (start + end) / 2),
        );
    }
    // Something after the last section that is not the trailer.
    let mut bad = stream.clone();
    bad[vol..].copy_from_slice(b"KANTEVS1");
    check(&bad, "goes on after its last section", "a wrong trailer");

    // The sender's failure in the middle of a section, said as such.
    let mut aborted = stream[..s0].to_vec();
    let first_chunk = u32::from_be_bytes(stream[s0..s0 + 4].try_into().unwrap()) as usize;
    let mut w = SectionWriter::new(&mut aborted);
    w.write_all(&stream[s0 + 4..s0 + 4 + first_chunk.min(1024)])
        .unwrap();
    w.flush().unwrap();
    w.abort("tar: ./f: Cannot open: Input/output error");
    check(
        &aborted,
        "the sender failed in snapshot s1: tar: ./f: Cannot open",
        "an abort frame",
    );

    // After all that, the stream itself is received whole.
    let got = receive(&b, &stream).unwrap();
    assert_eq!(got.snapshots, snaps);
    let sent: Vec<_> = trees_of(&a, CUSTOM, "v", &["s0", "s1"])
        .iter()
        .map(|p| tree(p))
        .collect();
    let recv: Vec<_> = trees_of(&b, CUSTOM, "v", &["s0", "s1"])
        .iter()
        .map(|p| tree(p))
        .collect();
    assert_eq!(recv, sent);
    for p in [&a, &b] {
        for n in ["v", "keep"] {
            if p.has_volume(CUSTOM, n) {
                p.delete_custom_volume(n).unwrap();
            }
        }
        p.driver.delete_pool(&p.base, &p.config).unwrap();
    }
    s.assert_clean();
}

#[test]
fn cut_or_corrupt_tar_streams_leave_nothing_dir() {
    cuts_and_corruption("dir", MigrationType::Tar);
}

#[test]
fn cut_or_corrupt_tar_streams_leave_nothing_btrfs() {
    cuts_and_corruption("btrfs", MigrationType::Tar);
}

#[test]
fn cut_or_corrupt_btrfs_streams_leave_nothing() {
    cuts_and_corruption("btrfs", MigrationType::BtrfsSend);
}

/// Appends one ustar entry (a header block, then `data` padded to blocks).
fn tar_entry(out: &mut Vec<u8>, name: &str, typeflag: u8, link: &str, data: &[u8], mode: u32) {
    fn octal(h: &mut [u8], v: u64) {
        let s = format!("{:0w$o}\0", v, w = h.len() - 1);
        h.copy_from_slice(s.as_bytes());
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// A tar archive of `entries` (name, typeflag, link target, data).
fn tar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    tar_entry(&mut out, "./", b'5', "", b"", 0o755);
    for (name, t, link, data) in entries {
        tar_entry(&mut out, name, *t, link, data, 0o644);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A well-framed stream of volume `name` whose sections are `sections`.
fn crafted(name: &str, ty: MigrationType, snapshots: &[&str], sections: &[Vec<u8>]) -> Vec<u8> {
    let header = StreamHeader {
        version: STREAM_VERSION,
        migration_type: ty,
        kind: CUSTOM,
        name: name.into(),
        snapshots: snapshots.iter().map(|s| s.to_string()).collect(),
        size: None,
        meta: None,
        base: None,
    };
    let mut out = Vec::new();
    write_header(&mut out, &header).unwrap();
    for sec in sections {
        let mut w = SectionWriter::new(&mut out);
        w.write_all(sec).unwrap();
        w.finish().unwrap();
    }
    write_trailer(&mut out).unwrap();
    out
}

#[test]
fn refused_tar_entries_leave_nothing() {
    let _l = lock();
    let s = Scratch::new("streamrefuse");
    let (a, b) = (make_pool(&s, "dir", "a"), make_pool(&s, "dir", "b"));
    make_volume(&b, "keep");
    let before = picture(&b);
    let outside = s.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let out = outside.to_str().unwrap();
    let check = |stream: &[u8], says: &str, what: &str| {
        let e = receive(&b, stream).map(|r| r.name).unwrap_err();
        assert!(matches!(e, StorageError::Stream(_)), "{what}: {e}");
        assert!(e.to_string().contains(says), "{what}: {e}");
        assert_eq!(picture(&b), before, "{what}: the receiving pool changed");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{what}");
    };
    let good = tar(&[("./f", b'0', "", b"fine")]);
    // A symlink out of the tree, then a file written through it.
    let evil = tar(&[("./l", b'2', out, b""), ("./l/pwned", b'0', "", b"x")]);
    check(
        &crafted("evil", MigrationType::Tar, &[], std::slice::from_ref(&evil)),
        "symlink",
        "through a symlink",
    );
    // The same in a snapshot, the first section: nothing made either.
    check(
        &crafted("evil", MigrationType::Tar, &["s0"], &[evil, good.clone()]),
        "symlink",
        "through a symlink in a snapshot",
    );
    // Names and hard links out of the tree.
    let up = tar(&[("./../../../../outside/up", b'0', "", b"x")]);
    check(
        &crafted("evil", MigrationType::Tar, &[], &[up]),
        "",
        "a name with ..",
    );
    let abs = format!("{out}/abs");
    let abs = tar(&[(abs.as_str(), b'0', "", b"x")]);
    check(
        &crafted("evil", MigrationType::Tar, &[], &[abs]),
        "",
        "an absolute name",
    );
    let hard = tar(&[("./h", b'1', "../../../../../etc/passwd", b"")]);
    check(
        &crafted("evil", MigrationType::Tar, &[], &[hard]),
        "",
        "a hard link out",
    );
    // A device node crafted, and one sent from a real volume.
    let dev = tar(&[("./null", b'3', "", b"")]);
    check(
        &crafted("evil", MigrationType::Tar, &[], &[dev]),
        "device node",
        "a crafted device node",
    );
    let snaps = make_volume(&a, "dev");
    let root = a.volume_path(CUSTOM, "dev");
    nix::sys::stat::mknod(
        &root.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let stream = send_to_vec(&a, CUSTOM, "dev", &snaps, MigrationType::Tar);
    check(
        &stream,
        "device node \"./null\"",
        "a device node in the volume",
    );
    // The same stream through a pipe: the receiver's refusal stops the
    // sender or lets it finish; either way nothing is made.
    let (_, got) = transfer(
        &a,
        &b,
        CUSTOM,
        "dev",
        &snaps,
        MigrationType::Tar,
        &Default::default(),
    );
    assert!(got.unwrap_err().to_string().contains("device node"));
    assert_eq!(picture(&b), before);
    // A section that is not a tar at all, and a good one.
    check(
        &crafted("evil", MigrationType::Tar, &[], &[vec![7u8; 4096]]),
        "",
        "not a tar",
    );
    let got = receive(&b, &crafted("fine", MigrationType::Tar, &[], &[good])).unwrap();
    assert_eq!(got.name, "fine");
    assert_eq!(read(&b.volume_path(CUSTOM, "fine").join("f")), "fine");
    for p in [&a, &b] {
        for n in ["dev", "keep", "fine"] {
            if p.has_volume(CUSTOM, n) {
                p.delete_custom_volume(n).unwrap();
            }
        }
        p.driver.delete_pool(&p.base, &p.config).unwrap();
    }
}

/// `btrfs send` of `path` (with `-p parent`), as bytes.
fn btrfs_send(path: &Path, parent: Option<&Path>) -> Vec<u8> {
    let mut cmd = Command::new("btrfs");
    cmd.args(["send", "--quiet"]);
    if let Some(p) = parent {
        cmd.arg("-p").arg(p);
    }
    let out = cmd.arg(path).output().unwrap();
    assert!(out.status.success(), "btrfs send {}", path.display());
    out.stdout
}

#[test]
fn refused_btrfs_sections_and_sender_aborts_leave_nothing() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("streamrefuseb");
    let (a, b) = (make_pool(&s, "btrfs", "a"), make_pool(&s, "btrfs", "b"));
    let snaps = make_volume(&a, "v");
    make_volume(&b, "keep");
    let before = picture(&b);
    let check = |stream: &[u8], says: &str, what: &str| {
        let e = receive(&b, stream).map(|r| r.name).unwrap_err();
        assert!(matches!(e, StorageError::Stream(_)), "{what}: {e}");
        assert!(e.to_string().contains(says), "{what}: {e}");
        assert_eq!(picture(&b), before, "{what}: the receiving pool changed");
    };
    let [s0, s1, _] = &trees_of(&a, CUSTOM, "v", &["s0", "s1"])[..] else {
        unreachable!()
    };
    let bt = MigrationType::BtrfsSend;
    // Two subvolumes in one section.
    let mut two = btrfs_send(s0, None);
    two.extend(btrfs_send(s1, Some(s0)));
    let one = btrfs_send(s0, None);
    check(
        &crafted("x", bt, &["s0"], &[two, one.clone()]),
        "made 2 entries",
        "two subvolumes",
    );
    // A section that is no btrfs stream.
    check(
        &crafted("x", bt, &[], &[tar(&[])]),
        "btrfs receive",
        "a tar as btrfs",
    );
    // A difference whose parent was never sent.
    let orphan = btrfs_send(s1, Some(s0));
    check(
        &crafted("x", bt, &[], &[orphan]),
        "",
        "a difference without its parent",
    );

    // A sender that fails in the middle: a snapshot that is no longer
    // read-only cannot be sent; the receiver says why, and makes nothing.
    let ro = |v: &str| {
        let st = Command::new("btrfs")
            .args(["property", "set", "-f", "-ts"])
            .arg(s1)
            .args(["ro", v])
            .status()
            .unwrap();
        assert!(st.success());
    };
    ro("false");
    let (sent, got) = transfer(&a, &b, CUSTOM, "v", &snaps, bt, &Default::default());
    ro("true");
    assert!(sent.is_err());
    let e = got.unwrap_err();
    assert!(
        e.to_string().contains("the sender failed in snapshot s1"),
        "{e}"
    );
    assert_eq!(picture(&b), before);
    // The sender left no read-only copy behind either.
    for line in pool_state(&a) {
        assert!(!line.contains(".sending-"), "{line}");
    }
    for p in [&a, &b] {
        for n in ["v", "keep"] {
            if p.has_volume(CUSTOM, n) {
                p.delete_custom_volume(n).unwrap();
            }
        }
        p.driver.delete_pool(&p.base, &p.config).unwrap();
    }
    s.assert_clean();
}

fn names_in_use(driver: &str, ty: MigrationType) {
    let _l = lock();
    if driver == "btrfs" && !btrfs_ready() {
        return;
    }
    let s = Scratch::new(&format!("streamnames-{driver}"));
    let (a, b) = (make_pool(&s, driver, "a"), make_pool(&s, driver, "b"));
    let snaps = make_volume(&a, "v");
    // The receiver's own v: other content, another snapshot.
    let mine = b.create_custom_volume("v", None).unwrap();
    std::fs::write(mine.join("mine"), "precious").unwrap();
    b.snapshot(CUSTOM, "v", "s0").unwrap();
    std::fs::write(mine.join("mine"), "more precious").unwrap();
    // A leftover of a v2 (its snapshots directory). A volume's record is
    // its caller's state, not the pool's: the caller checks the name there
    // before it receives.
    let v2 = b.snapshots_dir(CUSTOM, "v2").unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("note"), "v2's").unwrap();
    let before = picture_of(&b, "v", &["s0"]);
    let stream = send_to_vec(&a, CUSTOM, "v", &snaps, ty);
    for name in ["v", "v2"] {
        let opts = ReceiveOptions {
            name: Some(name.into()),
            ..Default::default()
        };
        let e = b.receive_volume(&mut &stream[..], &opts).unwrap_err();
        assert!(matches!(e, StorageError::Exists(_)), "{name}: {e}");
        assert_eq!(picture_of(&b, "v", &["s0"]), before, "{name}");
    }
    assert_eq!(read(&mine.join("mine")), "more precious");
    assert_eq!(
        read(&b.snapshot_path(CUSTOM, "v", "s0").unwrap().join("mine")),
        "precious"
    );
    assert_eq!(read(&v2.join("note")), "v2's");
    // Under a free name it arrives.
    let opts = ReceiveOptions {
        name: Some("v4".into()),
        ..Default::default()
    };
    let got = b.receive_volume(&mut &stream[..], &opts).unwrap();
    assert_eq!((got.name.as_str(), got.snapshots), ("v4", snaps));
    assert_eq!(
        tree(&b.volume_path(CUSTOM, "v4")),
        tree(&a.volume_path(CUSTOM, "v"))
    );
    std::fs::remove_file(v2.join("note")).unwrap();
    std::fs::remove_dir(&v2).unwrap();
    for p in [&a, &b] {
        for n in ["v", "v4"] {
            if p.has_volume(CUSTOM, n) {
                p.delete_custom_volume(n).unwrap();
            }
        }
        p.driver.delete_pool(&p.base, &p.config).unwrap();
    }
    s.assert_clean();
}

#[test]
fn a_name_in_use_is_refused_and_untouched_dir() {
    names_in_use("dir", MigrationType::Tar);
}

#[test]
fn a_name_in_use_is_refused_and_untouched_btrfs() {
    names_in_use("btrfs", MigrationType::BtrfsSend);
}

/// What a daemon that died in the middle of a receive and of a send
/// leaves (read-only subvolumes in the staging snapshots directory, the
/// volume's staging subvolume, a send's read-only copy) is removed at the
/// next start, and nothing else is.
#[test]
fn a_crash_in_the_middle_leaves_what_the_next_start_removes() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("streamcrash");
    let (a, b) = (make_pool(&s, "btrfs", "a"), make_pool(&s, "btrfs", "b"));
    make_volume(&a, "v");
    make_volume(&b, "keep");
    let before = picture(&b);
    // The receive's own steps, stopped before its commit: s0 received
    // read-only, s1 sealed by tar, the volume staged.
    let staging = b.base.join("custom-snapshots/.staging-v");
    std::fs::create_dir(&staging).unwrap();
    let mut rx = Command::new("btrfs")
        .args(["receive", "--quiet", "--chroot"])
        .arg(&staging)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let s0 = a.snapshot_path(CUSTOM, "v", "s0").unwrap();
    rx.stdin
        .take()
        .unwrap()
        .write_all(&btrfs_send(&s0, None))
        .unwrap();
    assert!(rx.wait().unwrap().success());
    assert!(subvolume_show(&staging.join("s0"))["Flags"].contains("readonly"));
    b.driver.create_volume(&staging.join("s1")).unwrap();
    b.driver.seal_volume(&staging.join("s1")).unwrap();
    b.driver
        .create_volume(&b.base.join("custom/.staging-v"))
        .unwrap();
    // A send's read-only copy of the live volume.
    let vol = a.volume_path(CUSTOM, "v");
    let copy = a.base.join("custom/.sending-v.1.0");
    let st = Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(&vol)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(st.status.success());

    b.remove_staging_leftovers();
    a.remove_staging_leftovers();
    assert_eq!(picture(&b), before, "the receive's leftovers are gone");
    assert!(!copy.exists(), "the send's copy is gone");
    assert!(a.has_volume(CUSTOM, "v") && a.has_snapshot(CUSTOM, "v", "s1"));
    for p in [&a, &b] {
        for n in ["v", "keep"] {
            if p.has_volume(CUSTOM, n) {
                p.delete_custom_volume(n).unwrap();
            }
        }
        p.driver.delete_pool(&p.base, &p.config).unwrap();
    }
    s.assert_clean();
}
