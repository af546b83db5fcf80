//! Instances copied and moved between two kanteds over HTTPS on loopback
//! by Debian's `lxc` 5.0.2 (`lxc copy|move k1:c1 k2:…`, modes pull, push
//! and relay; a snapshot as a new instance): files and snapshots arrive,
//! the source is unchanged and the copies are independent; a move keeps
//! the MAC; refusals (a name in use, a missing pool or profile, live
//! migration) make nothing; a running source is copied frozen
//! (`--stateless`); a source killed with `kill -9` mid-stream leaves
//! nothing on the target, a target killed so leaves the source intact
//! and, once restarted, no trace, and the retry succeeds; btrfs pools send
//! btrfs streams to each other and tar to other pools; pylxd's `migrate()`
//! pulls too.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kante_client::{FileContent, FilePushOptions};
use kante_integration::lxc::{conf, lxc_cmd, lxc_fails, lxc_ok, serve_https};
use kante_integration::net::root_on;
use kante_integration::{run, Daemon, TestImage};
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn read(d: &Daemon, name: &str, path: &str) -> String {
    match d.client.file_get(name, path).await.unwrap().content {
        FileContent::File(b) => text(&b),
        other => panic!("{path} in {name}: {other:?}"),
    }
}

async fn write(d: &Daemon, name: &str, path: &str, data: &str) {
    d.client
        .file_push_bytes(name, path, data.to_string(), &FilePushOptions::default())
        .await
        .unwrap();
}

