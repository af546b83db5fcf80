//! Volume streams between real pools (root only for btrfs, on loop files;
//! the tests take the host-wide test lock and clean up what they make):
//! a volume with two snapshots goes pool → pipe → pool, dir→dir,
//! dir→btrfs, btrfs→dir and btrfs→btrfs, and arrives byte for byte with
//! its owners, modes, setuid bits, xattrs, ACL, hard links, symlinks,
//! holes and file times, each snapshot as it was; between btrfs pools
//! each snapshot travels as the difference from the one before.

mod common;

use std::os::unix::fs::MetadataExt;

use common::streams::*;
use common::*;
use kante_storage::{negotiate, MigrationType, Pool, ReceiveOptions, VolumeKind, VolumeMeta};

const BIG: usize = 8 << 20;

fn make_pool(s: &Scratch, driver: &str, name: &str) -> Pool {
    match driver {
        "btrfs" => s.pool("btrfs", name, &[("size", "1GiB")]),
        _ => s.pool("dir", name, &[]),
    }
}

fn meta(size: Option<u64>) -> VolumeMeta {
    let mut m = common::streams::custom_meta();
    if let Some(n) = size {
        m.config
            .insert("size".into(), kante_storage::format_size(n));
    }
    m
}

/// Volume `v` of `kind` with snapshots s0 and s1 and a live generation.
fn make_history(pool: &Pool, kind: VolumeKind, size: Option<u64>, big: usize) -> Vec<String> {
    let root = match kind {
        VolumeKind::Custom => pool.create_custom_volume("v", size).unwrap(),
        _ => pool.create_instance_empty("v").unwrap(),
    };
    populate(&root, 0, big);
    pool.snapshot(kind, "v", "s0").unwrap();
    populate(&root, 1, big);
    pool.snapshot(kind, "v", "s1").unwrap();
    populate(&root, 2, big);
    vec!["s0".into(), "s1".into()]
}

/// Asserts two trees are equal, naming the first entry that differs.
fn assert_same_tree(
    want: &std::collections::BTreeMap<String, Node>,
    got: &std::collections::BTreeMap<String, Node>,
    what: &str,
) {
    let names =
        |t: &std::collections::BTreeMap<String, Node>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: entries");
    for (k, w) in want {
        assert_eq!(&got[k], w, "{what}: entry {k:?}");
    }
}

