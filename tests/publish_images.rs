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
//! and a corrupted `root.tar.xz` is refused with nothing stored; lxc
//! pointed at the same server launches through kanted; a newer version
//! of the product is fetched by `kante image refresh`, the aliases follow
//! it and the old image goes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kante_integration::{free_port, kante, kante_ok, kante_with_conf, run, Daemon, TestImage};
use serde_json::json;

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

        // An ephemeral instance survives a forced publish, still ephemeral.
        d.launch(&base, "e1", &[]).await;
        d.client
            .patch_instance("e1", &json!({"ephemeral": true}))
            .await
            .unwrap();
        kante_ok(&d, &["publish", "e1", "--alias", "pub-eph", "--force"]);
        let e1 = d.client.instance("e1").await.unwrap();
        assert_eq!((e1.status.as_str(), e1.ephemeral), ("Running", true));

        // A missing instance or snapshot: an error, nothing stored.
        let before = stored_files(&d);
        assert!(!kante(&d, &["publish", "nosuch", "--alias", "x"])
            .status
            .success());
        assert!(!kante(&d, &["publish", "c1/nosnap", "--alias", "x"])
            .status
            .success());
        assert_eq!(stored_files(&d), before);

        // Stopping the ephemeral one deletes it.
        d.client.stop_instance("e1", true, -1).await.unwrap();
        for c in ["c1", "c2", "c3", "c4"] {
            d.client.stop_instance(c, true, -1).await.unwrap();
            d.client.delete_instance(c).await.unwrap();
        }
        d.shutdown().await;
    });
}

// ----- simplestreams ------------------------------------------------------

fn sh(script: &str) {
    let o = Command::new("sh").arg("-ec").arg(script).output().unwrap();
    assert!(o.status.success(), "{script}: {}", text(&o.stderr));
}

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    text(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// One split image of the tree: the busybox test image with `/etc/marker`
/// holding `marker`, as `images/NAME/lxd.tar.xz` + `root.tar.xz`; returns
/// the products file's version items and the combined fingerprint.
fn split_image(tree: &Path, name: &str, marker: &str) -> (serde_json::Value, String) {
    let work = tree.join(format!(".work-{name}"));
    let out = tree.join("images").join(name);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    sh(&format!(
        "tar --zstd -xf {img} -C {w} --numeric-owner
         echo {marker} > {w}/rootfs/etc/marker
         tar -C {w} --numeric-owner -cJf {o}/lxd.tar.xz metadata.yaml templates
         tar -C {w}/rootfs --numeric-owner -cJf {o}/root.tar.xz .
         rm -rf {w}",
        img = TestImage::Busybox.path().display(),
        w = work.display(),
        o = out.display(),
    ));
    let (meta, root) = (out.join("lxd.tar.xz"), out.join("root.tar.xz"));
    let both = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {} {} | sha256sum",
            meta.display(),
            root.display()
        ))
        .output()
        .unwrap();
    let combined = text(&both.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let items = json!({"items": {
        "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": format!("images/{name}/lxd.tar.xz"),
            "sha256": sha256(&meta), "size": size(&meta),
            "combined_sha256": combined, "combined_rootxz_sha256": combined},
        "root.tar.xz": {"ftype": "root.tar.xz", "path": format!("images/{name}/root.tar.xz"),
            "sha256": sha256(&root), "size": size(&root)}
    }});
    (items, combined)
}

/// A simplestreams tree with `bb/1` (good) and `bad/1` (its root.tar.xz
/// corrupted after its sha256 was listed); their fingerprints.
fn make_tree(tree: &Path) -> (String, String) {
    let (good, good_fp) = split_image(tree, "good", "from-streams");
    let (bad, bad_fp) = split_image(tree, "bad", "corrupted");
    let root = tree.join("images/bad/root.tar.xz");
    let mut bytes = std::fs::read(&root).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&root, bytes).unwrap();
    let product = |aliases: &str, version: serde_json::Value| {
        json!({"aliases": aliases, "arch": "amd64", "os": "Busybox", "release": "1",
            "release_title": "1", "variant": "default",
            "versions": {"20260101_00:00": version}})
    };
    let products = json!({
        "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
        "products": {
            "busybox:1:amd64:default": product("bb/1,busybox/test", good),
            "bad:1:amd64:default": product("bad/1", bad),
        }
    });
    let index = json!({"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "path": "streams/v1/images.json",
        "format": "products:1.0",
        "products": ["busybox:1:amd64:default", "bad:1:amd64:default"]}}});
    std::fs::create_dir_all(tree.join("streams/v1")).unwrap();
    std::fs::write(tree.join("streams/v1/index.json"), index.to_string()).unwrap();
    std::fs::write(tree.join("streams/v1/images.json"), products.to_string()).unwrap();
    (good_fp, bad_fp)
}

