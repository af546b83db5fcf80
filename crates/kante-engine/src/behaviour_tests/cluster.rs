//! The cluster verbs on a standalone engine: `GET /1.0/cluster` says it
//! is not clustered, the member verbs (evacuation too) refuse with 400, the joining
//! member's accept is the one cluster verb an untrusted caller reaches
//! (and is refused there too), a token that does not decode fails before
//! any operation starts, and `GET /1.0` is not clustered.

use std::net::SocketAddr;

use kante_api::cluster::{ClusterAcceptPost, ClusterMembersPost, ClusterPut};

use crate::front::{Reply, Request};
use crate::remote::{Access, Caller};
use crate::testing::TestHost;

#[tokio::test]
async fn a_standalone_engine_answers_the_cluster_verbs() {
    let host = TestHost::new();
    let engine = host.open().await;
    match engine.handle(Request::ClusterGet).await.unwrap() {
        Reply::Cluster(c) => {
            assert!(!c.enabled);
            assert_eq!(c.server_name, "");
        }
        other => panic!("expected the cluster, got {}", other.kind()),
    }
    for req in [
        Request::ClusterMembers,
        Request::ClusterMemberGet { name: "h1".into() },
        Request::ClusterMemberAdd(ClusterMembersPost {
            server_name: "h2".into(),
        }),
        Request::ClusterMemberDelete {
            name: "h2".into(),
            force: false,
        },
        Request::ClusterMemberState {
            name: "h2".into(),
            post: kante_api::cluster::ClusterMemberStatePost {
                action: "evacuate".into(),
                mode: String::new(),
            },
        },
    ] {
        let e = engine.handle(req).await.err().expect("refused");
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.to_string().contains("not clustered"), "{e}");
    }
    // Joining with a token that does not decode: refused at once.
    let put = ClusterPut {
        enabled: true,
        cluster_token: "not-a-token".into(),
        ..Default::default()
    };
    let e = engine
        .handle(Request::ClusterPut(Box::new(put)))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.status(), 400, "{e}");
    // Enabling without a reachable core.https_address: refused at once.
    let put = ClusterPut {
        enabled: true,
        server_name: "h1".into(),
        ..Default::default()
    };
    let e = engine
        .handle(Request::ClusterPut(Box::new(put)))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("core.https_address"), "{e}");
    // An untrusted caller reaches accept, and a standalone server refuses.
    let nobody = Access {
        caller: Caller::remote(SocketAddr::from(([192, 0, 2, 9], 40001)), None),
        trusted: false,
    };
    let post = ClusterAcceptPost {
        server_name: "h2".into(),
        secret: "ab".into(),
        ..Default::default()
    };
    let e = engine
        .handle_as(&nobody, Request::ClusterAccept(Box::new(post)))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.status(), 400, "{e}");
    // Other cluster verbs are closed to it.
    let e = engine
        .handle_as(&nobody, Request::ClusterMembers)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.status(), 403, "{e}");
    match engine.handle(Request::ServerGet).await.unwrap() {
        Reply::Server(s) => {
            assert!(!s.environment.server_clustered);
            assert!(s.api_extensions.iter().any(|x| x == "clustering"));
        }
        other => panic!("expected the server, got {}", other.kind()),
    }
}

/// Standalone, `?target=` on a network is refused as LXD refuses it and
/// nothing is made; without it a network is made as always (`Created`,
/// its keys as given, this server's name in `locations`).
#[tokio::test]
async fn a_standalone_engine_refuses_network_targets() {
    use kante_api::network::{NetworkPut, NetworksPost};
    let host = TestHost::new();
    let engine = host.open().await;
    let post = |config: &[(&str, &str)]| NetworksPost {
        name: "kn0".into(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let target = Some("h1".to_string());
    let refusals = [
        Request::NetworkCreate {
            post: post(&[("bridge.external_interfaces", "eth1")]),
            target: target.clone(),
            notified: false,
        },
        Request::NetworkGet {
            name: "kn0".into(),
            target: target.clone(),
        },
        Request::NetworkUpdate {
            name: "kn0".into(),
            put: NetworkPut::default(),
            merge: true,
            target: target.clone(),
            notified: false,
        },
    ];
    for req in refusals {
        let e = engine.handle(req).await.err().expect("refused");
        assert_eq!(e.status(), 400, "{e}");
        assert!(
            e.to_string().contains("Target only allowed when clustered"),
            "{e}"
        );
    }
    assert!(host.net.calls().iter().all(|c| !c.starts_with("create_")));
    let create = Request::NetworkCreate {
        post: post(&[("ipv4.address", "none"), ("ipv6.address", "none")]),
        target: None,
        notified: false,
    };
    engine.handle(create).await.unwrap();
    let got = Request::NetworkGet {
        name: "kn0".into(),
        target: None,
    };
    match engine.handle(got).await.unwrap() {
        Reply::Network(n) => {
            assert_eq!(n.status, "Created");
            assert_eq!(n.config["ipv4.address"], "none");
            assert_eq!(n.locations, ["none"]);
        }
        other => panic!("expected the network, got {}", other.kind()),
    }
    let delete = Request::NetworkDelete {
        name: "kn0".into(),
        notified: false,
    };
    engine.handle(delete).await.unwrap();
}

/// An overlay spans a cluster: standalone, its create is a 400 that says
/// so, and nothing is made or recorded.
#[tokio::test]
async fn a_standalone_engine_refuses_overlays() {
    use kante_api::network::NetworksPost;
    let host = TestHost::new();
    let engine = host.open().await;
    let create = Request::NetworkCreate {
        post: NetworksPost {
            name: "ov1".into(),
            kind: "overlay".into(),
            config: [("ipv4.address".to_string(), "10.0.9.1/24".to_string())].into(),
            ..Default::default()
        },
        target: None,
        notified: false,
    };
    let e = engine.handle(create).await.err().expect("refused");
    assert_eq!(e.status(), 400, "{e}");
    assert!(e.to_string().contains("not clustered"), "{e}");
    assert!(host.net.calls().iter().all(|c| !c.starts_with("create_")));
    let got = Request::NetworkGet {
        name: "ov1".into(),
        target: None,
    };
    assert_eq!(engine.handle(got).await.err().expect("none").status(), 404);
}
