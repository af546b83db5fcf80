//! Storage seen from instances: snapshots (taken, restored, deleted,
//! undone when the driver fails), renames and deletes with what they move
//! or remove, custom volumes attached as disks, and pools in use.

use crate::instance::snapshots::SnapshotsPost;
use crate::testing::{self, TestHost};
use crate::Engine;
use kante_api::storage::{StoragePoolsPost, StorageVolumesPost};
use kante_api::DevicesMap;
use kante_runtime::process::signal;

use super::{actions, config};

fn snap(name: &str) -> SnapshotsPost {
    SnapshotsPost {
        name: name.into(),
        ..Default::default()
    }
}

async fn created(host: &TestHost, names: &[&str]) -> std::sync::Arc<Engine> {
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    for n in names {
        host.create(&engine, n, "img", &[]).await;
    }
    engine
}

fn rootfs(engine: &Engine, name: &str) -> std::path::PathBuf {
    engine
        .paths
        .pool("default")
        .join(format!("containers/{name}/rootfs"))
}

#[tokio::test]
async fn a_snapshot_is_recorded_and_restored() {
    let host = TestHost::new();
    let engine = created(&host, &["c1"]).await;
    let file = rootfs(&engine, "c1").join("root/state");
    std::fs::write(&file, "before").unwrap();
    testing::wait_ok(&engine.snapshot_create("c1", snap("s1")).await.unwrap()).await;
    let snaps = engine.snapshot_list("c1").await.unwrap();
    assert_eq!(
        snaps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["s1"]
    );
    let e = engine.snapshot_create("c1", snap("s1")).await.unwrap_err();
    assert_eq!(e.status(), 409);
    std::fs::write(&file, "after").unwrap();
    let mut rx = engine.events.subscribe();
    engine.instance_restore("c1", "s1").await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "before");
    assert_eq!(actions(&mut rx), ["instance-restored"]);
    testing::wait_ok(&engine.snapshot_delete("c1", "s1").await.unwrap()).await;
    assert!(engine.snapshot_list("c1").await.unwrap().is_empty());
    assert_eq!(
        engine.snapshot_get("c1", "s1").await.unwrap_err().status(),
        404
    );
}

#[tokio::test]
async fn restoring_a_running_instance_stops_and_starts_it() {
    let host = TestHost::new();
    let engine = created(&host, &["c1"]).await;
    testing::wait_ok(&engine.snapshot_create("c1", snap("s1")).await.unwrap()).await;
    testing::start(&engine, "c1").await;
    engine.instance_restore("c1", "s1").await.unwrap();
    assert_eq!(
        host.runtime.calls_for("c1"),
        [
            "start c1".to_string(),
            format!("signal c1 {}", signal::PWR),
            "cleanup c1".into(),
            "start c1".into()
        ]
    );
}

#[tokio::test]
async fn a_snapshot_the_driver_cannot_make_leaves_no_record() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    engine
        .pool_create(StoragePoolsPost {
            name: "m".into(),
            driver: "mock".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut req = testing::create_request("c1", "img", &[]);
    req.put.devices = DevicesMap::from([(
        "root".to_string(),
        [("type", "disk"), ("path", "/"), ("pool", "m")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )]);
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    host.storage.fail("copy_volume", "read-only filesystem");
    let err = testing::wait_err(&engine.snapshot_create("c1", snap("s1")).await.unwrap()).await;
    assert!(err.contains("read-only filesystem"), "{err}");
    assert!(engine.snapshot_list("c1").await.unwrap().is_empty());
    host.storage.heal("copy_volume");
    testing::wait_ok(&engine.snapshot_create("c1", snap("s1")).await.unwrap()).await;
    assert_eq!(engine.snapshot_list("c1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_rename_moves_the_record_the_volume_and_the_hostname() {
    let host = TestHost::new();
    let engine = created(&host, &["c1"]).await;
    testing::wait_ok(&engine.snapshot_create("c1", snap("s1")).await.unwrap()).await;
    let uuid = config(&engine, "c1").await["volatile.uuid"].clone();
    engine.instance_rename("c1", "c2").await.unwrap();
    assert_eq!(engine.instance_row("c1").await.unwrap_err().status(), 404);
    assert_eq!(config(&engine, "c2").await["volatile.uuid"], uuid);
    assert!(!rootfs(&engine, "c1").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs(&engine, "c2").join("etc/hostname")).unwrap(),
        "c2\n"
    );
    assert_eq!(engine.snapshot_list("c2").await.unwrap().len(), 1);
}

#[tokio::test]
async fn renames_that_cannot_be_done_are_refused() {
    let host = TestHost::new();
    let engine = created(&host, &["c1", "c2"]).await;
    let e = engine.instance_rename("c1", "c2").await.unwrap_err();
    assert_eq!(e.status(), 409);
    let e = engine.instance_rename("c1", "bad_name").await.unwrap_err();
    assert_eq!(e.status(), 400);
    testing::start(&engine, "c1").await;
    let e = engine.instance_rename("c1", "c3").await.unwrap_err();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Renaming of running instance not allowed")
    );
    assert!(engine.instance_row("c1").await.is_ok());
}

#[tokio::test]
async fn delete_removes_the_record_volume_and_logs() {
    let host = TestHost::new();
    let engine = created(&host, &["c1"]).await;
    testing::start(&engine, "c1").await;
    let e = engine.instance_delete("c1").await.unwrap_err();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Instance is running")
    );
    testing::stop(&engine, "c1").await;
    let logs = engine.paths.instance_logs("c1");
    assert!(logs.join("console.log").exists());
    engine.instance_delete("c1").await.unwrap();
    assert_eq!(engine.instance_row("c1").await.unwrap_err().status(), 404);
    assert!(!rootfs(&engine, "c1").exists());
    assert!(!logs.exists());
    assert_eq!(
        engine.instance_delete("c1").await.unwrap_err().status(),
        404
    );
}

#[tokio::test]
async fn a_protected_instance_is_not_deleted() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(
        &engine,
        "c1",
        "img",
        &[("security.protection.delete", "true")],
    )
    .await;
    let e = engine.instance_delete("c1").await.unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(rootfs(&engine, "c1").exists());
}