/// `kante ARGS` with config `conf`; must succeed; its stdout.
fn kante_ok_with(d: &Daemon, conf: &Path, args: &[&str]) -> String {
    let o = kante_with_conf(d, conf, args);
    assert!(o.status.success(), "kante {args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

/// Adds version `version` of the `bb/1` product, its `/etc/marker`
/// holding `marker`; returns its fingerprint.
fn add_version(tree: &Path, version: &str, marker: &str) -> String {
    let (items, fp) = split_image(tree, &format!("v-{marker}"), marker);
    let path = tree.join("streams/v1/images.json");
    let mut products: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    products["products"]["busybox:1:amd64:default"]["versions"][version] = items;
    std::fs::write(&path, products.to_string()).unwrap();
    fp
}

/// python3's file server behind TLS with a self-signed certificate; each
/// request's path is appended to `log`.
struct StreamsServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

const SERVER: &str = r#"
import http.server, ssl, sys
root, port, cert, key, log = sys.argv[1:]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def log_message(self, fmt, *args):
        with open(log, "a") as f:
            f.write(self.path + "\n")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

impl StreamsServer {
    fn start(tree: &Path, dir: &Path) -> StreamsServer {
        let pair =
            kante_tls::KeyPair::generate(kante_tls::Role::Server, &["127.0.0.1".into()]).unwrap();
        let (cert, key, log) = (dir.join("ss.crt"), dir.join("ss.key"), dir.join("ss.log"));
        std::fs::write(&cert, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        std::fs::write(&log, "").unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(tree)
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("run python3");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the simplestreams server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        StreamsServer { child, port, log }
    }

    /// How many requests asked for `suffix`.
    fn requests(&self, suffix: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(suffix))
            .count()
    }
}

impl Drop for StreamsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn images_come_from_a_simplestreams_server_verified_and_cached() {
    run(async {
        let d = Daemon::start().await;
        let tree = d.dir.join("streams-tree");
        let (good_fp, bad_fp) = make_tree(&tree);
        let server = StreamsServer::start(&tree, &d.dir);
        let conf = d.dir.join("kante-conf");
        let k = |args: &[&str]| kante_with_conf(&d, &conf, args);
        let url = format!("https://127.0.0.1:{}", server.port);
        let o = k(&[
            "remote",
            "add",
            "images",
            &url,
            "--protocol",
            "simplestreams",
            "--accept-certificate",
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));

        // A launch downloads, verifies and caches; the instance runs with the image's file.
        let o = k(&["launch", "images:bb/1", "s1"]);
        assert!(
            o.status.success(),
            "{}{}\n{}",
            text(&o.stdout),
            text(&o.stderr),
            d.log_text()
        );
        assert_eq!(d.client.instance("s1").await.unwrap().status, "Running");
        assert_eq!(cat(&d, "s1", "/etc/marker").await, "from-streams");
        let img = d.client.image(&good_fp).await.unwrap();
        assert!(img.cached, "a launched image is cached");
        assert_eq!(
            img.properties.get("os").map(String::as_str),
            Some("Busybox")
        );
        assert_eq!(server.requests("/root.tar.xz"), 1);

        // The second launch uses the cached image: no second download.
        let o = k(&["launch", "images:busybox/test", "s2"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(cat(&d, "s2", "/etc/marker").await, "from-streams");
        assert_eq!(server.requests("/root.tar.xz"), 1);
        // An image copy of it only adds the alias.
        let o = k(&["image", "copy", "images:bb/1", "local:", "--alias", "bb1"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(d.client.image_alias("bb1").await.unwrap().target, good_fp);
        assert_eq!(server.requests("/root.tar.xz"), 1);

        // A corrupted root.tar.xz is refused; nothing is stored.
        let before = stored_files(&d);
        let o = k(&["launch", "images:bad/1", "s3"]);
        assert!(!o.status.success(), "a corrupted image was launched");
        assert!(text(&o.stderr).contains("sha256"), "{}", text(&o.stderr));
        assert!(d.client.image(&bad_fp).await.is_err());
        assert_eq!(stored_files(&d), before);
        assert!(d.client.instance("s3").await.is_err());
        let o = k(&["image", "copy", "images:bad/1", "local:", "--alias", "bad"]);
        assert!(!o.status.success());
        assert!(d.client.image_alias("bad").await.is_err());
        assert_eq!(stored_files(&d), before);

        // An unknown alias: a clear error.
        let o = k(&["launch", "images:nosuch/1", "s4"]);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));

        // Without the pinned certificate the system's CAs refuse the
        // self-signed server: nothing is downloaded.
        let req = json!({"source": {"type": "image", "mode": "pull", "protocol": "simplestreams",
            "server": url, "alias": "bb/1"}});
        let resp = d.client.post("/1.0/images", &req).await.unwrap();
        let id = resp.operation_id().expect("an operation");
        assert!(d.client.wait_operation(&id, None).await.is_err());

        // lxc pointed at the same server (its certificate where lxc looks
        // for a remote's) launches through kanted, which downloads nothing
        // new: the image is the cached one.
        lxc_ok(&d, &format!("remote add ss {url} --protocol simplestreams"));
        let certs = d.dir.join("lxc-conf/servercerts");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(d.dir.join("ss.crt"), certs.join("ss.crt")).unwrap();
        // Both clients list the server's catalog alike.
        let fps = |json: &str| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let mut f: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["fingerprint"].as_str().unwrap().to_string())
                .collect();
            f.sort();
            f
        };
        let o = k(&["image", "list", "images:", "--format", "json"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let mut both = vec![good_fp.clone(), bad_fp.clone()];
        both.sort();
        assert_eq!(fps(&text(&o.stdout)), both);
        assert_eq!(fps(&lxc_ok(&d, "image list ss: --format json")), both);
        let table = kante_ok_with(&d, &conf, &["image", "list", "images:", "bb/"]);
        assert!(
            table.contains("bb/1") && table.contains(&good_fp[..12]),
            "{table}"
        );
        assert!(table.contains("x86_64"), "{table}");
        assert!(!table.contains(&bad_fp[..12]), "{table}");

        lxc_ok(&d, "launch ss:bb/1 l1");
        assert_eq!(cat(&d, "l1", "/etc/marker").await, "from-streams");
        assert_eq!(server.requests("/good/root.tar.xz"), 1);

        for c in ["s1", "s2", "l1"] {
            d.client.stop_instance(c, true, -1).await.unwrap();
            d.client.delete_instance(c).await.unwrap();
        }

        // Nothing newer on the server: a refresh changes nothing.
        let o = k(&["image", "refresh", "bb1"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains("already up to date"),
            "{}",
            text(&o.stdout)
        );
        // A newer version of the product: the refresh fetches it, the
        // aliases follow it, and the old image goes.
        let newer_fp = add_version(&tree, "20260102_00:00", "newer");
        let o = k(&["image", "refresh", "bb1"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("refreshed"), "{}", text(&o.stdout));
        assert_eq!(d.client.image_alias("bb1").await.unwrap().target, newer_fp);
        assert!(
            d.client.image(&good_fp).await.is_err(),
            "the old image stays"
        );
        let img = d.client.image(&newer_fp).await.unwrap();
        assert_eq!(
            img.properties.get("serial").map(String::as_str),
            Some("20260102_00:00")
        );
        let o = k(&["launch", "bb1", "s5"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(cat(&d, "s5", "/etc/marker").await, "newer");
        d.client.stop_instance("s5", true, -1).await.unwrap();
        d.client.delete_instance("s5").await.unwrap();
        // lxc's refresh of it: up to date now.
        let out = lxc_ok(&d, "image refresh bb1");
        assert!(!out.contains("refreshed successfully"), "{out}");
        assert_eq!(d.client.image_alias("bb1").await.unwrap().target, newer_fp);
        drop(server);
        d.shutdown().await;
    });
}
