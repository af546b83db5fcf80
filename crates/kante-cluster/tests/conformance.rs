//! `EtcdState` against a real etcd behaves as `SqliteState` does: the
//! same conformance checks (kante-store's `state_conformance`), and
//! records laid out one key each, as JSON, under the cluster's prefix.

mod support;

use std::sync::Arc;

use kante_store::SharedState;
use support::{cluster_name, member, Etcd};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_state_passes_the_shared_state_conformance_checks() {
    let etcd = Etcd::start().await;
    let s = member(&etcd.endpoint(), &cluster_name("conformance"), "m1").await;
    kante_store::state_conformance::all(Arc::new(s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_one_json_key_each_under_the_cluster_prefix() {
    let etcd = Etcd::start().await;
    let cluster = cluster_name("layout");
    let s = member(&etcd.endpoint(), &cluster, "m1").await;
    s.profile_create(&kante_store::state_conformance::profile("web", "d"))
        .await
        .unwrap();
    s.reserve(kante_store::ReservationKind::InstanceName, "c1", "m1")
        .await
        .unwrap();
    let mut c = etcd.client().await;
    let get = |key: String| {
        let mut c = c.clone();
        async move {
            let resp = c.get(key, None).await.unwrap();
            resp.kvs().first().map(|kv| kv.value().to_vec())
        }
    };
    let profile = get(format!("/kante/{cluster}/profiles/web")).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&profile).unwrap();
    assert_eq!(json["name"], "web");
    assert_eq!(json["description"], "d");
    assert_eq!(json["config"]["limits.cpu"], "1");
    let holder = get(format!("/kante/{cluster}/reservations/instance/c1")).await;
    assert_eq!(holder.as_deref(), Some(&b"m1"[..]));
    let me = get(format!("/kante/{cluster}/members/m1")).await.unwrap();
    let me: serde_json::Value = serde_json::from_slice(&me).unwrap();
    assert_eq!(me["address"], "10.0.0.2:8443");
    // Nothing outside the prefix.
    let all = c
        .get("/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(all.kvs().iter().all(|kv| kv
        .key()
        .starts_with(format!("/kante/{cluster}/").as_bytes())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_newer_member_wrote_survive_updates_and_renames() {
    let etcd = Etcd::start().await;
    let cluster = cluster_name("newer");
    let s = member(&etcd.endpoint(), &cluster, "m1").await;
    // A newer member's records carry a field this version does not know.
    let mut c = etcd.client().await;
    let mut image =
        serde_json::to_value(kante_store::state_conformance::image("abcd", "t")).unwrap();
    image["profiles"] = serde_json::json!(["web"]);
    image["future"] = "kept".into();
    let mut web = serde_json::to_value(kante_store::state_conformance::profile("web", "")).unwrap();
    web["future"] = "kept".into();
    for (key, value) in [("images/abcd", image), ("profiles/web", web)] {
        c.put(
            format!("/kante/{cluster}/{key}"),
            serde_json::to_vec(&value).unwrap(),
            None,
        )
        .await
        .unwrap();
    }
    let mut img = None;
    for _ in 0..100 {
        img = s.image_get("abcd").await.unwrap();
        if img.is_some() && s.profile_get("web").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut img = img.expect("the cache follows a write it did not make");
    img.public = true;
    s.image_update(&img).await.unwrap();
    s.profile_rename("web", "front").await.unwrap();
    let raw = |key: String| {
        let mut c = c.clone();
        async move {
            let resp = c.get(key, None).await.unwrap();
            serde_json::from_slice::<serde_json::Value>(resp.kvs()[0].value()).unwrap()
        }
    };
    let image = raw(format!("/kante/{cluster}/images/abcd")).await;
    assert_eq!(image["future"], "kept");
    assert_eq!(image["public"], true);
    assert_eq!(image["profiles"], serde_json::json!(["front"]));
    let front = raw(format!("/kante/{cluster}/profiles/front")).await;
    assert_eq!(front["future"], "kept");
    assert_eq!(front["name"], "front");
}
