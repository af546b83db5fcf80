//! Remote access through the front door: the trust store's verbs, trust
//! tokens (single use, expiry, revocation), the trust password (hashed,
//! never shown, rate-limited per address), the gate by fingerprint, and
//! `core.https_address` bound through a fake `Listeners` before commit.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use kante_api::certificate::{CertificateAddToken, CertificatePut, CertificatesPost};
use kante_api::ConfigMap;

use crate::front::{Reply, Request};
use crate::remote::{Access, Caller, Listeners, FAILURE_LIMIT};
use crate::testing::TestHost;
use crate::Engine;

/// Listeners that bind nothing: they record what was asked, and refuse
/// the addresses in `refuse`.
#[derive(Default)]
struct FakeListeners {
    refuse: Vec<SocketAddr>,
    calls: Mutex<Vec<String>>,
    live: Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl Listeners for FakeListeners {
    fn bind(&self, addr: SocketAddr) -> std::io::Result<(u64, SocketAddr)> {
        self.calls.lock().unwrap().push(format!("bind {addr}"));
        if self.refuse.contains(&addr) {
            return Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        }
        let mut live = self.live.lock().unwrap();
        let id = live.iter().max().copied().unwrap_or(0) + 1;
        live.push(id);
        Ok((id, addr))
    }
    async fn retain(&self, keep: Option<u64>) {
        self.live.lock().unwrap().retain(|id| Some(*id) == keep);
    }
}

fn client_pair(name: &str) -> kante_tls::KeyPair {
    kante_tls::KeyPair::generate(kante_tls::Role::Client, &[name.to_string()]).unwrap()
}

fn remote(pair: Option<&kante_tls::KeyPair>, ip: [u8; 4]) -> Caller {
    Caller::remote(
        SocketAddr::from((ip, 40000)),
        pair.map(|p| p.cert_der().unwrap().to_vec()),
    )
}

async fn set(engine: &Engine, key: &str, value: &str) -> crate::error::Result<Reply> {
    let mut config = ConfigMap::new();
    config.insert(key.into(), value.into());
    engine
        .handle(Request::ServerUpdate {
            config,
            merge: true,
        })
        .await
}

async fn config(engine: &Engine) -> ConfigMap {
    match engine.handle(Request::ServerGet).await.unwrap() {
        Reply::Server(s) => s.config,
        other => panic!("expected the server, got {}", other.kind()),
    }
}

async fn listed(engine: &Engine) -> Vec<(String, String)> {
    match engine.handle(Request::CertificateList).await.unwrap() {
        Reply::Certificates(v) => v.into_iter().map(|c| (c.fingerprint, c.name)).collect(),
        other => panic!("expected certificates, got {}", other.kind()),
    }
}

fn join(post: CertificatesPost) -> Request {
    Request::CertificateCreate(Box::new(post))
}

fn password(secret: &str) -> CertificatesPost {
    CertificatesPost {
        password: secret.into(),
        ..Default::default()
    }
}

async fn open_with_listeners(
    refuse: Vec<SocketAddr>,
) -> (TestHost, Arc<Engine>, Arc<FakeListeners>) {
    let host = TestHost::new();
    let engine = host.open().await;
    let hook = Arc::new(FakeListeners {
        refuse,
        ..Default::default()
    });
    engine.set_listeners(hook.clone()).await;
    (host, engine, hook)
}

#[tokio::test]
async fn the_server_shows_its_certificate_and_untrusted_callers_see_little() {
    let host = TestHost::new();
    let engine = host.open().await;
    let pem = std::fs::read_to_string(engine.paths.root.join("server.crt")).unwrap();
    let Reply::Server(s) = engine.handle(Request::ServerGet).await.unwrap() else {
        panic!("expected the server");
    };
    assert_eq!(s.auth, "trusted");
    assert_eq!(s.environment.certificate, pem);
    assert_eq!(
        s.environment.certificate_fingerprint,
        engine.server_identity().fingerprint()
    );
    // No listener: no addresses.
    assert!(s.environment.addresses.is_empty());
    let stranger = remote(Some(&client_pair("x")), [192, 0, 2, 9]);
    match engine
        .handle_from(&stranger, Request::ServerGet)
        .await
        .unwrap()
    {
        Reply::ServerUntrusted(u) => {
            assert_eq!(u.auth, "untrusted");
            assert_eq!(u.auth_methods, ["tls"]);
        }
        other => panic!("expected the untrusted view, got {}", other.kind()),
    }
    // Everything else is refused to it, before anything happens.
    for req in [
        Request::CertificateList,
        Request::ProfileList,
        Request::ServerUpdate {
            config: ConfigMap::new(),
            merge: true,
        },
    ] {
        let e = engine.handle_from(&stranger, req).await.err().unwrap();
        assert_eq!(e.status(), 403);
    }
    // The key pair is kept across restarts (clients pinned it).
    let again = host.open().await;
    assert_eq!(
        again.server_identity().fingerprint(),
        engine.server_identity().fingerprint()
    );
}

#[tokio::test]
async fn a_trusted_caller_adds_lists_edits_and_removes_certificates() {
    let host = TestHost::new();
    let engine = host.open().await;
    let pair = client_pair("laptop");
    let fp = pair.fingerprint();
    let caller = remote(Some(&pair), [192, 0, 2, 1]);
    assert!(!engine.trusts(&caller).await);
    let post = CertificatesPost {
        certificate: pair.cert_pem.clone(),
        ..Default::default()
    };
    match engine.handle(join(post)).await.unwrap() {
        Reply::Created { location } => assert_eq!(location, format!("/1.0/certificates/{fp}")),
        other => panic!("expected created, got {}", other.kind()),
    }
    // Named after its common name when the request names none.
    assert_eq!(listed(&engine).await, [(fp.clone(), "laptop".to_string())]);
    assert!(engine.trusts(&caller).await);
    // A trusted caller reaches everything.
    assert!(engine
        .handle_from(&caller, Request::ProfileList)
        .await
        .is_ok());
    // A duplicate is a conflict in LXD's words.
    let dup = CertificatesPost {
        certificate: pair.cert_pem.clone(),
        ..Default::default()
    };
    let e = engine.handle(join(dup)).await.err().unwrap();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (409, "Certificate already in trust store")
    );
    // Edit by a unique prefix.
    let put = CertificatePut {
        name: Some("ops".into()),
        restricted: Some(true),
        projects: Some(vec!["default".into()]),
        ..Default::default()
    };
    engine
        .handle(Request::CertificateUpdate {
            fingerprint: fp[..12].into(),
            put,
            merge: true,
        })
        .await
        .unwrap();
    let Reply::Certificate(c) = engine
        .handle(Request::CertificateGet {
            fingerprint: fp.clone(),
        })
        .await
        .unwrap()
    else {
        panic!("expected a certificate");
    };
    assert_eq!(
        (c.name.as_str(), c.restricted, c.kind.as_str()),
        ("ops", true, "client")
    );
    assert_eq!(c.projects, ["default"]);
    assert!(c.certificate.starts_with("-----BEGIN CERTIFICATE-----"));
    // Removal: trusted no more, on the very next request, and announced.
    let revoked = engine.revoked(fp.clone());
    engine
        .handle(Request::CertificateDelete {
            fingerprint: fp.clone(),
        })
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), revoked)
        .await
        .expect("the revocation is announced");
    assert!(listed(&engine).await.is_empty());
    let e = engine
        .handle_from(&caller, Request::ProfileList)
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 403);
}

