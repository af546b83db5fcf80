//! Tests of the state traits over SQLite: reservations are compare-and-swap
//! (one winner among concurrent takers), certificates, members, migration 5.

use std::sync::Arc;

use crate::{
    CertificateRow, InstanceRow, NodeState, ReservationKind, SharedState, SqliteState, Store,
    StoreError, STANDALONE_MEMBER,
};

fn state() -> Arc<SqliteState> {
    Arc::new(SqliteState::over(Store::open_in_memory().unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_of_one_name_have_one_winner() {
    let s = state();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.reserve(ReservationKind::InstanceName, "c1", &format!("m{i}"))
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => won.push(format!("m{i}")),
            Err(StoreError::Conflict(m)) => assert_eq!(m, "Instance \"c1\""),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let held = s.reservations(ReservationKind::InstanceName).await.unwrap();
    assert_eq!(held.get("c1"), Some(&won[0]));
}

#[tokio::test]
async fn a_held_key_is_a_conflict_and_released_only_by_its_holder() {
    let s = state();
    let k = ReservationKind::IdBlock;
    s.reserve(k, "1065536", "c1").await.unwrap();
    assert!(matches!(
        s.reserve(k, "1065536", "c1").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.reserve(k, "1065536", "c2").await,
        Err(StoreError::Conflict(m)) if m == "Id block \"1065536\""
    ));
    // Kinds are separate spaces.
    s.reserve(ReservationKind::InstanceName, "1065536", "c2")
        .await
        .unwrap();
    assert!(!s.release(k, "1065536", "c2").await.unwrap());
    assert!(s.transfer(k, "1065536", "c1", "c3").await.unwrap());
    assert!(!s.transfer(k, "1065536", "c1", "c4").await.unwrap());
    assert!(s.release(k, "1065536", "c3").await.unwrap());
    s.reserve(k, "1065536", "c2").await.unwrap();
    let held = s.reservations(k).await.unwrap();
    assert_eq!(
        held.into_iter().collect::<Vec<_>>(),
        [("1065536".to_string(), "c2".to_string())]
    );
}

#[tokio::test]
async fn the_standalone_member_and_certificates() {
    let s = state();
    let me = s.local_member().await.unwrap();
    assert_eq!(me.name, STANDALONE_MEMBER);
    assert_eq!(s.members().await.unwrap(), [me]);
    assert!(s.certificate_list().await.unwrap().is_empty());
    let cert = CertificateRow {
        fingerprint: "abcd".into(),
        kind: "client".into(),
        name: "admin".into(),
        certificate: "-----BEGIN CERTIFICATE-----".into(),
        restricted: false,
        description: String::new(),
        projects: vec![],
    };
    s.certificate_create(&cert).await.unwrap();
    assert!(matches!(
        s.certificate_create(&cert).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.certificate_get("abcd").await.unwrap(), Some(cert.clone()));
    // An edit rewrites name, restriction and projects; the key stays.
    let edited = CertificateRow {
        name: "ops".into(),
        restricted: true,
        projects: vec!["default".into()],
        ..cert
    };
    s.certificate_update(&edited).await.unwrap();
    assert_eq!(s.certificate_get("abcd").await.unwrap(), Some(edited));
    assert!(s.certificate_delete("abcd").await.unwrap());
    assert!(s.certificate_get("abcd").await.unwrap().is_none());
}

#[tokio::test]
async fn node_records_go_through_the_state_thread() {
    let s = state();
    let row = InstanceRow {
        name: "c1".into(),
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
    };
    s.instance_create_pending(&row).await.unwrap();
    assert_eq!(s.instances_pending().await.unwrap(), ["c1"]);
    assert!(matches!(
        s.instance_create(&row).await,
        Err(StoreError::NotFound(_)) | Err(StoreError::Conflict(_))
    ));
    s.instance_created("c1").await.unwrap();
    assert_eq!(s.instance_get("c1").await.unwrap(), Some(row));
    assert!(s.instance_delete("c1").await.unwrap());
    assert!(s.instance_list().await.unwrap().is_empty());
}

#[test]
fn instances_of_an_older_database_hold_their_names() {
    let dir = std::env::temp_dir().join(format!("kstore-v4-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        for (i, sql) in crate::migrations::MIGRATIONS.iter().take(4).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO instances (name, architecture, created_at, last_used_at)
             VALUES ('old', 'x86_64', '', '')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert!(matches!(
        s.reserve(ReservationKind::InstanceName, "old", "elsewhere"),
        Err(StoreError::Conflict(_))
    ));
    assert!(s
        .release(ReservationKind::InstanceName, "old", STANDALONE_MEMBER)
        .unwrap());
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn custom_volume_records_are_per_pool_and_upserted() {
    let s = state();
    let v = |pool: &str, name: &str, desc: &str| crate::VolumeRow {
        pool: pool.into(),
        name: name.into(),
        description: desc.into(),
        config: [("size".to_string(), "1GiB".to_string())].into(),
        created_at: "t".into(),
    };
    s.volume_put(&v("default", "data", "a")).await.unwrap();
    s.volume_put(&v("other", "data", "b")).await.unwrap();
    s.volume_put(&v("default", "data", "c")).await.unwrap();
    assert_eq!(
        s.volume_get("default", "data").await.unwrap(),
        Some(v("default", "data", "c"))
    );
    assert_eq!(
        s.volume_list("other").await.unwrap(),
        [v("other", "data", "b")]
    );
    s.volume_put(&v("default", "logs", "")).await.unwrap();
    assert!(matches!(
        s.volume_rename("default", "data", "logs").await,
        Err(StoreError::Conflict(m)) if m == "Storage volume \"logs\""
    ));
    s.volume_rename("default", "data", "db").await.unwrap();
    let names: Vec<_> = s
        .volume_list("default")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["db", "logs"]);
    assert!(s.volume_delete("default", "db").await.unwrap());
    assert!(!s.volume_delete("default", "db").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_state_passes_the_shared_state_conformance_checks() {
    crate::state_conformance::all(state()).await;
}
