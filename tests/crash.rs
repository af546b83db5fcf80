//! Crash consistency (audit F7, issue 20): `kill -9` of kanted in the middle
//! of a long copy or delete, then a restart, checked from outside. The
//! records and the disk must agree (no instance without a volume, no volume
//! without an instance, no leftover of the interrupted work), nothing the
//! dead daemon started may go on writing, and the interrupted operation is
//! either complete or gone: retried, it succeeds. Crash states that a kill
//! hits only by luck (between two renames, say) are made by hand while the
//! daemon is down.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kante_integration::{
    copy_post, dir_entries, kante_fails, kante_ok, processes_mentioning, run, Daemon, TestImage,
};

/// Size of the file that makes copies and deletes take a while.
const BIG_MIB: u64 = 1536;

fn pool(d: &Daemon) -> PathBuf {
    d.dir.join("storage-pools/default")
}

/// Bytes of `path` on disk (its allocated blocks), 0 while it is missing:
/// what a copy has written so far, whether or not it sized the file first.
fn written(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Polls `cond` until it holds (panicking with `what` after a generous bound).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Records and disk agree: the instance volumes are exactly `names`, the
/// snapshot directories exactly `with_snapshots`, and no leftover of
/// interrupted work (`.staging-*`, `.deleting-*`) is anywhere in the pool.
async fn assert_agree(d: &Daemon, names: &[&str], with_snapshots: &[&str]) {
    let listed = d.client.instance_names().await.unwrap();
    assert_eq!(listed, names, "instances listed");
    let p = pool(d);
    assert_eq!(
        dir_entries(&p.join("containers")),
        names,
        "instance volumes"
    );
    assert_eq!(
        dir_entries(&p.join("containers-snapshots")),
        with_snapshots,
        "snapshot directories"
    );
    for kind in ["containers", "containers-snapshots", "images", "custom"] {
        for e in dir_entries(&p.join(kind)) {
            assert!(!e.starts_with('.'), "leftover {kind}/{e}");
            if kind == "containers-snapshots" {
                let inner = dir_entries(&p.join(kind).join(&e));
                assert!(
                    !inner.iter().any(|n| n.starts_with('.')),
                    "leftovers in {kind}/{e}: {inner:?}"
                );
            }
        }
    }
}

/// A stopped busybox instance holding `/big`, written inside it with dd.
async fn big_instance(d: &Daemon, fp: &str, name: &str) {
    d.launch(fp, name, &[]).await;
    let (code, out) = d
        .sh(
            name,
            &format!("dd if=/dev/zero of=/big bs=1M count={BIG_MIB} 2>&1 && sync"),
        )
        .await;
    assert_eq!(code, 0, "{out}");
    d.client.stop_instance(name, true, -1).await.unwrap();
}

/// Boots `name` and checks that it is whole: its /etc and its /big.
async fn boots_whole(d: &Daemon, name: &str) {
    d.client
        .start_instance(name)
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let (code, out) = d.sh(name, "cat /etc/hostname && stat -c %s /big").await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, [name, &(BIG_MIB << 20).to_string()], "{out}");
    d.client.stop_instance(name, true, -1).await.unwrap();
}

#[test]
fn kill9_during_copy_leaves_no_ghost_and_the_copy_can_be_retried() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        big_instance(&d, &fp, "big").await;
        let staging = pool(&d).join("containers/.staging-big2");
        let staging_s = staging.to_string_lossy().into_owned();

        // The copy runs (in the daemon's own threads); kill the daemon
        // once it is writing /big.
        d.client
            .create_instance_start(&copy_post("big", "big2"))
            .await
            .unwrap();
        let big = staging.join("rootfs/big");
        until("the copy writing /big", || written(&big) > 0).await;
        d.kill9();

        // Nothing the daemon started goes on writing: no helper process
        // names the staging tree, and /big stops growing short of its end.
        until("no process on the staging tree", || {
            processes_mentioning(&staging_s).is_empty()
        })
        .await;
        let copied = written(&big);
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!("the killed copy had written {copied} bytes of /big");
        assert_eq!(
            written(&big),
            copied,
            "the copy went on after the daemon died"
        );
        assert!(
            copied < BIG_MIB << 20,
            "the copy ran to its end after the daemon died ({copied} bytes)"
        );

        d.restart().await;
        assert!(processes_mentioning(&staging_s).is_empty());
        // No ghost: big2 is not listed, and nothing of it is on disk.
        assert_agree(&d, &["big"], &[]).await;
        assert!(d.client.instance("big2").await.is_err());
        boots_whole(&d, "big").await;

        // The same copy again, under the same name, through the CLI.
        kante_ok(&d, &["copy", "big", "big2"]);
        assert_agree(&d, &["big", "big2"], &[]).await;
        boots_whole(&d, "big2").await;
        d.shutdown().await;
    });
}

/// A clean stop (SIGTERM, as systemd stops kanted) during a copy: the
/// daemon leaves at once, its copy with it, and the copy leaves no trace —
/// neither a record nor a volume without one — so it can be run again.
#[test]
fn sigterm_during_copy_leaves_no_trace() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        big_instance(&d, &fp, "big").await;
        let staging = pool(&d).join("containers/.staging-big2");
        let staging_s = staging.to_string_lossy().into_owned();
        d.client
            .create_instance_start(&copy_post("big", "big2"))
            .await
            .unwrap();
        let big = staging.join("rootfs/big");
        until("the copy writing /big", || written(&big) > 0).await;
        d.stop_term();
        until("no process on the staging tree", || {
            processes_mentioning(&staging_s).is_empty()
        })
        .await;
        d.start_again().await;
        assert_agree(&d, &["big"], &[]).await;
        assert!(d.client.instance("big2").await.is_err());
        kante_ok(&d, &["copy", "big", "big2"]);
        assert_agree(&d, &["big", "big2"], &[]).await;
        boots_whole(&d, "big2").await;
        d.shutdown().await;
    });
}

