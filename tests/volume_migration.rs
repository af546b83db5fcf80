//! Custom volumes copied and moved between two kanteds over HTTPS on
//! loopback (issues 16/17): Debian's `lxc storage volume copy|move
//! k1:default/v k2:default/v2` in modes pull, push and relay, then
//! `kante storage volume copy|move a:default/v b:default/v`: a file written
//! into the volume on the first host is read back from an instance on the
//! second, the snapshots and config travel (`--volume-only` leaves the
//! snapshots), the source is untouched by a copy and gone after a move;
//! a snapshot as the source (`k1:default/v/s0`, also between members)
//! arrives as a volume of its content without snapshots;
//! a missing source, a missing target pool and a name in use are refused
//! with LXD's status, making nothing on the target and leaving the source
//! as it was. In a 3-member cluster (`Lab::up(3)`), `kante storage volume
//! move default/v default/v --target h2` takes the volume from h1 to h2
//! (the listing's LOCATION follows, the file with it) and `copy … --target
//! h3` copies it on.

use std::path::{Path, PathBuf};

use kante_integration::cluster::{down_and_check, form, on, refused};
use kante_integration::lab::Lab;
use kante_integration::lxc::{conf, lxc_fails, lxc_ok, serve_https};
use kante_integration::two::Two;
use kante_integration::{instance_post, run, Daemon, TestImage};
use serde_json::json;

/// Where `d` keeps custom volume `v` of its default pool.
fn volume_dir(dir: &Path, v: &str) -> PathBuf {
    dir.join("storage-pools/default/custom").join(v)
}

