//! Moves between the hosts of a lab (`kante lab`, issue 16), driven by the
//! CLI as a user drives them: a container moved host 1 → host 2 keeps its
//! files, snapshots and MAC, and still reaches a container on host 3 over
//! the shared uplink; a move whose link is cut mid-stream fails, leaves
//! the source as it was and nothing on the target, and the same move
//! succeeds once the link is back. A copy between btrfs pools refreshed
//! after a small change sends only the difference (`btrfs send -p` from
//! the snapshot both hosts have), and the copy holds the change; a custom
//! volume and one of its snapshots go between the btrfs pools as btrfs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kante_integration::instance_post;
use kante_integration::lab::Lab;
use kante_integration::net::{devices, nic, root_on};
use kante_integration::{run, TestImage};

/// A NIC on the host's end of the shared uplink.
fn uplink_nic() -> kante_api::DevicesMap {
    devices(&[(
        "eth0",
        nic(&[("nictype", "bridged"), ("parent", "uplink0")]),
    )])
}

async fn create_on_uplink(lab: &Lab, i: u32, fp: &str, name: &str) {
    lab.client(i)
        .create_instance(&instance_post(fp, name, &[], uplink_nic()))
        .await
        .unwrap_or_else(|e| panic!("creating {name} on h{i}: {e}"));
    lab.client(i).start_instance(name).await.unwrap();
}

async fn names(lab: &Lab, i: u32) -> Vec<String> {
    lab.client(i).instance_names().await.unwrap()
}

