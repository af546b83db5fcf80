//! The guest API, `/dev/lxd/sock`, checked from inside real Debian guests
//! and from the host: LXD's answers for the calling instance only (its
//! own `user.*` value, never another's), 403 for a process outside the
//! instance even when it reaches the socket, no socket with
//! `security.devlxd=false`, a fresh socket after a daemon restart, nothing
//! left after stop; and the new user's case: a Debian image without
//! Kante's NoCloud templates gets its `cloud-init.user-data` through
//! cloud-init's LXD datasource.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kante_integration::{run, Daemon, TestImage};
use serde_json::{json, Value};

/// A minimal HTTP GET over a unix socket: prints the status, then the body.
const CLIENT: &str = r#"
import socket, sys
path, sock = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
s.sendall(("GET %s HTTP/1.1\r\nHost: lxd\r\nConnection: close\r\n\r\n" % path).encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
print(head.split(b" ")[1].decode())
sys.stdout.write(body.decode())
"#;

/// A minimal websocket client of `/1.0/events?type=config`: prints the
/// handshake's status line, then the first event's text.
const EVENTS_CLIENT: &str = r#"
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect("/dev/lxd/sock")
s.sendall(b"GET /1.0/events?type=config HTTP/1.1\r\nHost: lxd\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: a2FudGUtZGV2bHhkLXRlc3Q=\r\n"
          b"Sec-WebSocket-Version: 13\r\n\r\n")
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += s.recv(1)
print(head.split(b"\r\n")[0].decode(), flush=True)
def read(n):
    d = b""
    while len(d) < n:
        c = s.recv(n - len(d))
        if not c:
            raise SystemExit("closed")
        d += c
    return d
while True:
    h = read(2)
    n = h[1] & 127
    if n == 126:
        n = int.from_bytes(read(2), "big")
    elif n == 127:
        n = int.from_bytes(read(8), "big")
    p = read(n)
    if h[0] & 15 == 1:
        print(p.decode())
        break
"#;

/// Downloads `argv[1]` from `/dev/lxd/sock`: prints the status, the
/// Content-Disposition header and the body's sha256.
const DOWNLOAD_CLIENT: &str = r#"
import hashlib, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("/dev/lxd/sock")
s.sendall(("GET %s HTTP/1.1\r\nHost: lxd\r\nConnection: close\r\n\r\n" % sys.argv[1]).encode())
data = bytearray()
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    data += chunk
head, _, body = bytes(data).partition(b"\r\n\r\n")
lines = head.decode().split("\r\n")
disp = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("content-disposition:")]
print(lines[0].split(" ")[1])
print(disp[0] if disp else "-")
print(hashlib.sha256(body).hexdigest())
"#;

fn split(out: &str) -> (u16, String) {
    let (status, body) = out.split_once('\n').unwrap_or((out, ""));
    let status = status
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no HTTP status in {out:?}"));
    (status, body.to_string())
}

/// `GET path` on `/dev/lxd/sock` from inside instance `name`.
async fn guest_get(d: &Daemon, name: &str, path: &str) -> (u16, String) {
    let script = format!("python3 - '{path}' /dev/lxd/sock <<'EOF'\n{CLIENT}\nEOF");
    let (code, out) = d.sh(name, &script).await;
    assert_eq!(code, 0, "{name}: GET {path}: {out}");
    split(&out)
}

/// `GET path` on a host-side socket from a host process, or from one in
/// the pid namespace of the process `in_pidns_of`.
fn host_get(sock: &Path, path: &str, in_pidns_of: Option<i32>) -> (u16, String) {
    let mut cmd = match in_pidns_of {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "--pid", "--", "/usr/bin/python3"]);
            c
        }
        None => Command::new("/usr/bin/python3"),
    };
    let out = cmd
        .args(["-c", CLIENT, path])
        .arg(sock)
        .output()
        .expect("python3 on the host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    split(&String::from_utf8_lossy(&out.stdout))
}

fn host_sock(d: &Daemon, name: &str) -> PathBuf {
    d.dir.join("devlxd").join(name).join("sock")
}

