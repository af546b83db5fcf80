//! The web view's files and browser sessions over real TLS: the files are
//! open, gzipped when accepted and revalidated by ETag; a trust token
//! opens one session (its cookie HttpOnly, Secure, SameSite=Strict); the
//! cookie makes API requests trusted only with the `X-Kante-UI` header, and
//! websockets only from the listener's own origin; removing the session
//! from the trust store, or the page's logout, refuses its next request
//! and ends its open event stream at once.

use std::net::SocketAddr;
use std::sync::Arc;

use kante_api::certificate::CertificatesPost;
use kante_engine::front::{Reply, Request};
use kante_engine::testing::TestHost;
use kante_engine::Engine;
use kante_tls::rustls::pki_types::ServerName;
use kante_tls::ServerPin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

async fn serve() -> (TestHost, Arc<Engine>, SocketAddr) {
    let host = TestHost::new();
    let engine = host.open().await;
    let ws = Arc::new(kante_http::wslimit::WsSlots::from_env());
    kante_http::start_https(&engine, ws).await;
    let mut config = kante_api::ConfigMap::new();
    config.insert("core.https_address".into(), "127.0.0.1:0".into());
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

/// One request with extra `headers` (no client certificate): the status,
/// the response's headers (lowercased names) and its body bytes. Reads
/// until the server closes, or only the head for a `101`.
async fn call(
    addr: SocketAddr,
    engine: &Engine,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let pin = ServerPin {
        expected: Some(engine.server_identity().fingerprint()),
        ..Default::default()
    };
    let cfg = kante_tls::client_config(pin, None).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("kante").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.extend_from_slice(&buf[..n]);
        if complete(&out) {
            break;
        }
    }
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, out[split + 4..].to_vec())
}

