//! The `kante` binary's server config and remotes, root-free: the real
//! router over a fake-backed engine, on its unix socket (`local`) and
//! behind a TLS listener made here (tokio-rustls with
//! `kante_tls::server_config`) as a remote, with a client configuration
//! directory of the test's own (`KANTE_CONF`).

mod tls;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use kante_http::testing::TestDaemon;
use kante_tls::{KeyPair, Role};
use tls::{Seen, TlsListener};

struct Fixture {
    d: TestDaemon,
    server: KeyPair,
    port: u16,
    seen: Seen,
    conf: tempfile::TempDir,
}

/// A daemon with `c1` running, also served over TLS on loopback.
fn fixture() -> Fixture {
    let d = TestDaemon::start_background();
    let server = KeyPair::generate(Role::Server, &["127.0.0.1".into()]).unwrap();
    let seen = Seen::default();
    let port = d.block_on(async {
        d.host.import_image(&d.engine, "bookworm").await;
        d.host.launch(&d.engine, "c1", "bookworm").await;
        let (listener, port) = TlsListener::bind(&server, seen.clone()).await;
        let app = kante_http::router(d.engine.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    });
    Fixture {
        d,
        server,
        port,
        seen,
        conf: tempfile::tempdir().unwrap(),
    }
}

fn kante_in(f: &Fixture, conf: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kante"))
        .args(args)
        .env("KANTE_DIR", f.d.kante_dir())
        .env("KANTE_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn kante(f: &Fixture, args: &[&str]) -> Output {
    kante_in(f, f.conf.path(), args)
}

fn ok(f: &Fixture, args: &[&str]) -> String {
    let o = kante(f, args);
    assert!(
        o.status.success(),
        "kante {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(f: &Fixture, args: &[&str]) -> String {
    let o = kante(f, args);
    assert!(!o.status.success(), "kante {args:?} should fail");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

#[test]
fn server_config_is_set_read_and_unset_without_an_instance() {
    let f = fixture();
    ok(&f, &["config", "set", "user.site", "lab 3"]);
    assert_eq!(
        f.d.last("PATCH /1.0").unwrap().json(),
        serde_json::json!({"config": {"user.site": "lab 3"}})
    );
    assert_eq!(ok(&f, &["config", "get", "user.site"]), "lab 3\n");
    ok(&f, &["config", "set", "local:", "user.rack=r7"]);
    assert_eq!(ok(&f, &["config", "get", "local:", "user.rack"]), "r7\n");
    let show = ok(&f, &["config", "show"]);
    assert!(show.starts_with("config:\n"), "{show}");
    assert!(
        show.contains("user.site: lab 3") && show.contains("user.rack: r7"),
        "{show}"
    );
    ok(&f, &["config", "unset", "user.site"]);
    assert_eq!(ok(&f, &["config", "get", "user.site"]), "\n");
    let e = fails(&f, &["config", "unset", "user.site"]);
    assert!(e.contains("Key user.site is not set"), "{e}");
    // The instance forms are unchanged, `local:` included.
    ok(&f, &["config", "set", "local:c1", "user.color", "blue"]);
    assert_eq!(ok(&f, &["config", "get", "c1", "user.color"]), "blue\n");
    assert!(ok(&f, &["config", "show", "c1"]).contains("user.color: blue"));
}

#[test]
fn a_remote_over_https_is_added_pinned_used_and_refused_when_its_certificate_changes() {
    let f = fixture();
    let addr = format!("127.0.0.1:{}", f.port);
    let list = ok(&f, &["remote", "list"]);
    assert!(list.contains("| local (current) | unix://"), "{list}");
    assert_eq!(ok(&f, &["remote", "get-default"]), "local\n");

    // Non-interactive first contact without --accept-certificate: refused,
    // with the fingerprint shown, and nothing kept.
    let e = fails(&f, &["remote", "add", "r", &addr]);
    assert!(
        e.contains(&f.server.fingerprint()) && e.contains("--accept-certificate"),
        "{e}"
    );
    assert!(!f.conf.path().join("config.yml").exists());

    ok(&f, &["remote", "add", "r", &addr, "--accept-certificate"]);
    let crt = std::fs::read(f.conf.path().join("servercerts/r.crt")).unwrap();
    let pinned = kante_tls::fingerprint(&kante_tls::parse_certificate(&crt).unwrap());
    assert_eq!(pinned, f.server.fingerprint());
    let key = f.conf.path().join("client.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let me = kante_tls::load_or_create(f.conf.path(), "client", Role::Client, &[]).unwrap();

    // REMOTE:NAME goes over HTTPS, showing the client's certificate.
    let before = f.seen.lock().unwrap().len();
    let list = ok(&f, &["list", "r:", "-c", "ns", "-f", "csv"]);
    assert_eq!(list, "c1,RUNNING\n");
    assert_eq!(
        ok(&f, &["exec", "r:c1", "--", "echo", "over tls"]),
        "over tls\n"
    );
    let seen = f.seen.lock().unwrap().clone();
    assert!(seen.len() > before + 1, "{seen:?}");
    assert!(seen[before..]
        .iter()
        .all(|s| s.as_deref() == Some(me.fingerprint().as_str())));
    let table = ok(&f, &["remote", "list"]);
    assert!(
        table.contains(&format!(
            "| r               | https://{addr} | kante    | tls"
        )),
        "{table}"
    );

    // The default remote applies to names without one.
    ok(&f, &["remote", "switch", "r"]);
    assert_eq!(ok(&f, &["remote", "get-default"]), "r\n");
    let n = f.seen.lock().unwrap().len();
    assert_eq!(ok(&f, &["list", "-c", "n", "-f", "csv"]), "c1\n");
    assert!(f.seen.lock().unwrap().len() > n, "went over HTTPS");
    assert_eq!(ok(&f, &["list", "local:", "-c", "n", "-f", "csv"]), "c1\n");
    let e = fails(&f, &["remote", "remove", "r"]);
    assert!(e.contains("default"), "{e}");
    // A copy to another server is a migration: a running source is
    // refused before anything moves.
    let e = fails(&f, &["copy", "c1", "local:c2"]);
    assert!(
        e.contains("c1 is running") && e.contains("--stateless"),
        "{e}"
    );

    // Rename keeps the pin and the default.
    ok(&f, &["remote", "rename", "r", "edge"]);
    assert!(f.conf.path().join("servercerts/edge.crt").exists());
    assert_eq!(ok(&f, &["remote", "get-default"]), "edge\n");
    let e = fails(&f, &["list", "r:"]);
    assert!(e.contains("The remote \"r\" doesn't exist"), "{e}");

    // Another certificate pinned (as if the server had changed): refused
    // loudly with both fingerprints.
    let other = KeyPair::generate(Role::Server, &["x".into()]).unwrap();
    std::fs::write(f.conf.path().join("servercerts/edge.crt"), &other.cert_pem).unwrap();
    let e = fails(&f, &["list", "edge:"]);
    assert!(
        e.contains(&other.fingerprint()) && e.contains(&f.server.fingerprint()),
        "{e}"
    );

    ok(
        &f,
        &[
            "remote",
            "set-url",
            "edge",
            &format!("https://localhost:{}", f.port),
        ],
    );
    assert!(std::fs::read_to_string(f.conf.path().join("config.yml"))
        .unwrap()
        .contains(&format!("addr: https://localhost:{}", f.port)));
    // An image server is recorded without contact, as its URL (port 443
    // unless given, as lxc keeps it); the API verbs refuse it.
    ok(
        &f,
        &[
            "remote",
            "add",
            "images",
            "https://images.example",
            "--protocol",
            "simplestreams",
        ],
    );
    let table = ok(&f, &["remote", "list", "-f", "csv"]);
    assert!(
        table.contains("images,https://images.example,simplestreams,none,YES,NO,NO"),
        "{table}"
    );
    let e = fails(&f, &["list", "images:"]);
    assert!(e.contains("simplestreams image server"), "{e}");
    assert!(!f.conf.path().join("servercerts/images.crt").exists());

    ok(&f, &["remote", "switch", "local"]);
    ok(&f, &["remote", "remove", "edge"]);
    assert!(!f.conf.path().join("servercerts/edge.crt").exists());
    assert!(!ok(&f, &["remote", "list"]).contains("edge"));
}

fn token(fingerprint: &str, port: u16) -> String {
    let json = serde_json::json!({
        "client_name": "c2", "fingerprint": fingerprint,
        "addresses": [format!("127.0.0.1:{port}")], "secret": "s3cr3t",
        "expires_at": "0001-01-01T00:00:00Z"
    });
    b64(json.to_string().as_bytes())
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
fn a_token_names_the_server_and_its_certificate() {
    let f = fixture();
    // The token's fingerprint is not the server's: refused with both.
    let other = KeyPair::generate(Role::Server, &["x".into()]).unwrap();
    let e = fails(
        &f,
        &["remote", "add", "t", &token(&other.fingerprint(), f.port)],
    );
    assert!(
        e.contains(&other.fingerprint()) && e.contains(&f.server.fingerprint()),
        "{e}"
    );
    assert!(!f.conf.path().join("servercerts/t.crt").exists());
    let e = fails(
        &f,
        &[
            "remote",
            "add",
            "t",
            &token(&other.fingerprint(), f.port)[..40],
        ],
    );
    assert!(e.contains("trust token"), "{e}");

    // The right one: pinned without a question (this test server trusts
    // everyone, so no certificate is posted).
    ok(
        &f,
        &[
            "remote",
            "add",
            "t",
            &token(&f.server.fingerprint(), f.port),
        ],
    );
    assert_eq!(ok(&f, &["list", "t:", "-c", "n", "-f", "csv"]), "c1\n");
    assert!(!f.d.lines().iter().any(|l| l == "POST /1.0/certificates"));
}

/// `kante ARGS` on a terminal (util-linux `script` makes the pty), with
/// `answer` typed in; `None` when `script` is not installed.
fn kante_on_tty(f: &Fixture, args: &[&str], answer: &str) -> Option<Output> {
    use std::io::Write;
    let line = std::iter::once(env!("CARGO_BIN_EXE_kante"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("KANTE_DIR", f.d.kante_dir())
        .env("KANTE_CONF", f.conf.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn on_a_terminal_the_fingerprint_is_shown_and_asked_about() {
    let f = fixture();
    let addr = format!("127.0.0.1:{}", f.port);
    let Some(no) = kante_on_tty(&f, &["remote", "add", "r", &addr], "n\n") else {
        eprintln!("skipped: no `script` to make a terminal");
        return;
    };
    let text = String::from_utf8_lossy(&no.stdout).into_owned();
    assert!(!no.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "Certificate fingerprint: {}",
            f.server.fingerprint()
        )),
        "{text}"
    );
    assert!(
        text.contains("ok (y/n/[fingerprint])?") && text.contains("NACKed"),
        "{text}"
    );
    assert!(!f.conf.path().join("config.yml").exists());

    let yes = kante_on_tty(&f, &["remote", "add", "r", &addr], "y\n").unwrap();
    assert!(
        yes.status.success(),
        "{}",
        String::from_utf8_lossy(&yes.stdout)
    );
    assert_eq!(ok(&f, &["list", "r:", "-c", "n", "-f", "csv"]), "c1\n");
}
