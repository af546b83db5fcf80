//! `kante` as a remote client of a real kanted over HTTPS: the server
//! configured from the CLI (`core.https_address`, `core.trust_password`),
//! `kante remote add` by password and by a token from `kante config trust
//! add`, launch/exec/delete on `r:` names (checked from the daemon's side),
//! `config trust list/remove`, and the removed client refused. Each client
//! has its own `KANTE_CONF`.

use std::path::{Path, PathBuf};

use kante_integration::{free_port, kante_with_conf, run, Daemon, TestImage};

/// A scratch client configuration directory under the daemon's dir.
fn conf(d: &Daemon, name: &str) -> PathBuf {
    let c = d.dir.join(format!("kante-conf-{name}"));
    std::fs::create_dir_all(&c).unwrap();
    c
}

fn ok(d: &Daemon, conf: &Path, args: &[&str]) -> String {
    let o = kante_with_conf(d, conf, args);
    assert!(
        o.status.success(),
        "kante {args:?} failed: {}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        d.log_text()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(d: &Daemon, conf: &Path, args: &[&str]) -> String {
    let o = kante_with_conf(d, conf, args);
    assert!(!o.status.success(), "kante {args:?} unexpectedly succeeded");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
    e
}

#[test]
fn kante_drives_kanted_over_https_by_password_and_token() {
    run(async {
        let d = Daemon::start().await;
        let admin = conf(&d, "admin");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        ok(&d, &admin, &["config", "set", "core.https_address", &addr]);
        ok(
            &d,
            &admin,
            &["config", "set", "core.trust_password", "sesame"],
        );
        assert_eq!(
            ok(&d, &admin, &["config", "get", "core.https_address"]),
            format!("{addr}\n")
        );
        let img = TestImage::Busybox.path();
        ok(
            &d,
            &admin,
            &["image", "import", img.to_str().unwrap(), "--alias", "bb"],
        );

        // By password; a wrong one first.
        let a = conf(&d, "a");
        let e = fails(
            &d,
            &a,
            &[
                "remote",
                "add",
                "r",
                &addr,
                "--accept-certificate",
                "--password=wrong",
            ],
        );
        assert!(e.contains("refused the password"), "{e}");
        ok(
            &d,
            &a,
            &[
                "remote",
                "add",
                "r",
                &addr,
                "--accept-certificate",
                "--password=sesame",
            ],
        );
        assert_eq!(ok(&d, &a, &["list", "r:", "-f", "csv"]), "");
        ok(
            &d,
            &a,
            &["launch", "bb", "r:c1", "-c", "security.privileged=true"],
        );
        let listed = ok(&d, &a, &["list", "r:", "-c", "ns", "-f", "csv"]);
        assert_eq!(listed, "c1,RUNNING\n");
        assert_eq!(
            d.client.instance_state("c1").await.unwrap().status,
            "Running"
        );
        assert_eq!(
            ok(&d, &a, &["exec", "r:c1", "--", "echo", "over https"]),
            "over https\n"
        );
        ok(&d, &a, &["delete", "-f", "r:c1"]);
        assert!(d.client.instance("c1").await.unwrap_err().is_not_found());

        // By a token made through the remote.
        let out = ok(&d, &a, &["config", "trust", "add", "r:", "laptop"]);
        let token = out.lines().nth(1).expect("a token line").to_string();
        let b = conf(&d, "b");
        ok(&d, &b, &["remote", "add", "edge", &token]);
        assert_eq!(ok(&d, &b, &["list", "edge:", "-f", "csv"]), "");
        let e = fails(&d, &conf(&d, "c"), &["remote", "add", "edge", &token]);
        assert!(e.contains("refused the token"), "{e}");

        // The trust store, and a removed client refused at once.
        let list = ok(&d, &admin, &["config", "trust", "list", "-f", "csv"]);
        assert_eq!(list.lines().count(), 2, "{list}");
        ok(&d, &admin, &["config", "trust", "remove", "laptop"]);
        let e = fails(&d, &b, &["list", "edge:"]);
        assert!(e.contains("not authorized"), "{e}");
        ok(&d, &a, &["list", "r:"]);
    });
}