#[test]
fn guest_api_answers_the_calling_instance_only() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        let vendor = "#cloud-config\n{}\n";
        d.launch(
            &fp,
            "dl1",
            &[("user.foo", "from-dl1"), ("cloud-init.vendor-data", vendor)],
        )
        .await;
        d.launch(&fp, "dl2", &[("user.foo", "from-dl2")]).await;
        d.launch(
            &fp,
            "dl3",
            &[("security.devlxd", "false"), ("user.foo", "from-dl3")],
        )
        .await;

        // LXD's shapes, for the caller's own instance.
        let (status, body) = guest_get(&d, "dl1", "/1.0").await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (&v["api_version"], &v["instance_type"], &v["state"]),
            (&json!("1.0"), &json!("container"), &json!("Started")),
            "{v}"
        );
        let (status, body) = guest_get(&d, "dl1", "/1.0/config").await;
        assert_eq!(status, 200, "{body}");
        let keys: Vec<String> = serde_json::from_str(&body).unwrap();
        assert_eq!(
            keys,
            ["/1.0/config/cloud-init.vendor-data", "/1.0/config/user.foo"]
        );
        assert_eq!(
            guest_get(&d, "dl1", "/1.0/config/user.foo").await,
            (200, "from-dl1".into())
        );
        assert_eq!(
            guest_get(&d, "dl1", "/1.0/config/cloud-init.vendor-data").await,
            (200, vendor.into())
        );
        assert_eq!(
            guest_get(&d, "dl2", "/1.0/config/user.foo").await,
            (200, "from-dl2".into())
        );
        assert_eq!(
            guest_get(&d, "dl1", "/1.0/config/volatile.uuid").await.0,
            403
        );
        assert_eq!(guest_get(&d, "dl1", "/1.0/config/user.nope").await.0, 404);
        let (status, md) = guest_get(&d, "dl1", "/1.0/meta-data").await;
        assert_eq!(status, 200);
        let id = d.client.instance("dl1").await.unwrap().config["volatile.cloud-init.instance-id"]
            .clone();
        assert_eq!(
            md,
            format!("#cloud-config\ninstance-id: {id}\nlocal-hostname: dl1\n")
        );
        let (status, body) = guest_get(&d, "dl1", "/1.0/devices").await;
        assert_eq!(status, 200);
        let devices: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(devices["root"]["type"], "disk", "{devices}");
        // Nothing of dl2 ever reaches dl1.
        for path in ["/1.0/config", "/1.0/meta-data", "/1.0/devices"] {
            let (_, body) = guest_get(&d, "dl1", path).await;
            assert!(!body.contains("dl2"), "{path}: {body}");
        }
        // Image export: refused without security.devlxd.images, the image's
        // exact bytes with it.
        let export = format!("python3 - /1.0/images/{fp}/export <<'EOF'\n{DOWNLOAD_CLIENT}\nEOF");
        let (code, out) = d.sh("dl2", &export).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("403\n"), "{out}");
        d.client
            .patch_instance(
                "dl2",
                &json!({"config": {"security.devlxd.images": "true"}}),
            )
            .await
            .unwrap();
        let (code, out) = d.sh("dl2", &export).await;
        assert_eq!(code, 0, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "200", "{out}");
        assert!(lines[1].starts_with("inline;filename="), "{out}");
        assert_eq!(lines[2], fp, "the exported bytes are not the image");

        // A config change is seen at once, and as an event by a guest
        // listening on /1.0/events.
        let listen = format!("python3 - <<'EOF'\n{EVENTS_CLIENT}\nEOF");
        let ((code, out), _) = tokio::join!(d.sh("dl1", &listen), async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            d.client
                .patch_instance("dl1", &json!({"config": {"user.foo": "changed"}}))
                .await
                .unwrap();
        });
        assert_eq!(code, 0, "{out}");
        let (status, event) = out.split_once('\n').unwrap_or((&out, ""));
        assert!(status.starts_with("HTTP/1.1 101"), "{out}");
        let event: Value =
            serde_json::from_str(event.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(event["type"], "config", "{event}");
        assert_eq!(
            event["metadata"],
            json!({"key": "user.foo", "old_value": "from-dl1", "value": "changed"})
        );
        assert_eq!(
            guest_get(&d, "dl1", "/1.0/config/user.foo").await,
            (200, "changed".into())
        );

        // The socket in the guest: a socket in a directory the guest cannot change.
        let (code, out) = d
            .sh(
                "dl1",
                "stat -c %F /dev/lxd/sock; touch /dev/lxd/x 2>&1; rm -f /dev/lxd/sock 2>&1; ls /dev/lxd",
            )
            .await;
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("socket\n"), "{out}");
        assert!(out.trim_end().ends_with("sock"), "{out}");
        assert!(!out.contains("\nx\n"), "{out}");

        // security.devlxd=false: no socket in the guest, none on the host.
        let (code, out) = d.sh("dl3", "ls -la /dev/lxd").await;
        assert_ne!(code, 0, "{out}");
        assert!(!host_sock(&d, "dl3").exists());

        // The host-side socket: not in dl2's filesystem; refused to a host
        // process and to a process of dl2 that reaches it anyway; answered
        // to a process of dl1 alone.
        let (code, _) = d
            .sh(
                "dl2",
                &format!("test -e {}", host_sock(&d, "dl1").display()),
            )
            .await;
        assert_ne!(code, 0, "dl2 sees dl1's host-side socket");
        let sock = host_sock(&d, "dl1");
        let (status, body) = host_get(&sock, "/1.0/config/user.foo", None);
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains("changed"));
        let dl2 = d.init_pid("dl2").await;
        let (status, body) = host_get(&sock, "/1.0/config/user.foo", Some(dl2));
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains("changed"));
        let dl1 = d.init_pid("dl1").await;
        assert_eq!(
            host_get(&sock, "/1.0/config/user.foo", Some(dl1)),
            (200, "changed".into())
        );

        // A daemon that went away (killed, or stopped as an init system
        // stops it): the running guest's socket is bound again.
        d.restart().await;
        assert_eq!(
            guest_get(&d, "dl1", "/1.0/config/user.foo").await,
            (200, "changed".into())
        );
        d.stop_term();
        d.start_again().await;
        assert_eq!(
            guest_get(&d, "dl1", "/1.0/config/user.foo").await,
            (200, "changed".into())
        );

        // Stopped: the socket and its directory are gone.
        d.client.stop_instance("dl1", true, 0).await.unwrap();
        assert!(
            !d.dir.join("devlxd/dl1").exists(),
            "the socket outlived dl1"
        );
        assert!(host_sock(&d, "dl2").exists());
        d.shutdown().await;
    });
}

