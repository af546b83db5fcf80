//! `kante copy` and `kante move` between two kanteds over HTTPS on
//! loopback, driven by the CLI in each transfer mode: files, snapshots and
//! the MAC travel; the source is untouched by a copy and gone after a
//! move; a snapshot copies as a new instance; `--refresh` updates a copy
//! sending a small fraction of the full copy's bytes; a running instance moves
//! only with `--stateless` (and runs on the target); every refusal comes before any byte moves and leaves both
//! servers as they were. The source's own websocket-level protocol is
//! covered with the real lxc in `tests/migration.rs`.

use std::path::Path;
use std::process::Command;

use kante_integration::lab::migrated_bytes;
use kante_integration::two::Two;
use kante_integration::{run, Daemon, TestImage};
use serde_json::json;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The instance names of `d`.
async fn names(d: &Daemon) -> Vec<String> {
    let mut n = d.client.instance_names().await.unwrap();
    n.sort();
    n
}

async fn snapshots(d: &Daemon, name: &str) -> Vec<String> {
    let mut s: Vec<String> = d
        .client
        .snapshots(name)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    s.sort();
    s
}

async fn hwaddr(d: &Daemon, name: &str) -> String {
    let i = d.client.instance(name).await.unwrap();
    i.config
        .get("volatile.eth0.hwaddr")
        .cloned()
        .unwrap_or_default()
}

/// `/root/f` of `name` (started for the read, then stopped again if it
/// was stopped).
async fn file(d: &Daemon, name: &str) -> String {
    let was = d.client.instance(name).await.unwrap().status;
    if was != "Running" {
        d.client.start_instance(name).await.unwrap();
    }
    let (code, out) = d.sh(name, "cat /root/f").await;
    if was != "Running" {
        d.client.stop_instance(name, true, -1).await.unwrap();
    }
    assert_eq!(code, 0, "{out}");
    out.trim().to_string()
}

