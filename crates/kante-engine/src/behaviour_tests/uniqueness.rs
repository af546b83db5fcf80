//! Names are unique because the state says so, not because of a lock in
//! one process: of concurrent creates of one name exactly one wins and the
//! others get a 409 Conflict.

use std::sync::Arc;

use crate::testing::TestHost;
use crate::Engine;
use kante_api::profile::ProfilesPost;
use kante_api::storage::StorageVolumesPost;

/// Runs `n` copies of `create` at once; the statuses of those that failed,
/// and how many succeeded.
async fn race<F, Fut>(engine: &Arc<Engine>, n: usize, create: F) -> (usize, Vec<u16>)
where
    F: Fn(Arc<Engine>) -> Fut,
    Fut: std::future::Future<Output = crate::Result<()>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(create(engine.clone())))
        .collect();
    let (mut won, mut lost) = (0, Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => lost.push(e.status()),
        }
    }
    (won, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_profile_have_one_winner() {
    let host = TestHost::new();
    let engine = host.open().await;
    let (won, lost) = race(&engine, 8, |engine| async move {
        engine
            .profile_create(ProfilesPost {
                name: "web".into(),
                ..Default::default()
            })
            .await
    })
    .await;
    assert_eq!(won, 1);
    assert_eq!(lost, [409; 7]);
    let stored = engine.shared.profile_list().await.unwrap();
    assert_eq!(stored.iter().filter(|p| p.name == "web").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_custom_volume_have_one_winner() {
    let host = TestHost::new();
    let engine = host.open().await;
    let (won, lost) = race(&engine, 8, |engine| async move {
        engine
            .volume_create(
                "default",
                StorageVolumesPost {
                    name: "vol1".into(),
                    kind: "custom".into(),
                    description: "mine".into(),
                    ..Default::default()
                },
            )
            .await
    })
    .await;
    assert_eq!(won, 1);
    assert_eq!(lost, [409; 7]);
    let rows = engine.node.volume_list("default").await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.name.as_str(), r.description.as_str()))
            .collect::<Vec<_>>(),
        [("vol1", "mine")]
    );
    assert!(engine.node.volumes_pending().await.unwrap().is_empty());
    engine.volume_delete("default", "vol1").await.unwrap();
    assert!(engine.node.volume_list("default").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_volume_record_left_by_a_crash_is_replaced_or_finished() {
    let host = TestHost::new();
    let engine = host.open().await;
    let row = |name: &str| kante_store::VolumeRow {
        pool: "default".into(),
        name: name.into(),
        description: "stale".into(),
        ..Default::default()
    };
    // A delete cut short after the volume went: a complete record alone.
    engine.node.volume_put(&row("old")).await.unwrap();
    // A create cut short: a pending record (and part of its volume).
    engine
        .node
        .volume_create_pending(&row("half"))
        .await
        .unwrap();
    let post = |name: &str| StorageVolumesPost {
        name: name.into(),
        kind: "custom".into(),
        ..Default::default()
    };
    engine.volume_create("default", post("old")).await.unwrap();
    assert_eq!(
        engine
            .node
            .volume_get("default", "old")
            .await
            .unwrap()
            .unwrap()
            .description,
        ""
    );
    // A pending record holds its name until the next start clears it.
    let e = engine
        .volume_create("default", post("half"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409);
    drop(engine);
    let engine = host.open().await;
    assert!(engine.node.volumes_pending().await.unwrap().is_empty());
    engine.volume_create("default", post("half")).await.unwrap();
    assert!(engine
        .node
        .volume_get("default", "half")
        .await
        .unwrap()
        .is_some());
}