#[test]
fn kill9_during_delete_leaves_it_whole_or_gone() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        big_instance(&d, &fp, "big3").await;
        let p = pool(&d);
        let (vol, aside) = (
            p.join("containers/big3"),
            p.join("containers/.deleting-big3"),
        );

        // The delete runs; kill the daemon as soon as it touches the volume.
        d.client.delete("/1.0/instances/big3").await.unwrap();
        until("the delete at work", || {
            aside.exists() || !vol.join("rootfs/etc").exists() || !vol.join("rootfs/big").exists()
        })
        .await;
        d.kill9();
        d.restart().await;

        // Fully there (and it boots with its /etc and /big) or fully gone.
        let left = d.client.instance_names().await.unwrap();
        eprintln!("after the interrupted delete: {left:?}");
        if left.is_empty() {
            assert_agree(&d, &[], &[]).await;
            let e = kante_fails(&d, &["start", "big3"]);
            assert!(e.contains("not found"), "{e}");
            // The name is free again.
            d.create(&fp, "big3", &[]).await;
            kante_ok(&d, &["delete", "big3"]);
        } else {
            assert_agree(&d, &["big3"], &[]).await;
            boots_whole(&d, "big3").await;
            kante_ok(&d, &["delete", "big3"]);
        }
        assert_agree(&d, &[], &[]).await;
        d.shutdown().await;
    });
}

/// Renames a path while the daemon is down, as a crash right after that
/// rename would have left it.
fn mv(from: &Path, to: &Path) {
    std::fs::rename(from, to)
        .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), to.display()));
}

#[test]
fn crashes_between_two_steps_are_finished_at_start() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        for n in ["gone", "moved", "snappy"] {
            d.create(&fp, n, &[]).await;
        }
        for s in ["s0", "s1", "s2"] {
            d.client.create_snapshot("snappy", s, false).await.unwrap();
        }
        d.client
            .create_snapshot("moved", "m0", false)
            .await
            .unwrap();
        d.kill9();
        let (c, s) = (
            pool(&d).join("containers"),
            pool(&d).join("containers-snapshots"),
        );
        // A delete of `gone` after its volume (not yet its snapshots) was set aside.
        mv(&c.join("gone"), &c.join(".deleting-gone"));
        // A rename of `moved` to `renamed` after the volume moved, before its
        // snapshots and record followed.
        mv(&c.join("moved"), &c.join("renamed"));
        // A delete of snapshot s0 after it was set aside, and a creation of
        // s1 after it was recorded, before it was renamed into place.
        mv(&s.join("snappy/s0"), &s.join("snappy/.deleting-s0"));
        mv(&s.join("snappy/s1"), &s.join("snappy/.staging-s1"));
        d.restart().await;

        assert_agree(&d, &["renamed", "snappy"], &["renamed", "snappy"]).await;
        let snaps = |i: &'static str| {
            let d = &d;
            async move {
                let mut v: Vec<String> = d
                    .client
                    .snapshots(i)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| s.name)
                    .collect();
                v.sort();
                v
            }
        };
        assert_eq!(snaps("snappy").await, ["s2"]);
        assert_eq!(dir_entries(&s.join("snappy")), ["s2"]);
        assert_eq!(snaps("renamed").await, ["m0"]);
        assert_eq!(dir_entries(&s.join("renamed")), ["m0"]);
        // The renamed instance is whole under its new name, hostname included.
        d.client.start_instance("renamed").await.unwrap();
        let (code, out) = d.sh("renamed", "cat /etc/hostname").await;
        assert_eq!((code, out.trim()), (0, "renamed"));
        d.client.stop_instance("renamed", true, -1).await.unwrap();
        // Snapshots work on: the dropped names can be taken again.
        d.client
            .create_snapshot("snappy", "s1", false)
            .await
            .unwrap();
        d.client.delete_snapshot("snappy", "s2").await.unwrap();
        assert_eq!(snaps("snappy").await, ["s1"]);
        d.shutdown().await;
    });
}

#[test]
fn an_instance_whose_volume_is_missing_says_so_at_start() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "lost", &[]).await;
        d.client.create_snapshot("lost", "s0", false).await.unwrap();
        d.kill9();
        // Removed by hand: not an interrupted operation, so the records stay.
        let vol = pool(&d).join("containers/lost");
        std::fs::remove_dir_all(&vol).unwrap();
        std::fs::remove_dir_all(pool(&d).join("containers-snapshots/lost")).unwrap();
        d.restart().await;
        assert_eq!(d.client.instance_names().await.unwrap(), ["lost"]);
        let snaps = d.client.snapshots("lost").await.unwrap();
        assert_eq!(snaps.len(), 1);
        let e = kante_fails(&d, &["start", "lost"]);
        assert!(
            e.contains("storage volume is missing") && e.contains(&*vol.to_string_lossy()),
            "{e}"
        );
        // Both can still be deleted.
        d.client.delete_snapshot("lost", "s0").await.unwrap();
        kante_ok(&d, &["delete", "lost"]);
        assert_agree(&d, &[], &[]).await;
        d.shutdown().await;
    });
}
