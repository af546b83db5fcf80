//! Two members (two `EtcdState`s) on one etcd: each sees the other's
//! writes in its cache within a bound, of concurrent reservations of one
//! name from both exactly one wins, an alias made while its image is
//! deleted never outlives it, and clusters sharing an etcd share nothing.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kante_store::state_conformance::profile;
use kante_store::{Member, ReservationKind, SharedState, StoreError};
use support::{cluster_name, member, within, Etcd};

/// How soon a member's write reaches the other's cache (a watch event on
/// loopback: milliseconds; the bound leaves room for a loaded machine).
const PROPAGATION: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_one_member_reaches_the_others_cache() {
    let etcd = Etcd::start().await;
    let cluster = cluster_name("members");
    let a = member(&etcd.endpoint(), &cluster, "a").await;
    let b = member(&etcd.endpoint(), &cluster, "bb").await;

    // Both registered; each sees both (A through its watch).
    let both = [
        Member {
            name: "a".into(),
            address: "10.0.0.1:8443".into(),
        },
        Member {
            name: "bb".into(),
            address: "10.0.0.2:8443".into(),
        },
    ];
    within(PROPAGATION, "a sees b registered", || async {
        a.members().await.unwrap() == both
    })
    .await;
    assert_eq!(b.members().await.unwrap(), both);
    assert_eq!(b.local_member().await.unwrap(), both[1]);

    a.profile_create(&profile("web", "from a")).await.unwrap();
    let took = within(PROPAGATION, "b sees a's profile", || async {
        b.profile_get("web").await.unwrap().is_some()
    })
    .await;
    eprintln!("a's create reached b's cache in {took:?}");
    // B's update goes through etcd: the record A made is the one updated.
    b.profile_update(&profile("web", "from b")).await.unwrap();
    within(PROPAGATION, "a sees b's update", || async {
        a.profile_get("web").await.unwrap().unwrap().description == "from b"
    })
    .await;
    // A conflict is decided by etcd, not by the (possibly stale) cache.
    assert!(matches!(
        b.profile_create(&profile("web", "again")).await,
        Err(StoreError::Conflict(_))
    ));
    a.config_replace(&[("k".to_string(), "v".to_string())].into())
        .await
        .unwrap();
    assert!(b.profile_delete("web").await.unwrap());
    within(
        PROPAGATION,
        "a sees b's delete and its own config",
        || async {
            a.profile_get("web").await.unwrap().is_none()
                && b.config_all().await.unwrap().get("k").map(String::as_str) == Some("v")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_concurrent_reservations_from_two_members_one_wins() {
    let etcd = Etcd::start().await;
    let cluster = cluster_name("race");
    let a = Arc::new(member(&etcd.endpoint(), &cluster, "a").await);
    let b = Arc::new(member(&etcd.endpoint(), &cluster, "b").await);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let holder = format!("m{i}");
                let r = s
                    .reserve(ReservationKind::InstanceName, "c1", &holder)
                    .await;
                (holder, r)
            })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (holder, Ok(())) => won.push(holder),
            (_, Err(StoreError::Conflict(m))) => assert_eq!(m, "Instance \"c1\""),
            (_, Err(e)) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one winner: {won:?}");
    for s in [&a, &b] {
        within(PROPAGATION, "both caches name the winner", || async {
            s.reservations(ReservationKind::InstanceName)
                .await
                .unwrap()
                .get("c1")
                == Some(&won[0])
        })
        .await;
    }
    // The loser's member cannot give up what it does not hold.
    assert!(!b
        .release(ReservationKind::InstanceName, "c1", "nobody")
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alias_made_while_its_image_is_deleted_never_outlives_it() {
    let etcd = Etcd::start().await;
    let cluster = cluster_name("cascade");
    let a = Arc::new(member(&etcd.endpoint(), &cluster, "a").await);
    let b = Arc::new(member(&etcd.endpoint(), &cluster, "b").await);
    for i in 0..10 {
        let fp = format!("{i:02}ab");
        let alias = format!("img/{i}");
        a.image_create(&kante_store::state_conformance::image(&fp, "t"))
            .await
            .unwrap();
        within(PROPAGATION, "b sees the image", || async {
            b.image_get(&fp).await.unwrap().is_some()
        })
        .await;
        let row = kante_store::AliasRow {
            name: alias.clone(),
            target: fp.clone(),
            description: String::new(),
        };
        let (deleted, made) = tokio::join!(
            {
                let a = a.clone();
                let fp = fp.clone();
                tokio::spawn(async move { a.image_delete(&fp).await })
            },
            {
                let b = b.clone();
                tokio::spawn(async move { b.alias_create(&row).await })
            }
        );
        assert!(deleted.unwrap().unwrap());
        match made.unwrap() {
            Ok(()) => {}
            Err(StoreError::NotFound(m)) => assert_eq!(m, format!("Image {fp:?}")),
            Err(e) => panic!("unexpected {e}"),
        }
        // Made first, it went with the image; else it was refused.
        for s in [&a, &b] {
            within(PROPAGATION, "no alias without its image", || async {
                s.alias_get(&alias).await.unwrap().is_none()
                    && s.image_get(&fp).await.unwrap().is_none()
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_sharing_an_etcd_share_nothing() {
    let etcd = Etcd::start().await;
    let (one, two) = (cluster_name("one"), cluster_name("two"));
    let a = member(&etcd.endpoint(), &one, "a").await;
    let x = member(&etcd.endpoint(), &two, "x").await;
    a.profile_create(&profile("web", "")).await.unwrap();
    x.reserve(ReservationKind::InstanceName, "c1", "x")
        .await
        .unwrap();
    // Each takes what the other has, in its own space.
    x.profile_create(&profile("web", "")).await.unwrap();
    a.reserve(ReservationKind::InstanceName, "c1", "a")
        .await
        .unwrap();
    assert_eq!(a.members().await.unwrap().len(), 1);
    assert_eq!(x.members().await.unwrap()[0].name, "x");
    assert!(a.profile_delete("web").await.unwrap());
    assert!(x.profile_get("web").await.unwrap().is_some());
}