#[tokio::test]
async fn a_bad_certificate_or_type_is_refused_and_nothing_stored() {
    let host = TestHost::new();
    let engine = host.open().await;
    for (cert, kind) in [
        ("not a certificate", ""),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "",
        ),
        (client_pair("a").cert_pem.as_str(), "server"),
    ] {
        let post = CertificatesPost {
            certificate: cert.into(),
            kind: kind.into(),
            ..Default::default()
        };
        let e = engine.handle(join(post)).await.err().unwrap();
        assert_eq!(e.status(), 400, "{e}");
    }
    assert!(listed(&engine).await.is_empty());
    // A metrics certificate is stored as such, and trusts nothing else.
    let pair = client_pair("prom");
    let post = CertificatesPost {
        certificate: pair.cert_pem.clone(),
        kind: "metrics".into(),
        ..Default::default()
    };
    engine.handle(join(post)).await.unwrap();
    assert!(!engine.trusts(&remote(Some(&pair), [192, 0, 2, 3])).await);
}

#[tokio::test]
async fn the_trust_password_is_hashed_hidden_and_lets_a_client_in() {
    let host = TestHost::new();
    let engine = host.open().await;
    set(&engine, "core.trust_password", "s3cret").await.unwrap();
    let stored = engine.shared.config_all().await.unwrap();
    let hash = &stored["core.trust_password"];
    assert!(
        !hash.contains("s3cret") && hash.starts_with("pbkdf2-sha256$"),
        "{hash}"
    );
    assert_eq!(config(&engine).await["core.trust_password"], "true");
    // Writing back what GET shows (lxc's config set does) keeps the hash.
    let shown = config(&engine).await;
    engine
        .handle(Request::ServerUpdate {
            config: shown,
            merge: false,
        })
        .await
        .unwrap();
    assert_eq!(
        &engine.shared.config_all().await.unwrap()["core.trust_password"],
        hash
    );
    let pair = client_pair("c");
    let caller = remote(Some(&pair), [192, 0, 2, 4]);
    let e = engine
        .handle_from(&caller, join(password("wrong")))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 403);
    assert!(listed(&engine).await.is_empty());
    // The caller's own TLS certificate is added.
    engine
        .handle_from(&caller, join(password("s3cret")))
        .await
        .unwrap();
    assert_eq!(listed(&engine).await.len(), 1);
    assert!(engine.trusts(&caller).await);
    // Unset: gone, and no password works.
    set(&engine, "core.trust_password", "").await.unwrap();
    assert!(!config(&engine).await.contains_key("core.trust_password"));
    let other = remote(Some(&client_pair("d")), [192, 0, 2, 5]);
    let e = engine
        .handle_from(&other, join(password("s3cret")))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 403);
}

