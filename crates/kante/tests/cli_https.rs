//! The `kante` binary against the daemon's own HTTPS listener and trust
//! store (`kante_http::start_https` over a fake-backed engine, root-free):
//! server config set from the CLI, `remote add` by password and by a token
//! from `config trust add`, everyday verbs on `r:` names, `config trust
//! list/remove`, and a removed client refused on its next request.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use kante_engine::front::{Reply, Request};
use kante_http::testing::TestDaemon;

fn kante(d: &TestDaemon, conf: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kante"))
        .args(args)
        .env("KANTE_DIR", d.kante_dir())
        .env("KANTE_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(d: &TestDaemon, conf: &Path, args: &[&str]) -> String {
    let o = kante(d, conf, args);
    assert!(
        o.status.success(),
        "kante {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(d: &TestDaemon, conf: &Path, args: &[&str]) -> String {
    let o = kante(d, conf, args);
    assert!(!o.status.success(), "kante {args:?} should fail");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

#[test]
fn remotes_join_by_password_and_token_and_lose_trust_when_removed() {
    let d = TestDaemon::start_background();
    d.block_on(async {
        d.host.import_image(&d.engine, "bookworm").await;
        d.host.launch(&d.engine, "c1", "bookworm").await;
        let ws = Arc::new(kante_http::wslimit::WsSlots::from_env());
        kante_http::start_https(&d.engine, ws).await;
    });
    let admin = tempfile::tempdir().unwrap();
    let a = admin.path();
    // Server configuration from the CLI, over the unix socket.
    ok(
        &d,
        a,
        &["config", "set", "core.https_address", "127.0.0.1:0"],
    );
    ok(&d, a, &["config", "set", "core.trust_password", "sesame"]);
    assert_ne!(
        ok(&d, a, &["config", "get", "core.trust_password"]),
        "sesame\n"
    );
    let Reply::Server(s) = d.block_on(d.engine.handle(Request::ServerGet)).unwrap() else {
        panic!("expected the server")
    };
    let addr = s.environment.addresses[0].clone();
    let server_fp = s.environment.certificate_fingerprint.clone();

    // Client one: by password.
    let one = tempfile::tempdir().unwrap();
    let c = one.path();
    let e = fails(
        &d,
        c,
        &["remote", "add", "r", &addr, "--accept-certificate"],
    );
    assert!(e.contains("does not trust this client"), "{e}");
    let e = fails(
        &d,
        c,
        &[
            "remote",
            "add",
            "r",
            &addr,
            "--accept-certificate",
            "--password=nope",
        ],
    );
    assert!(e.contains("refused the password"), "{e}");
    ok(
        &d,
        c,
        &[
            "remote",
            "add",
            "r",
            &addr,
            "--accept-certificate",
            "--password=sesame",
        ],
    );
    let pinned = std::fs::read(c.join("servercerts/r.crt")).unwrap();
    assert_eq!(
        kante_tls::fingerprint(&kante_tls::parse_certificate(&pinned).unwrap()),
        server_fp
    );
    assert_eq!(ok(&d, c, &["list", "r:", "-c", "n", "-f", "csv"]), "c1\n");
    assert_eq!(ok(&d, c, &["exec", "r:c1", "--", "echo", "hi"]), "hi\n");
    ok(&d, c, &["launch", "bookworm", "r:c2"]);
    assert!(ok(&d, c, &["list", "r:", "-c", "n", "-f", "csv"]).contains("c2\n"));
    ok(&d, c, &["delete", "-f", "r:c2"]);
    assert!(!ok(&d, a, &["list", "-c", "n", "-f", "csv"]).contains("c2"));

    // Client two: by a token made on the server (through the remote).
    let out = ok(&d, c, &["config", "trust", "add", "r:", "laptop"]);
    let token = out.lines().nth(1).unwrap().to_string();
    assert!(
        out.starts_with("Client laptop certificate add token:\n"),
        "{out}"
    );
    let two = tempfile::tempdir().unwrap();
    ok(&d, two.path(), &["remote", "add", "edge", &token]);
    assert_eq!(
        ok(&d, two.path(), &["list", "edge:", "-c", "n", "-f", "csv"]),
        "c1\n"
    );
    // A token works once.
    let three = tempfile::tempdir().unwrap();
    let e = fails(&d, three.path(), &["remote", "add", "edge", &token]);
    assert!(e.contains("refused the token"), "{e}");

    // The trust store, from the admin's local view.
    let list = ok(&d, a, &["config", "trust", "list", "-f", "csv"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains("laptop,client,"), "{list}");
    ok(&d, a, &["config", "trust", "remove", "laptop"]);
    let e = fails(&d, two.path(), &["list", "edge:"]);
    assert!(e.contains("not authorized"), "{e}");
    // Client one is still trusted.
    ok(&d, c, &["list", "r:"]);
}
