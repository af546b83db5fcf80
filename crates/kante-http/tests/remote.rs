//! The API over real TLS, as a remote client meets it: an untrusted
//! client gets 403 on every route of the router's table and every method
//! but the open ones; a client that joins with the trust password is
//! trusted on its next request; removing its certificate cuts its open
//! event stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kante_engine::front::{Reply, Request};
use kante_engine::remote::open_to_untrusted;
use kante_engine::testing::TestHost;
use kante_engine::Engine;
use kante_tls::rustls::pki_types::ServerName;
use kante_tls::{KeyPair, Role, ServerPin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const METHODS: &[&str] = &["GET", "PUT", "PATCH", "POST", "DELETE"];

/// An engine serving HTTPS on a free loopback port; returns the address.
async fn serve() -> (TestHost, Arc<Engine>, SocketAddr) {
    let host = TestHost::new();
    let engine = host.open().await;
    let ws = Arc::new(kante_http::wslimit::WsSlots::from_env());
    kante_http::start_https(&engine, ws).await;
    let mut config = kante_api::ConfigMap::new();
    config.insert("core.https_address".into(), "127.0.0.1:0".into());
    config.insert("core.trust_password".into(), "sesame".into());
    engine
        .handle(Request::ServerUpdate {
            config,
            merge: true,
        })
        .await
        .unwrap();
    let Reply::Server(s) = engine.handle(Request::ServerGet).await.unwrap() else {
        panic!("expected the server");
    };
    let addr = s.environment.addresses[0].parse().unwrap();
    (host, engine, addr)
}

fn connector(engine: &Engine, me: Option<&KeyPair>) -> TlsConnector {
    let pin = ServerPin {
        expected: Some(engine.server_identity().fingerprint()),
        ..Default::default()
    };
    let cfg = kante_tls::client_config(pin, me).unwrap();
    TlsConnector::from(Arc::new(cfg))
}

async fn connect(addr: SocketAddr, engine: &Engine, me: Option<&KeyPair>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector(engine, me)
        .connect(ServerName::try_from("kante").unwrap(), tcp)
        .await
        .unwrap()
}

/// One request on a fresh connection: the status and the body.
async fn call(
    addr: SocketAddr,
    engine: &Engine,
    me: Option<&KeyPair>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut tls = connect(addr, engine, me).await;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: kante\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg {
            s if s.starts_with("{*") => "a/b".to_string(),
            s if s.starts_with('{') => "x1".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_client_reaches_only_the_open_routes() {
    let (_host, engine, addr) = serve().await;
    let stranger = KeyPair::generate(Role::Client, &["stranger".into()]).unwrap();
    let paths = kante_http::route_paths();
    assert!(paths.len() > 40, "the table lists every route");
    let mut open = 0;
    for pattern in &paths {
        let path = concrete(pattern);
        for method in METHODS {
            let (status, body) = call(addr, &engine, Some(&stranger), method, &path, "{}").await;
            if open_to_untrusted(method, pattern) {
                // Reached the engine: not the gate's refusal (an empty
                // POST /1.0/certificates is the engine's own 403; a
                // websocket GET without an upgrade is refused before it).
                open += 1;
                assert!(
                    status != 0 && !body.contains("not authorized"),
                    "{method} {path}: {body}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} answered {status}: {body}");
                assert!(body.contains("\"error_code\":403"), "{body}");
            }
        }
    }
    assert_eq!(
        open, 16,
        "GET /, GET /1.0, POST /1.0/certificates, an operation's websocket (by its secret), \
         the image server's five reads (public images only), a joining cluster \
         member's POST /internal/cluster/accept (by its token's secret), and the web \
         view's files (GET /ui, /ui/, /ui/login, /ui/FILE, which also names /ui/logout for GET: a 405) and login (POST /ui/login)"
    );
    // An unknown path is refused too, not reported missing.
    let (status, _) = call(addr, &engine, Some(&stranger), "GET", "/1.0/nope", "").await;
    assert_eq!(status, 403);
    // Without any client certificate as well.
    let (status, _) = call(addr, &engine, None, "GET", "/1.0/instances", "").await;
    assert_eq!(status, 403);
    let (status, body) = call(addr, &engine, None, "GET", "/1.0", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"auth\":\"untrusted\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joins_by_password_and_is_cut_off_when_revoked() {
    let (_host, engine, addr) = serve().await;
    let pair = KeyPair::generate(Role::Client, &["me".into()]).unwrap();
    let me = Some(&pair);
    let (_, body) = call(addr, &engine, me, "GET", "/1.0", "").await;
    assert!(body.contains("\"auth\":\"untrusted\""), "{body}");
    assert!(!body.contains("environment"), "{body}");
    let wrong = r#"{"type":"client","password":"wrong"}"#;
    let (status, body) = call(addr, &engine, me, "POST", "/1.0/certificates", wrong).await;
    assert_eq!(status, 403, "{body}");
    let right = r#"{"type":"client","password":"sesame"}"#;
    let (status, body) = call(addr, &engine, me, "POST", "/1.0/certificates", right).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(addr, &engine, me, "GET", "/1.0", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"auth\":\"trusted\""), "{body}");
    assert!(
        body.contains(&engine.server_identity().fingerprint()),
        "{body}"
    );
    let fp = pair.fingerprint();
    let list = "/1.0/certificates?recursion=1";
    let (status, body) = call(addr, &engine, me, "GET", list, "").await;
    assert_eq!(status, 200);
    assert!(body.contains(&fp), "{body}");

    // An open event stream, then the certificate removed from the store.
    let mut events = connect(addr, &engine, me).await;
    events
        .write_all(
            b"GET /1.0/events HTTP/1.1\r\nHost: kante\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = events.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    engine
        .handle(Request::CertificateDelete { fingerprint: fp })
        .await
        .unwrap();
    // The stream ends (EOF or reset) instead of waiting for events.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the revoked client's event stream stayed open"
    );
    let (status, _) = call(addr, &engine, me, "GET", "/1.0/instances", "").await;
    assert_eq!(status, 403);
}