async fn snapshot_names(lab: &Lab, i: u32, name: &str) -> Vec<String> {
    let snaps = lab.client(i).snapshots(name).await.unwrap();
    snaps.into_iter().map(|s| s.name).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_moved_container_keeps_files_snapshots_and_mac_and_meets_host_3() {
    run(async {
        let lab = Lab::up(3);
        let fp = lab.import(1, TestImage::Busybox).await;
        lab.import(3, TestImage::Busybox).await;
        create_on_uplink(&lab, 1, &fp, "c1").await;
        create_on_uplink(&lab, 3, &fp, "c3").await;
        let (code, out) = lab.sh(3, "c3", "ip addr add 10.77.0.3/24 dev eth0").await;
        assert_eq!(code, 0, "{out}");
        let (code, out) = lab.sh(1, "c1", "echo kept > /root/f").await;
        assert_eq!(code, 0, "{out}");
        lab.client(1)
            .create_snapshot("c1", "s0", false)
            .await
            .unwrap();
        let (_, mac) = lab.sh(1, "c1", "cat /sys/class/net/eth0/address").await;
        let mac = mac.trim().to_string();
        let recorded =
            lab.client(1).instance("c1").await.unwrap().config["volatile.eth0.hwaddr"].clone();
        assert_eq!(mac, recorded);

        // A running instance moves with --stateless: stopped, moved, and
        // started on host 2.
        let o = lab.kante(&[
            "move",
            &format!("{}:c1", lab.remote(1)),
            &format!("{}:", lab.remote(2)),
            "--stateless",
        ]);
        assert!(
            o.status.success(),
            "{}{}\n{}\n{}",
            text(&o.stdout),
            text(&o.stderr),
            lab.log(1),
            lab.log(2)
        );
        assert!(names(&lab, 1).await.is_empty(), "the source stayed");
        assert_eq!(names(&lab, 2).await, vec!["c1"]);
        let moved = lab.client(2).instance("c1").await.unwrap();
        assert_eq!(moved.status, "Running");
        assert_eq!(moved.config["volatile.eth0.hwaddr"], mac);
        assert_eq!(snapshot_names(&lab, 2, "c1").await, vec!["s0"]);
        let (_, f) = lab.sh(2, "c1", "cat /root/f").await;
        assert_eq!(f.trim(), "kept");
        let (_, now) = lab.sh(2, "c1", "cat /sys/class/net/eth0/address").await;
        assert_eq!(now.trim(), mac, "the guest's MAC changed");
        // On host 2 now, it meets host 3's container on the uplink.
        let (code, out) = lab
            .sh(
                2,
                "c1",
                "ip addr add 10.77.0.1/24 dev eth0 && ping -c2 -W3 10.77.0.3",
            )
            .await;
        assert_eq!(code, 0, "the moved container cannot reach host 3: {out}");

        for (i, n) in [(2, "c1"), (3, "c3")] {
            lab.client(i).stop_instance(n, true, -1).await.unwrap();
            lab.client(i).delete_instance(n).await.unwrap();
        }
    });
}

#[test]
fn a_move_cut_mid_stream_leaves_the_source_and_a_retry_succeeds() {
    run(async {
        let lab = Lab::up(2);
        let fp = lab.import(1, TestImage::Busybox).await;
        create_on_uplink(&lab, 1, &fp, "big").await;
        // Enough data that the stream is still running when the link goes.
        let (code, out) = lab
            .sh(
                1,
                "big",
                "dd if=/dev/urandom of=/root/blob bs=1M count=400 2>&1 && md5sum /root/blob",
            )
            .await;
        assert_eq!(code, 0, "{out}");
        let sum = out
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        lab.client(1).stop_instance("big", true, -1).await.unwrap();

        // Host 2's end of the uplink, in the caller's namespace.
        let h2_link = lab
            .links()
            .into_iter()
            .find(|l| l.ends_with("-h2"))
            .expect("host 2's uplink veth");
        let child = Command::new(kante_integration::bin("kante"))
            .args([
                "move",
                &format!("{}:big", lab.remote(1)),
                &format!("{}:", lab.remote(2)),
            ])
            .env("KANTE_CONF", &lab.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Cut as soon as the target has started receiving.
        let t0 = Instant::now();
        loop {
            let staging = std::fs::read_dir(lab.state(2).join("storage-pools/default/containers"))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with(".staging"))
                })
                .unwrap_or(false);
            if staging || t0.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cut = Command::new("ip")
            .args(["link", "set", &h2_link, "down"])
            .status()
            .unwrap();
        assert!(cut.success());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(!out.status.success(), "the move went through a cut link");
        eprintln!("the cut move failed with: {}", text(&out.stderr).trim());
        assert_eq!(
            text(&out.stderr).trim_end().lines().count(),
            1,
            "{}",
            text(&out.stderr)
        );
        Command::new("ip")
            .args(["link", "set", &h2_link, "up"])
            .status()
            .unwrap();

        // The source is complete and stopped; the target, on its own
        // (the source's operation was cancelled, or its stall bound ends
        // its receive), removes the record and the staging it had made.
        assert_eq!(names(&lab, 1).await, vec!["big"]);
        assert_eq!(
            lab.client(1).instance("big").await.unwrap().status,
            "Stopped"
        );
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let mut left: Vec<String> =
                std::fs::read_dir(lab.state(2).join("storage-pools/default/containers"))
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
            left.extend(
                names(&lab, 2)
                    .await
                    .into_iter()
                    .map(|n| format!("record {n}")),
            );
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "left on the target: {left:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // The same move again, with no manual step, goes through whole.
        let o = lab.kante(&[
            "move",
            &format!("{}:big", lab.remote(1)),
            &format!("{}:", lab.remote(2)),
        ]);
        assert!(
            o.status.success(),
            "retry: {}{}\n{}",
            text(&o.stdout),
            text(&o.stderr),
            lab.log(2)
        );
        assert!(names(&lab, 1).await.is_empty());
        lab.client(2).start_instance("big").await.unwrap();
        let (_, out) = lab.sh(2, "big", "md5sum /root/blob").await;
        assert!(out.starts_with(&sum), "the blob changed: {out} vs {sum}");
        lab.client(2).stop_instance("big", true, -1).await.unwrap();
        lab.client(2).delete_instance("big").await.unwrap();
    });
}

/// Whether the subvolume at `path` was made by `btrfs receive`.
fn received(path: &std::path::Path) -> bool {
    let o = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}{}", out, text(&o.stderr));
    out.lines()
        .find(|l| l.trim_start().starts_with("Received UUID:"))
        .is_some_and(|l| !l.trim_end().ends_with('-'))
}

