//! One kanted as the image server of another, over HTTPS on loopback: the
//! source serves its public images to untrusted callers (a private one is
//! 404 to them, as a missing one); Debian's `lxc image copy src:ALIAS dst:`
//! and `kante image copy` make the destination pull the image (same
//! fingerprint, an instance launches from it); a private image is copied
//! by a one-time secret the client asks the source for (spent by the
//! download; a wrong one is 404); pulling with the wrong source
//! certificate fails and stores nothing; a copy made with `--auto-update`
//! follows the source's alias to a newer image on its own.

use std::process::Command;

use kante_integration::lxc::{conf, lxc_ok, serve_https};
use kante_integration::{kante_with_conf, run, Daemon, TestImage};
use serde_json::{json, Value};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `curl -k` as an untrusted client: (status, body).
fn curl(port: u16, path: &str) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let out = text(&o.stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The image fingerprints `d` holds.
async fn fingerprints(d: &Daemon) -> Vec<String> {
    d.client
        .images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.fingerprint)
        .collect()
}

/// Image secrets of `d` still waiting for their download (running
/// operations of class token naming an image).
async fn live_image_secrets(d: &Daemon) -> usize {
    let ops: Value = d
        .client
        .get_json("/1.0/operations?recursion=1")
        .await
        .unwrap();
    ops["running"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|o| o["resources"]["images"].is_array())
                .count()
        })
        .unwrap_or(0)
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

