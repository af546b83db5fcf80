//! Moves between the hosts of a lab (`kante lab`, issue 16), driven by the
//! CLI as a user drives them: a container moved host 1 → host 2 keeps its
//! files, snapshots and MAC, and still reaches a container on host 3 over
//! the shared uplink; a move whose link is cut mid-stream fails, leaves
//! the source as it was and nothing on the target, and the same move
//! succeeds once the link is back.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kante_integration::instance_post;
use kante_integration::lab::Lab;
use kante_integration::net::{devices, nic};
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
        let snaps: Vec<String> = lab
            .client(2)
            .snapshots("c1")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(snaps, vec!["s0"]);
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
