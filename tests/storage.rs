//! Storage through the API against a real kanted: btrfs pools on a loop file,
//! instances as subvolume snapshots of their image, snapshots and restore,
//! copies, root disk quotas, custom volumes attached as disks, pool deletion
//! and the input that must be refused.

#[path = "storage/helpers.rs"]
mod helpers;

use std::os::unix::fs::MetadataExt;

use helpers::*;
use kante_api::instance::InstancesPost;
use kante_client::ClientError;
use kante_integration::{loop_devices_under, run, Daemon, TestImage};
use serde_json::{json, Value};
// ----- btrfs pools and instances -------------------------------------------

#[test]
fn btrfs_pool_on_a_loop_file_and_instances_as_image_snapshots() {
    if !btrfs_ready() {
        return;
    }
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        btrfs_pool(&d, "bt").await;

        // The pool is a btrfs filesystem on a loop file under the daemon's dir.
        let pool: Value = d.client.get_json("/1.0/storage-pools/bt").await.unwrap();
        assert_eq!(pool["driver"], "btrfs");
        assert_eq!(pool["config"]["size"], "2GiB");
        let img = d.dir.join("disks/bt.img");
        assert_eq!(pool["config"]["source"], img.display().to_string());
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 2 << 30);
        assert_eq!(loop_devices_under(&d.dir).len(), 1);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let base = pool_dir(&d, "bt");
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(&format!(" {} ", base.display())) && l.contains(" btrfs ")),
            "{} is not a btrfs mount",
            base.display()
        );

        // An instance on it is a snapshot of the image's subvolume: no copy.
        launch_on(&d, &fp, "c1", "bt", &[]).await;
        let image_vol = base.join("images").join(&fp);
        let inst_vol = base.join("containers/c1");
        let image_uuid = subvolume_field(&image_vol, "UUID");
        assert_eq!(subvolume_field(&inst_vol, "Parent UUID"), image_uuid);
        assert!(subvolume_field(&image_vol, "Flags").contains("readonly"));
        let (code, out, _) = sh(&d, "c1", "echo hi > /root/x && cat /root/x").await;
        assert_eq!((code, out.as_str()), (0, "hi\n"));
        // Guest writes land in the instance's subvolume, never in the image's.
        assert!(inst_vol.join("rootfs/root/x").exists());
        assert!(!image_vol.join("rootfs/root/x").exists());

        // A restarted daemon finds the pool as it was (still mounted, same
        // loop device) and the instance still running.
        d.restart().await;
        assert_eq!(loop_devices_under(&d.dir).len(), 1);
        assert_eq!(d.client.instance("c1").await.unwrap().status, "Running");
        assert_eq!(sh(&d, "c1", "cat /root/x").await.1, "hi\n");

        // Used: refused, and nothing is torn down.
        let msg = expect_400(&d, "DELETE", "/1.0/storage-pools/bt", Value::Null).await;
        assert!(msg.contains("in use"), "{msg}");
        let pool: Value = d.client.get_json("/1.0/storage-pools/bt").await.unwrap();
        assert_eq!(pool["used_by"], json!(["/1.0/instances/c1"]));
        assert_eq!(loop_devices_under(&d.dir).len(), 1);

        // Empty: deleted, its loop device detached and its file removed.
        delete_instance(&d, "c1").await;
        delete_pool(&d, "bt").await;
        d.shutdown().await;
    });
}

/// snapshot → modify → restore reverts the change (rootfs and new files).
async fn snapshot_modify_restore(d: &Daemon, fp: &str, pool: &str) {
    launch_on(d, fp, "c1", pool, &[]).await;
    let (code, _, err) = sh(d, "c1", "echo before > /root/f").await;
    assert_eq!(code, 0, "{err}");
    call(
        d,
        "POST",
        "/1.0/instances/c1/snapshots",
        Some(json!({"name": "snap0"})),
    )
    .await
    .unwrap();
    let snap_vol = pool_dir(d, pool).join("containers-snapshots/c1/snap0");
    assert!(snap_vol.join("rootfs/root/f").exists());
    if pool != "default" {
        assert!(subvolume_field(&snap_vol, "Flags").contains("readonly"));
    }

    let (code, _, _) = sh(d, "c1", "echo x > /root/f && echo new > /root/g").await;
    assert_eq!(code, 0);
    assert_eq!(sh(d, "c1", "cat /root/f").await.1, "x\n");

    call(
        d,
        "PUT",
        "/1.0/instances/c1",
        Some(json!({"restore": "snap0"})),
    )
    .await
    .unwrap_or_else(|e| panic!("restore on {pool}: {e}\n{}", d.log_text()));
    // Running before, so running again after the restore.
    assert_eq!(d.client.instance("c1").await.unwrap().status, "Running");
    let (code, out, _) = sh(d, "c1", "cat /root/f; test -e /root/g || echo no-g").await;
    assert_eq!((code, out.as_str()), (0, "before\nno-g\n"), "on {pool}");
    // The snapshot itself is untouched and can be restored again.
    assert!(snap_vol.join("rootfs/root/f").exists());
    delete_instance(d, "c1").await;
    assert!(!snap_vol.exists(), "snapshot left after the instance");
}

