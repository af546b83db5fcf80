//! Instance backups' records: made with their tarball, listed with their
//! fields, carried by the instance's rename, gone with its delete, and put
//! back in step with the tarballs at start after a crash (or imported
//! from older versions' sidecars).

use crate::testing::{self, TestHost};
use crate::Engine;
use kante_api::backup::InstanceBackupsPost;
use kante_store::BackupRow;

use super::actions;

fn post(name: &str) -> InstanceBackupsPost {
    InstanceBackupsPost {
        name: name.into(),
        instance_only: true,
        compression_algorithm: "none".into(),
        ..Default::default()
    }
}

async fn backed_up(host: &TestHost, names: &[&str]) -> std::sync::Arc<Engine> {
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    for n in names {
        testing::wait_ok(&engine.backup_create("c1", post(n)).await.unwrap()).await;
    }
    engine
}

fn tarball(engine: &Engine, instance: &str, name: &str) -> std::path::PathBuf {
    engine
        .paths
        .root
        .join(format!("backups/instances/{instance}/{name}"))
}

async fn stored(engine: &Engine, instance: &str) -> Vec<String> {
    let rows = engine.node.backup_list(instance).await.unwrap();
    rows.into_iter().map(|b| b.name).collect()
}

#[tokio::test]
async fn a_backup_is_recorded_with_its_fields_and_listed() {
    let host = TestHost::new();
    let engine = backed_up(&host, &[]).await;
    let mut rx = engine.events.subscribe();
    let expires = kante_api::now() + chrono::Duration::days(1);
    let req = InstanceBackupsPost {
        expires_at: Some(expires),
        ..post("b1")
    };
    testing::wait_ok(&engine.backup_create("c1", req).await.unwrap()).await;
    assert_eq!(actions(&mut rx), ["instance-backup-created"]);
    let row = engine.node.backup_get("c1", "b1").await.unwrap().unwrap();
    assert_eq!((row.instance_only, row.optimized_storage), (true, false));
    assert_eq!(row.compression_algorithm, "none");
    assert!(engine.node.backups_pending().await.unwrap().is_empty());
    let listed = engine.backup_list("c1").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "b1");
    assert!(listed[0].instance_only);
    assert_eq!(listed[0].expires_at.timestamp(), expires.timestamp());
    assert!(tarball(&engine, "c1", "b1").is_file());
    // An unnamed backup takes the next free name.
    testing::wait_ok(&engine.backup_create("c1", post("")).await.unwrap()).await;
    assert_eq!(stored(&engine, "c1").await, ["b1", "backup0"]);
    let e = engine.backup_create("c1", post("b1")).await.unwrap_err();
    assert_eq!(e.status(), 409);
}

#[tokio::test]
async fn backup_records_follow_renames_and_deletes() {
    let host = TestHost::new();
    let engine = backed_up(&host, &["b1", "b2"]).await;
    testing::wait_ok(&engine.backup_rename("c1", "b2", "b3").await.unwrap()).await;
    assert_eq!(stored(&engine, "c1").await, ["b1", "b3"]);
    assert!(!tarball(&engine, "c1", "b2").exists());
    assert!(tarball(&engine, "c1", "b3").is_file());
    engine.instance_rename("c1", "c2").await.unwrap();
    assert!(stored(&engine, "c1").await.is_empty());
    assert_eq!(stored(&engine, "c2").await, ["b1", "b3"]);
    assert!(tarball(&engine, "c2", "b1").is_file());
    assert_eq!(engine.backup_list("c2").await.unwrap().len(), 2);
    testing::wait_ok(&engine.backup_delete("c2", "b1").await.unwrap()).await;
    assert_eq!(stored(&engine, "c2").await, ["b3"]);
    assert!(!tarball(&engine, "c2", "b1").exists());
    engine.instance_delete("c2").await.unwrap();
    assert!(engine.node.backup_list_all().await.unwrap().is_empty());
    assert!(!tarball(&engine, "c2", "b3").exists());
}

#[tokio::test]
async fn a_record_left_without_its_tarball_is_invisible_and_replaced() {
    let host = TestHost::new();
    let engine = backed_up(&host, &["b1"]).await;
    // A delete cut short after its tarball went.
    std::fs::remove_file(tarball(&engine, "c1", "b1")).unwrap();
    assert!(engine.backup_list("c1").await.unwrap().is_empty());
    assert_eq!(
        engine.backup_get("c1", "b1").await.unwrap_err().status(),
        404
    );
    // A create cut short: its record is still pending.
    let row = BackupRow {
        instance: "c1".into(),
        name: "b2".into(),
        ..Default::default()
    };
    engine.node.backup_create_pending(&row).await.unwrap();
    // Neither blocks a new backup of that name.
    testing::wait_ok(&engine.backup_create("c1", post("b1")).await.unwrap()).await;
    testing::wait_ok(&engine.backup_create("c1", post("b2")).await.unwrap()).await;
    assert_eq!(stored(&engine, "c1").await, ["b1", "b2"]);
    assert!(tarball(&engine, "c1", "b2").is_file());
}

