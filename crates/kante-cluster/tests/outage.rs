//! Local-first under faults: with etcd killed, or one member cut off from
//! it, reads answer from the cache and writes fail fast with a clear
//! error; when etcd is back, writes work again and every cache catches up
//! with what changed meanwhile, through a compaction too.

mod support;

use std::time::{Duration, Instant};

use kante_store::state_conformance::profile;
use kante_store::{ReservationKind, SharedState, StoreError};
use support::{cluster_name, config, member, within, Etcd, Relay};

/// The members' timeout (`support::config`) and what a failing write may
/// take at most: the timeout and a little.
const TIMEOUT: Duration = Duration::from_secs(2);
const FAIL_FAST: Duration = Duration::from_millis(3000);
/// How soon a member is back after etcd or its link returns (watch
/// backoff tops out at 2 s).
const RECOVERY: Duration = Duration::from_secs(15);

/// A write's error, and how long it took to come.
async fn failing_write(s: &impl SharedState, name: &str) -> (StoreError, Duration) {
    let start = Instant::now();
    let e = s
        .profile_create(&profile(name, ""))
        .await
        .expect_err("a write with etcd unreachable");
    (e, start.elapsed())
}

fn assert_unreachable(e: &StoreError, took: Duration) {
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("the cluster's store is unreachable: "),
        "{e}"
    );
    assert!(took < FAIL_FAST, "failed in {took:?}, not fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_reads_go_on_writes_fail_fast_and_all_recovers_on_restart() {
    let mut etcd = Etcd::start().await;
    let cluster = cluster_name("killed");
    let a = member(&etcd.endpoint(), &cluster, "a").await;
    let b = member(&etcd.endpoint(), &cluster, "b").await;
    assert_eq!(config(&etcd.endpoint(), &cluster, "a").timeout, TIMEOUT);
    a.profile_create(&profile("p1", "before")).await.unwrap();
    within(RECOVERY, "b sees p1", || async {
        b.profile_get("p1").await.unwrap().is_some()
    })
    .await;

    etcd.kill();
    within(RECOVERY, "both watches notice", || async {
        !a.is_watching() && !b.is_watching()
    })
    .await;
    // Reads answer from the cache.
    assert_eq!(
        a.profile_get("p1").await.unwrap().unwrap().description,
        "before"
    );
    assert_eq!(b.profile_list().await.unwrap().len(), 1);
    assert_eq!(b.members().await.unwrap().len(), 2);
    // Writes and reservations fail fast, clearly.
    let (e, took) = failing_write(&a, "p2").await;
    assert_unreachable(&e, took);
    let start = Instant::now();
    let e = b
        .reserve(ReservationKind::InstanceName, "c1", "b")
        .await
        .unwrap_err();
    assert_unreachable(&e, start.elapsed());
    let start = Instant::now();
    let e = b.profile_update(&profile("p1", "x")).await.unwrap_err();
    assert_unreachable(&e, start.elapsed());
    eprintln!("a write failed in {took:?}: {e}");

    etcd.restart().await;
    // Writes work again (once the client has reconnected).
    let took = within(RECOVERY, "a's write succeeds", || async {
        match a.profile_create(&profile("p2", "after")).await {
            Ok(()) => true,
            Err(StoreError::Unavailable(_)) => false,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    eprintln!("writes worked again {took:?} after etcd answered");
    b.profile_update(&profile("p1", "edited")).await.unwrap();
    within(RECOVERY, "each sees the other's write", || async {
        b.profile_get("p2").await.unwrap().is_some()
            && a.profile_get("p1").await.unwrap().unwrap().description == "edited"
    })
    .await;
    within(RECOVERY, "both watch again", || async {
        a.is_watching() && b.is_watching()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_catches_up_with_what_changed_meanwhile() {
    let etcd = Etcd::start().await;
    let mut relay = Relay::start(etcd.client_port).await;
    let cluster = cluster_name("cutoff");
    let a = member(&etcd.endpoint(), &cluster, "a").await;
    let b = member(&relay.endpoint(), &cluster, "b").await;
    a.profile_create(&profile("gone", "")).await.unwrap();
    a.profile_create(&profile("kept", "old")).await.unwrap();
    within(RECOVERY, "b sees a's profiles", || async {
        b.profile_list().await.unwrap().len() == 2
    })
    .await;

    relay.cut().await;
    within(RECOVERY, "b's watch notices", || async { !b.is_watching() }).await;
    // A goes on; B answers from its last view and cannot write.
    assert!(a.profile_delete("gone").await.unwrap());
    a.profile_update(&profile("kept", "new")).await.unwrap();
    a.profile_create(&profile("made", "")).await.unwrap();
    a.reserve(ReservationKind::InstanceName, "c1", "a")
        .await
        .unwrap();
    assert!(b.profile_get("gone").await.unwrap().is_some());
    assert_eq!(
        b.profile_get("kept").await.unwrap().unwrap().description,
        "old"
    );
    let (e, took) = failing_write(&b, "from-b").await;
    assert_unreachable(&e, took);

    relay.restore().await;
    within(RECOVERY, "b catches up", || async {
        let names: Vec<_> = b
            .profile_list()
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.description))
            .collect();
        names
            == [
                ("kept".into(), "new".into()),
                ("made".into(), String::new()),
            ]
    })
    .await;
    assert_eq!(
        b.reservations(ReservationKind::InstanceName)
            .await
            .unwrap()
            .get("c1")
            .map(String::as_str),
        Some("a")
    );
    within(RECOVERY, "b writes again", || async {
        b.profile_create(&profile("from-b", "")).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_while_a_member_was_away_reloads_its_cache() {
    let etcd = Etcd::start().await;
    let mut relay = Relay::start(etcd.client_port).await;
    let cluster = cluster_name("compacted");
    let a = member(&etcd.endpoint(), &cluster, "a").await;
    let b = member(&relay.endpoint(), &cluster, "b").await;
    a.profile_create(&profile("gone", "")).await.unwrap();
    a.reserve(ReservationKind::IdBlock, "1000000", "c1")
        .await
        .unwrap();
    within(RECOVERY, "b sees a's records", || async {
        b.profile_get("gone").await.unwrap().is_some()
    })
    .await;
    let away_at = b.cache_revision();

    relay.cut().await;
    within(RECOVERY, "b's watch notices", || async { !b.is_watching() }).await;
    assert!(a.profile_delete("gone").await.unwrap());
    assert!(a
        .release(ReservationKind::IdBlock, "1000000", "c1")
        .await
        .unwrap());
    for i in 0..5 {
        a.profile_create(&profile(&format!("p{i}"), ""))
            .await
            .unwrap();
    }
    // Compact everything B has not seen: its watch cannot resume there.
    let now = a.cache_revision();
    let mut client = etcd.client().await;
    client.compact(now, None).await.unwrap();

    relay.restore().await;
    within(RECOVERY, "b reloads and sees the deletes too", || async {
        b.profile_get("gone").await.unwrap().is_none()
            && b.profile_list().await.unwrap().len() == 5
            && b.reservations(ReservationKind::IdBlock)
                .await
                .unwrap()
                .is_empty()
    })
    .await;
    assert!(b.cache_revision() >= now && now > away_at);
    assert!(b.reloads() >= 1, "b could not resume: it reloaded");
    assert_eq!(a.reloads(), 0);
    // And B follows again afterwards.
    a.profile_create(&profile("later", "")).await.unwrap();
    within(RECOVERY, "b follows after the reload", || async {
        b.profile_get("later").await.unwrap().is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_never_hangs_a_write() {
    let etcd = Etcd::start().await;
    let relay = Relay::start(etcd.client_port).await;
    let cluster = cluster_name("silent");
    let a = member(&etcd.endpoint(), &cluster, "a").await;
    let b = member(&relay.endpoint(), &cluster, "b").await;
    a.profile_create(&profile("p1", "")).await.unwrap();
    within(RECOVERY, "b sees p1", || async {
        b.profile_get("p1").await.unwrap().is_some()
    })
    .await;

    // Packets vanish, nothing is refused: only the timeout can end a call.
    relay.freeze();
    let (e, took) = failing_write(&b, "p2").await;
    assert_unreachable(&e, took);
    assert!(took >= TIMEOUT / 2, "it waited for etcd first: {took:?}");
    let start = Instant::now();
    let e = b
        .reserve(ReservationKind::Address, "kbr0/10.0.0.9", "b")
        .await
        .unwrap_err();
    assert_unreachable(&e, start.elapsed());
    assert!(b.profile_get("p1").await.unwrap().is_some());
    // The watch's keep-alive notices the silence.
    within(RECOVERY, "b's watch notices", || async { !b.is_watching() }).await;
    a.profile_create(&profile("meanwhile", "")).await.unwrap();

    relay.thaw();
    within(RECOVERY, "b catches up", || async {
        b.profile_get("meanwhile").await.unwrap().is_some()
    })
    .await;
    // A call that timed out (rather than being refused) has an unknown
    // outcome: its request may still reach etcd when the link comes back,
    // as p2's did here or not. Either way both members agree on it.
    within(RECOVERY, "b writes again", || async {
        b.profile_create(&profile("p3", "")).await.is_ok()
    })
    .await;
    let p2 = a.profile_get("p2").await.unwrap().is_some();
    within(RECOVERY, "both views agree on p2", || async {
        b.profile_get("p2").await.unwrap().is_some() == p2
            && a.profile_get("p3").await.unwrap().is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_lost_reads_go_on_writes_fail_fast_and_all_recovers() {
    let mut etcd = Etcd::start_cluster(3).await;
    let cluster = cluster_name("quorum");
    // Each member knows every etcd endpoint; b talks to the survivor only.
    let all: Vec<String> = etcd.iter().map(Etcd::endpoint).collect();
    let mut ca = config(&all[0], &cluster, "a");
    ca.endpoints = all.clone();
    let a = kante_cluster::EtcdState::connect(&ca).await.unwrap();
    let b = member(&etcd[2].endpoint(), &cluster, "b").await;
    a.profile_create(&profile("p1", "")).await.unwrap();
    within(RECOVERY, "b sees p1", || async {
        b.profile_get("p1").await.unwrap().is_some()
    })
    .await;

    // Two of three etcd members gone: the survivor is up but has no
    // leader, so nothing can be written and its watches are cancelled.
    etcd[0].kill();
    etcd[1].kill();
    for s in [&a, &b] {
        let (e, took) = failing_write(s, "p2").await;
        assert_unreachable(&e, took);
        assert!(s.profile_get("p1").await.unwrap().is_some());
    }
    let start = Instant::now();
    let e = b
        .reserve(ReservationKind::InstanceName, "c1", "b")
        .await
        .unwrap_err();
    assert_unreachable(&e, start.elapsed());
    within(RECOVERY, "b's watch notices it has no leader", || async {
        !b.is_watching()
    })
    .await;

    etcd[0].restart().await;
    within(RECOVERY, "writes work again with a quorum", || async {
        a.profile_create(&profile("p3", "")).await.is_ok()
    })
    .await;
    within(RECOVERY, "b follows again", || async {
        b.is_watching() && b.profile_get("p3").await.unwrap().is_some()
    })
    .await;
}