#[test]
fn snapshot_modify_restore_on_dir() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        snapshot_modify_restore(&d, &fp, "default").await;
        d.shutdown().await;
    });
}

#[test]
fn snapshot_modify_restore_on_btrfs() {
    if !btrfs_ready() {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        btrfs_pool(&d, "bt").await;
        snapshot_modify_restore(&d, &fp, "bt").await;
        delete_pool(&d, "bt").await;
        d.shutdown().await;
    });
}

/// A copy is independent of its source, both ways.
async fn copy_independence(d: &Daemon, fp: &str, pool: &str) {
    launch_on(d, fp, "c1", pool, &[]).await;
    sh(d, "c1", "echo shared > /root/shared").await;
    d.client.stop_instance("c1", true, -1).await.unwrap();
    let post: InstancesPost = serde_json::from_value(json!({
        "name": "c2",
        "source": {"type": "copy", "source": "c1"},
    }))
    .unwrap();
    d.client
        .create_instance(&post)
        .await
        .unwrap_or_else(|e| panic!("copying c1: {e}"));
    start(d, "c1").await;
    start(d, "c2").await;
    if pool != "default" {
        // On btrfs the copy is a snapshot of the source's subvolume.
        let base = pool_dir(d, pool).join("containers");
        assert_eq!(
            subvolume_field(&base.join("c2"), "Parent UUID"),
            subvolume_field(&base.join("c1"), "UUID")
        );
    }
    assert_eq!(sh(d, "c2", "cat /root/shared").await.1, "shared\n");
    sh(
        d,
        "c1",
        "echo one > /root/only1; echo changed > /root/shared",
    )
    .await;
    sh(d, "c2", "echo two > /root/only2").await;
    let probe = "for f in only1 only2 shared; do cat /root/$f 2>/dev/null || echo -; done";
    assert_eq!(
        sh(d, "c1", probe).await.1,
        "one\n-\nchanged\n",
        "c1 on {pool}"
    );
    assert_eq!(
        sh(d, "c2", probe).await.1,
        "-\ntwo\nshared\n",
        "c2 on {pool}"
    );
    delete_instance(d, "c2").await;
    delete_instance(d, "c1").await;
}

#[test]
fn copies_are_independent_on_btrfs_and_dir() {
    let btrfs = btrfs_ready();
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        copy_independence(&d, &fp, "default").await;
        if btrfs {
            btrfs_pool(&d, "bt").await;
            copy_independence(&d, &fp, "bt").await;
            delete_pool(&d, "bt").await;
        }
        d.shutdown().await;
    });
}

#[test]
fn root_disk_size_is_a_quota_on_btrfs() {
    if !btrfs_ready() {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        btrfs_pool(&d, "bt").await;
        launch_on(&d, &fp, "c1", "bt", &[("size", "64MiB")]).await;
        let (code, out, err) = sh(
            &d,
            "c1",
            "dd if=/dev/zero of=/root/big bs=1M count=200 2>&1; echo rc=$?; sync",
        )
        .await;
        assert_eq!(code, 0, "{err}");
        assert!(
            !out.contains("rc=0"),
            "200 MiB fit in a 64 MiB quota: {out}"
        );
        assert!(
            out.contains("Disk quota exceeded") || out.contains("No space left"),
            "{out}"
        );
        let big = pool_dir(&d, "bt").join("containers/c1/rootfs/root/big");
        let written = std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0);
        assert!(
            written <= 64 << 20,
            "{written} bytes written past the limit"
        );

        // Without a size, the same write succeeds on the same pool.
        launch_on(&d, &fp, "c2", "bt", &[]).await;
        let (_, out, _) = sh(
            &d,
            "c2",
            "dd if=/dev/zero of=/root/big bs=1M count=100 2>/dev/null; echo rc=$?",
        )
        .await;
        assert_eq!(out, "rc=0\n");

        // A size on a dir pool cannot be enforced: refused up front.
        let post = json!({
            "name": "c3",
            "source": {"type": "image", "fingerprint": fp},
            "devices": {"root": root_disk("default", &[("size", "1GiB")])},
        });
        let msg = expect_400(&d, "POST", "/1.0/instances", post).await;
        assert!(msg.contains("btrfs"), "{msg}");

        delete_instance(&d, "c1").await;
        delete_instance(&d, "c2").await;
        delete_pool(&d, "bt").await;
        d.shutdown().await;
    });
}