#[tokio::test]
async fn a_restart_puts_records_and_tarballs_back_in_step() {
    let host = TestHost::new();
    let engine = backed_up(&host, &["b1", "b2"]).await;
    // A create cut short (pending record, its tarball made), a delete cut
    // short (record, no tarball), a stray tarball, and a deleted
    // instance's tarballs.
    let pending = BackupRow {
        instance: "c1".into(),
        name: "b3".into(),
        ..Default::default()
    };
    engine.node.backup_create_pending(&pending).await.unwrap();
    std::fs::write(tarball(&engine, "c1", "b3"), "half").unwrap();
    std::fs::remove_file(tarball(&engine, "c1", "b2")).unwrap();
    std::fs::write(tarball(&engine, "c1", "stray"), "x").unwrap();
    std::fs::create_dir_all(tarball(&engine, "gone", "")).unwrap();
    std::fs::write(tarball(&engine, "gone", "b1"), "x").unwrap();
    drop(engine);
    let engine = host.open().await;
    assert!(engine.node.backups_pending().await.unwrap().is_empty());
    assert_eq!(stored(&engine, "c1").await, ["b1"]);
    assert!(!tarball(&engine, "c1", "b3").exists());
    assert!(!tarball(&engine, "c1", "stray").exists());
    assert!(!tarball(&engine, "gone", "").exists());
    assert!(tarball(&engine, "c1", "b1").is_file());
}

#[tokio::test]
async fn a_rename_cut_short_keeps_the_backups() {
    let host = TestHost::new();
    let engine = backed_up(&host, &["b1"]).await;
    // The records followed the instance; its backups' directory did not.
    engine.instance_rename("c1", "c2").await.unwrap();
    std::fs::rename(tarball(&engine, "c2", ""), tarball(&engine, "c1", "")).unwrap();
    drop(engine);
    let engine = host.open().await;
    assert_eq!(stored(&engine, "c2").await, ["b1"]);
    assert!(tarball(&engine, "c2", "b1").is_file());
    assert_eq!(engine.backup_list("c2").await.unwrap()[0].name, "b1");
}

#[tokio::test]
async fn older_versions_sidecars_become_records() {
    let host = TestHost::new();
    let engine = backed_up(&host, &[]).await;
    let dir = tarball(&engine, "c1", "");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("old"), "tarball").unwrap();
    std::fs::write(
        dir.join(".old.json"),
        r#"{"created_at":"2026-01-02T03:04:05Z","expires_at":"0001-01-01T00:00:00Z",
            "instance_only":false,"optimized_storage":false,"compression":"gzip"}"#,
    )
    .unwrap();
    // A sidecar whose tarball is missing described nothing.
    std::fs::write(
        dir.join(".lost.json"),
        r#"{"created_at":"2026-01-02T03:04:05Z","expires_at":"0001-01-01T00:00:00Z",
            "instance_only":false,"optimized_storage":false,"compression":"gzip"}"#,
    )
    .unwrap();
    drop(engine);
    let engine = host.open().await;
    let row = engine.node.backup_get("c1", "old").await.unwrap().unwrap();
    assert_eq!(row.compression_algorithm, "gzip");
    assert!(row.created_at.starts_with("2026-01-02T03:04:05"));
    assert!(!row.instance_only);
    assert_eq!(stored(&engine, "c1").await, ["old"]);
    assert!(!dir.join(".old.json").exists());
    assert!(!dir.join(".lost.json").exists());
    assert!(dir.join("old").is_file());
}

#[tokio::test]
async fn expired_backups_go_with_their_records() {
    let host = TestHost::new();
    let engine = backed_up(&host, &[]).await;
    let req = InstanceBackupsPost {
        expires_at: Some(kante_api::now() + chrono::Duration::milliseconds(50)),
        ..post("short")
    };
    testing::wait_ok(&engine.backup_create("c1", req).await.unwrap()).await;
    assert_eq!(stored(&engine, "c1").await, ["short"]);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(engine);
    let engine = host.open().await;
    assert!(stored(&engine, "c1").await.is_empty());
    assert!(!tarball(&engine, "c1", "short").exists());
}
