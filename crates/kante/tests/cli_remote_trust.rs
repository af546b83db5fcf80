//! `kante remote add` against a server that does not trust the client yet:
//! a stand-in for the daemon's trust (built on another branch) behind the
//! test TLS listener, trusting by the client certificate of each
//! connection once a password or a token was accepted.

mod tls;

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kante_tls::{KeyPair, Role};
use serde_json::{json, Value};
use tls::{Peer, Seen, TlsListener};

const PASSWORD: &str = "s3cret";

#[derive(Clone, Default)]
struct Trust {
    trusted: Arc<Mutex<BTreeSet<String>>>,
    posted: Arc<Mutex<Vec<Value>>>,
    token: Arc<Mutex<String>>,
}

impl Trust {
    fn trusts(&self, peer: &Peer) -> bool {
        peer.0
            .as_ref()
            .is_some_and(|fp| self.trusted.lock().unwrap().contains(fp))
    }
}

fn sync(metadata: Value) -> (StatusCode, Json<Value>) {
    (
        StatusCode::OK,
        Json(
            json!({"type": "sync", "status": "Success", "status_code": 200,
            "operation": "", "error_code": 0, "error": "", "metadata": metadata}),
        ),
    )
}

fn refuse(code: StatusCode, msg: &str) -> (StatusCode, Json<Value>) {
    (
        code,
        Json(
            json!({"type": "error", "status": "", "status_code": 0, "operation": "",
            "error_code": code.as_u16(), "error": msg, "metadata": null}),
        ),
    )
}

async fn api(
    State(t): State<Trust>,
    ConnectInfo(p): ConnectInfo<Peer>,
) -> (StatusCode, Json<Value>) {
    let auth = if t.trusts(&p) { "trusted" } else { "untrusted" };
    sync(json!({"api_version": "1.0", "auth": auth, "auth_methods": ["tls"], "public": false}))
}

async fn add(
    State(t): State<Trust>,
    ConnectInfo(p): ConnectInfo<Peer>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    t.posted.lock().unwrap().push(body.clone());
    let Some(fp) = p.0 else {
        return refuse(StatusCode::BAD_REQUEST, "No client certificate provided");
    };
    let token = t.token.lock().unwrap().clone();
    let ok = body["password"] == PASSWORD || (!token.is_empty() && body["password"] == token);
    if !ok {
        return refuse(StatusCode::FORBIDDEN, "not authorized");
    }
    t.trusted.lock().unwrap().insert(fp);
    (StatusCode::CREATED, sync(Value::Null).1)
}

async fn instances(
    State(t): State<Trust>,
    ConnectInfo(p): ConnectInfo<Peer>,
) -> (StatusCode, Json<Value>) {
    if !t.trusts(&p) {
        return refuse(StatusCode::FORBIDDEN, "not authorized");
    }
    sync(json!([]))
}

struct Fixture {
    _rt: tokio::runtime::Runtime,
    server: KeyPair,
    port: u16,
    trust: Trust,
}

fn fixture() -> Fixture {
    let server = KeyPair::generate(Role::Server, &["127.0.0.1".into()]).unwrap();
    let trust = Trust::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, port) = rt.block_on(TlsListener::bind(&server, Seen::default()));
    let app = Router::new()
        .route("/", get(|| async { sync(json!(["/1.0"])) }))
        .route("/1.0", get(api))
        .route("/1.0/certificates", post(add))
        .route("/1.0/instances", get(instances))
        .with_state(trust.clone());
    rt.spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await;
    });
    Fixture {
        _rt: rt,
        server,
        port,
        trust,
    }
}

fn kante(conf: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kante"))
        .args(args)
        .env("KANTE_DIR", conf.join("no-daemon"))
        .env("KANTE_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(conf: &std::path::Path, args: &[&str]) -> String {
    let o = kante(conf, args);
    assert!(
        o.status.success(),
        "kante {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(conf: &std::path::Path, args: &[&str]) -> String {
    let o = kante(conf, args);
    assert!(!o.status.success(), "kante {args:?} should fail");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

#[test]
fn a_password_makes_the_server_trust_this_client() {
    let f = fixture();
    let conf = tempfile::tempdir().unwrap();
    let c = conf.path();
    let addr = format!("127.0.0.1:{}", f.port);

    // No secret: refused, saying how to be trusted; nothing kept.
    let e = fails(c, &["remote", "add", "r", &addr, "--accept-certificate"]);
    assert!(
        e.contains("does not trust this client") && e.contains("--password"),
        "{e}"
    );
    assert!(e.contains("kante config trust add"), "{e}");
    assert!(!c.join("config.yml").exists() && !c.join("servercerts/r.crt").exists());

    let e = fails(
        c,
        &[
            "remote",
            "add",
            "r",
            &addr,
            "--accept-certificate",
            "--password=wrong",
        ],
    );
    assert!(
        e.contains("refused the password") && e.contains("not authorized"),
        "{e}"
    );
    assert!(!c.join("config.yml").exists());
    let e = fails(
        c,
        &[
            "remote",
            "add",
            "r",
            &addr,
            "--accept-certificate",
            "--password",
        ],
    );
    assert!(e.contains("terminal"), "{e}");

    ok(
        c,
        &[
            "remote",
            "add",
            "r",
            &addr,
            "--accept-certificate",
            &format!("--password={PASSWORD}"),
        ],
    );
    assert_eq!(
        f.trust.posted.lock().unwrap().last().unwrap(),
        &json!({"type": "client", "password": PASSWORD})
    );
    let me = kante_tls::load_or_create(c, "client", Role::Client, &[]).unwrap();
    assert!(f.trust.trusted.lock().unwrap().contains(&me.fingerprint()));
    // Trusted now: the API answers this client.
    ok(c, &["list", "r:", "-f", "csv"]);
    // Adding it again under another name needs no secret.
    ok(
        c,
        &["remote", "add", "again", &addr, "--accept-certificate"],
    );
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            s.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

#[test]
fn a_token_tries_its_addresses_and_is_sent_as_password_and_trust_token() {
    let f = fixture();
    let conf = tempfile::tempdir().unwrap();
    let c = conf.path();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = b64(json!({
        "client_name": "c2", "fingerprint": f.server.fingerprint(),
        "addresses": [format!("127.0.0.1:{closed}"), format!("127.0.0.1:{}", f.port)],
        "secret": "tok-secret", "expires_at": "0001-01-01T00:00:00Z"
    })
    .to_string()
    .as_bytes());
    *f.trust.token.lock().unwrap() = token.clone();

    ok(c, &["remote", "add", "t", &token]);
    assert_eq!(
        f.trust.posted.lock().unwrap().last().unwrap(),
        &json!({"type": "client", "password": token, "trust_token": token})
    );
    let cfg = std::fs::read_to_string(c.join("config.yml")).unwrap();
    assert!(
        cfg.contains(&format!("addr: https://127.0.0.1:{}", f.port)),
        "{cfg}"
    );
    ok(c, &["list", "t:", "-f", "csv"]);
}