#[test]
fn bad_input_is_refused_with_400() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let pools = "/1.0/storage-pools";
        for size in ["lots", "12XB", "-1GiB", "1.2.3GiB"] {
            let body = json!({"name": "p", "driver": "btrfs", "config": {"size": size}});
            let msg = expect_400(&d, "POST", pools, body).await;
            assert!(msg.contains("size"), "{size}: {msg}");
        }
        let msg = expect_400(&d, "POST", pools, json!({"name": "p", "driver": "zfs"})).await;
        assert!(msg.contains("zfs"), "{msg}");
        let body = json!({"name": "p", "driver": "dir", "config": {"size": "1GiB"}});
        expect_400(&d, "POST", pools, body).await;
        expect_400(&d, "POST", pools, json!({"name": "a/b", "driver": "dir"})).await;
        // Nothing was left by the refused creates.
        assert!(!d.dir.join("disks/p.img").exists());
        assert!(!pool_dir(&d, "p").exists());

        let vols = "/1.0/storage-pools/default/volumes/custom";
        for name in ["a/b", "", ".hidden", "with space"] {
            let msg = expect_400(&d, "POST", vols, json!({ "name": name })).await;
            assert!(msg.contains("name"), "{name:?}: {msg}");
        }
        let body = json!({"name": "v", "config": {"bogus": "1"}});
        expect_400(&d, "POST", vols, body).await;
        let body = json!({"name": "v", "config": {"size": "1GiB"}});
        let msg = expect_400(&d, "POST", vols, body).await;
        assert!(msg.contains("btrfs"), "{msg}");
        let body = json!({"name": "v", "content_type": "block"});
        expect_400(&d, "POST", vols, body).await;

        let root = |extra: &[(&str, &str)]| root_disk("default", extra);
        let post = |devices: Value| json!({"name": "c9", "source": {"type": "image", "fingerprint": fp}, "devices": devices});
        let msg = expect_400(
            &d,
            "POST",
            "/1.0/instances",
            post(json!({"root": root(&[("size", "12XB")])})),
        )
        .await;
        assert!(msg.contains("size"), "{msg}");
        let bad_disk = json!({"root": root(&[]), "d": {"type": "disk", "path": "/d", "pool": "default", "source": "a/b"}});
        expect_400(&d, "POST", "/1.0/instances", post(bad_disk)).await;
        let sized_disk = json!({"root": root(&[]), "d": {"type": "disk", "path": "/d", "pool": "default", "source": "v", "size": "1GiB"}});
        expect_400(&d, "POST", "/1.0/instances", post(sized_disk)).await;

        // Snapshots: bad names, and restores of what is not this instance's.
        d.create(&fp, "c1", &[]).await;
        d.create(&fp, "c2", &[]).await;
        for name in ["a/b", "with space"] {
            let body = json!({ "name": name });
            expect_400(&d, "POST", "/1.0/instances/c1/snapshots", body).await;
        }
        call(
            &d,
            "POST",
            "/1.0/instances/c2/snapshots",
            Some(json!({"name": "s"})),
        )
        .await
        .unwrap();
        for snap in ["nope", "c2/s", "../s"] {
            let body = json!({ "restore": snap });
            match call(&d, "PUT", "/1.0/instances/c1", Some(body)).await {
                Err(ClientError::Api { status: 400, .. }) => {}
                // The restore route starts its operation before checking; the
                // operation must then fail without touching anything.
                Err(ClientError::Operation(msg)) => {
                    assert!(msg.contains("snapshot"), "{snap}: {msg}")
                }
                other => panic!("restore {snap}: expected a refusal, got {other:?}"),
            }
        }
        assert!(d.dir.join("storage-pools/default/containers/c1").exists());
        assert!(d
            .dir
            .join("storage-pools/default/containers-snapshots/c2/s")
            .exists());
        d.shutdown().await;
    });
}

