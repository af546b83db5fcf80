//! Refreshing a copy between btrfs pools (root, loop files; the tests take
//! the host-wide test lock and clean up what they make): a volume with two
//! snapshots is streamed whole into a second pool, then changed a little
//! and snapshotted again, and only the difference from the snapshot both
//! have travels (`send_refresh` → `receive_refresh`). The copy then equals
//! the source tree for tree; its older snapshots are untouched. A refresh
//! cut mid-stream leaves the copy as it was, with nothing left over; a
//! refresh stream is refused where a new volume is expected and the other
//! way round, and so is a base the receiver does not have.

mod common;

use common::streams::*;
use common::*;
use kante_storage::stream::{Received, SendReport};
use kante_storage::{MigrationType, Pool, ReceiveOptions, Result, VolumeKind};

const BIG: usize = 8 << 20;
const KIND: VolumeKind = VolumeKind::Container;

/// A refresh of `v` from `base` with `snaps`, `from` → pipe → `to`.
fn refresh(
    from: &Pool,
    to: &Pool,
    base: &str,
    snaps: &[String],
) -> (Result<SendReport>, Result<Received>) {
    let (mut r, mut w) = std::io::pipe().unwrap();
    std::thread::scope(|s| {
        let sender = s.spawn(move || {
            let res = from.send_refresh(KIND, "v", base, snaps, MigrationType::BtrfsSend, &mut w);
            drop(w);
            res
        });
        let got = to.receive_refresh(&mut r, KIND, &ReceiveOptions::default());
        drop(r);
        (sender.join().unwrap(), got)
    })
}

fn refresh_to_vec(from: &Pool, base: &str, snaps: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    from.send_refresh(KIND, "v", base, snaps, MigrationType::BtrfsSend, &mut v)
        .unwrap();
    v
}

/// Volume `v` with snapshots s0, s1 and a live generation on `a`, copied
/// whole to `b`.
fn copied(a: &Pool, b: &Pool) -> Vec<String> {
    let root = a.create_instance_empty("v").unwrap();
    populate(&root, 0, BIG);
    a.snapshot(KIND, "v", "s0").unwrap();
    populate(&root, 1, BIG);
    a.snapshot(KIND, "v", "s1").unwrap();
    populate(&root, 2, BIG);
    let snaps = vec!["s0".to_string(), "s1".to_string()];
    let (sent, got) = transfer(
        a,
        b,
        KIND,
        "v",
        &snaps,
        MigrationType::BtrfsSend,
        &ReceiveOptions::default(),
    );
    assert!(sent.unwrap().bytes > BIG as u64);
    got.unwrap();
    snaps
}

/// A small change on `a`'s live volume, a new snapshot `snap`, another
/// small change after it.
fn change(a: &Pool, snap: &str, word: &str) {
    let root = a.volume_path(KIND, "v");
    std::fs::write(root.join("f"), format!("{word} before {snap}")).unwrap();
    a.snapshot(KIND, "v", snap).unwrap();
    std::fs::write(root.join(format!("after-{snap}")), vec![7u8; 4096]).unwrap();
}

