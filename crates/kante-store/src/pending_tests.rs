//! Tests of pending records: backups and custom volumes are invisible
//! while being made, their names stay taken, and backups follow their
//! instance's rename and deletion.

use std::sync::Arc;

use crate::{BackupRow, InstanceRow, NodeState, SqliteState, Store, StoreError, VolumeRow};

fn state() -> Arc<SqliteState> {
    Arc::new(SqliteState::over(Store::open_in_memory().unwrap()).unwrap())
}

fn instance(name: &str) -> InstanceRow {
    InstanceRow {
        name: name.into(),
        project: crate::PROJECT.into(),
        kind: "container".into(),
        architecture: "x86_64".into(),
        ephemeral: false,
        stateful: false,
        description: String::new(),
        created_at: "t".into(),
        last_used_at: "t".into(),
        config: Default::default(),
        devices: Default::default(),
        profiles: vec!["default".into()],
    }
}

fn backup(instance: &str, name: &str) -> BackupRow {
    BackupRow {
        instance: instance.into(),
        name: name.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        expires_at: "0001-01-01T00:00:00Z".into(),
        instance_only: true,
        optimized_storage: false,
        compression_algorithm: "zstd".into(),
    }
}

#[tokio::test]
async fn a_backup_is_listed_once_complete_and_its_name_is_taken_while_pending() {
    let s = state();
    s.instance_create(&instance("c1")).await.unwrap();
    s.backup_create_pending(&backup("c1", "b0")).await.unwrap();
    assert!(s.backup_list("c1").await.unwrap().is_empty());
    assert_eq!(s.backup_get("c1", "b0").await.unwrap(), None);
    assert!(matches!(
        s.backup_create_pending(&backup("c1", "b0")).await,
        Err(StoreError::Conflict(m)) if m == "Backup \"b0\""
    ));
    assert_eq!(
        s.backups_pending().await.unwrap(),
        [("c1".to_string(), "b0".to_string())]
    );
    s.backup_created("c1", "b0").await.unwrap();
    assert!(s.backups_pending().await.unwrap().is_empty());
    assert_eq!(s.backup_list("c1").await.unwrap(), [backup("c1", "b0")]);
    // A second completion finds nothing pending.
    assert!(matches!(
        s.backup_created("c1", "b0").await,
        Err(StoreError::NotFound(_))
    ));
    s.backup_put(&backup("c1", "b1")).await.unwrap();
    s.backup_rename("c1", "b1", "b2").await.unwrap();
    assert!(matches!(
        s.backup_rename("c1", "b2", "b0").await,
        Err(StoreError::Conflict(_))
    ));
    let names: Vec<_> = s
        .backup_list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.instance, b.name))
        .collect();
    assert_eq!(
        names,
        [("c1".into(), "b0".into()), ("c1".into(), "b2".into())]
    );
    assert!(s.backup_delete("c1", "b2").await.unwrap());
    assert!(!s.backup_delete("c1", "b2").await.unwrap());
}

#[tokio::test]
async fn backups_follow_their_instance() {
    let s = state();
    s.instance_create(&instance("c1")).await.unwrap();
    s.backup_put(&backup("c1", "b0")).await.unwrap();
    s.backup_create_pending(&backup("c1", "b1")).await.unwrap();
    s.instance_rename("c1", "c2").await.unwrap();
    assert!(s.backup_list("c1").await.unwrap().is_empty());
    assert_eq!(s.backup_list("c2").await.unwrap(), [backup("c2", "b0")]);
    assert_eq!(
        s.backups_pending().await.unwrap(),
        [("c2".to_string(), "b1".to_string())]
    );
    assert!(s.instance_delete("c2").await.unwrap());
    assert!(s.backup_list_all().await.unwrap().is_empty());
    assert!(s.backups_pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_pending_volume_record_is_hidden_taken_and_not_stale() {
    let s = state();
    let v = VolumeRow {
        pool: "default".into(),
        name: "data".into(),
        description: "d".into(),
        config: Default::default(),
        created_at: "t".into(),
    };
    s.volume_create_pending(&v).await.unwrap();
    assert_eq!(s.volume_get("default", "data").await.unwrap(), None);
    assert!(matches!(
        s.volume_create_pending(&v).await,
        Err(StoreError::Conflict(_))
    ));
    // Someone is making it: it is no stale record to replace.
    assert!(!s.volume_delete_stale("default", "data").await.unwrap());
    s.volume_created("default", "data").await.unwrap();
    assert_eq!(
        s.volume_list("default").await.unwrap(),
        std::slice::from_ref(&v)
    );
    assert!(s.volume_deleting("default", "data").await.unwrap());
    assert!(!s.volume_deleting("default", "data").await.unwrap());
    assert_eq!(
        s.volumes_pending().await.unwrap(),
        [("default".to_string(), "data".to_string())]
    );
    assert!(s.volume_delete("default", "data").await.unwrap());
    s.volume_put(&v).await.unwrap();
    assert!(s.volume_delete_stale("default", "data").await.unwrap());
    assert!(s.volume_list("default").await.unwrap().is_empty());
}