#[tokio::test]
async fn a_custom_volume_is_mounted_shifted_and_kept_while_used() {
    let host = TestHost::new();
    let engine = created(&host, &["c1"]).await;
    engine
        .volume_create(
            "default",
            StorageVolumesPost {
                name: "vol1".into(),
                kind: "custom".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let row = engine.instance_row("c1").await.unwrap();
    let mut devices = row.devices.clone();
    devices.insert(
        "v".into(),
        [
            ("type", "disk"),
            ("pool", "default"),
            ("source", "vol1"),
            ("path", "/data"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    engine
        .instance_update(
            "c1",
            kante_api::instance::InstancePut {
                config: row.config.clone(),
                devices,
                profiles: Some(row.profiles.clone()),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    testing::start(&engine, "c1").await;
    let spec = host.runtime.spec("c1").unwrap();
    let m = spec.mounts.iter().find(|m| m.target == "/data").unwrap();
    assert!(m.idmapped, "custom volumes are shifted");
    assert_eq!(
        engine.volume_used_by("default", "vol1").await.unwrap(),
        ["/1.0/instances/c1"]
    );
    let e = engine.volume_delete("default", "vol1").await.unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test]
async fn pools_are_made_by_their_driver_and_kept_while_used() {
    let host = TestHost::new();
    let engine = created(&host, &[]).await;
    let bad = StoragePoolsPost {
        name: "x".into(),
        driver: "zfs".into(),
        ..Default::default()
    };
    assert_eq!(engine.pool_create(bad).await.unwrap_err().status(), 400);
    let mut bad_key = StoragePoolsPost {
        name: "x".into(),
        driver: "mock".into(),
        ..Default::default()
    };
    bad_key.config.insert("frob".into(), "1".into());
    assert_eq!(engine.pool_create(bad_key).await.unwrap_err().status(), 400);
    engine
        .pool_create(StoragePoolsPost {
            name: "m".into(),
            driver: "mock".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(host
        .storage
        .calls()
        .iter()
        .any(|c| c.starts_with("create_pool ")));
    let drivers: Vec<String> = engine
        .server_info()
        .await
        .unwrap()
        .environment
        .storage_supported_drivers
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(drivers, ["dir", "btrfs", "mock"]);
    assert_eq!(
        engine.pool_delete("default").await.unwrap_err().status(),
        400
    );
    engine.pool_delete("m").await.unwrap();
    assert!(host
        .storage
        .calls()
        .iter()
        .any(|c| c.starts_with("delete_pool ")));
    assert_eq!(engine.pool_get("m").await.unwrap_err().status(), 404);
}

/// `recursion=2` reads the state once for the whole list: each instance
/// still gets exactly its own snapshots, oldest first, expanded over its
/// profiles, and its own runtime state.
#[tokio::test]
async fn the_full_list_gives_each_instance_its_own_snapshots_and_state() {
    let host = TestHost::new();
    let engine = created(&host, &["a1", "b1", "c1"]).await;
    for (inst, s) in [("b1", "x"), ("a1", "first"), ("b1", "y"), ("a1", "second")] {
        testing::wait_ok(&engine.snapshot_create(inst, snap(s)).await.unwrap()).await;
    }
    testing::start(&engine, "b1").await;
    let full = engine.instance_list_full().await.unwrap();
    let view: Vec<(String, Vec<String>, String)> = full
        .iter()
        .map(|f| {
            (
                f.instance.name.clone(),
                f.snapshots
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
                f.state.as_ref().unwrap().status.clone(),
            )
        })
        .collect();
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        view,
        [
            ("a1".into(), owned(&["first", "second"]), "Stopped".into()),
            ("b1".into(), owned(&["x", "y"]), "Running".into()),
            ("c1".into(), vec![], "Stopped".into()),
        ]
    );
    // Each snapshot is the one `snapshot_list` shows, expansion included.
    for f in &full {
        let alone = engine.snapshot_list(&f.instance.name).await.unwrap();
        let listed = f.snapshots.as_ref().unwrap();
        assert_eq!(
            serde_json::to_value(listed).unwrap(),
            serde_json::to_value(&alone).unwrap()
        );
    }
    testing::stop(&engine, "b1").await;
}