fn round_trip(from: &str, to: &str, kind: VolumeKind, expect: MigrationType) {
    let _l = lock();
    if (from == "btrfs" || to == "btrfs") && !btrfs_ready() {
        return;
    }
    let s = Scratch::new(&format!("stream-{from}-{to}"));
    let (a, b) = (make_pool(&s, from, "a"), make_pool(&s, to, "b"));
    let both_btrfs = from == "btrfs" && to == "btrfs";
    let size = (both_btrfs && kind == VolumeKind::Custom).then_some(256u64 << 20);
    let snaps = make_history(&a, kind, size, BIG);
    let paths = trees_of(&a, kind, "v", &["s0", "s1"]);
    let sent_trees: Vec<_> = paths.iter().map(|p| tree(p)).collect();

    // The receiver picks its best type among those offered.
    let offered = a.send_types(kind, "v", &snaps).unwrap();
    let ty = negotiate(&offered, &b.receive_types()).unwrap();
    assert_eq!(
        ty,
        expect,
        "offered {offered:?}, accepted {:?}",
        b.receive_types()
    );

    let used_before = fs_used(&b.base);
    let (sent, got) = transfer(&a, &b, kind, "v", &snaps, ty, &ReceiveOptions::default());
    let got = got.unwrap();
    let sent = sent.unwrap();
    assert_eq!((sent.migration_type, sent.sections), (ty, 3));
    assert_eq!((got.migration_type, got.bytes), (ty, sent.bytes));
    assert_eq!((got.name.as_str(), &got.snapshots), ("v", &snaps));
    assert_eq!(b.list_snapshots(kind, "v"), snaps);

    // Every tree arrived as it was sent, and the source is untouched.
    let recv = trees_of(&b, kind, "v", &["s0", "s1"]);
    let got_trees: Vec<_> = recv.iter().map(|p| tree(p)).collect();
    for (i, what) in ["snapshot s0", "snapshot s1", "the volume"]
        .iter()
        .enumerate()
    {
        assert_same_tree(&sent_trees[i], &got_trees[i], what);
    }
    let again: Vec<_> = paths.iter().map(|p| tree(p)).collect();
    assert_eq!(again, sent_trees, "the source changed");

    // What that equality covers, spelled out.
    let [g0, g1, live] = &got_trees[..] else {
        unreachable!()
    };
    assert_eq!(g0["f"].data, b"generation 0");
    assert_eq!(g1["f"].data, b"generation 1");
    assert_eq!(live["f"].data, b"the live volume");
    assert!(g0.contains_key("gone") && !g1.contains_key("gone"));
    assert!(g1.contains_key("dir/nested") && !live.contains_key("dir/nested"));
    assert_eq!(live["new2"].xattrs["user.live"], "0x796573");
    let f = &live["f"];
    assert_eq!(
        (f.mode & 0o7777, f.uid, f.gid, f.nlink),
        (0o640, 1000, 1001, 2)
    );
    assert_eq!(f.mtime, 1_400_000_000);
    assert_eq!(f.xattrs["user.note"], "0x68656c6c6f");
    assert_eq!(f.xattrs["trusted.t"], "0x000162696e617279");
    assert_eq!(live["suid"].mode & 0o7777, 0o4755);
    assert_eq!((live[""].mode & 0o7777, live[""].uid), (0o751, 1000));
    assert_eq!((live["dir"].uid, live["dir"].gid), (1234, 1234));
    let acl: String = ACL.iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(
        live["dir"].xattrs["system.posix_acl_access"],
        format!("0x{acl}")
    );
    assert_eq!(live["sym-abs"].data, b"/etc/passwd");
    assert_eq!(
        (live["sym-rel"].kind, live["sym-rel"].uid),
        ("symlink", 1000)
    );
    assert_eq!(live["big"].data.len(), BIG);
    assert_eq!(
        live[&format!("dir/{}", "n".repeat(150))].data,
        b"a long name"
    );
    assert_eq!(live["with space é"].data, b"spaced");
    assert_eq!((live["fifo"].kind, live["fifo"].mode), ("other", 0o10620));
    let vol = &recv[2];
    assert_eq!(
        std::fs::metadata(vol.join("f")).unwrap().ino(),
        std::fs::metadata(vol.join("hard")).unwrap().ino(),
        "the hard link is one inode"
    );
    assert!(
        allocated(&vol.join("sparse")) < 1 << 20,
        "the sparse file stayed sparse ({} bytes allocated)",
        allocated(&vol.join("sparse"))
    );
    if kind == VolumeKind::Custom {
        assert_eq!(got.meta, Some(meta(size)));
    }
    if to == "btrfs" {
        for p in &recv[..2] {
            let show = subvolume_show(p);
            assert!(
                show["Flags"].contains("readonly"),
                "{}: {show:?}",
                p.display()
            );
        }
        let show = subvolume_show(vol);
        assert!(
            !show["Flags"].contains("readonly"),
            "the volume is writable"
        );
    }
    std::fs::write(vol.join("written"), "after").unwrap();
    assert_eq!(b.volume_size(kind, "v").unwrap(), size);

    // Between btrfs pools only differences travel: the big file, in every
    // tree, is sent (and stored) once; tar sends it with each tree.
    let grew = fs_used(&b.base).saturating_sub(used_before);
    if ty == MigrationType::BtrfsSend {
        assert!(sent.bytes < (BIG + BIG / 2) as u64, "sent {}", sent.bytes);
        let s1 = subvolume_show(&recv[1]);
        assert_eq!(s1["Parent UUID"], subvolume_show(&recv[0])["UUID"]);
        assert_ne!(s1["Received UUID"], "-");
        assert!(grew < 2 * BIG as u64, "the receiving pool grew by {grew}");
    } else {
        assert!(sent.bytes > 3 * BIG as u64, "sent {}", sent.bytes);
    }
    assert_no_leftovers(&a);
    assert_no_leftovers(&b);

    if both_btrfs {
        // A receiver that does not trust the sender with `btrfs receive`
        // narrows its list: the pools fall back to tar.
        let ty = negotiate(&offered, &[MigrationType::Tar]).unwrap();
        assert_eq!(ty, MigrationType::Tar);
        let opts = ReceiveOptions {
            name: Some("w".into()),
            accept: vec![MigrationType::Tar],
            ..Default::default()
        };
        let (sent, got) = transfer(&a, &b, kind, "v", &snaps, ty, &opts);
        assert_eq!(sent.unwrap().migration_type, MigrationType::Tar);
        assert_eq!(got.unwrap().name, "w");
        let w = trees_of(&b, kind, "w", &["s0", "s1"]);
        for (i, p) in w.iter().enumerate() {
            assert_same_tree(&sent_trees[i], &tree(p), &format!("w, tree {i}"));
        }
        assert_eq!(b.volume_size(kind, "w").unwrap(), size);
        // And a btrfs stream is refused by that receiver before anything.
        let before = pool_state(&b);
        let (_, got) = transfer(
            &a,
            &b,
            kind,
            "v",
            &snaps,
            MigrationType::BtrfsSend,
            &ReceiveOptions {
                name: Some("x".into()),
                accept: vec![MigrationType::Tar],
                ..Default::default()
            },
        );
        let e = got.unwrap_err();
        assert!(e.to_string().contains("accepts tar"), "{e}");
        assert_eq!(pool_state(&b), before);
    }

    for p in [&a, &b] {
        for n in ["v", "w"] {
            if kind != VolumeKind::Custom {
                p.delete_volume(kind, n).unwrap();
            } else if p.has_volume(kind, n) {
                p.delete_custom_volume(n).unwrap();
            }
        }
        p.driver.delete_pool(&p.base, &p.config).unwrap();
    }
    s.assert_clean();
}

#[test]
fn a_custom_volume_streams_dir_to_dir() {
    round_trip("dir", "dir", VolumeKind::Custom, MigrationType::Tar);
}

#[test]
fn an_instance_volume_streams_dir_to_btrfs() {
    round_trip("dir", "btrfs", VolumeKind::Container, MigrationType::Tar);
}

#[test]
fn a_custom_volume_streams_btrfs_to_dir() {
    round_trip("btrfs", "dir", VolumeKind::Custom, MigrationType::Tar);
}

#[test]
fn a_custom_volume_streams_btrfs_to_btrfs_as_differences() {
    round_trip(
        "btrfs",
        "btrfs",
        VolumeKind::Custom,
        MigrationType::BtrfsSend,
    );
}

#[test]
fn an_instance_volume_streams_btrfs_to_btrfs_as_differences() {
    round_trip(
        "btrfs",
        "btrfs",
        VolumeKind::Container,
        MigrationType::BtrfsSend,
    );
}
