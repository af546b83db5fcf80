//! The state layer under the engine: instance names and id blocks are
//! unique through the shared state's reservations (not a lock of this
//! process), and records carry their member and project.

use std::collections::BTreeSet;

use crate::testing::{self, TestHost};
use kante_store::{ReservationKind, PROJECT, STANDALONE_MEMBER};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_have_one_winner() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let tries: Vec<_> = (0..6)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                match engine
                    .instance_create(testing::create_request("c1", "img", &[]))
                    .await
                {
                    Ok(op) => {
                        let done = testing::wait(&op).await;
                        (done.status_code, done.err)
                    }
                    Err(e) => (e.status(), e.to_string()),
                }
            })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        let (code, err) = t.await.unwrap();
        match code {
            200 => won += 1,
            // Refused at once (409) or by its operation (a failure, 400).
            409 | 400 => assert_eq!(err, "Instance \"c1\" already exists"),
            other => panic!("unexpected status {other}: {err}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(engine.instance_names().await.unwrap(), ["c1"]);
    let names = engine
        .shared
        .reservations(ReservationKind::InstanceName)
        .await
        .unwrap();
    assert_eq!(names.get("c1").map(String::as_str), Some(STANDALONE_MEMBER));
}

#[tokio::test]
async fn a_name_is_given_up_with_its_instance_and_follows_a_rename() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    engine.instance_rename("c1", "c2").await.unwrap();
    let names = || async {
        engine
            .shared
            .reservations(ReservationKind::InstanceName)
            .await
            .unwrap()
            .into_keys()
            .collect::<Vec<_>>()
    };
    assert_eq!(names().await, ["c2"]);
    // The old name is free again.
    host.create(&engine, "c1", "img", &[]).await;
    assert_eq!(names().await, ["c1", "c2"]);
    testing::wait_ok(&engine.instance_delete_op("c2").await.unwrap()).await;
    assert_eq!(names().await, ["c1"]);
}

#[tokio::test]
async fn a_name_reserved_elsewhere_is_refused() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    // Another member placed an instance named c9.
    engine
        .shared
        .reserve(ReservationKind::InstanceName, "c9", "member2")
        .await
        .unwrap();
    let op = engine
        .instance_create(testing::create_request("c9", "img", &[]))
        .await
        .unwrap();
    assert_eq!(
        testing::wait_err(&op).await,
        "Instance \"c9\" already exists"
    );
    assert!(engine.instance_row("c9").await.is_err());
    // Nothing of the failed creation is left, and the reservation stays its owner's.
    let names = engine
        .shared
        .reservations(ReservationKind::InstanceName)
        .await
        .unwrap();
    assert_eq!(names.get("c9").map(String::as_str), Some("member2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_isolated_starts_get_disjoint_id_blocks() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let names = ["iso1", "iso2", "iso3"];
    for n in names {
        host.create(&engine, n, "img", &[("security.idmap.isolated", "true")])
            .await;
    }
    let starts: Vec<_> = names
        .iter()
        .map(|n| {
            let (engine, n) = (engine.clone(), n.to_string());
            tokio::spawn(async move { testing::start(&engine, &n).await })
        })
        .collect();
    for s in starts {
        s.await.unwrap();
    }
    let bases: BTreeSet<u32> = names
        .iter()
        .map(|n| host.runtime.spec(n).unwrap().idmap.unwrap().host_uid)
        .collect();
    assert_eq!(bases.len(), 3, "{bases:?}");
    assert!(!bases.contains(&host.id_range.uid));
    let held = engine
        .shared
        .reservations(ReservationKind::IdBlock)
        .await
        .unwrap();
    let by_holder: BTreeSet<(String, String)> = held.into_iter().map(|(k, h)| (h, k)).collect();
    let expected: BTreeSet<(String, String)> = names
        .iter()
        .map(|n| {
            let base = host.runtime.spec(n).unwrap().idmap.unwrap().host_uid;
            (n.to_string(), base.to_string())
        })
        .collect();
    assert_eq!(by_holder, expected);
}

#[tokio::test]
async fn a_block_is_given_up_when_isolation_ends_or_the_instance_goes() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(
        &engine,
        "iso",
        "img",
        &[("security.idmap.isolated", "true")],
    )
    .await;
    testing::start(&engine, "iso").await;
    let blocks = || async {
        engine
            .shared
            .reservations(ReservationKind::IdBlock)
            .await
            .unwrap()
    };
    assert_eq!(blocks().await.len(), 1);
    testing::stop(&engine, "iso").await;
    engine.instance_rename("iso", "iso-b").await.unwrap();
    assert_eq!(blocks().await.into_values().collect::<Vec<_>>(), ["iso-b"]);
    testing::wait_ok(&engine.instance_delete_op("iso-b").await.unwrap()).await;
    assert!(blocks().await.is_empty());
}

