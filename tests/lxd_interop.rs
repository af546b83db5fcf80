//! Containers between a real LXD 5.0.2 and kanted, Debian's `lxc` 5.0.2
//! driving (`lxc copy lxd:c1 kante:`, `lxc move kante:c1 lxd:`): LXD's
//! migration with its rsync transfer. A container made on LXD from the
//! Debian test image, with a file, a snapshot and a config key, is copied
//! into kanted: it starts there with its file owned as inside LXD (LXD's
//! shifted tree is shifted back), the set-uid bit kept, and its snapshot
//! restores the older file (also into a btrfs pool, `-s bt`, when btrfs
//! is there). Moved back to LXD it starts there with the
//! file kanted wrote, its snapshot and config (and MAC) along. The LXD
//! daemon, its processes, mounts and dir are gone afterwards.

use std::path::Path;

use kante_client::{FileContent, FilePushOptions};
use kante_integration::lxc::{conf, lxc_cmd, lxc_ok, serve_https};
use kante_integration::lxd::Lxd;
use kante_integration::{prerequisite, run, Daemon, TestImage};

/// The file, the owners of it and of a group-owned directory, and the
/// set-uid bit of `passwd`, as seen inside the container.
const CHECK: &str =
    "cat /root/f; echo; stat -c %u:%g /root/f /var/mail; stat -c %a /usr/bin/passwd";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn read(d: &Daemon, name: &str, path: &str) -> String {
    match d.client.file_get(name, path).await.unwrap().content {
        FileContent::File(b) => text(&b),
        other => panic!("{path} in {name}: {other:?}"),
    }
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

/// btrfs in the kernel and btrfs-progs (else that part is skipped, said so).
fn btrfs_ready() -> bool {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let kernel = fs.lines().any(|l| l.trim_end().ends_with("btrfs"));
    let progs = std::process::Command::new("mkfs.btrfs")
        .arg("--version")
        .output()
        .is_ok();
    prerequisite(kernel && progs, "btrfs in the kernel and btrfs-progs")
}

/// `lxc file push` of `data` to `target` (`remote:instance/path`).
fn push(d: &Daemon, user: &Path, data: &str, target: &str) {
    let f = d.dir.join("push.tmp");
    std::fs::write(&f, data).unwrap();
    lxc_ok(d, user, &format!("file push {} {target}", f.display()));
}

#[test]
fn lxc_copies_from_lxd_into_kanted_and_moves_back() {
    if !prerequisite(Lxd::available(), "LXD 5.0.2 (/usr/bin/lxd)") {
        return;
    }
    run(async {
        let mut lxd = Lxd::start();
        let kd = Daemon::start().await;
        let admin = conf(&kd, "admin");
        let kport = serve_https(&kd, &admin);
        let user = conf(&kd, "user");
        for (name, port) in [("lxd", lxd.port), ("kante", kport)] {
            lxc_ok(
                &kd,
                &user,
                &format!(
                    "remote add {name} https://127.0.0.1:{port} --accept-certificate --password=sesame"
                ),
            );
        }
        let image = TestImage::Debian.path();
        lxc_ok(
            &kd,
            &user,
            &format!("image import {} lxd: --alias deb", image.display()),
        );
        lxc_ok(&kd, &user, "init lxd:deb lxd:interop1");
        lxc_ok(&kd, &user, "config set lxd:interop1 user.marker from-lxd");
        push(&kd, &user, "one", "lxd:interop1/root/f");
        lxc_ok(&kd, &user, "snapshot lxd:interop1 s0");
        push(&kd, &user, "two", "lxd:interop1/root/f");

        // LXD → kanted (pull: kanted dials LXD's operation).
        lxc_ok(&kd, &user, "copy lxd:interop1 kante:interop1");
        assert_eq!(snapshot_names(&kd, "interop1").await, ["s0"]);
        let inst = kd.client.instance("interop1").await.unwrap();
        assert_eq!(inst.config["user.marker"], "from-lxd");
        kd.client.start_instance("interop1").await.unwrap();
        let (code, out) = kd.sh("interop1", CHECK).await;
        assert_eq!(code, 0, "{out}");
        // Owners as inside LXD (root, group mail), not LXD's host ids.
        assert_eq!(out, "two\n0:0\n0:8\n4755\n");
        kd.client.stop_instance("interop1", true, -1).await.unwrap();
        if btrfs_ready() {
            // Into a btrfs pool: the same rsync transfer (LXD's fallback),
            // each snapshot a subvolume snapshot of the received tree.
            lxc_ok(&kd, &user, "storage create kante:bt btrfs size=2GiB");
            lxc_ok(&kd, &user, "copy lxd:interop1 kante:interop3 -s bt");
            assert_eq!(snapshot_names(&kd, "interop3").await, ["s0"]);
            assert_eq!(read(&kd, "interop3", "/root/f").await, "two");
            // The snapshot's tree is found on that pool (its record has
            // the instance's root disk).
            lxc_ok(&kd, &user, "restore kante:interop3 s0");
            assert_eq!(read(&kd, "interop3", "/root/f").await, "one");
            lxc_ok(&kd, &user, "delete kante:interop3");
            lxc_ok(&kd, &user, "storage delete kante:bt");
        }
        lxc_ok(&kd, &user, "restore kante:interop1 s0");
        assert_eq!(read(&kd, "interop1", "/root/f").await, "one");
        kd.client
            .file_push_bytes(
                "interop1",
                "/root/f",
                "three".to_string(),
                &FilePushOptions::default(),
            )
            .await
            .unwrap();
        let hwaddr = kd
            .client
            .instance("interop1")
            .await
            .unwrap()
            .config
            .get("volatile.eth0.hwaddr")
            .cloned();

        // kanted → LXD (pull: LXD dials kanted's operation), then deleted here.
        lxc_ok(&kd, &user, "move kante:interop1 lxd:interop2");
        assert!(kd.client.instance_names().await.unwrap().is_empty());
        lxc_ok(&kd, &user, "start lxd:interop2");
        let o = lxc_cmd(&kd, &user, "exec lxd:interop2 --")
            .args(["sh", "-c", CHECK])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "three\n0:0\n0:8\n4755\n");
        let snaps = lxc_ok(&kd, &user, "query lxd:/1.0/instances/interop2/snapshots");
        assert!(
            snaps.contains("/1.0/instances/interop2/snapshots/s0"),
            "{snaps}"
        );
        let marker = lxc_ok(&kd, &user, "config get lxd:interop2 user.marker");
        assert_eq!(marker.trim(), "from-lxd");
        if let Some(hw) = hwaddr {
            let moved = lxc_ok(&kd, &user, "config get lxd:interop2 volatile.eth0.hwaddr");
            assert_eq!(moved.trim(), hw);
        }
        // The snapshot travelled with its own tree.
        lxc_ok(&kd, &user, "stop -f lxd:interop2");
        lxc_ok(&kd, &user, "restore lxd:interop2 s0");
        let f = lxc_ok(&kd, &user, "file pull lxd:interop2/root/f -");
        assert_eq!(f, "one");

        lxc_ok(&kd, &user, "delete -f lxd:interop1 lxd:interop2");
        lxc_ok(&kd, &user, "image delete lxd:deb");
        lxd.stop();
        let left = lxd.leftovers();
        assert!(left.is_empty(), "LXD left: {left:?}");
        assert!(!lxd.dir.exists());
        kd.shutdown().await;
    });
}