// ----- custom volumes ------------------------------------------------------

#[test]
fn custom_volume_api_on_btrfs() {
    if !btrfs_ready() {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        btrfs_pool(&d, "bt").await;
        let vols = "/1.0/storage-pools/bt/volumes/custom";
        let body = json!({"name": "v1", "description": "data", "config": {"size": "64MiB"}});
        call(&d, "POST", vols, Some(body)).await.unwrap();
        let body = json!({"name": "v1"});
        let e = call(&d, "POST", vols, Some(body)).await.unwrap_err();
        assert_eq!(e.status(), Some(409), "{e}");

        let list: Vec<Value> = d
            .client
            .get_json(&format!("{vols}?recursion=1"))
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
        let v = &list[0];
        assert_eq!(v["name"], "v1");
        assert_eq!(v["type"], "custom");
        assert_eq!(v["content_type"], "filesystem");
        assert_eq!(v["description"], "data");
        assert_eq!(v["config"]["size"], "64MiB");
        assert_eq!(v["used_by"], json!([]));
        let urls: Vec<String> = d
            .client
            .get_json("/1.0/storage-pools/bt/volumes")
            .await
            .unwrap();
        assert!(urls.contains(&format!("{vols}/v1")), "{urls:?}");
        let vol_path = pool_dir(&d, "bt").join("custom/v1");
        assert!(subvolume_field(&vol_path, "UUID").len() > 30);

        // PATCH merges, PUT replaces; size changes reach the quota.
        let v1 = format!("{vols}/v1");
        let body = json!({"config": {"user.k": "x"}});
        call(&d, "PATCH", &v1, Some(body)).await.unwrap();
        let v: Value = d.client.get_json(&v1).await.unwrap();
        assert_eq!(v["config"], json!({"size": "64MiB", "user.k": "x"}));
        let body = json!({"config": {"size": "32MiB"}});
        call(&d, "PUT", &v1, Some(body)).await.unwrap();
        let v: Value = d.client.get_json(&v1).await.unwrap();
        assert_eq!(v["config"], json!({"size": "32MiB"}));
        assert_eq!(v["description"], "");
        expect_400(&d, "PUT", &v1, json!({"config": {"size": "big"}})).await;

        // Used by an instance: listed, and delete is refused.
        let devices = json!({
            "root": root_disk("bt", &[]),
            "data": {"type": "disk", "pool": "bt", "source": "v1", "path": "/mnt/data"},
        });
        // Privileged: this test is about the API, not about id shifting.
        let config = json!({"security.privileged": "true"});
        create_with(&d, &fp, "c1", devices, config).await.unwrap();
        let v: Value = d.client.get_json(&v1).await.unwrap();
        assert_eq!(v["used_by"], json!(["/1.0/instances/c1"]));
        let pool: Value = d.client.get_json("/1.0/storage-pools/bt").await.unwrap();
        let used = pool["used_by"].as_array().unwrap();
        assert!(used.contains(&json!(v1)), "{used:?}");
        let msg = expect_400(&d, "DELETE", &v1, Value::Null).await;
        assert!(msg.contains("in use"), "{msg}");

        // The quota holds inside the guest, at the resized 32 MiB: 16 MiB
        // fit, 48 MiB (within the first 64 MiB) do not.
        start(&d, "c1").await;
        let (code, out, err) = sh(
            &d,
            "c1",
            "dd if=/dev/zero of=/mnt/data/small bs=1M count=16 conv=fsync 2>&1",
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        sh(&d, "c1", "rm -f /mnt/data/small; sync").await;
        let (code, out, _) = sh(
            &d,
            "c1",
            "dd if=/dev/zero of=/mnt/data/big bs=1M count=48 conv=fsync 2>&1",
        )
        .await;
        assert_ne!(code, 0, "{out}");
        assert!(
            out.contains("Disk quota exceeded") || out.contains("No space left"),
            "the write did not stop at the quota: {out}"
        );

        // Snapshots of volumes: made in an operation, listed, restorable.
        sh(&d, "c1", "rm -f /mnt/data/big; echo one > /mnt/data/f").await;
        let snaps = format!("{v1}/snapshots");
        call(&d, "POST", &snaps, Some(json!({"name": "s0"})))
            .await
            .unwrap();
        let names: Vec<String> = d.client.get_json(&snaps).await.unwrap();
        assert_eq!(names, vec![format!("{snaps}/s0")]);
        let (code, out, err) = sh(&d, "c1", "echo two > /mnt/data/f && cat /mnt/data/f").await;
        assert_eq!((code, out.as_str()), (0, "two\n"), "{err}");
        let msg = expect_400(&d, "PUT", &v1, json!({"restore": "s0"})).await;
        assert!(msg.contains("running"), "{msg}");
        d.client.stop_instance("c1", true, -1).await.unwrap();
        call(&d, "PUT", &v1, Some(json!({"restore": "s0"})))
            .await
            .unwrap();
        start(&d, "c1").await;
        assert_eq!(sh(&d, "c1", "cat /mnt/data/f").await.1, "one\n");
        let e = call(&d, "PUT", &v1, Some(json!({"restore": "nope"})))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(404), "{e}");

        // A copy of the volume is independent, and has its own size.
        let body = json!({"name": "v2", "source": {"type": "copy", "name": "v1"}});
        call(&d, "POST", vols, Some(body)).await.unwrap();
        let v2_file = pool_dir(&d, "bt").join("custom/v2/f");
        assert_eq!(std::fs::read_to_string(&v2_file).unwrap(), "one\n");
        std::fs::write(&v2_file, "changed in the copy\n").unwrap();
        assert_eq!(sh(&d, "c1", "cat /mnt/data/f").await.1, "one\n");
        let v2: Value = d.client.get_json(&format!("{vols}/v2")).await.unwrap();
        assert_eq!(v2["config"]["size"], "32MiB", "{v2}");
        assert_ne!(
            subvolume_field(&pool_dir(&d, "bt").join("custom/v2"), "UUID"),
            subvolume_field(&vol_path, "UUID"),
            "the copy is a subvolume of its own"
        );

        delete_instance(&d, "c1").await;
        let v: Value = d.client.get_json(&v1).await.unwrap();
        assert_eq!(v["used_by"], json!([]));
        call(&d, "DELETE", &v1, None).await.unwrap();
        call(&d, "DELETE", &format!("{vols}/v2"), None)
            .await
            .unwrap();
        let e = d.client.get(&v1).await.unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert!(!pool_dir(&d, "bt").join("custom-snapshots/v1").exists());
        delete_pool(&d, "bt").await;
        d.shutdown().await;
    });
}