/// Whether `out` holds a whole response: a `101`'s head, or a head and
/// as many body bytes as its `Content-Length` says (a kept-alive
/// connection is not closed by the server).
fn complete(out: &[u8]) -> bool {
    let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    if out.starts_with(b"HTTP/1.1 101") {
        return true;
    }
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|n| out.len() >= split + 4 + n)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A trust token's secret, made through the unix socket's door.
async fn token(engine: &Engine, name: &str) -> String {
    let post = CertificatesPost {
        name: name.into(),
        token: true,
        ..Default::default()
    };
    let Reply::Operation(op) = engine
        .handle(Request::CertificateCreate(Box::new(post)))
        .await
        .unwrap()
    else {
        panic!("expected a token operation");
    };
    op.snapshot().metadata["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_are_open_compressed_and_revalidated() {
    let (_host, engine, addr) = serve().await;
    let (status, h, gz) = call(
        addr,
        &engine,
        "GET",
        "/ui/",
        &[("Accept-Encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert!(header(&h, "content-type").unwrap().starts_with("text/html"));
    assert!(header(&h, "content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    let etag = header(&h, "etag").unwrap().to_string();
    let (status, h, plain) = call(addr, &engine, "GET", "/ui/", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-encoding"), None);
    assert!(gz.len() < plain.len());
    assert!(String::from_utf8_lossy(&plain).contains("/ui/app.js"));
    let (status, _, body) = call(
        addr,
        &engine,
        "GET",
        "/ui/",
        &[("If-None-Match", &etag)],
        "",
    )
    .await;
    assert_eq!((status, body.len()), (304, 0));
    let (status, _, _) = call(addr, &engine, "GET", "/ui/vendor/xterm.js", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = call(addr, &engine, "GET", "/ui/nope.js", &[], "").await;
    assert_eq!(status, 404);
    let (status, h, _) = call(addr, &engine, "GET", "/ui", &[], "").await;
    assert_eq!((status, header(&h, "location")), (301, Some("/ui/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_opens_one_session_which_needs_the_header_and_the_origin() {
    let (_host, engine, addr) = serve().await;
    let secret = token(&engine, "browser").await;
    let login = format!(r#"{{"token":"{secret}"}}"#);
    let json = ("Content-Type", "application/json");
    let (status, h, body) = call(addr, &engine, "POST", "/ui/login", &[json], &login).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let cookie = header(&h, "set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    assert!(
        pair.starts_with("kante_ui=") && pair.len() == "kante_ui=".len() + 64,
        "{pair}"
    );
    // Spent: a second login with it fails.
    let (status, _, _) = call(addr, &engine, "POST", "/ui/login", &[json], &login).await;
    assert_eq!(status, 403);

    let ui = ("X-Kante-UI", "1");
    let with = [("Cookie", pair.as_str()), ui];
    let (status, _, body) = call(addr, &engine, "GET", "/1.0/instances", &with, "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(addr, &engine, "GET", "/1.0", &with, "").await;
    assert!(
        String::from_utf8_lossy(&body).contains("\"auth\":\"trusted\""),
        "{status}"
    );
    // The cookie alone (a cross-site form or link) is not enough.
    let (status, _, _) = call(
        addr,
        &engine,
        "GET",
        "/1.0/instances",
        &[("Cookie", &pair)],
        "",
    )
    .await;
    assert_eq!(status, 403);
    // Nor a made-up session.
    let forged = format!("kante_ui={}", "ab".repeat(32));
    let (status, _, _) = call(
        addr,
        &engine,
        "GET",
        "/1.0/instances",
        &[("Cookie", &forged), ui],
        "",
    )
    .await;
    assert_eq!(status, 403);
    // A websocket from the listener's own origin, not from another.
    let upgrade = |origin: &'static str| {
        [
            ("Cookie", pair.clone()),
            ("Origin", origin.to_string()),
            ("Upgrade", "websocket".to_string()),
            ("Connection", "Upgrade".to_string()),
            ("Sec-WebSocket-Version", "13".to_string()),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".to_string()),
        ]
    };
    for (origin, want) in [("https://127.0.0.1", 101), ("https://evil.example", 403)] {
        let hs = upgrade(origin);
        let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, _) = call(addr, &engine, "GET", "/1.0/events", &hs, "").await;
        assert_eq!(status, want, "{origin}");
    }

    // The trust store lists the session; removing it refuses the cookie.
    let Reply::Certificates(certs) = engine.handle(Request::CertificateList).await.unwrap() else {
        panic!("expected the trust store");
    };
    let row = certs.iter().find(|c| c.kind == "ui").expect("a ui record");
    assert_eq!(row.name, "browser");
    assert!(kante_tls::parse_certificate(row.certificate.as_bytes()).is_ok());
    engine
        .handle(Request::CertificateDelete {
            fingerprint: row.fingerprint.clone(),
        })
        .await
        .unwrap();
    let (status, _, _) = call(addr, &engine, "GET", "/1.0/instances", &with, "").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logout_ends_the_session() {
    let (_host, engine, addr) = serve().await;
    let secret = token(&engine, "tablet").await;
    let login = format!(r#"{{"token":"{secret}"}}"#);
    let json = ("Content-Type", "application/json");
    let (status, h, _) = call(addr, &engine, "POST", "/ui/login", &[json], &login).await;
    assert_eq!(status, 200);
    let pair = header(&h, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let with = [("Cookie", pair.as_str()), ("X-Kante-UI", "1")];
    // Not without the header: a cross-site form cannot log a browser out.
    let (status, _, _) = call(
        addr,
        &engine,
        "POST",
        "/ui/logout",
        &[("Cookie", &pair)],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (status, h, _) = call(addr, &engine, "POST", "/ui/logout", &with, "").await;
    assert_eq!(status, 200);
    assert!(header(&h, "set-cookie").unwrap().contains("Max-Age=0"));
    let (status, _, _) = call(addr, &engine, "GET", "/1.0/instances", &with, "").await;
    assert_eq!(status, 403);
    let Reply::Certificates(certs) = engine.handle(Request::CertificateList).await.unwrap() else {
        panic!("expected the trust store");
    };
    assert!(
        certs.iter().all(|c| c.kind != "ui"),
        "the session is still stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_session_ends_its_event_stream() {
    let (_host, engine, addr) = serve().await;
    let secret = token(&engine, "kiosk").await;
    let login = format!(r#"{{"token":"{secret}"}}"#);
    let json = ("Content-Type", "application/json");
    let (_, h, _) = call(addr, &engine, "POST", "/ui/login", &[json], &login).await;
    let pair = header(&h, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let pin = ServerPin {
        expected: Some(engine.server_identity().fingerprint()),
        ..Default::default()
    };
    let cfg = kante_tls::client_config(pin, None).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("kante").unwrap(), tcp)
        .await
        .unwrap();
    let req = format!(
        "GET /1.0/events HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://127.0.0.1\r\n\
         Cookie: {pair}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !complete(&head) {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the upgrade");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let Reply::Certificates(certs) = engine.handle(Request::CertificateList).await.unwrap() else {
        panic!("expected the trust store");
    };
    let row = certs.iter().find(|c| c.kind == "ui").expect("a ui record");
    engine
        .handle(Request::CertificateDelete {
            fingerprint: row.fingerprint.clone(),
        })
        .await
        .unwrap();
    // The stream ends (EOF or an error), with no more events.
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the event stream outlived its session");
}