async fn snapshot_names(d: &Daemon, name: &str) -> Vec<String> {
    let mut v: Vec<String> = d
        .client
        .snapshots(name)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

async fn names(d: &Daemon) -> Vec<String> {
    let mut v = d.client.instance_names().await.unwrap();
    v.sort();
    v
}

/// Every entry of `d`'s instance volume directories, hidden ones (staging)
/// included.
fn volume_entries(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    let pools = d.dir.join("storage-pools");
    for pool in std::fs::read_dir(&pools).into_iter().flatten().flatten() {
        for sub in ["containers", "containers-snapshots"] {
            for e in std::fs::read_dir(pool.path().join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

async fn config_of(d: &Daemon, name: &str, key: &str) -> String {
    d.client.instance(name).await.unwrap().config[key].clone()
}

/// Two daemons serving HTTPS, and an lxc configuration trusted by both as
/// remotes `k1` (source) and `k2` (target).
async fn pair() -> (Daemon, Daemon, PathBuf) {
    let src = Daemon::start().await;
    let dst = Daemon::start().await;
    let (sa, da) = (conf(&src, "admin"), conf(&dst, "admin"));
    let sport = serve_https(&src, &sa);
    let dport = serve_https(&dst, &da);
    let user = conf(&src, "user");
    for (name, port) in [("k1", sport), ("k2", dport)] {
        lxc_ok(
            &src,
            &user,
            &format!(
                "remote add {name} https://127.0.0.1:{port} --accept-certificate --password=sesame"
            ),
        );
    }
    (src, dst, user)
}

#[test]
fn lxc_copies_and_moves_instances_between_kanteds() {
    run(async {
        let (src, dst, user) = pair().await;
        let fp = src.import(TestImage::Busybox).await;
        src.create(&fp, "c1", &[]).await;
        write(&src, "c1", "/root/f", "one").await;
        lxc_ok(&src, &user, "snapshot k1:c1 s0");
        write(&src, "c1", "/root/f", "two").await;
        lxc_ok(&src, &user, "snapshot k1:c1 s1");
        write(&src, "c1", "/root/f", "three").await;

        // Pull (lxc's default): files and snapshots arrive.
        lxc_ok(&src, &user, "copy k1:c1 k2:c2");
        assert_eq!(read(&dst, "c2", "/root/f").await, "three");
        assert_eq!(snapshot_names(&dst, "c2").await, ["s0", "s1"]);
        let listed = lxc_ok(&src, &user, "list k2: --format csv -c ns");
        assert!(listed.contains("c2,STOPPED"), "{listed}");
        // The snapshots carry their own trees.
        lxc_ok(&src, &user, "restore k2:c2 s0");
        assert_eq!(read(&dst, "c2", "/root/f").await, "one");
        // The source is unchanged, and the two are independent.
        assert_eq!(read(&src, "c1", "/root/f").await, "three");
        assert_eq!(snapshot_names(&src, "c1").await, ["s0", "s1"]);
        write(&dst, "c2", "/root/g", "target only").await;
        write(&src, "c1", "/root/f", "four").await;
        assert_eq!(read(&dst, "c2", "/root/f").await, "one");
        assert!(src.client.file_get("c1", "/root/g").await.is_err());
        // A copy is a new machine: the target starts it.
        lxc_ok(&src, &user, "start k2:c2");
        let listed = lxc_ok(&src, &user, "list k2: --format csv -c ns");
        assert!(listed.contains("c2,RUNNING"), "{listed}");
        lxc_ok(&src, &user, "stop -f k2:c2");

        // Push and relay; --instance-only leaves the snapshots behind.
        lxc_ok(&src, &user, "copy k1:c1 k2:c3 --mode push");
        assert_eq!(read(&dst, "c3", "/root/f").await, "four");
        assert_eq!(snapshot_names(&dst, "c3").await, ["s0", "s1"]);
        lxc_ok(&src, &user, "copy k1:c1 k2:c4 --mode relay");
        assert_eq!(read(&dst, "c4", "/root/f").await, "four");
        assert_eq!(snapshot_names(&dst, "c4").await, ["s0", "s1"]);
        lxc_ok(&src, &user, "copy k1:c1 k2:c5 --instance-only");
        assert_eq!(read(&dst, "c5", "/root/f").await, "four");
        assert!(snapshot_names(&dst, "c5").await.is_empty());
        // A snapshot becomes a new instance.
        lxc_ok(&src, &user, "copy k1:c1/s0 k2:c7");
        assert_eq!(read(&dst, "c7", "/root/f").await, "one");
        assert!(snapshot_names(&dst, "c7").await.is_empty());
        lxc_ok(&src, &user, "delete k2:c7");

        // Refusals make nothing: a name in use, a missing pool.
        let before = volume_entries(&dst);
        let e = lxc_fails(&src, &user, "copy k1:c1 k2:c2");
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(read(&dst, "c2", "/root/f").await, "one");
        let e = lxc_fails(&src, &user, "copy k1:c1 k2:c6 --storage nosuch");
        assert!(e.to_lowercase().contains("nosuch"), "{e}");
        let e = lxc_fails(&src, &user, "copy k1:c1 k2:c6 --profile nosuch");
        assert!(e.contains("nosuch"), "{e}");
        let e = lxc_fails(&src, &user, "copy k1:c1 k2:c6 --mode push --storage nosuch");
        assert!(e.to_lowercase().contains("nosuch"), "{e}");
        assert_eq!(names(&dst).await, ["c2", "c3", "c4", "c5"]);
        assert_eq!(volume_entries(&dst), before);
        // A running source: live migration (CRIU) is refused before any
        // byte moves; --stateless copies it frozen, and it runs on.
        lxc_ok(&src, &user, "start k1:c1");
        let e = lxc_fails(&src, &user, "copy k1:c1 k2:c6");
        assert!(e.to_lowercase().contains("live migration"), "{e}");
        assert_eq!(names(&dst).await, ["c2", "c3", "c4", "c5"]);
        assert_eq!(volume_entries(&dst), before);
        let (code, _) = src.sh("c1", "echo five > /root/f").await;
        assert_eq!(code, 0);
        lxc_ok(&src, &user, "copy k1:c1 k2:c6 --stateless");
        assert_eq!(read(&dst, "c6", "/root/f").await, "five\n");
        let listed = lxc_ok(&src, &user, "list k1: --format csv -c ns");
        assert!(listed.contains("c1,RUNNING"), "{listed}");
        lxc_ok(&src, &user, "stop -f k1:c1");
        lxc_ok(&src, &user, "delete k2:c6");
        // lxc move --stateless of a running instance: it runs on the target.
        src.create(&fp, "r1", &[]).await;
        lxc_ok(&src, &user, "start k1:r1");
        lxc_ok(&src, &user, "move k1:r1 k2: --stateless");
        let listed = lxc_ok(&src, &user, "list k2: --format csv -c ns");
        assert!(listed.contains("r1,RUNNING"), "{listed}");
        assert!(!names(&src).await.contains(&"r1".to_string()));
        lxc_ok(&src, &user, "delete -f k2:r1");

        // A move keeps the MAC (lxc sends the volatile keys) and removes
        // the source.
        let br = "migbr0";
        let _ = Command::new("ip")
            .args(["link", "add", br, "type", "bridge"])
            .status();
        let mut eth0 = kante_api::DevicesMap::new();
        eth0.insert(
            "eth0".into(),
            [("type", "nic"), ("nictype", "bridged"), ("parent", br)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        src.create_with_devices(&fp, "m1", &[], eth0).await;
        let mac = config_of(&src, "m1", "volatile.eth0.hwaddr").await;
        assert!(!mac.is_empty());
        lxc_ok(&src, &user, "copy k1:m1 k2:mcopy");
        assert_ne!(config_of(&dst, "mcopy", "volatile.eth0.hwaddr").await, mac);
        lxc_ok(&src, &user, "move k1:m1 k2:");
        assert_eq!(config_of(&dst, "m1", "volatile.eth0.hwaddr").await, mac);
        assert!(!names(&src).await.contains(&"m1".to_string()));
        lxc_ok(&src, &user, "delete k2:m1");
        lxc_ok(&src, &user, "delete k2:mcopy");
        let _ = Command::new("ip").args(["link", "del", br]).status();

        dst.shutdown().await;
        src.shutdown().await;
    });
}

/// Waits until one of `d`'s operations shows `fs_progress`.
async fn wait_for_transfer(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ops: Value = d
            .client
            .get_json("/1.0/operations?recursion=1")
            .await
            .unwrap_or(Value::Null);
        let moving = ops
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(Value::as_array)
            .flatten()
            .any(|op| op["metadata"]["fs_progress"].is_string());
        if moving {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no transfer started\n{}", d.log_text());
}

#[test]
fn a_daemon_killed_mid_stream_leaves_nothing_and_the_retry_succeeds() {
    run(async {
        let (mut src, mut dst, user) = pair().await;
        let fp = src.import(TestImage::Busybox).await;
        src.create(&fp, "c1", &[]).await;
        let big = src.dir.join("big");
        let ok = Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "count=300", "status=none"])
            .arg(format!("of={}", big.display()))
            .status()
            .unwrap();
        assert!(ok.success());
        src.client
            .file_push_path(
                "c1",
                "/root/big",
                &big,
                &FilePushOptions::default(),
                |_, _| {},
            )
            .await
            .unwrap();
        lxc_ok(&src, &user, "snapshot k1:c1 s0");
        let want = std::fs::read(&big).unwrap();
        std::fs::remove_file(&big).unwrap();

        // The source killed mid-stream: the target keeps nothing at once.
        let copy = lxc_cmd(&src, &user, "copy k1:c1 k2:c1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_transfer(&src).await;
        src.kill9();
        let out = tokio::task::spawn_blocking(move || copy.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(!out.status.success(), "the copy survived its source");
        assert!(names(&dst).await.is_empty());
        assert!(
            volume_entries(&dst).is_empty(),
            "{:?}",
            volume_entries(&dst)
        );
        src.restart().await;

        // The target killed mid-stream.
        let copy = lxc_cmd(&src, &user, "copy k1:c1 k2:c1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_transfer(&dst).await;
        dst.kill9();
        let out = tokio::task::spawn_blocking(move || copy.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(!out.status.success(), "the copy survived its target");

        // The source is intact and free again.
        assert_eq!(snapshot_names(&src, "c1").await, ["s0"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ops: Value = src.client.get_json("/1.0/operations").await.unwrap();
            let running = ops["running"].as_array().map_or(0, Vec::len);
            if running == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the source's operation runs on: {ops}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        lxc_ok(&src, &user, "start k1:c1");
        lxc_ok(&src, &user, "stop -f k1:c1");

        // The restarted target has no trace of it.
        dst.restart().await;
        assert!(names(&dst).await.is_empty());
        assert!(
            volume_entries(&dst).is_empty(),
            "{:?}",
            volume_entries(&dst)
        );

        // The retry, same name, no manual step.
        lxc_ok(&src, &user, "copy k1:c1 k2:c1");
        assert_eq!(snapshot_names(&dst, "c1").await, ["s0"]);
        let mut got = Vec::new();
        dst.client
            .file_get_into("c1", "/root/big", &mut got)
            .await
            .unwrap();
        assert!(got == want, "the copied file differs");

        dst.shutdown().await;
        src.shutdown().await;
    });
}

/// btrfs in the kernel and btrfs-progs, else the test is skipped (said so).
fn btrfs_ready() -> bool {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let kernel = fs.lines().any(|l| l.trim_end().ends_with("btrfs"));
    let progs = Command::new("mkfs.btrfs").arg("--version").output().is_ok();
    kante_integration::prerequisite(kernel && progs, "btrfs in the kernel and btrfs-progs")
}

#[test]
fn btrfs_pools_migrate_as_btrfs_streams_and_other_pools_as_tar() {
    if !btrfs_ready() {
        return;
    }
    run(async {
        let (src, dst, user) = pair().await;
        lxc_ok(&src, &user, "storage create k1:bt btrfs size=2GiB");
        lxc_ok(&src, &user, "storage create k2:bt btrfs size=2GiB");
        let fp = src.import(TestImage::Busybox).await;
        src.create_with_devices(&fp, "b1", &[], root_on("bt")).await;
        write(&src, "b1", "/root/f", "one").await;
        lxc_ok(&src, &user, "snapshot k1:b1 s0");
        write(&src, "b1", "/root/f", "two").await;

        // btrfs → btrfs: sent as btrfs differences.
        lxc_ok(&src, &user, "copy k1:b1 k2:b2");
        assert!(
            dst.log_text()
                .contains("instance received by migration (btrfs)"),
            "{}",
            dst.log_text()
        );
        assert_eq!(read(&dst, "b2", "/root/f").await, "two");
        assert_eq!(snapshot_names(&dst, "b2").await, ["s0"]);
        lxc_ok(&src, &user, "restore k2:b2 s0");
        assert_eq!(read(&dst, "b2", "/root/f").await, "one");
        // btrfs → dir and dir → btrfs: tar.
        lxc_ok(&src, &user, "copy k1:b1 k2:b3 --storage default");
        assert_eq!(read(&dst, "b3", "/root/f").await, "two");
        assert_eq!(snapshot_names(&dst, "b3").await, ["s0"]);
        src.create(&fp, "d1", &[]).await;
        write(&src, "d1", "/root/f", "dir").await;
        lxc_ok(&src, &user, "copy k1:d1 k2:d2 --storage bt");
        assert_eq!(read(&dst, "d2", "/root/f").await, "dir");
        let log = dst.log_text();
        assert_eq!(
            log.matches("instance received by migration (tar)").count(),
            2,
            "{log}"
        );

        for (r, names) in [("k1", &["b1", "d1"][..]), ("k2", &["b2", "b3", "d2"][..])] {
            for n in names {
                lxc_ok(&src, &user, &format!("delete {r}:{n}"));
            }
            lxc_ok(&src, &user, &format!("storage delete {r}:bt"));
        }
        dst.shutdown().await;
        src.shutdown().await;
    });
}

/// pylxd 2.2.10's `Container.migrate()`, which pulls: the source's
/// operation and secrets go to the target's create, then the source is
/// deleted.
const PYLXD_MIGRATE: &str = r#"
import os, sys
import pylxd

def connect(endpoint):
    c = pylxd.Client(endpoint=endpoint,
                     cert=(os.environ["CRT"], os.environ["KEY"]), verify=False)
    if not c.trusted:
        c.authenticate("sesame")
    return c

src, dst = connect(sys.argv[1]), connect(sys.argv[2])
src.containers.get("p1").migrate(dst, wait=True)
assert dst.containers.exists("p1")
assert not src.containers.exists("p1")
print("migrated")
"#;

#[test]
fn pylxd_migrates_between_kanteds() {
    run(async {
        let (src, dst, user) = pair().await;
        let fp = src.import(TestImage::Busybox).await;
        src.create(&fp, "p1", &[]).await;
        write(&src, "p1", "/root/f", "py").await;
        lxc_ok(&src, &user, "snapshot k1:p1 s0");
        let pair =
            kante_tls::KeyPair::generate(kante_tls::Role::Client, &["pylxd".into()]).unwrap();
        let (crt, key) = (src.dir.join("py.crt"), src.dir.join("py.key"));
        std::fs::write(&crt, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        // Each daemon's HTTPS address, as it shows it.
        let url = |d: &Daemon| -> String {
            let server: Value =
                serde_json::from_str(&lxc_ok(d, &conf(d, "admin"), "query /1.0")).unwrap();
            let addr = server["environment"]["addresses"][0].as_str().unwrap();
            format!("https://{addr}")
        };
        let o = Command::new("/usr/bin/python3")
            .args(["-W", "ignore", "-c", PYLXD_MIGRATE, &url(&src), &url(&dst)])
            .env("CRT", &crt)
            .env("KEY", &key)
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .unwrap();
        assert!(
            o.status.success() && text(&o.stdout).contains("migrated"),
            "{}{}\n{}",
            text(&o.stdout),
            text(&o.stderr),
            dst.log_text()
        );
        assert_eq!(read(&dst, "p1", "/root/f").await, "py");
        assert_eq!(snapshot_names(&dst, "p1").await, ["s0"]);
        assert!(names(&src).await.is_empty());
        dst.shutdown().await;
        src.shutdown().await;
    });
}
