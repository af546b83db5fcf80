//! Remote access over HTTPS with Debian's own `lxc` 5.0.2, unchanged: a
//! kanted listening on `core.https_address` (set through the unix socket
//! with `lxc config set`), `lxc remote add` by trust password and by trust
//! token, then everyday verbs on `r:` names, `lxc config trust
//! list/remove` (a removed client's `lxc monitor` ends), a certificate
//! added by a trusted client, restricted certificates (one of the default
//! project works in it but cannot change the server, one of no project
//! sees only `GET /1.0`, lifted by an edit), a wrong password and the lock-out after
//! five, a rebind to another port while serving, and an address that
//! cannot be bound. Each client has its own
//! `LXD_CONF`; effects are checked from outside where they can be (the
//! pool on disk, the daemon's state), not only by exit codes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kante_integration::{free_port, run, Daemon, TestImage};

/// A scratch client configuration (`LXD_CONF`, `HOME`) under the daemon's dir.
fn conf(d: &Daemon, name: &str) -> PathBuf {
    let c = d.dir.join(format!("client-{name}"));
    std::fs::create_dir_all(c.join("home")).unwrap();
    c
}

/// `lxc ARGS` with client config `conf`; `LXD_DIR` points `local:` at the
/// daemon's unix socket.
fn lxc(d: &Daemon, conf: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new("lxc");
    cmd.args(args)
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", conf)
        .env("HOME", conf.join("home"));
    kante_integration::output_with_stdin(cmd, stdin)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(d: &Daemon, conf: &Path, cmd: &str) -> String {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let o = lxc(d, conf, &args, None);
    assert!(
        o.status.success(),
        "lxc {cmd} failed ({}): {}{}\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr),
        d.log_text()
    );
    text(&o.stdout)
}

fn fails(d: &Daemon, conf: &Path, cmd: &str) -> String {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let o = lxc(d, conf, &args, None);
    assert!(!o.status.success(), "lxc {cmd} unexpectedly succeeded");
    text(&o.stderr)
}

/// The fingerprints `lxc config trust list` shows (first 12 characters).
fn trusted(d: &Daemon, conf: &Path, remote: &str) -> String {
    ok(d, conf, &format!("config trust list {remote} --format csv"))
}

/// Whether something answers TLS on `port` (a plain TCP connect suffices:
/// the listener is gone or not).
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn lxc_drives_kanted_over_https_by_password_and_token() {
    run(async {
        let d = Daemon::start().await;
        let admin = conf(&d, "admin");
        let port = free_port();
        // Server config through the unix socket, as an admin would.
        ok(
            &d,
            &admin,
            &format!("config set core.https_address 127.0.0.1:{port}"),
        );
        ok(&d, &admin, "config set core.trust_password sesame");
        let shown = ok(&d, &admin, "config get core.trust_password");
        assert!(!shown.contains("sesame"), "the password is shown: {shown}");
        let info = ok(&d, &admin, "info");
        assert!(info.contains(&format!("127.0.0.1:{port}")), "{info}");
        // The certificate made at the first start, its key private, and
        // the fingerprint GET /1.0 shows is the file's.
        use std::os::unix::fs::PermissionsExt;
        let key_mode = std::fs::metadata(d.dir.join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let o = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(d.dir.join("server.crt"))
            .output()
            .unwrap();
        let fp: String = text(&o.stdout)
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(fp.len(), 64, "{}", text(&o.stderr));
        assert!(
            info.contains(&format!("certificate_fingerprint: {fp}")),
            "{info}"
        );
        assert!(listening(port));

        // A wrong password: refused, nothing stored.
        let c1 = conf(&d, "c1");
        let url = format!("https://127.0.0.1:{port}");
        let e = fails(
            &d,
            &c1,
            &format!("remote add r {url} --accept-certificate --password=wrong"),
        );
        assert!(!e.is_empty());
        assert_eq!(trusted(&d, &admin, "local:").trim(), "");

        // The right one: trusted from now on.
        ok(
            &d,
            &c1,
            &format!("remote add r {url} --accept-certificate --password=sesame"),
        );
        let list = trusted(&d, &admin, "local:");
        assert_eq!(list.lines().count(), 1, "{list}");
        let remote_info = ok(&d, &c1, "info r:");
        assert!(remote_info.contains("auth: trusted"), "{remote_info}");

        // Everyday verbs on r: names. The image is imported locally; the
        // launch names it on the same remote.
        let img = TestImage::Busybox.path();
        ok(
            &d,
            &admin,
            &format!("image import {} --alias bb", img.display()),
        );
        ok(&d, &c1, "launch r:bb r:c1");
        let listed = ok(&d, &c1, "list r: --format csv -c ns");
        assert!(listed.contains("c1,RUNNING"), "{listed}");
        ok(&d, &c1, "exec r:c1 -- true");
        let o = lxc(&d, &c1, &["exec", "r:c1", "--", "sh", "-c", "exit 3"], None);
        assert_eq!(o.status.code(), Some(3));
        let src = d.dir.join("pushed.txt");
        std::fs::write(&src, b"over https\n").unwrap();
        ok(
            &d,
            &c1,
            &format!("file push {} r:c1/root/pushed.txt", src.display()),
        );
        let pulled = ok(&d, &c1, "exec r:c1 -- cat /root/pushed.txt");
        assert_eq!(pulled, "over https\n");
        ok(&d, &c1, "snapshot r:c1 s0");
        assert!(d
            .dir
            .join("storage-pools/default/containers-snapshots/c1/s0")
            .exists());

        // Rebind to another port while serving: the old one goes.
        let port2 = free_port();
        ok(
            &d,
            &admin,
            &format!("config set core.https_address 127.0.0.1:{port2}"),
        );
        assert!(listening(port2));
        assert!(!listening(port));
        ok(
            &d,
            &c1,
            &format!("remote set-url r https://127.0.0.1:{port2}"),
        );
        ok(&d, &c1, "list r:");

        // An address that cannot be bound: an error, the old one serves on.
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let e = fails(
            &d,
            &admin,
            &format!("config set core.https_address 127.0.0.1:{busy_port}"),
        );
        assert!(e.contains(&busy_port.to_string()), "{e}");
        let e = fails(&d, &admin, "config set core.https_address 192.0.2.77:8443");
        assert!(e.contains("192.0.2.77"), "{e}");
        drop(busy);
        let now = ok(&d, &admin, "config get core.https_address");
        assert_eq!(now.trim(), format!("127.0.0.1:{port2}"));
        ok(&d, &c1, "list r:");

        // A token for a second client, who adds the remote by it alone.
        // (lxc 5.0.2 reads a lone argument as a certificate file, so the
        // token is asked of the default remote.)
        ok(&d, &c1, "remote switch r");
        let out = ok(&d, &c1, "config trust add --name second");
        ok(&d, &c1, "remote switch local");
        let token = out
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap()
            .to_string();
        let c2 = conf(&d, "c2");
        ok(&d, &c2, &format!("remote add r2 {token}"));
        let remote_info = ok(&d, &c2, "info r2:");
        assert!(remote_info.contains("auth: trusted"), "{remote_info}");
        // Single use: a third client cannot reuse it.
        let c3 = conf(&d, "c3");
        fails(&d, &c3, &format!("remote add r3 {token}"));
        let list = trusted(&d, &admin, "local:");
        assert_eq!(list.lines().count(), 2, "{list}");
        assert!(list.contains("second"), "{list}");

        // Trust removal: the second client is refused on its next request.
        let fp = list
            .lines()
            .find(|l| l.contains("second"))
            .and_then(|l| {
                l.split(',')
                    .find(|f| f.len() >= 12 && f.chars().all(|c| c.is_ascii_hexdigit()))
            })
            .unwrap_or_else(|| panic!("no fingerprint in {list}"))
            .to_string();
        // Its open event stream (`lxc monitor`) ends with the removal.
        let mut monitor = Command::new("lxc")
            .args(["monitor", "r2:"])
            .env("LXD_DIR", &d.dir)
            .env("LXD_CONF", &c2)
            .env("HOME", c2.join("home"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            monitor.try_wait().unwrap().is_none(),
            "lxc monitor ended early"
        );
        ok(&d, &c1, &format!("config trust remove r: {fp}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while monitor.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let ended = monitor.try_wait().unwrap().is_some();
        let _ = monitor.kill();
        let _ = monitor.wait();
        assert!(ended, "the revoked client's event stream stayed open");
        fails(&d, &c2, "list r2:");
        assert_eq!(trusted(&d, &admin, "local:").lines().count(), 1);

        // A trusted client adds another one's certificate: that one is
        // trusted without any secret.
        let c3_cert = c3.join("client.crt");
        assert!(c3_cert.exists(), "lxc made c3's key pair");
        ok(
            &d,
            &c1,
            &format!("config trust add r: {} --name third", c3_cert.display()),
        );
        ok(
            &d,
            &c3,
            &format!("remote add r3 https://127.0.0.1:{port2} --accept-certificate"),
        );
        let remote_info = ok(&d, &c3, "info r3:");
        assert!(remote_info.contains("auth: trusted"), "{remote_info}");

        // Restricted certificates (LXD's `--restricted --projects`): one
        // of the default project works inside it but cannot change the
        // server; one of no project only reads the server's face.
        let token_of = |out: String| {
            out.lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap()
                .to_string()
        };
        let c5 = conf(&d, "c5");
        let token = token_of(ok(
            &d,
            &admin,
            "config trust add --name limited --restricted --projects default",
        ));
        ok(&d, &c5, &format!("remote add r5 {token}"));
        let listed = ok(&d, &c5, "list r5: --format csv -c ns");
        assert!(listed.contains("c1,RUNNING"), "{listed}");
        assert_eq!(ok(&d, &c5, "exec r5:c1 -- echo inside"), "inside\n");
        let pools = ok(&d, &c5, "storage list r5: --format csv");
        assert!(pools.contains("default"), "{pools}");
        let before = trusted(&d, &admin, "local:");
        let fingerprint_of = |list: &str, name: &str| {
            list.lines()
                .find(|l| l.contains(name))
                .and_then(|l| {
                    l.split(',')
                        .find(|f| f.len() >= 12 && f.chars().all(|c| c.is_ascii_hexdigit()))
                })
                .unwrap_or_else(|| panic!("no {name} in {list}"))
                .to_string()
        };
        let fp3 = fingerprint_of(&before, "third");
        for cmd in [
            "config set r5: core.trust_password opened".to_string(),
            "storage create r5:p2 dir".to_string(),
            format!("config trust add r5: {} --name fourth", c3_cert.display()),
            format!("config trust remove r5: {fp3}"),
        ] {
            let e = fails(&d, &c5, &cmd);
            assert!(
                e.contains("restricted certificate cannot change the server"),
                "{cmd}: {e}"
            );
        }
        assert_eq!(
            trusted(&d, &admin, "local:"),
            before,
            "the trust store changed"
        );
        assert!(!d.dir.join("storage-pools/p2").exists());
        let c6 = conf(&d, "c6");
        let token = token_of(ok(
            &d,
            &admin,
            "config trust add --name nowhere --restricted",
        ));
        ok(&d, &c6, &format!("remote add r6 {token}"));
        let remote_info = ok(&d, &c6, "info r6:");
        assert!(remote_info.contains("auth: trusted"), "{remote_info}");
        let projects = ok(&d, &c6, "project list r6: --format csv");
        assert!(!projects.contains("default"), "{projects}");
        let projects = ok(&d, &c5, "project list r5: --format csv");
        assert!(projects.contains("default"), "{projects}");
        let e = fails(&d, &c6, "list r6:");
        assert!(e.contains("restricted to no project"), "{e}");
        let e = fails(&d, &c6, "exec r6:c1 -- true");
        assert!(e.contains("restricted to no project"), "{e}");
        // Lifted by an edit of its record: the next request is served.
        let fp6 = fingerprint_of(&trusted(&d, &admin, "local:"), "nowhere");
        let full = ok(&d, &admin, &format!("query /1.0/certificates/{fp6}"));
        assert!(full.contains("\"restricted\": true"), "{full}");
        let o = lxc(
            &d,
            &admin,
            &[
                "query",
                "-X",
                "PATCH",
                "-d",
                r#"{"restricted": false}"#,
                &format!("/1.0/certificates/{fp6}"),
            ],
            None,
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        let listed = ok(&d, &c6, "list r6: --format csv -c n");
        assert!(listed.contains("c1"), "{listed}");

        ok(&d, &c1, "delete -f r:c1");
        assert!(!d.dir.join("storage-pools/default/containers/c1").exists());

        // Five wrong passwords lock this address out for a minute: then
        // even the right one is refused, and nothing is stored.
        let before = trusted(&d, &admin, "local:");
        let c4 = conf(&d, "c4");
        let add = |secret: &str| {
            format!(
                "remote add r4 https://127.0.0.1:{port2} --accept-certificate --password={secret}"
            )
        };
        for _ in 0..5 {
            fails(&d, &c4, &add("guess"));
        }
        fails(&d, &c4, &add("sesame"));
        assert_eq!(trusted(&d, &admin, "local:"), before);
        assert!(d.log_text().contains("too many failed attempts"));
        ok(&d, &admin, "config unset core.https_address");
        assert!(!listening(port2));
        ok(&d, &admin, "image delete bb");
    });
}