/// A volume at /var/lib/docker keeps what the guest wrote after the
/// instance is deleted, and a new instance reads it back.
async fn volume_outlives_instance(d: &Daemon, fp: &str, pool: &str, config: &[(&str, &str)]) {
    let vols = format!("/1.0/storage-pools/{pool}/volumes/custom");
    call(d, "POST", &vols, Some(json!({"name": "docker"})))
        .await
        .unwrap();
    let devices = json!({
        "root": root_disk(pool, &[]),
        "docker": {"type": "disk", "pool": pool, "source": "docker", "path": "/var/lib/docker"},
    });
    let conf: Value = config
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    for name in ["c1", "c2"] {
        let mut post: InstancesPost = serde_json::from_value(json!({
            "name": name,
            "source": {"type": "image", "fingerprint": fp},
            "devices": devices,
            "config": conf,
        }))
        .unwrap();
        post.put.profiles = Some(vec!["default".into()]);
        d.client.create_instance(&post).await.unwrap();
        start(d, name).await;
        if name == "c1" {
            let (code, out, err) = sh(
                d,
                "c1",
                "echo kept > /var/lib/docker/data && mkdir /var/lib/docker/dir && stat -c '%u %g' /var/lib/docker /var/lib/docker/data",
            )
            .await;
            assert_eq!(code, 0, "writing in the volume: {err}");
            // The guest's root owns the volume and what it wrote.
            assert_eq!(out, "0 0\n0 0\n");
            delete_instance(d, "c1").await;
        }
    }
    // On disk, ids are the container's (0), not the host range's.
    let data = pool_dir(d, pool).join("custom/docker/data");
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), 0);
    let (code, out, _) = sh(d, "c2", "cat /var/lib/docker/data; ls /var/lib/docker").await;
    assert_eq!((code, out.as_str()), (0, "kept\ndata\ndir\n"));
    delete_instance(d, "c2").await;
    call(d, "DELETE", &format!("{vols}/docker"), None)
        .await
        .unwrap();
}