#[test]
fn images_are_copied_between_two_kanteds() {
    run(async {
        let src = Daemon::start().await;
        // The destination checks its auto-update images every 2 s.
        let dst = Daemon::start_with_env(&[("KANTE_IMAGE_UPDATE_EVERY_SECS", "2")]).await;
        let (sa, da) = (conf(&src, "admin"), conf(&dst, "admin"));
        let sport = serve_https(&src, &sa);
        let dport = serve_https(&dst, &da);

        // A private image on the source.
        let fp = src.import(TestImage::Busybox).await;
        src.client.create_image_alias("bb", &fp, "").await.unwrap();

        // (c) Untrusted callers: a private image is missing to them.
        let (code, body) = curl(sport, &format!("/1.0/images/{fp}"));
        assert_eq!(code, 404, "{body}");
        let (code, _) = curl(sport, &format!("/1.0/images/{fp}/export"));
        assert_eq!(code, 404);
        let (code, _) = curl(sport, "/1.0/images/aliases/bb");
        assert_eq!(code, 404);
        let (code, body) = curl(sport, "/1.0/images");
        assert_eq!(code, 200, "{body}");
        assert!(!body.contains(&fp), "{body}");
        let (code, _) = curl(sport, "/1.0/instances");
        assert_eq!(code, 403);

        // lxc, trusted by both (by password).
        let user = conf(&dst, "user");
        for (name, port) in [("src", sport), ("dst", dport)] {
            lxc_ok(
                &dst,
                &user,
                &format!("remote add {name} https://127.0.0.1:{port} --accept-certificate --password=sesame"),
            );
        }
        // A wrong secret opens nothing.
        let (code, _) = curl(
            sport,
            &format!("/1.0/images/{fp}/export?secret={}", "ab".repeat(32)),
        );
        assert_eq!(code, 404);
        // lxc copies the private image by a one-time secret it asks the
        // source for; the secret is spent by the download.
        lxc_ok(&dst, &user, "image copy src:bb dst: --alias bb1");
        assert_eq!(fingerprints(&dst).await, vec![fp.clone()]);
        assert_eq!(dst.client.image_alias("bb1").await.unwrap().target, fp);
        assert!(
            !src.client.image(&fp).await.unwrap().public,
            "still private"
        );
        assert_eq!(
            live_image_secrets(&src).await,
            0,
            "a secret outlived its download"
        );
        lxc_ok(&dst, &user, &format!("image delete dst:{fp}"));
        // kante, trusted by the source, does the same.
        let kc = conf(&dst, "kante");
        let o = kante_with_conf(
            &dst,
            &kc,
            &[
                "remote",
                "add",
                "src",
                &format!("https://127.0.0.1:{sport}"),
                "--accept-certificate",
                "--password=sesame",
            ],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        let o = kante_with_conf(
            &dst,
            &kc,
            &["image", "copy", "src:bb", "local:", "--alias", "bb2"],
        );
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
        assert_eq!(fingerprints(&dst).await, vec![fp.clone()]);
        assert_eq!(live_image_secrets(&src).await, 0);
        dst.client.delete_image(&fp).await.unwrap();
        assert!(fingerprints(&dst).await.is_empty());
        assert!(stored_files(&dst).is_empty(), "{:?}", stored_files(&dst));

        // Made public: the untrusted view shows it.
        src.client
            .patch(&format!("/1.0/images/{fp}"), &json!({"public": true}))
            .await
            .unwrap();
        let (code, body) = curl(sport, "/1.0/images");
        assert_eq!(code, 200);
        assert!(body.contains(&fp), "{body}");
        let (code, body) = curl(sport, "/1.0/images/aliases/bb");
        assert_eq!(code, 200, "{body}");

        // (d) The wrong source certificate (the destination's own): the
        // pull fails and stores nothing.
        let wrong = std::fs::read_to_string(dst.dir.join("server.crt")).unwrap();
        let req = json!({"aliases": [{"name": "bad"}], "source": {
            "type": "image", "mode": "pull", "protocol": "lxd",
            "server": format!("https://127.0.0.1:{sport}"), "certificate": wrong, "alias": "bb"}});
        let resp = dst.client.post("/1.0/images", &req).await.unwrap();
        let id = resp.operation_id().expect("an operation");
        let e = dst.client.wait_operation(&id, None).await.unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
        assert!(fingerprints(&dst).await.is_empty());
        assert!(stored_files(&dst).is_empty(), "{:?}", stored_files(&dst));

        // (a) lxc image copy: the destination pulls; same fingerprint; a
        // container launches from it.
        lxc_ok(&dst, &user, "image copy src:bb dst: --alias copied");
        assert_eq!(fingerprints(&dst).await, vec![fp.clone()]);
        let alias = dst.client.image_alias("copied").await.unwrap();
        assert_eq!(alias.target, fp);
        lxc_ok(&dst, &user, "launch dst:copied dst:c1");
        let listed = lxc_ok(&dst, &user, "list dst: --format csv -c ns");
        assert!(listed.contains("c1,RUNNING"), "{listed}");
        lxc_ok(&dst, &user, "delete -f dst:c1");
        lxc_ok(&dst, &user, &format!("image delete dst:{fp}"));
        assert!(fingerprints(&dst).await.is_empty());

        // (b) kante image copy, with --auto-update.
        let o = kante_with_conf(
            &dst,
            &kc,
            &[
                "image",
                "copy",
                "src:bb",
                "local:",
                "--alias",
                "mine",
                "--auto-update",
            ],
        );
        assert!(
            o.status.success(),
            "{}{}\n{}",
            text(&o.stdout),
            text(&o.stderr),
            dst.log_text()
        );
        assert!(
            text(&o.stdout).contains("Image copied"),
            "{}",
            text(&o.stdout)
        );
        let img: Value = serde_json::to_value(dst.client.image(&fp).await.unwrap()).unwrap();
        assert_eq!(img["auto_update"], true);
        assert_eq!(dst.client.image_alias("mine").await.unwrap().target, fp);
        let o = kante_with_conf(&dst, &kc, &["launch", "mine", "c2"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let o = kante_with_conf(&dst, &kc, &["delete", "-f", "c2"]);
        assert!(o.status.success(), "{}", text(&o.stderr));

        // (e) The source's alias moves to a newer image: the copy made
        // with --auto-update follows it on its own; the old one goes.
        src.create(&fp, "p1", &[]).await;
        let req = json!({"public": true, "source": {"type": "instance", "name": "p1"}});
        let resp = src.client.post("/1.0/images", &req).await.unwrap();
        let id = resp.operation_id().expect("an operation");
        let op = src.client.wait_operation(&id, None).await.unwrap();
        let newer = op.metadata["fingerprint"].as_str().unwrap().to_string();
        assert_ne!(newer, fp);
        src.client
            .put(
                "/1.0/images/aliases/bb",
                &json!({"target": newer, "description": ""}),
            )
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while dst.client.image_alias("mine").await.unwrap().target != newer {
            assert!(
                std::time::Instant::now() < deadline,
                "the auto-update did not follow the source\n{}",
                dst.log_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        assert_eq!(fingerprints(&dst).await, vec![newer.clone()]);
        assert!(dst.client.image(&newer).await.unwrap().auto_update);
        src.client.delete_instance("p1").await.unwrap();

        dst.shutdown().await;
        src.shutdown().await;
    });
}
