//! Deletes that are never half done, and what a crash leaves: volumes and
//! snapshots are set aside (`.deleting-*`) before they are removed, a
//! snapshot is staged until committed, and the start-up cleanup removes
//! leftovers only once no process works in them any more. On dir pools and
//! (root with btrfs) on btrfs pools.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use kante_storage::{Pool, VolumeKind};

const C: VolumeKind = VolumeKind::Container;

fn make_image(pool: &Pool) {
    pool.create_image_volume("img", &mut |p: &Path| {
        std::fs::create_dir_all(p.join("rootfs/etc"))?;
        std::fs::write(p.join("rootfs/etc/hostname"), "image")?;
        Ok(())
    })
    .unwrap();
}

/// Names in `dir`, hidden ones included, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn set_aside_then_remove(pool: &Pool) {
    make_image(pool);
    let v = pool.create_instance_from_image("img", "c1").unwrap();
    pool.snapshot(C, "c1", "s0").unwrap();
    pool.snapshot(C, "c1", "s1").unwrap();
    let containers = pool.base.join("containers");
    let snaps = pool.base.join("containers-snapshots");

    // Set aside: gone from its name in one step, snapshots with it.
    let aside = pool.set_aside(C, "c1").unwrap();
    assert!(!aside.is_empty());
    assert!(!v.exists());
    assert_eq!(entries(&containers), [".deleting-c1"]);
    assert_eq!(entries(&snaps), [".deleting-c1"]);
    assert!(pool.list_volumes(C).is_empty());
    assert!(pool.interrupted_delete(C, "c1"));
    // Put back (the caller could not drop its record): all as it was.
    aside.put_back().unwrap();
    assert_eq!(entries(&containers), ["c1"]);
    assert_eq!(pool.list_snapshots(C, "c1"), ["s0", "s1"]);
    assert!(!pool.interrupted_delete(C, "c1"));

    // A crash right after the rename: the leftovers go at the next start.
    drop(pool.set_aside(C, "c1").unwrap());
    assert!(pool.interrupted_delete(C, "c1"));
    pool.remove_staging_leftovers();
    assert!(
        entries(&containers).is_empty(),
        "{:?}",
        entries(&containers)
    );
    assert!(entries(&snaps).is_empty(), "{:?}", entries(&snaps));
    assert!(!pool.interrupted_delete(C, "c1"));

    // A volume named like another's delete is not taken for one.
    pool.create_instance_from_image("img", "delete-c2").unwrap();
    drop(pool.set_aside(C, "delete-c2").unwrap());
    assert!(!pool.interrupted_delete(C, "c2"));
    assert!(pool.interrupted_delete(C, "delete-c2"));
    pool.remove_staging_leftovers();

    // An ordinary delete leaves nothing, and nothing to set aside is fine.
    pool.create_instance_from_image("img", "c3").unwrap();
    pool.snapshot(C, "c3", "s0").unwrap();
    pool.delete_volume(C, "c3").unwrap();
    pool.delete_volume(C, "c3").unwrap();
    assert!(pool.set_aside(C, "c3").unwrap().is_empty());
    assert!(entries(&containers).is_empty());
    assert!(entries(&snaps).is_empty());
}

fn snapshots_staged_and_set_aside(pool: &Pool) {
    make_image(pool);
    pool.create_instance_from_image("img", "c1").unwrap();
    let dir = pool.base.join("containers-snapshots/c1");

    // Staged: not a snapshot until committed.
    let staged = pool.stage_snapshot_of(C, "c1", "s0").unwrap();
    assert!(pool.list_snapshots(C, "c1").is_empty());
    assert!(pool.interrupted_snapshot(C, "c1", "s0"));
    staged.commit().unwrap();
    assert_eq!(pool.list_snapshots(C, "c1"), ["s0"]);
    assert!(!pool.interrupted_snapshot(C, "c1", "s0"));
    // Dropped uncommitted (a failure): deleted again.
    drop(pool.stage_snapshot_of(C, "c1", "s1").unwrap());
    assert_eq!(entries(&dir), ["s0"]);

    // A crash between staging and commit, and one mid-delete.
    std::mem::forget(pool.stage_snapshot_of(C, "c1", "s2").unwrap());
    drop(pool.set_aside_snapshot(C, "c1", "s0").unwrap());
    assert_eq!(entries(&dir), [".deleting-s0", ".staging-s2"]);
    assert!(pool.interrupted_snapshot(C, "c1", "s0"));
    assert!(pool.interrupted_snapshot(C, "c1", "s2"));
    assert!(!pool.interrupted_snapshot(C, "c1", "s1"));
    pool.remove_staging_leftovers();
    assert!(!dir.exists(), "{:?}", entries(&dir));

    pool.snapshot(C, "c1", "s3").unwrap();
    pool.delete_snapshot(C, "c1", "s3").unwrap();
    assert!(!dir.exists());
    pool.delete_volume(C, "c1").unwrap();
}

fn leftovers_wait_for_their_writers(pool: &Pool) {
    let staging = pool.base.join("containers/.staging-c9");
    pool.driver.create_volume(&staging).unwrap();
    std::fs::write(staging.join("f"), "x").unwrap();
    // Something holding a file in a leftover, not started on it: the
    // leftover stays until it lets go.
    let mut holder = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::from(std::fs::File::open(staging.join("f")).unwrap()))
        .spawn()
        .unwrap();
    pool.remove_staging_leftovers();
    assert!(staging.exists(), "removed under a process using it");
    assert!(
        holder.try_wait().unwrap().is_none(),
        "only its own tools are stopped"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    // A tool a dead daemon started on it (still writing): stopped, then the
    // leftover goes.
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg("while :; do echo x >> \"$0\"; sleep 0.01; done")
        .arg(staging.join("g"))
        .spawn()
        .unwrap();
    while !staging.join("g").exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    pool.remove_staging_leftovers();
    assert!(!staging.exists());
    assert!(!writer.wait().unwrap().success());
}

#[test]
fn dir_deletes_set_aside_first() {
    let _l = lock();
    let s = Scratch::new("aside-dir");
    let pool = s.pool("dir", "p1", &[]);
    set_aside_then_remove(&pool);
    snapshots_staged_and_set_aside(&pool);
    leftovers_wait_for_their_writers(&pool);
    pool.delete_volume(VolumeKind::Image, "img").unwrap();
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
}

#[test]
fn btrfs_deletes_set_aside_first() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("aside-btrfs");
    let pool = s.pool("btrfs", "p1", &[("size", "512MiB")]);
    set_aside_then_remove(&pool);
    snapshots_staged_and_set_aside(&pool);
    leftovers_wait_for_their_writers(&pool);
    pool.delete_volume(VolumeKind::Image, "img").unwrap();
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    s.assert_clean();
}
