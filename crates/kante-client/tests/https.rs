//! The client over HTTPS: a TLS listener made here (tokio-rustls with
//! `kante_tls::server_config`) in front of the real router over a
//! fake-backed engine. The server's certificate is pinned by fingerprint,
//! the client shows its own, and every call (plain requests, the events
//! and exec websockets) runs over the same TLS transport.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use kante_client::kante_tls::{self, KeyPair, Role, ServerPin};
use kante_client::{Client, ClientError, HttpsTarget};
use kante_http::testing::TestDaemon;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Accepts TCP, completes TLS, and records the fingerprint of the client
/// certificate each connection showed (`None`: none shown).
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A refused handshake (a client that distrusts us) is skipped.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                let fp = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| kante_tls::fingerprint(c));
                self.seen.lock().unwrap().push(fp);
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

struct Remote {
    _d: TestDaemon,
    server: KeyPair,
    port: u16,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    /// The `Host` header of each request.
    hosts: Arc<Mutex<Vec<String>>>,
}

/// The test daemon, with `c1` running, also served over TLS on loopback.
async fn remote() -> Remote {
    let d = TestDaemon::start().await;
    d.host.import_image(&d.engine, "bookworm").await;
    d.host.launch(&d.engine, "c1", "bookworm").await;
    let server = KeyPair::generate(Role::Server, &["127.0.0.1".into()]).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(kante_tls::server_config(&server).unwrap()));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TlsListener {
        tcp,
        acceptor,
        seen: seen.clone(),
    };
    let hosts: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = hosts.clone();
    let app = kante_http::router(d.engine.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            log.lock().unwrap().push(host);
            next.run(req)
        },
    ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Remote {
        _d: d,
        server,
        port,
        seen,
        hosts,
    }
}

fn client(r: &Remote, expected: Option<String>, identity: Option<&KeyPair>) -> Client {
    Client::https(HttpsTarget {
        host: "127.0.0.1".into(),
        port: r.port,
        pin: ServerPin {
            expected,
            ..Default::default()
        },
        identity: identity.cloned(),
    })
    .unwrap()
}

#[tokio::test]
async fn a_pinned_server_answers_requests_websockets_and_sees_the_client() {
    let r = remote().await;
    let me = KeyPair::generate(Role::Client, &["tester".into()]).unwrap();
    let c = client(&r, Some(r.server.fingerprint()), Some(&me));

    let server: kante_api::server::Server = c.get_json("/1.0").await.unwrap();
    assert_eq!(server.api_version, "1.0");
    let names = c.instance_names().await.unwrap();
    assert_eq!(names, vec!["c1".to_string()]);
    // The requests carried the remote's authority as Host.
    let host = r.hosts.lock().unwrap().last().cloned().unwrap();
    assert_eq!(host, format!("127.0.0.1:{}", r.port));

    // exec: four websockets over TLS.
    let out = c
        .exec_capture(
            "c1",
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            out.code,
            out.stdout_str().as_str(),
            out.stderr_str().as_str()
        ),
        (3, "out\n", "err\n")
    );
    // events: a websocket that stays open.
    let mut ev = c.events("lifecycle").await.unwrap();
    c.stop_instance("c1", true, -1).await.unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), ev.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, "lifecycle");

    // Every connection showed the client's certificate.
    let seen = r.seen.lock().unwrap().clone();
    assert!(seen.len() >= 6, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.as_deref() == Some(me.fingerprint().as_str())));
    assert_eq!(
        c.server_certificate().map(|d| kante_tls::fingerprint(&d)),
        Some(r.server.fingerprint())
    );
}

#[tokio::test]
async fn first_contact_records_the_certificate_and_a_wrong_pin_is_refused() {
    let r = remote().await;
    // First contact: nothing pinned, the certificate is recorded; no
    // client certificate shown.
    let first = client(&r, None, None);
    first.get("/1.0").await.unwrap();
    let shown = first.server_certificate().unwrap();
    assert_eq!(kante_tls::fingerprint(&shown), r.server.fingerprint());
    assert_eq!(r.seen.lock().unwrap().clone(), vec![None]);

    // Pinned to another certificate: refused, with both fingerprints.
    let other = KeyPair::generate(Role::Server, &["x".into()]).unwrap();
    let wrong = client(&r, Some(other.fingerprint()), None);
    let err = wrong.get("/1.0").await.unwrap_err();
    match &err {
        ClientError::CertificateMismatch {
            expected,
            presented,
            ..
        } => {
            assert_eq!(expected, &other.fingerprint());
            assert_eq!(presented, &r.server.fingerprint());
        }
        e => panic!("expected a certificate mismatch, got {e:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&other.fingerprint()) && text.contains(&r.server.fingerprint()),
        "{text}"
    );
    // Nothing reached the API.
    assert_eq!(r.seen.lock().unwrap().len(), 1);

    // Nobody listening: a connect error naming the address.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = Client::https(HttpsTarget {
        host: "127.0.0.1".into(),
        port,
        pin: ServerPin::default(),
        identity: None,
    })
    .unwrap();
    let err = gone.get("/1.0").await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectRemote { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
}