#[tokio::test]
async fn records_carry_this_member_and_the_project() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    assert_eq!(engine.location.get(), STANDALONE_MEMBER);
    let i = engine.instance_get("c1").await.unwrap();
    assert_eq!(
        (i.location.as_str(), i.project.as_str()),
        (STANDALONE_MEMBER, PROJECT)
    );
    assert_eq!(engine.instance_row("c1").await.unwrap().project, PROJECT);
    let mut rx = engine.events.subscribe();
    engine.events.lifecycle("x", "/1.0", serde_json::json!({}));
    let e = rx.recv().await.unwrap();
    assert_eq!(
        (e.location.as_str(), e.project.as_str()),
        (STANDALONE_MEMBER, PROJECT)
    );
}

#[tokio::test]
async fn a_restart_gives_up_reservations_a_crash_left_without_an_instance() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    let (names, blocks) = (ReservationKind::InstanceName, ReservationKind::IdBlock);
    // A daemon that died between a reservation and its record.
    engine
        .shared
        .reserve(names, "ghost", STANDALONE_MEMBER)
        .await
        .unwrap();
    engine
        .shared
        .reserve(blocks, "9999", "ghost")
        .await
        .unwrap();
    // Another member's instance and its block are not this daemon's to free.
    engine
        .shared
        .reserve(names, "far", "member2")
        .await
        .unwrap();
    engine.shared.reserve(blocks, "8888", "far").await.unwrap();
    drop(engine);
    let engine = host.open().await;
    let held = |kind| {
        let engine = engine.clone();
        async move {
            engine
                .shared
                .reservations(kind)
                .await
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        held(names).await,
        [
            ("c1".to_string(), STANDALONE_MEMBER.to_string()),
            ("far".to_string(), "member2".to_string())
        ]
    );
    assert_eq!(
        held(blocks).await,
        [("8888".to_string(), "far".to_string())]
    );
    // The freed name can be used.
    host.create(&engine, "ghost", "img", &[]).await;
}

#[tokio::test]
async fn custom_volume_records_live_in_the_state_and_old_sidecars_move_there() {
    use kante_api::storage::{StorageVolumePut, StorageVolumesPost};
    let host = TestHost::new();
    let engine = host.open().await;
    let mut config = kante_api::ConfigMap::new();
    config.insert("user.a".into(), "1".into());
    engine
        .volume_create(
            "default",
            StorageVolumesPost {
                name: "vol1".into(),
                kind: "custom".into(),
                description: "data".into(),
                config: config.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let row = engine
        .node
        .volume_get("default", "vol1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.description.as_str(), &row.config), ("data", &config));
    let pool_dir = engine.paths.pool("default");
    assert!(!pool_dir.join("custom-meta/vol1.json").exists());
    let put = StorageVolumePut {
        description: "more".into(),
        config: config.clone(),
        ..Default::default()
    };
    engine
        .volume_update("default", "vol1", put, false)
        .await
        .unwrap();
    engine
        .volume_rename("default", "vol1", "vol2")
        .await
        .unwrap();
    assert!(engine
        .node
        .volume_get("default", "vol1")
        .await
        .unwrap()
        .is_none());
    let v = engine
        .volume_get("default", "custom", "vol2")
        .await
        .unwrap();
    assert_eq!((v.description.as_str(), &v.config), ("more", &config));

    // An older version's sidecar for vol2 moves into the state at start.
    std::fs::write(
        pool_dir.join("custom-meta/vol2.json"),
        r#"{"description": "from the sidecar", "config": {"user.b": "2"}, "created_at": ""}"#,
    )
    .unwrap();
    drop(engine);
    let engine = host.open().await;
    assert!(!pool_dir.join("custom-meta/vol2.json").exists());
    let v = engine
        .volume_get("default", "custom", "vol2")
        .await
        .unwrap();
    assert_eq!(v.description, "from the sidecar");
    assert_eq!(v.config.get("user.b").map(String::as_str), Some("2"));

    engine.volume_delete("default", "vol2").await.unwrap();
    assert!(engine
        .node
        .volume_get("default", "vol2")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        engine
            .volume_get("default", "custom", "vol2")
            .await
            .unwrap_err()
            .status(),
        404
    );
}