/// A bridge both servers can plug NICs into (they share this namespace).
struct Bridge(&'static str);

impl Bridge {
    fn new(name: &'static str) -> Bridge {
        let _ = Command::new("ip")
            .args(["link", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["link", "add", name, "type", "bridge"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "bridge {name}");
        Bridge(name)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).status();
    }
}

/// `c1` on `a`: a NIC on the shared bridge, `/root/f` = "one" in snapshot
/// `s0` and "two" now, stopped.
async fn prepare(t: &Two, fp: &str, bridge: &Path) {
    let nic = [(
        "eth0".to_string(),
        [
            ("type", "nic"),
            ("nictype", "bridged"),
            ("parent", bridge.to_str().unwrap()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )]
    .into_iter()
    .collect();
    t.a.create_with_devices(fp, "c1", &[], nic).await;
    t.a.client.start_instance("c1").await.unwrap();
    let (code, out) = t.a.sh("c1", "echo one > /root/f").await;
    assert_eq!(code, 0, "{out}");
    t.a.client.create_snapshot("c1", "s0", false).await.unwrap();
    let (code, out) = t.a.sh("c1", "echo two > /root/f").await;
    assert_eq!(code, 0, "{out}");
    t.a.client.stop_instance("c1", true, -1).await.unwrap();
}

#[test]
fn instances_are_copied_and_moved_between_two_kanteds_by_the_cli() {
    run(async {
        let t = Two::up().await;
        let bridge = Bridge::new("kmig0");
        let fp = t.a.import(TestImage::Busybox).await;
        prepare(&t, &fp, Path::new(bridge.0)).await;
        let mac = hwaddr(&t.a, "c1").await;
        assert!(!mac.is_empty());

        // Refusals first, each before any byte moves. The target needs the
        // pool the copy asks for.
        let e = t.fails(&["copy", "a:c1", "b:c2", "--storage", "nosuch"]);
        assert!(e.contains("Storage pool nosuch") && e.contains("b"), "{e}");
        assert!(names(&t.b).await.is_empty());
        // A device whose network is missing on the target.
        t.a.client
            .post(
                "/1.0/networks",
                &json!({"name": "kmn0", "config": {"ipv4.address": "none", "ipv6.address": "none"}}),
            )
            .await
            .unwrap();
        let nic = [(
            "eth0".to_string(),
            [("type", "nic"), ("network", "kmn0")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )]
        .into_iter()
        .collect();
        t.a.create_with_devices(&fp, "c9", &[], nic).await;
        let e = t.fails(&["copy", "a:c9", "b:"]);
        // (b sees a's bridge as a host interface in this shared namespace,
        // so b itself refuses the managed network it lacks.)
        assert!(e.contains("kmn0") && e.contains("not found"), "{e}");
        assert!(names(&t.b).await.is_empty());
        t.a.client.delete_instance("c9").await.unwrap();
        t.a.client.delete("/1.0/networks/kmn0").await.unwrap();
        // A name the target already has.
        assert_eq!(t.b.import(TestImage::Busybox).await, fp);
        t.b.create(&fp, "c1", &[]).await;
        let e = t.fails(&["copy", "a:c1", "b:"]);
        assert!(e.contains("c1 already exists on b"), "{e}");
        t.b.client.delete_instance("c1").await.unwrap();

        // Copy, the target pulling (the default): files, snapshot, a MAC
        // of its own, the source unchanged; then they are independent.
        t.ok(&["copy", "a:c1", "b:c2"]);
        assert_eq!(names(&t.b).await, vec!["c2"]);
        assert_eq!(snapshots(&t.b, "c2").await, vec!["s0"]);
        assert_eq!(file(&t.b, "c2").await, "two");
        assert_ne!(hwaddr(&t.b, "c2").await, mac);
        t.b.client
            .restore_snapshot("c2", "s0", false)
            .await
            .unwrap();
        assert_eq!(file(&t.b, "c2").await, "one");
        assert_eq!(file(&t.a, "c1").await, "two");
        assert_eq!(names(&t.a).await, vec!["c1"]);
        t.b.client.delete_instance("c2").await.unwrap();
        // A snapshot copied to the other server is a new instance with
        // the snapshot's content; a snapshot cannot be moved.
        t.ok(&["copy", "a:c1/s0", "b:c5"]);
        assert_eq!(file(&t.b, "c5").await, "one");
        assert!(snapshots(&t.b, "c5").await.is_empty());
        t.b.client.delete_instance("c5").await.unwrap();
        let e = t.fails(&["move", "a:c1/s0", "b:c5"]);
        assert!(e.contains("cannot be moved"), "{e}");

        // Move, the source pushing: same MAC, snapshot along, source gone;
        // lxc's -c and -d applied on the target.
        t.ok(&[
            "move",
            "a:c1",
            "b:",
            "--mode",
            "push",
            "-c",
            "user.moved=push",
            "-d",
            "root,boot.priority=4",
        ]);
        assert!(names(&t.a).await.is_empty());
        assert_eq!(names(&t.b).await, vec!["c1"]);
        let moved = t.b.client.instance("c1").await.unwrap();
        assert_eq!(moved.config["user.moved"], "push", "{:?}", moved.config);
        assert_eq!(
            moved.devices["root"]["boot.priority"], "4",
            "{:?}",
            moved.devices
        );
        assert_eq!(hwaddr(&t.b, "c1").await, mac);
        assert_eq!(snapshots(&t.b, "c1").await, vec!["s0"]);
        assert_eq!(file(&t.b, "c1").await, "two");

        // Back through the client (relay), without the snapshots.
        t.ok(&["move", "b:c1", "a:c1", "--mode", "relay", "--instance-only"]);
        assert!(names(&t.b).await.is_empty());
        assert!(snapshots(&t.a, "c1").await.is_empty());
        assert_eq!(file(&t.a, "c1").await, "two");
        assert_eq!(hwaddr(&t.a, "c1").await, mac);

        // Running: refused without --stateless (still running, nothing on
        // b); with it, stopped, moved, and running on b with its MAC.
        t.a.client.start_instance("c1").await.unwrap();
        let e = t.fails(&["move", "a:c1", "b:"]);
        assert!(e.contains("--stateless"), "{e}");
        assert_eq!(t.a.client.instance("c1").await.unwrap().status, "Running");
        assert!(names(&t.b).await.is_empty());
        t.ok(&["move", "a:c1", "b:", "--stateless"]);
        assert!(names(&t.a).await.is_empty());
        assert_eq!(t.b.client.instance("c1").await.unwrap().status, "Running");
        assert_eq!(hwaddr(&t.b, "c1").await, mac);
        assert_eq!(file(&t.b, "c1").await, "two");
        t.b.client.stop_instance("c1", true, -1).await.unwrap();

        // A source with no network address (a's HTTPS listener off, the
        // CLI reaching it through its socket): the default is a push.
        t.ok(&["move", "b:c1", "local:c1"]);
        t.a.client
            .patch("/1.0", &json!({"config": {"core.https_address": ""}}))
            .await
            .unwrap();
        t.ok(&["copy", "local:c1", "b:c3"]);
        assert_eq!(names(&t.b).await, vec!["c3"]);
        assert_eq!(file(&t.b, "c3").await, "two");

        for (d, n) in [(&t.a, "c1"), (&t.b, "c3")] {
            d.client.delete_instance(n).await.unwrap();
        }
        t.a.client.delete_image(&fp).await.unwrap();
        t.b.client.delete_image(&fp).await.unwrap();
        drop(bridge);
        let Two { a, b, .. } = t;
        a.shutdown().await;
        b.shutdown().await;
    });
}

async fn put(d: &Daemon, name: &str, path: &str, data: &str) {
    d.client
        .file_push_bytes(name, path, data.to_string(), &Default::default())
        .await
        .unwrap();
}

async fn get(d: &Daemon, name: &str, path: &str) -> String {
    match d.client.file_get(name, path).await.unwrap().content {
        kante_client::FileContent::File(b) => text(&b),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn a_refresh_sends_only_what_changed() {
    run(async {
        let t = Two::up().await;
        let fp = t.a.import(TestImage::Debian).await;
        t.a.create(&fp, "c1", &[]).await;
        put(&t.a, "c1", "/root/f", "one").await;
        t.a.client.create_snapshot("c1", "s0", false).await.unwrap();
        t.ok(&["copy", "c1", "b:c1"]);
        let full = migrated_bytes(&t.a.client).await;
        assert!(full > 50_000_000, "the first copy sent only {full} bytes");

        // A small change: a file rewritten, one added, a new snapshot, one
        // snapshot on the target the source does not have.
        put(&t.a, "c1", "/root/f", "two").await;
        t.a.client.create_snapshot("c1", "s1", false).await.unwrap();
        put(&t.a, "c1", "/root/g", "new").await;
        t.b.client
            .create_snapshot("c1", "extra", false)
            .await
            .unwrap();
        t.ok(&["copy", "c1", "b:c1", "--refresh"]);
        let sent = migrated_bytes(&t.a.client).await;
        assert!(
            sent < full / 20,
            "the refresh sent {sent} bytes, the full copy {full}"
        );
        assert_eq!(get(&t.b, "c1", "/root/f").await, "two");
        assert_eq!(get(&t.b, "c1", "/root/g").await, "new");
        assert_eq!(snapshots(&t.b, "c1").await, ["s0", "s1"]);
        // The new snapshot holds its own tree: restored, f is as it was.
        t.ok(&["restore", "b:c1", "s1"]);
        assert_eq!(get(&t.b, "c1", "/root/f").await, "two");
        assert!(t.b.client.file_get("c1", "/root/g").await.is_err());
        // And the copy starts.
        t.b.client.start_instance("c1").await.unwrap();
        let (code, out) = t.b.sh("c1", "cat /root/f").await;
        assert_eq!((code, out.trim()), (0, "two"));

        // A running target is refused, and its copy left as it was.
        put(&t.a, "c1", "/root/f", "three").await;
        let e = t.fails(&["copy", "c1", "b:c1", "--refresh"]);
        assert!(e.contains("stop it"), "{e}");
        t.b.client.stop_instance("c1", true, -1).await.unwrap();
        assert_eq!(get(&t.b, "c1", "/root/f").await, "two");
        let Two { a, b, .. } = t;
        a.shutdown().await;
        b.shutdown().await;
    });
}