#[tokio::test]
async fn failed_attempts_lock_an_address_out_even_with_the_right_password() {
    let host = TestHost::new();
    let engine = host.open().await;
    set(&engine, "core.trust_password", "right").await.unwrap();
    let pair = client_pair("c");
    let caller = remote(Some(&pair), [198, 51, 100, 7]);
    for _ in 0..FAILURE_LIMIT {
        let e = engine
            .handle_from(&caller, join(password("nope")))
            .await
            .err()
            .unwrap();
        assert_eq!(e.status(), 403);
    }
    let e = engine
        .handle_from(&caller, join(password("right")))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 403);
    assert!(e.to_string().contains("Too many"), "{e}");
    assert!(listed(&engine).await.is_empty());
    // Another address is not locked out.
    let elsewhere = remote(Some(&pair), [198, 51, 100, 8]);
    engine
        .handle_from(&elsewhere, join(password("right")))
        .await
        .unwrap();
    assert_eq!(listed(&engine).await.len(), 1);
}

/// Makes a token through the door; returns it as lxc prints it and its op.
async fn token(engine: &Engine, name: &str) -> (String, Arc<crate::Op>) {
    let post = CertificatesPost {
        name: name.into(),
        token: true,
        ..Default::default()
    };
    let op = engine
        .handle(join(post))
        .await
        .unwrap()
        .into_operation()
        .unwrap();
    let meta = op.snapshot().metadata;
    let t = CertificateAddToken {
        client_name: meta["request"]["name"].as_str().unwrap().into(),
        fingerprint: meta["fingerprint"].as_str().unwrap().into(),
        addresses: serde_json::from_value(meta["addresses"].clone()).unwrap(),
        secret: meta["secret"].as_str().unwrap().into(),
        expires_at: None,
    };
    let text = kante_tls::encode_base64(&serde_json::to_vec(&t).unwrap());
    (text, op)
}