#[test]
fn a_btrfs_copy_is_refreshed_by_sending_only_the_difference() {
    if !kante_integration::prerequisite(
        Command::new("btrfs").arg("--version").output().is_ok(),
        "btrfs-progs",
    ) {
        return;
    }
    run(async {
        let lab = Lab::up(2);
        let fp = lab.import(1, TestImage::Debian).await;
        for i in 1..=2 {
            lab.client(i)
                .post(
                    "/1.0/storage-pools",
                    &serde_json::json!({"name": "bt", "driver": "btrfs", "config": {"size": "3GiB"}}),
                )
                .await
                .unwrap();
        }
        let post = instance_post(&fp, "c1", &[], root_on("bt"));
        lab.client(1).create_instance(&post).await.unwrap();
        let put = |path: &'static str, data: &'static str| {
            let c = lab.client(1);
            async move {
                c.file_push_bytes("c1", path, data.to_string(), &Default::default())
                    .await
                    .unwrap()
            }
        };
        put("/root/f", "one").await;
        lab.client(1)
            .create_snapshot("c1", "s0", false)
            .await
            .unwrap();
        let (h1, h2) = (lab.remote(1), lab.remote(2));
        lab.kante_ok(&["copy", &format!("{h1}:c1"), &format!("{h2}:c1"), "-s", "bt"]);
        let full = kante_integration::lab::migrated_bytes(&lab.client(1)).await;
        assert!(full > 100_000_000, "the first copy sent only {full} bytes");

        // A small change, a snapshot, another change after it.
        put("/root/f", "two").await;
        lab.client(1)
            .create_snapshot("c1", "s1", false)
            .await
            .unwrap();
        put("/root/g", "new").await;
        lab.kante_ok(&[
            "copy",
            &format!("{h1}:c1"),
            &format!("{h2}:c1"),
            "--refresh",
        ]);
        let sent = kante_integration::lab::migrated_bytes(&lab.client(1)).await;
        eprintln!("full copy: {full} bytes; refresh: {sent} bytes");
        assert!(
            sent < 1_000_000 && sent < full / 200,
            "the refresh sent {sent} bytes, the full copy {full}"
        );
        // It went as btrfs differences: host 2's new snapshot was received
        // (an rsync refresh snapshots locally), on top of the copy of s0.
        let snaps = lab
            .state(2)
            .join("storage-pools/bt/containers-snapshots/c1");
        assert!(received(&snaps.join("s1")), "s1 was not received");
        assert!(received(&snaps.join("s0")));
        assert_eq!(snapshot_names(&lab, 2, "c1").await, ["s0", "s1"]);

        // The copy holds the change, starts, and its snapshot restores.
        lab.client(2).start_instance("c1").await.unwrap();
        let (code, out) = lab.sh(2, "c1", "cat /root/f /root/g").await;
        assert_eq!((code, out.trim()), (0, "twonew"), "{out}");
        lab.client(2).stop_instance("c1", true, -1).await.unwrap();
        lab.kante_ok(&["restore", &format!("{h2}:c1"), "s0"]);
        lab.client(2).start_instance("c1").await.unwrap();
        let (code, out) = lab
            .sh(2, "c1", "cat /root/f; test -e /root/g || echo gone")
            .await;
        assert_eq!((code, out.trim()), (0, "onegone"), "{out}");
        lab.client(2).stop_instance("c1", true, -1).await.unwrap();

        // A custom volume between the btrfs pools: received as btrfs, its
        // snapshot with it; one of its snapshots alone, as a volume.
        let pool_dir = |i: u32| lab.state(i).join("storage-pools/bt");
        lab.kante_ok(&["storage", "volume", "create", &format!("{h1}:bt"), "vb"]);
        std::fs::write(pool_dir(1).join("custom/vb/f"), "kept").unwrap();
        lab.kante_ok(&[
            "storage",
            "volume",
            "snapshot",
            &format!("{h1}:bt"),
            "vb",
            "s0",
        ]);
        std::fs::write(pool_dir(1).join("custom/vb/f"), "later").unwrap();
        lab.kante_ok(&[
            "storage",
            "volume",
            "copy",
            &format!("{h1}:bt/vb"),
            &format!("{h2}:bt/vb"),
        ]);
        // As btrfs: the snapshot is the received subvolume itself (the
        // volume a writable snapshot of its received one).
        assert!(received(&pool_dir(2).join("custom-snapshots/vb/s0")));
        let by_btrfs = |v: &str| {
            lab.log(2).lines().any(|l| {
                // (its fields may be coloured: the name alone)
                l.contains("custom volume received by migration (btrfs)") && l.contains(v)
            })
        };
        assert!(by_btrfs("vb"), "{}", lab.log(2));
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(pool_dir(2).join("custom/vb/f")), "later");
        assert_eq!(read(pool_dir(2).join("custom-snapshots/vb/s0/f")), "kept");
        lab.kante_ok(&[
            "storage",
            "volume",
            "copy",
            &format!("{h1}:bt/vb/s0"),
            &format!("{h2}:bt/vs"),
        ]);
        assert!(by_btrfs("vs"), "{}", lab.log(2));
        assert_eq!(read(pool_dir(2).join("custom/vs/f")), "kept");
        assert!(!pool_dir(2).join("custom-snapshots/vs").exists());
        for (i, v) in [(1, "vb"), (2, "vb"), (2, "vs")] {
            lab.client(i).delete_storage_volume("bt", v).await.unwrap();
        }

        for i in 1..=2 {
            lab.client(i).delete_instance("c1").await.unwrap();
            lab.client(i).delete("/1.0/storage-pools/bt").await.unwrap();
        }
    });
}