#[test]
fn a_refresh_sends_only_the_difference_and_the_copy_equals_the_source() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("stream-refresh");
    let (a, b) = (
        s.pool("btrfs", "a", &[("size", "1GiB")]),
        s.pool("btrfs", "b", &[("size", "1GiB")]),
    );
    copied(&a, &b);

    // The copies of the snapshots answer to what the originals send as.
    for snap in ["s0", "s1"] {
        let sent = a.snapshot_identity(KIND, "v", snap).unwrap();
        let here = b.snapshot_identity(KIND, "v", snap).unwrap();
        assert_eq!(here.received_as.as_ref(), Some(&sent.sent_as), "{snap}");
        assert_eq!(sent.received_as, None, "{snap} on a is an original");
    }
    let old: Vec<_> = trees_of(&b, KIND, "v", &["s0", "s1"])[..2]
        .iter()
        .map(|p| tree(p))
        .collect();

    change(&a, "s2", "changed");
    let (sent, got) = refresh(&a, &b, "s1", &["s2".to_string()]);
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!((sent.sections, got.bytes), (2, sent.bytes));
    assert!(
        sent.bytes < (BIG / 8) as u64,
        "a refresh of two small files sent {} bytes",
        sent.bytes
    );
    assert_eq!(got.snapshots, ["s2"]);
    assert_eq!(b.list_snapshots(KIND, "v"), ["s0", "s1", "s2"]);
    let want: Vec<_> = trees_of(&a, KIND, "v", &["s0", "s1", "s2"])
        .iter()
        .map(|p| tree(p))
        .collect();
    let have: Vec<_> = trees_of(&b, KIND, "v", &["s0", "s1", "s2"])
        .iter()
        .map(|p| tree(p))
        .collect();
    assert_eq!(have[..2], old[..], "the older snapshots changed");
    assert_eq!(have[2], want[2], "snapshot s2");
    assert_eq!(have[3], want[3], "the volume");
    assert_eq!(have[3]["f"].data, b"changed before s2");
    assert!(have[3].contains_key("after-s2") && !have[2].contains_key("after-s2"));
    // The new snapshot is read-only, the new volume writable.
    let vol = b.volume_path(KIND, "v");
    std::fs::write(vol.join("w"), "ok").unwrap();
    assert!(std::fs::write(trees_of(&b, KIND, "v", &["s2"])[0].join("w"), "no").is_err());

    // And again from s2, which b now holds as a received copy.
    change(&a, "s3", "again");
    let (sent, got) = refresh(&a, &b, "s2", &["s3".to_string()]);
    assert!(sent.unwrap().bytes < (BIG / 8) as u64);
    got.unwrap();
    let live = tree(&b.volume_path(KIND, "v"));
    assert_eq!(live["f"].data, b"again before s3");
    assert!(!live.contains_key("w"), "the copy's own change is replaced");
    assert_no_leftovers(&b);
    remove(&s, &[a, b]);
}

#[test]
fn a_cut_or_wrong_refresh_leaves_the_copy_as_it_was() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("stream-refresh-cut");
    let (a, b) = (
        s.pool("btrfs", "a", &[("size", "1GiB")]),
        s.pool("btrfs", "b", &[("size", "1GiB")]),
    );
    let snaps = copied(&a, &b);
    let before: Vec<_> = trees_of(&b, KIND, "v", &["s0", "s1"])
        .iter()
        .map(|p| tree(p))
        .collect();
    // Big enough a change that the stream has a middle to cut.
    write_file(&a.volume_path(KIND, "v").join("blob"), BIG);
    change(&a, "s2", "cut");
    let stream = refresh_to_vec(&a, "s1", &["s2".to_string()]);
    let ends = section_ends(&stream);
    let unchanged = |what: &str| {
        let now: Vec<_> = trees_of(&b, KIND, "v", &["s0", "s1"])
            .iter()
            .map(|p| tree(p))
            .collect();
        assert_eq!(now, before, "{what}");
        assert_eq!(b.list_snapshots(KIND, "v"), snaps, "{what}");
        assert_no_leftovers(&b);
    };
    for cut in [ends[0] + 100, (ends[1] + ends[2]) / 2, stream.len() - 3] {
        let e = b
            .receive_refresh(&mut &stream[..cut], KIND, &ReceiveOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("stream"), "cut at {cut}: {e}");
        unchanged(&format!("cut at {cut}"));
    }

    // A refresh is no new volume, a whole volume no refresh.
    let e = b
        .receive_volume(
            &mut &stream[..],
            &ReceiveOptions {
                name: Some("w".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("where a new volume was expected"),
        "{e}"
    );
    let whole = send_to_vec(&a, KIND, "v", &snaps, MigrationType::BtrfsSend);
    let e = b
        .receive_refresh(&mut &whole[..], KIND, &ReceiveOptions::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("where a refresh was expected"),
        "{e}"
    );
    // A base the receiver lacks is refused before anything is made.
    b.delete_snapshot(KIND, "v", "s1").unwrap();
    let e = b
        .receive_refresh(&mut &stream[..], KIND, &ReceiveOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("v/s1"), "{e}");
    assert_eq!(b.list_snapshots(KIND, "v"), ["s0"]);
    assert_eq!(tree(&b.volume_path(KIND, "v")), before[2]);
    // And the sender refuses a base it is asked to send too.
    let mut sink = Vec::new();
    let e = a
        .send_refresh(
            KIND,
            "v",
            "s1",
            &["s1".to_string()],
            MigrationType::BtrfsSend,
            &mut sink,
        )
        .unwrap_err();
    assert!(e.to_string().contains("also listed"), "{e}");
    remove(&s, &[a, b]);
}

/// Deletes the volume and the pools (after their background deletions).
fn remove(s: &Scratch, pools: &[Pool]) {
    for p in pools {
        p.delete_volume(KIND, "v").unwrap();
        p.driver.delete_pool(&p.base, &p.config).unwrap();
    }
    s.assert_clean();
}