#[tokio::test]
async fn a_token_is_single_use_and_carries_the_servers_identity() {
    let (_host, engine, _hook) = open_with_listeners(vec![]).await;
    // No listener yet: no token (its client could not reach us).
    let post = CertificatesPost {
        token: true,
        ..Default::default()
    };
    assert_eq!(engine.handle(join(post)).await.err().unwrap().status(), 400);
    set(&engine, "core.https_address", "127.0.0.1:18443")
        .await
        .unwrap();
    let (text, op) = token(&engine, "edge2").await;
    let meta = op.snapshot().metadata;
    assert_eq!(meta["fingerprint"], engine.server_identity().fingerprint());
    assert_eq!(meta["addresses"], serde_json::json!(["127.0.0.1:18443"]));
    assert!(meta["expiresAt"].is_string(), "tokens expire by default");
    // An untrusted caller cannot make tokens.
    let pair = client_pair("whatever");
    let caller = remote(Some(&pair), [192, 0, 2, 20]);
    let post = CertificatesPost {
        token: true,
        ..Default::default()
    };
    assert_eq!(
        engine
            .handle_from(&caller, join(post))
            .await
            .err()
            .unwrap()
            .status(),
        403
    );
    // Used in the `password` field, as lxc 5.0.2 sends it.
    engine
        .handle_from(&caller, join(password(&text)))
        .await
        .unwrap();
    assert_eq!(
        listed(&engine).await,
        [(pair.fingerprint(), "edge2".to_string())]
    );
    let done = op.wait(Some(std::time::Duration::from_secs(5))).await;
    assert_eq!(done.status, "Success");
    // Single use: the same token again is refused.
    let second = remote(Some(&client_pair("b")), [192, 0, 2, 21]);
    let e = engine
        .handle_from(&second, join(password(&text)))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 403);
    assert_eq!(listed(&engine).await.len(), 1);
    // The `trust_token` field works too; a revoked token does not.
    let (text2, _) = token(&engine, "edge3").await;
    let post = CertificatesPost {
        trust_token: text2,
        ..Default::default()
    };
    engine.handle_from(&second, join(post)).await.unwrap();
    let (text3, op3) = token(&engine, "edge4").await;
    engine
        .handle(Request::OperationCancel { id: op3.id() })
        .await
        .unwrap();
    op3.wait(Some(std::time::Duration::from_secs(5))).await;
    let third = remote(Some(&client_pair("c")), [192, 0, 2, 22]);
    let e = engine
        .handle_from(&third, join(password(&text3)))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 403);
}

