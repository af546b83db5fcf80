//! kanted's cluster part without root: `Manager::enable` on loopback makes
//! a CA, starts a supervised etcd with TLS and client-certificate auth on
//! 127.0.0.1 (ports 8444 and 8445), copies this host's records into it and
//! switches the state; the member is listed online with the database
//! role; a join token is refused when wrong and spent once; shutdown
//! kills etcd. Uses the fixed ports, so one test only.

use std::sync::Arc;
use std::time::Duration;

use kante_api::cluster::ClusterAcceptPost;
use kante_cluster::{ClusterError, Identity, Manager};
use kante_store::state_conformance::profile;
use kante_store::{SharedState, SqliteState, Store, SwitchState};

fn identity() -> Identity {
    let pair =
        kante_tls::KeyPair::generate(kante_tls::Role::Server, &["127.0.0.1".into()]).unwrap();
    Identity {
        fingerprint: pair.fingerprint(),
        cert_pem: pair.cert_pem,
        key_pem: pair.key_pem,
    }
}

fn etcd_pid(dir: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("etcd/etcd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_runs_a_tls_etcd_copies_records_and_lists_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteState::over(Store::open_in_memory().unwrap()).unwrap());
    sqlite.profile_create(&profile("web", "")).await.unwrap();
    let switch = Arc::new(SwitchState::new(sqlite.clone()));
    let m = Manager::open(dir.path(), switch.clone(), sqlite.clone(), identity())
        .await
        .unwrap();
    assert!(!m.cluster_get().enabled);
    // Bad input first: an unreachable address leaves the host standalone.
    let e = m.enable("h1", "[::]:8443").await.unwrap_err();
    assert!(matches!(e, ClusterError::Bad(_)), "{e}");
    assert!(!dir.path().join("cluster").exists());

    m.enable("h1", "127.0.0.1:8443").await.unwrap();
    assert!(switch.is_clustered());
    assert_eq!(m.cluster_get().server_name, "h1");
    // The record written before is in etcd, and new ones go there.
    assert!(switch.profile_get("web").await.unwrap().is_some());
    switch.profile_create(&profile("db", "")).await.unwrap();
    assert!(sqlite.profile_get("db").await.unwrap().is_none());
    // etcd refuses a client without a certificate of the cluster CA.
    let bare = etcd_client::Client::connect(["http://127.0.0.1:8444"], None).await;
    if let Ok(c) = bare {
        let r = tokio::time::timeout(Duration::from_secs(3), c.kv_client().get("x", None)).await;
        assert!(!matches!(r, Ok(Ok(_))), "etcd answered a plain-text client");
    }
    // Listed online, with the database role, once its heartbeat is in.
    let mut online = false;
    for _ in 0..50 {
        let ms = m.members().unwrap();
        assert_eq!(ms.len(), 1);
        if ms[0].status == "Online" {
            assert_eq!(ms[0].roles, ["database"]);
            assert!(ms[0].database);
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(online, "{:?}", m.members());
    // Tokens: a taken name is refused; a wrong secret too; a token is
    // spent once.
    assert!(matches!(
        m.token("h1").await,
        Err(ClusterError::Conflict(_))
    ));
    let token = m.token("h2").await.unwrap();
    let post = |secret: &str| ClusterAcceptPost {
        server_name: "h2".into(),
        secret: secret.into(),
        address: "127.0.0.2:8443".into(),
        certificate: String::new(),
        architecture: "x86_64".into(),
        instances: Vec::new(),
    };
    let e = m.accept(post(&"0".repeat(64))).await.unwrap_err();
    assert!(matches!(e, ClusterError::Forbidden(_)), "{e}");
    let mut clash = post(&token.secret);
    clash.server_name = "h1".into();
    assert!(m.accept(clash).await.is_err());
    // Restarted on the same records, the member is still clustered.
    let pid = etcd_pid(dir.path()).expect("etcd's pid file");
    m.shutdown().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            tokio::time::sleep(Duration::from_millis(500)).await;
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
    );
    drop(m);
    let switch2 = Arc::new(SwitchState::new(sqlite.clone()));
    let m2 = Manager::open(dir.path(), switch2.clone(), sqlite.clone(), identity())
        .await
        .unwrap();
    assert_eq!(m2.cluster_get().server_name, "h1");
    // From the snapshot at once (etcd may not answer yet), current soon.
    assert!(switch2.profile_get("db").await.unwrap().is_some());
    let mut writable = false;
    for _ in 0..100 {
        if switch2.profile_create(&profile("late", "")).await.is_ok() {
            writable = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(writable, "etcd did not come back under supervision");
    m2.shutdown().await;
}
