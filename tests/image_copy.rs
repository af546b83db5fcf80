//! One kanted as the image server of another, over HTTPS on loopback: the
//! source serves its public images to untrusted callers (a private one is
//! 404 to them, as a missing one); Debian's `lxc image copy src:ALIAS dst:`
//! and `kante image copy` make the destination pull the image (same
//! fingerprint, an instance launches from it); copying a private image,
//! or pulling with the wrong source certificate, fails and stores nothing.

use std::process::Command;

use kante_integration::lxc::{conf, lxc, lxc_ok, serve_https};
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
        let dst = Daemon::start().await;
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
        // Copying the private image fails (no secrets yet), nothing stored.
        let o = lxc(&dst, &user, "image copy src:bb dst: --alias bb1");
        assert!(!o.status.success(), "copied a private image");
        // kante, trusted by the source.
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
        assert!(!o.status.success(), "copied a private image");
        assert!(
            text(&o.stderr).contains("not found on the image server"),
            "{}",
            text(&o.stderr)
        );
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

        dst.shutdown().await;
        src.shutdown().await;
    });
}