#[tokio::test]
async fn a_token_used_twice_at_once_admits_one_client() {
    let (_host, engine, _hook) = open_with_listeners(vec![]).await;
    set(&engine, "core.https_address", "127.0.0.1:18443")
        .await
        .unwrap();
    let (text, _op) = token(&engine, "once").await;
    // A bad certificate does not use the token up.
    let post = CertificatesPost {
        password: text.clone(),
        certificate: "junk".into(),
        ..Default::default()
    };
    let a = remote(Some(&client_pair("a")), [192, 0, 2, 40]);
    assert_eq!(
        engine
            .handle_from(&a, join(post))
            .await
            .err()
            .unwrap()
            .status(),
        400
    );
    let b = remote(Some(&client_pair("b")), [192, 0, 2, 41]);
    let (ra, rb) = tokio::join!(
        engine.handle_from(&a, join(password(&text))),
        engine.handle_from(&b, join(password(&text))),
    );
    assert_eq!(
        [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "exactly one client gets in"
    );
    assert_eq!(listed(&engine).await.len(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (_host, engine, _hook) = open_with_listeners(vec![]).await;
    set(&engine, "core.https_address", ":8443").await.unwrap();
    // One minute: then pushed into the past by hand.
    set(&engine, "core.remote_token_expiry", "1M")
        .await
        .unwrap();
    let (text, _op) = token(&engine, "late").await;
    for t in crate::lock(&engine.remote.tokens).values_mut() {
        t.expires_at = Some(kante_api::now() - chrono::Duration::seconds(1));
    }
    let caller = remote(Some(&client_pair("late")), [192, 0, 2, 30]);
    let e = engine
        .handle_from(&caller, join(password(&text)))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (403, "Token has expired")
    );
    assert!(listed(&engine).await.is_empty());
    assert!(set(&engine, "core.remote_token_expiry", "soon")
        .await
        .is_err());
}

#[tokio::test]
async fn an_https_address_is_bound_before_it_is_committed() {
    let busy: SocketAddr = "127.0.0.1:18444".parse().unwrap();
    let (_host, engine, hook) = open_with_listeners(vec![busy]).await;
    set(&engine, "core.https_address", "127.0.0.1:18443")
        .await
        .unwrap();
    assert_eq!(
        config(&engine).await["core.https_address"],
        "127.0.0.1:18443"
    );
    let Reply::Server(s) = engine.handle(Request::ServerGet).await.unwrap() else {
        panic!("expected the server");
    };
    assert_eq!(s.environment.addresses, ["127.0.0.1:18443"]);
    // Cannot be bound: 400, config and listener unchanged.
    let e = set(&engine, "core.https_address", "127.0.0.1:18444")
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("127.0.0.1:18444"), "{e}");
    assert_eq!(
        config(&engine).await["core.https_address"],
        "127.0.0.1:18443"
    );
    assert_eq!(*hook.live.lock().unwrap(), [1]);
    // Bad syntax: refused before any bind.
    let before = hook.calls.lock().unwrap().len();
    assert_eq!(
        set(&engine, "core.https_address", "nowhere:x")
            .await
            .err()
            .unwrap()
            .status(),
        400
    );
    assert_eq!(hook.calls.lock().unwrap().len(), before);
    // A rebind: the new listener replaces the old one.
    set(&engine, "core.https_address", ":9443").await.unwrap();
    assert_eq!(hook.calls.lock().unwrap().last().unwrap(), "bind [::]:9443");
    assert_eq!(hook.live.lock().unwrap().len(), 1);
    assert_ne!(*hook.live.lock().unwrap(), [1]);
    // Unset: no listener at all.
    set(&engine, "core.https_address", "").await.unwrap();
    assert!(hook.live.lock().unwrap().is_empty());
    assert!(!config(&engine).await.contains_key("core.https_address"));
}

#[tokio::test]
async fn the_stored_address_is_bound_at_start() {
    let host = TestHost::new();
    let engine = host.open().await;
    let early = Arc::new(FakeListeners::default());
    engine.set_listeners(early).await;
    set(&engine, "core.https_address", "127.0.0.1:18445")
        .await
        .unwrap();
    drop(engine);
    let engine = host.open().await;
    let hook = Arc::new(FakeListeners::default());
    engine.set_listeners(hook.clone()).await;
    assert_eq!(*hook.calls.lock().unwrap(), ["bind 127.0.0.1:18445"]);
    let _ = Access::local();
}

/// An operation's websocket is reached by its secret alone, as in LXD
/// (pylxd connects exec's websockets without a client certificate): an
/// untrusted caller with the right secrets drives an exec to its end, while
/// a wrong secret and an unknown operation are both a plain 403 and the
/// operation itself stays out of reach.
#[tokio::test]
async fn an_operation_websocket_is_reached_by_its_secret_alone() {
    use crate::ws::WsConn;
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.launch(&engine, "c1", "img").await;
    let post = kante_api::exec::ExecPost {
        command: vec!["true".into()],
        wait_for_websocket: true,
        ..Default::default()
    };
    let op = engine.instance_exec("c1", post).await.unwrap();
    let fds = op.snapshot().metadata["fds"].as_object().unwrap().clone();
    let stranger = Access {
        caller: remote(None, [192, 0, 2, 9]),
        trusted: false,
    };
    let socket = |id: String, secret: &str| Request::OperationSocket {
        id,
        secret: secret.into(),
    };
    let a_secret = fds.values().next().unwrap().as_str().unwrap();
    for (id, secret) in [(op.id(), "0123"), ("no-such-op".to_string(), a_secret)] {
        let e = engine
            .handle_as(&stranger, socket(id, secret))
            .await
            .err()
            .expect("refused");
        assert_eq!(e.status(), 403, "{e}");
        assert_eq!(e.to_string(), "not authorized");
    }
    let e = engine
        .handle_as(&stranger, Request::OperationGet { id: op.id() })
        .await
        .err()
        .expect("refused");
    assert_eq!(e.status(), 403);
    let mut clients = Vec::new();
    for secret in fds.values() {
        match engine
            .handle_as(&stranger, socket(op.id(), secret.as_str().unwrap()))
            .await
            .unwrap()
        {
            Reply::Socket(slot) => {
                let (engine_end, client_end) = WsConn::pair();
                assert!(slot.send(engine_end).is_ok());
                clients.push(client_end);
            }
            other => panic!("expected a socket, got {}", other.kind()),
        }
    }
    let done = crate::testing::wait_ok(&op).await;
    assert_eq!(done.metadata["return"], 0, "{:?}", done.metadata);
}
