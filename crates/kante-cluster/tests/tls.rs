//! Client TLS to etcd: a member with the CA and a client certificate
//! works against an etcd that requires them; one without its certificate
//! is refused, as unreachable, within the timeout.

mod support;

use std::time::{Duration, Instant};

use kante_cluster::{EtcdState, EtcdTls};
use kante_store::state_conformance::profile;
use kante_store::{SharedState, StoreError};
use support::{cluster_name, config, Etcd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reaches_etcd_over_client_tls() {
    let etcd = Etcd::start_tls().await;
    let tls = etcd.tls.as_ref().unwrap();
    let cluster = cluster_name("tls");
    // A bare host:port becomes https:// with TLS configured.
    let mut c = config(&format!("127.0.0.1:{}", etcd.client_port), &cluster, "a");
    c.tls = Some(tls.member());
    let a = EtcdState::connect(&c).await.unwrap();
    a.profile_create(&profile("web", "")).await.unwrap();
    assert!(a.profile_get("web").await.unwrap().is_some());

    // Without a client certificate etcd refuses the member.
    c.member = "b".into();
    c.tls = Some(EtcdTls {
        ca: tls.ca.clone(),
        cert: None,
        key: None,
    });
    let start = Instant::now();
    match EtcdState::connect(&c).await {
        Err(StoreError::Unavailable(m)) => eprintln!("refused: {m}"),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("connected without a client certificate"),
    }
    assert!(start.elapsed() < c.timeout + Duration::from_secs(1));
}