/// Every entry of the default pool's custom volume directories, staging
/// ones included.
fn custom_entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["custom", "custom-snapshots"] {
        let d = dir.join("storage-pools/default").join(sub);
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

async fn snapshot_names(d: &Daemon, v: &str) -> Vec<String> {
    let mut s: Vec<String> = d
        .client
        .storage_volume_snapshots("default", v)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    s.sort();
    s
}

/// What an instance of `d` with volume `v` mounted at /data reads in
/// /data/f (the instance is made, started, read, and deleted).
async fn read_through_instance(d: &Daemon, fp: &str, v: &str) -> String {
    let mut devices = kante_api::DevicesMap::new();
    devices.insert(
        "data".into(),
        [
            ("type", "disk"),
            ("pool", "default"),
            ("source", v),
            ("path", "/data"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    d.client
        .create_instance(&instance_post(fp, "reader", &[], devices))
        .await
        .unwrap();
    d.client.start_instance("reader").await.unwrap();
    let (code, out) = d.sh("reader", "cat /data/f").await;
    d.client.stop_instance("reader", true, -1).await.unwrap();
    d.client.delete_instance("reader").await.unwrap();
    assert_eq!(code, 0, "{out}");
    out
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
fn lxc_copies_and_moves_custom_volumes_between_kanteds() {
    run(async {
        let (src, dst, user) = pair().await;
        let fp = dst.import(TestImage::Busybox).await;
        lxc_ok(
            &src,
            &user,
            "storage volume create k1:default v1 user.note=hello",
        );
        std::fs::write(volume_dir(&src.dir, "v1").join("f"), "one").unwrap();
        lxc_ok(&src, &user, "storage volume snapshot k1:default v1 s0");
        std::fs::write(volume_dir(&src.dir, "v1").join("f"), "two").unwrap();

        // Pull (lxc's default): the content, its snapshot and config arrive.
        lxc_ok(
            &src,
            &user,
            "storage volume copy k1:default/v1 k2:default/v2",
        );
        assert_eq!(read_through_instance(&dst, &fp, "v2").await.trim(), "two");
        assert_eq!(snapshot_names(&dst, "v2").await, ["s0"]);
        let v2 = dst.client.storage_volume("default", "v2").await.unwrap();
        assert_eq!(
            v2.config.get("user.note").map(String::as_str),
            Some("hello")
        );
        // The snapshot carries its own tree.
        lxc_ok(&src, &user, "storage volume restore k2:default v2 s0");
        let f = std::fs::read_to_string(volume_dir(&dst.dir, "v2").join("f")).unwrap();
        assert_eq!(f, "one");
        // The source is unchanged.
        let f = std::fs::read_to_string(volume_dir(&src.dir, "v1").join("f")).unwrap();
        assert_eq!(f, "two");
        assert_eq!(snapshot_names(&src, "v1").await, ["s0"]);

        // Push, and relay through lxc; --volume-only leaves the snapshots.
        lxc_ok(
            &src,
            &user,
            "storage volume copy k1:default/v1 k2:default/v3 --mode push --volume-only",
        );
        assert!(snapshot_names(&dst, "v3").await.is_empty());
        lxc_ok(
            &src,
            &user,
            "storage volume copy k1:default/v1 k2:default/v4 --mode relay",
        );
        assert_eq!(snapshot_names(&dst, "v4").await, ["s0"]);
        for v in ["v3", "v4"] {
            let f = std::fs::read_to_string(volume_dir(&dst.dir, v).join("f")).unwrap();
            assert_eq!(f, "two", "{v}");
        }
        // A snapshot as the source: a volume of its content, no snapshots.
        lxc_ok(
            &src,
            &user,
            "storage volume copy k1:default/v1/s0 k2:default/v5",
        );
        let f = std::fs::read_to_string(volume_dir(&dst.dir, "v5").join("f")).unwrap();
        assert_eq!(f, "one");
        assert!(snapshot_names(&dst, "v5").await.is_empty());

        // Refusals make nothing on the target and leave the source.
        let before = custom_entries(&dst.dir);
        let e = lxc_fails(
            &src,
            &user,
            "storage volume copy k1:default/v1 k2:default/v2",
        );
        assert!(e.contains("already exists"), "{e}");
        let e = lxc_fails(
            &src,
            &user,
            "storage volume copy k1:default/nope k2:default/v9",
        );
        assert!(e.to_lowercase().contains("not found"), "{e}");
        let e = lxc_fails(
            &src,
            &user,
            "storage volume copy k1:default/v1 k2:nopool/v9",
        );
        assert!(e.to_lowercase().contains("not found"), "{e}");
        assert_eq!(custom_entries(&dst.dir), before, "a refusal left something");
        // The API's own answers, as LXD gives them.
        let clash = dst
            .client
            .post(
                "/1.0/storage-pools/default/volumes/custom",
                &json!({"name": "v2", "type": "custom",
                        "source": {"type": "migration", "mode": "push"}}),
            )
            .await
            .unwrap_err();
        assert_eq!(clash.status(), Some(409), "{clash}");
        let missing = dst
            .client
            .post(
                "/1.0/storage-pools/nopool/volumes/custom",
                &json!({"name": "v9", "type": "custom",
                        "source": {"type": "migration", "mode": "push"}}),
            )
            .await
            .unwrap_err();
        assert_eq!(missing.status(), Some(404), "{missing}");
        let unknown = src
            .client
            .post(
                "/1.0/storage-pools/default/volumes/custom/nope",
                &json!({"name": "nope", "migration": true}),
            )
            .await
            .unwrap_err();
        assert_eq!(unknown.status(), Some(404), "{unknown}");
        assert_eq!(custom_entries(&dst.dir), before);
        assert_eq!(snapshot_names(&src, "v1").await, ["s0"]);

        // A move: copied, then the source deleted.
        lxc_ok(
            &src,
            &user,
            "storage volume move k1:default/v1 k2:default/v1",
        );
        assert!(!volume_dir(&src.dir, "v1").exists(), "the source stayed");
        assert!(src.client.storage_volume("default", "v1").await.is_err());
        assert_eq!(read_through_instance(&dst, &fp, "v1").await.trim(), "two");
        assert_eq!(snapshot_names(&dst, "v1").await, ["s0"]);

        for v in ["v1", "v2", "v3", "v4", "v5"] {
            dst.client
                .delete_storage_volume("default", v)
                .await
                .unwrap();
        }
        assert!(
            custom_entries(&dst.dir).is_empty(),
            "{:?}",
            custom_entries(&dst.dir)
        );
    });
}

#[test]
fn kante_copies_and_moves_custom_volumes_between_servers() {
    run(async {
        let t = Two::up().await;
        let fp = t.b.import(TestImage::Busybox).await;
        t.ok(&["storage", "volume", "create", "a:default", "v1", "user.k=v"]);
        std::fs::write(volume_dir(&t.a.dir, "v1").join("f"), "from a").unwrap();
        t.ok(&["storage", "volume", "snapshot", "a:default", "v1", "s0"]);

        for (mode, name) in [("pull", "c1"), ("push", "c2"), ("relay", "c3")] {
            t.ok(&[
                "storage",
                "volume",
                "copy",
                "a:default/v1",
                &format!("b:default/{name}"),
                "--mode",
                mode,
            ]);
            assert_eq!(snapshot_names(&t.b, name).await, ["s0"], "{mode}");
        }
        assert_eq!(
            read_through_instance(&t.b, &fp, "c1").await.trim(),
            "from a"
        );
        let c2 = t.b.client.storage_volume("default", "c2").await.unwrap();
        assert_eq!(c2.config.get("user.k").map(String::as_str), Some("v"));

        // Refused before any byte moves: the name, the pool, the source.
        let before = custom_entries(&t.b.dir);
        let e = t.fails(&["storage", "volume", "copy", "a:default/v1", "b:default/c1"]);
        assert!(e.contains("already exists on b"), "{e}");
        let e = t.fails(&["storage", "volume", "copy", "a:default/v1", "b:nopool/x"]);
        assert!(e.contains("Storage pool nopool doesn't exist on b"), "{e}");
        let e = t.fails(&["storage", "volume", "move", "a:default/nope", "b:default/x"]);
        assert!(e.to_lowercase().contains("not found"), "{e}");
        let e = t.fails(&[
            "storage",
            "volume",
            "move",
            "a:default/v1/s0",
            "b:default/x",
        ]);
        assert!(e.contains("A snapshot cannot be moved"), "{e}");
        let e = t.fails(&[
            "storage",
            "volume",
            "copy",
            "a:default/v1/nope",
            "b:default/x",
        ]);
        assert!(e.to_lowercase().contains("not found"), "{e}");
        assert_eq!(custom_entries(&t.b.dir), before);

        // A snapshot as the source: its content, as a volume of its own.
        std::fs::write(volume_dir(&t.a.dir, "v1").join("f"), "later").unwrap();
        t.ok(&[
            "storage",
            "volume",
            "copy",
            "a:default/v1/s0",
            "b:default/c4",
        ]);
        let f = std::fs::read_to_string(volume_dir(&t.b.dir, "c4").join("f")).unwrap();
        assert_eq!(f, "from a");
        assert!(snapshot_names(&t.b, "c4").await.is_empty());
        let c4 = t.b.client.storage_volume("default", "c4").await.unwrap();
        assert_eq!(c4.config.get("user.k").map(String::as_str), Some("v"));

        t.ok(&["storage", "volume", "move", "a:default/v1", "b:default/v1"]);
        assert!(!volume_dir(&t.a.dir, "v1").exists(), "the source stayed");
        assert_eq!(read_through_instance(&t.b, &fp, "v1").await.trim(), "later");
        for v in ["v1", "c1", "c2", "c3", "c4"] {
            t.b.client
                .delete_storage_volume("default", v)
                .await
                .unwrap();
        }
    });
}

#[test]
fn a_volume_moves_and_copies_between_cluster_members() {
    let mut lab = Lab::up(3);
    form(&lab);
    let on_host = |i: u32, v: &str| volume_dir(&lab.state(i), v).exists();
    on(
        &lab,
        1,
        &[
            "storage", "volume", "create", "default", "v", "user.n=1", "--target", "h1",
        ],
    );
    std::fs::write(volume_dir(&lab.state(1), "v").join("f"), "travels").unwrap();

    // Moved from h1 to h2 through h3: LOCATION follows, the file with it.
    let out = on(
        &lab,
        3,
        &[
            "storage",
            "volume",
            "move",
            "default/v",
            "default/v",
            "--target",
            "h2",
        ],
    );
    assert!(out.contains("moved"), "{out}");
    assert!(on_host(2, "v") && !on_host(1, "v") && !on_host(3, "v"));
    let listed = on(
        &lab,
        1,
        &["storage", "volume", "list", "default", "-f", "csv"],
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("custom,v,") && l.ends_with(",h2")),
        "{listed}"
    );
    let f = std::fs::read_to_string(volume_dir(&lab.state(2), "v").join("f")).unwrap();
    assert_eq!(f, "travels");
    let note = on(
        &lab,
        1,
        &["storage", "volume", "get", "default", "v", "user.n"],
    );
    assert_eq!(note.trim(), "1");

    // Copied on to h3 under another name; the same name on h3 is refused.
    on(
        &lab,
        1,
        &[
            "storage",
            "volume",
            "copy",
            "default/v",
            "default/w",
            "--target",
            "h3",
        ],
    );
    assert!(on_host(3, "w") && on_host(2, "v"));
    let f = std::fs::read_to_string(volume_dir(&lab.state(3), "w").join("f")).unwrap();
    assert_eq!(f, "travels");
    let e = refused(
        &lab,
        1,
        &[
            "storage",
            "volume",
            "copy",
            "default/v",
            "default/w",
            "--target",
            "h3",
        ],
    );
    assert!(e.contains("already exists"), "{e}");
    let e = refused(
        &lab,
        1,
        &[
            "storage",
            "volume",
            "copy",
            "default/nope",
            "default/x",
            "--target",
            "h3",
        ],
    );
    assert!(e.to_lowercase().contains("not found"), "{e}");
    assert!(!on_host(3, "x") && !on_host(1, "x"));

    // A snapshot of v (on h2) copied to h1 as a volume of its own.
    on(
        &lab,
        3,
        &["storage", "volume", "snapshot", "default", "v", "s0"],
    );
    std::fs::write(volume_dir(&lab.state(2), "v").join("f"), "changed").unwrap();
    on(
        &lab,
        3,
        &[
            "storage",
            "volume",
            "copy",
            "default/v/s0",
            "default/s",
            "--target",
            "h1",
        ],
    );
    let f = std::fs::read_to_string(volume_dir(&lab.state(1), "s").join("f")).unwrap();
    assert_eq!(f, "travels");

    on(&lab, 1, &["storage", "volume", "delete", "default", "v"]);
    on(&lab, 1, &["storage", "volume", "delete", "default", "w"]);
    on(&lab, 1, &["storage", "volume", "delete", "default", "s"]);
    assert!((1..=3).all(|i| !on_host(i, "v") && !on_host(i, "w") && !on_host(i, "s")));
    down_and_check(&mut lab, Vec::new());
}