/// The Debian test image as a plain tar with no templates: `metadata.yaml`
/// without its `templates:` section, no `templates/` directory (as an
/// image made by `publish` of a hand-built container, or a plain
/// debootstrap, has).
fn image_without_templates(work: &Path) -> PathBuf {
    let sh = |script: &str| {
        let out = Command::new("sh")
            .args(["-ec", script])
            .current_dir(work)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let src = TestImage::Debian.path();
    sh(&format!(
        "mkdir stage && zstd -dcq '{}' | tar -C stage -x --numeric-owner --xattrs --xattrs-include='*'",
        src.display()
    ));
    let meta = std::fs::read_to_string(work.join("stage/metadata.yaml")).unwrap();
    let meta = meta.split("\ntemplates:").next().unwrap().to_string() + "\n";
    assert!(meta.contains("architecture:") && !meta.contains("template"));
    std::fs::write(work.join("stage/metadata.yaml"), meta).unwrap();
    sh("rm -r stage/templates && tar -C stage -cf image.tar --numeric-owner --xattrs --xattrs-include='*' metadata.yaml rootfs && rm -r stage");
    work.join("image.tar")
}

#[test]
fn cloud_init_reads_user_data_over_dev_lxd_from_an_image_without_templates() {
    run(async {
        let d = Daemon::start().await;
        let work = tempfile::tempdir().unwrap();
        let image = image_without_templates(work.path());
        let fp = d
            .client
            .upload_image(&image, &Default::default(), |_, _| {})
            .await
            .unwrap();
        drop(work);
        d.client
            .post(
                "/1.0/networks",
                &json!({"name": "ktdlx0", "config": {"ipv4.address": "auto", "ipv6.address": "none"}}),
            )
            .await
            .unwrap();
        let user_data = "#cloud-config\nusers:\n  - name: devlxduser\n    shell: /bin/bash\n    lock_passwd: true\n";
        let nic: BTreeMap<String, String> = [("type", "nic"), ("network", "ktdlx0")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.create_with_devices(
            &fp,
            "plain1",
            &[("cloud-init.user-data", user_data)],
            [("eth0".to_string(), nic.clone())].into(),
        )
        .await;
        // The same without the guest API: nothing reaches cloud-init.
        d.create_with_devices(
            &fp,
            "plain2",
            &[
                ("cloud-init.user-data", user_data),
                ("security.devlxd", "false"),
            ],
            [("eth0".to_string(), nic)].into(),
        )
        .await;
        for n in ["plain1", "plain2"] {
            d.client.start_instance(n).await.unwrap();
        }
        let status = d.cloud_init_done("plain1").await;
        assert!(status.contains("status: done"), "{status}");
        // The data came over /dev/lxd: no NoCloud seed was written.
        let (code, out) = d
            .sh("plain1", "ls /var/lib/cloud/seed/nocloud-net 2>&1")
            .await;
        assert_ne!(code, 0, "a NoCloud seed in a template-less image: {out}");
        assert!(status.contains("DataSourceLXD"), "{status}");
        let (code, out) = d.sh("plain1", "getent passwd devlxduser").await;
        assert_eq!(code, 0, "cloud-init did not create the user: {out}");
        assert!(out.trim_end().ends_with(":/bin/bash"), "{out}");
        let id = d.client.instance("plain1").await.unwrap().config
            ["volatile.cloud-init.instance-id"]
            .clone();
        let (_, out) = d.sh("plain1", "cloud-init query instance_id").await;
        assert_eq!(out.trim(), id);
        let state = d.wait_systemd("plain2", Duration::from_secs(120)).await;
        assert!(state == "running" || state == "degraded", "plain2: {state}");
        let (code, out) = d.sh("plain2", "getent passwd devlxduser").await;
        assert_ne!(code, 0, "a user without the guest API or a seed: {out}");
        d.shutdown().await;
    });
}
