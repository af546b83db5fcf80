//! `kante config trust …` against a stand-in for `/1.0/certificates` (the
//! daemon's trust store is built on another branch): the requests the CLI
//! sends and what it prints, as `lxc config trust` does.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use kante_tls::{KeyPair, Role};
use serde_json::{json, Value};

#[derive(Clone)]
struct Store {
    certs: Arc<Mutex<Vec<Value>>>,
    posted: Arc<Mutex<Vec<Value>>>,
    deleted: Arc<Mutex<Vec<String>>>,
}

fn sync(metadata: Value) -> Json<Value> {
    Json(
        json!({"type": "sync", "status": "Success", "status_code": 200,
        "operation": "", "error_code": 0, "error": "", "metadata": metadata}),
    )
}

async fn list(State(s): State<Store>) -> Json<Value> {
    sync(Value::Array(s.certs.lock().unwrap().clone()))
}

async fn post(State(s): State<Store>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    s.posted.lock().unwrap().push(body.clone());
    if body["token"] == true {
        let op = json!({"id": "op1", "class": "token", "description": "Certificate add token",
            "created_at": "2026-12-05T20:00:00Z", "updated_at": "2026-12-05T20:00:00Z",
            "status": "Running", "status_code": 103, "resources": null,
            "metadata": {"secret": "s3cr3t", "fingerprint": "ab12", "addresses": ["192.0.2.1:8443"],
                "request": body, "expiresAt": "2026-12-06T20:00:00Z"},
            "may_cancel": true, "err": "", "location": "none"});
        return (
            StatusCode::ACCEPTED,
            Json(
                json!({"type": "async", "status": "Operation created", "status_code": 100,
                "operation": "/1.0/operations/op1", "error_code": 0, "error": "", "metadata": op}),
            ),
        );
    }
    (StatusCode::CREATED, sync(Value::Null))
}

async fn remove(State(s): State<Store>, Path(fp): Path<String>) -> Json<Value> {
    s.deleted.lock().unwrap().push(fp);
    sync(json!({}))
}

struct Fake {
    dir: tempfile::TempDir,
    store: Store,
    _rt: tokio::runtime::Runtime,
    alice: KeyPair,
}

fn fake() -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let alice = KeyPair::generate(Role::Client, &["alice".into()]).unwrap();
    let bob = KeyPair::generate(Role::Client, &["bob".into()]).unwrap();
    let cert = |name: &str, k: &KeyPair| {
        json!({"name": name, "type": "client", "restricted": false, "projects": [],
            "certificate": k.cert_pem, "fingerprint": k.fingerprint()})
    };
    let store = Store {
        certs: Arc::new(Mutex::new(vec![cert("alice", &alice), cert("bob", &bob)])),
        posted: Arc::default(),
        deleted: Arc::default(),
    };
    let app = Router::new()
        .route("/1.0/certificates", get(list).post(post))
        .route("/1.0/certificates/{fp}", delete(remove))
        .with_state(store.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sock = dir.path().join("unix.socket");
    let listener = rt.block_on(async { tokio::net::UnixListener::bind(&sock).unwrap() });
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake {
        dir,
        store,
        _rt: rt,
        alice,
    }
}

fn kante(f: &Fake, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kante"))
        .args(args)
        .env("KANTE_DIR", f.dir.path())
        .env("KANTE_CONF", f.dir.path().join("conf"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(f: &Fake, args: &[&str]) -> String {
    let o = kante(f, args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn b64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> = s
        .bytes()
        .filter(|&c| c != b'=')
        .map(|c| A.iter().position(|&a| a == c).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let mut n = 0;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn a_restricted_token_asks_for_its_projects() {
    let f = fake();
    ok(
        &f,
        &[
            "config",
            "trust",
            "add",
            "ci",
            "--restricted",
            "--projects",
            "default",
        ],
    );
    assert_eq!(
        f.store.posted.lock().unwrap().last().unwrap(),
        &json!({"name": "ci", "type": "client", "token": true,
                "restricted": true, "projects": ["default"]})
    );
}

#[test]
fn trust_add_prints_lxds_token_from_the_operation() {
    let f = fake();
    let o = ok(&f, &["config", "trust", "add", "laptop"]);
    assert_eq!(
        f.store.posted.lock().unwrap().last().unwrap(),
        &json!({"name": "laptop", "type": "client", "token": true})
    );
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "Client laptop certificate add token:");
    let token: Value = serde_json::from_slice(&b64_decode(lines[1])).unwrap();
    assert_eq!(
        token,
        json!({"client_name": "laptop", "fingerprint": "ab12", "addresses": ["192.0.2.1:8443"],
            "secret": "s3cr3t", "expires_at": "2026-12-06T20:00:00Z"})
    );
    // `local:` names the server explicitly.
    ok(&f, &["config", "trust", "add", "local:", "laptop2"]);
    assert_eq!(
        f.store.posted.lock().unwrap().last().unwrap()["name"],
        "laptop2"
    );
}

#[test]
fn trust_list_and_remove_by_name_or_fingerprint() {
    let f = fake();
    let table = ok(&f, &["config", "trust", "list"]);
    let header = table.lines().nth(1).unwrap();
    for col in ["NAME", "TYPE", "FINGERPRINT", "ISSUE DATE", "EXPIRY DATE"] {
        assert!(header.contains(col), "{table}");
    }
    let short: String = f.alice.fingerprint().chars().take(12).collect();
    assert!(
        table.contains(&format!("| alice | client | {short} ")),
        "{table}"
    );
    let csv = ok(&f, &["config", "trust", "list", "local:", "-f", "csv"]);
    assert_eq!(csv.lines().count(), 2, "{csv}");

    ok(&f, &["config", "trust", "remove", "alice"]);
    assert_eq!(
        f.store.deleted.lock().unwrap().clone(),
        vec![f.alice.fingerprint()]
    );
    ok(&f, &["config", "trust", "remove", &short]);
    assert_eq!(f.store.deleted.lock().unwrap().len(), 2);
    let o = kante(&f, &["config", "trust", "remove", "nobody"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No trusted certificate matches"));

    // A certificate from a file, sent as base64 DER.
    let file = f.dir.path().join("carol.crt");
    let carol = KeyPair::generate(Role::Client, &["carol".into()]).unwrap();
    std::fs::write(&file, &carol.cert_pem).unwrap();
    ok(
        &f,
        &[
            "config",
            "trust",
            "add-certificate",
            file.to_str().unwrap(),
            "--name",
            "carol",
        ],
    );
    let body = f.store.posted.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        (body["type"].as_str(), body["name"].as_str()),
        (Some("client"), Some("carol"))
    );
    let der = b64_decode(body["certificate"].as_str().unwrap());
    assert_eq!(kante_tls::fingerprint(&der), carol.fingerprint());
}
