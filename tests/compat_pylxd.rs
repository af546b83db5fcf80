//! Debian's pylxd (`python3-pylxd` 2.2.10), unchanged, against a real kanted:
//! `tests/compat/pylxd_smoke.py` connects through `LXD_DIR`, then creates,
//! starts, executes in (output, stderr, exit codes, environment), moves files
//! both ways, edits config, snapshots and restores, applies a profile, is
//! refused a bad name, and deletes, checking each result in Python. Here the
//! steps it reports are checked, that its websockets closed cleanly, and
//! that nothing is left on the host. The same script runs again over HTTPS
//! with a client certificate the daemon learns by its trust password.

use std::process::Command;

use kante_integration::{kante_ok, listen_https, run, Daemon, TestImage};

const STEPS: &[&str] = &[
    "connect",
    "images",
    "create and start",
    "execute",
    "files",
    "config and state",
    "snapshots",
    "profiles",
    "bad input",
    "stop and delete",
];

/// Runs the smoke script (Debian's interpreter, where python3-pylxd is
/// installed: a pyenv python earlier on PATH would not see it) with `cmd`'s
/// environment, and checks that it did every step and closed its
/// websockets as RFC 6455 asks (the server waits for the client's Close:
/// ws4py logs a broken pipe otherwise).
fn smoke(d: &Daemon, fp: &str, how: &str, env: impl FnOnce(&mut Command)) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/pylxd_smoke.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-W", "ignore", script, fp]);
    env(&mut cmd);
    let o = cmd
        .output()
        .expect("run /usr/bin/python3 (apt-get install python3-pylxd)");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "pylxd {how} failed ({}):\n{out}\n{err}\n{}",
        o.status,
        d.log_text()
    );
    let done: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ok ")).collect();
    assert_eq!(done, STEPS, "{out}\n{err}");
    assert!(!err.contains("BrokenPipeError"), "{err}");
}

#[test]
fn pylxd_drives_kanted() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        smoke(&d, &fp, "over the unix socket", |c| {
            c.env("LXD_DIR", &d.dir);
        });
        // The script deleted what it made; the daemon agrees.
        assert!(d.client.instance_names().await.unwrap().is_empty());
        assert!(d.client.profile("pyprof").await.is_err());
        d.shutdown().await;
    });
}

/// pylxd over HTTPS, as an Ansible controller or a script on another
/// machine uses it: a client certificate the daemon does not know,
/// `authenticate` with the trust password, then the whole smoke run (exec's
/// websockets connect without the certificate, by their secrets).
#[test]
fn pylxd_drives_kanted_over_https() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let port = listen_https(&d);
        kante_ok(&d, &["config", "set", "core.trust_password", "py-sesame"]);
        let pair =
            kante_tls::KeyPair::generate(kante_tls::Role::Client, &["pylxd".into()]).unwrap();
        let (crt, key) = (d.dir.join("pylxd.crt"), d.dir.join("pylxd.key"));
        std::fs::write(&crt, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        smoke(&d, &fp, "over HTTPS", |c| {
            c.env("PYLXD_ENDPOINT", format!("https://127.0.0.1:{port}"))
                .env("PYLXD_CERT", &crt)
                .env("PYLXD_KEY", &key)
                .env("PYLXD_PASSWORD", "py-sesame")
                .env_remove("LXD_DIR")
                // requests lets these override pylxd's `verify=False`.
                .env_remove("REQUESTS_CA_BUNDLE")
                .env_remove("CURL_CA_BUNDLE");
        });
        // The daemon now trusts exactly that certificate, and what the
        // script made is gone.
        let trusted = kante_ok(&d, &["config", "trust", "list"]);
        assert!(trusted.contains(&pair.fingerprint()[..12]), "{trusted}");
        assert!(d.client.instance_names().await.unwrap().is_empty());
        kante_ok(&d, &["config", "unset", "core.https_address"]);
        d.shutdown().await;
    });
}
