//! Images between the hosts of a lab (two kanteds in their own network
//! namespaces on a shared uplink): `kante image copy h1:bb h2:` of a
//! private image (by a one-time secret the client asks h1 for), a launch
//! on h2 from h1's image (h2 fetches it over the uplink and caches it),
//! and Debian's `lxc image copy` between the two, trusted by tokens.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use kante_integration::lab::Lab;
use kante_integration::{run, TestImage};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `lxc ARGS` with its own configuration `conf`.
fn lxc(conf: &Path, cmd: &[&str]) -> Output {
    Command::new("lxc")
        .args(cmd)
        .env("LXD_CONF", conf)
        .env("HOME", conf)
        .stdin(Stdio::null())
        .output()
        .expect("run lxc")
}

fn lxc_ok(conf: &Path, cmd: &[&str]) -> String {
    let o = lxc(conf, cmd);
    assert!(
        o.status.success(),
        "lxc {cmd:?}: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// A trust token of host i for a client called `name`.
fn token(lab: &Lab, i: u32, name: &str) -> String {
    let o = lab.host_kante(i, &["config", "trust", "add", name]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("a token line")
        .trim()
        .to_string()
}

#[test]
fn images_travel_between_lab_hosts() {
    run(async {
        let lab = Lab::up(2);
        let (h1, h2) = (lab.remote(1), lab.remote(2));
        let fp = lab.import(1, TestImage::Busybox).await;
        lab.client(1)
            .create_image_alias("bb", &fp, "")
            .await
            .unwrap();
        assert!(!lab.client(1).image(&fp).await.unwrap().public);

        // kante: h2 pulls h1's private image over the uplink.
        lab.kante_ok(&[
            "image",
            "copy",
            &format!("{h1}:bb"),
            &format!("{h2}:"),
            "--alias",
            "bb",
        ]);
        let copied = lab.client(2).image(&fp).await.unwrap();
        assert!(!copied.cached);
        assert_eq!(lab.client(2).image_alias("bb").await.unwrap().target, fp);
        lab.client(2).delete_image(&fp).await.unwrap();

        // A launch on h2 from h1's image: h2 fetches it and caches it.
        lab.kante_ok(&["launch", &format!("{h1}:bb"), &format!("{h2}:c1")]);
        let c1 = lab.client(2).instance("c1").await.unwrap();
        assert_eq!(c1.status, "Running");
        assert!(
            lab.client(2).image(&fp).await.unwrap().cached,
            "a launch caches"
        );
        let (code, out) = lab.sh(2, "c1", "cat /etc/hostname").await;
        assert_eq!((code, out.trim()), (0, "c1"));
        lab.client(2).stop_instance("c1", true, -1).await.unwrap();
        lab.client(2).delete_instance("c1").await.unwrap();
        lab.client(2).delete_image(&fp).await.unwrap();

        // lxc, trusted by both hosts by tokens, copies between them.
        let scratch = tempfile::tempdir().unwrap();
        let conf = scratch.path().join("lxc-conf");
        std::fs::create_dir_all(&conf).unwrap();
        for i in [1, 2] {
            let t = token(&lab, i, &format!("lxc{i}"));
            lxc_ok(&conf, &["remote", "add", &format!("h{i}"), &t]);
        }
        lxc_ok(
            &conf,
            &["image", "copy", "h1:bb", "h2:", "--alias", "via-lxc"],
        );
        assert_eq!(
            lab.client(2).image_alias("via-lxc").await.unwrap().target,
            fp
        );
        let listed = lxc_ok(
            &conf,
            &["image", "list", "h2:", "--format", "csv", "-c", "lf"],
        );
        assert!(listed.contains("via-lxc"), "{listed}");
        // No secret of h1 outlives the copies.
        let ops: serde_json::Value = lab
            .client(1)
            .get_json("/1.0/operations?recursion=1")
            .await
            .unwrap();
        let running = ops["running"].as_array().cloned().unwrap_or_default();
        assert!(
            running.iter().all(|o| !o["resources"]["images"].is_array()),
            "{running:?}"
        );

        let mut lab = lab;
        let o = lab.down();
        assert!(o.status.success(), "{}", text(&o.stderr));
    });
}