#[test]
fn custom_volume_outlives_its_instance_on_dir() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        volume_outlives_instance(&d, &fp, "default", &[]).await;
        d.shutdown().await;
    });
}

#[test]
fn custom_volume_outlives_its_instance_on_btrfs() {
    if !btrfs_ready() {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        btrfs_pool(&d, "bt").await;
        volume_outlives_instance(&d, &fp, "bt", &[]).await;
        delete_pool(&d, "bt").await;
        d.shutdown().await;
    });
}

#[test]
fn custom_volume_outlives_its_privileged_instance_on_btrfs() {
    if !btrfs_ready() {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        btrfs_pool(&d, "bt").await;
        let privileged = [("security.privileged", "true")];
        volume_outlives_instance(&d, &fp, "bt", &privileged).await;
        delete_pool(&d, "bt").await;
        d.shutdown().await;
    });
}

/// Host paths are not shifted unless asked (as in LXD; audit F5): host
/// root's files are nobody's in the guest, which cannot rewrite them or
/// plant setuid-root files there. `shift=true` is the opt-in that gives
/// the guest's root those files. Kante's own state and the system's top
/// directories cannot be shared at all.
#[test]
fn host_path_disks_are_not_shifted_unless_shift_true() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let src = std::path::PathBuf::from(format!("{}-srv-x", d.dir.display()));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), "host\n").unwrap();
        let disk = |source: &std::path::Path, shift: Option<&str>| {
            let mut d =
                json!({"type": "disk", "source": source.display().to_string(), "path": "/srv/x"});
            if let Some(v) = shift {
                d["shift"] = json!(v);
            }
            d
        };
        let root = root_disk("default", &[]);
        create_with(
            &d,
            &fp,
            "c1",
            json!({"root": root, "x": disk(&src, None)}),
            Value::Null,
        )
        .await
        .unwrap();
        create_with(
            &d,
            &fp,
            "c2",
            json!({"root": root, "x": disk(&src, Some("true"))}),
            Value::Null,
        )
        .await
        .unwrap();
        start(&d, "c1").await;
        // Not shifted: host root's files are nobody's, and stay unwritable.
        let (code, out, err) = sh(&d, "c1", "stat -c %u /srv/x/f; echo guest >> /srv/x/f").await;
        assert_eq!(out, "65534\n", "{err}");
        assert_ne!(code, 0, "the guest wrote a host root's file");
        assert_eq!(std::fs::read_to_string(src.join("f")).unwrap(), "host\n");
        start(&d, "c2").await;
        // Shifted on request (idmapped): host root's files are the container root's.
        let (code, out, err) = sh(&d, "c2", "stat -c %u /srv/x/f && echo guest > /srv/x/g").await;
        assert_eq!((code, out.as_str()), (0, "0\n"), "{err}");
        assert_eq!(std::fs::metadata(src.join("g")).unwrap().uid(), 0);
        // Refused sources, whatever the shift: the host's root and /etc,
        // KANTE_DIR, a path inside it, a directory above it, a symlink to one.
        std::os::unix::fs::symlink("/etc", src.join("etc-link")).unwrap();
        let pools = d.dir.join("storage-pools");
        for bad in [
            std::path::Path::new("/"),
            std::path::Path::new("/etc"),
            &d.dir,
            &pools,
            d.dir.parent().unwrap(),
            &src.join("etc-link"),
        ] {
            let e = create_with(
                &d,
                &fp,
                "c3",
                json!({"root": root, "x": disk(bad, None)}),
                Value::Null,
            )
            .await
            .unwrap_err();
            assert_eq!(e.status(), Some(400), "{}: {e}", bad.display());
            assert!(
                e.to_string().contains("cannot be shared"),
                "{}: {e}",
                bad.display()
            );
        }
        let mut devices = d.client.instance("c1").await.unwrap().devices;
        devices.insert(
            "y".into(),
            serde_json::from_value(disk(std::path::Path::new("/"), Some("false"))).unwrap(),
        );
        let e = d
            .client
            .patch_instance("c1", &json!({ "devices": devices }))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "a live add of / was accepted: {e}");
        delete_instance(&d, "c1").await;
        delete_instance(&d, "c2").await;
        std::fs::remove_dir_all(&src).unwrap();
        d.shutdown().await;
    });
}
