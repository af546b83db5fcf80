//! The guest API (`/dev/lxd/sock`): its answers for an instance (only its
//! `user.*` and `cloud-init.*` keys, values as plain text, LXD's meta-data
//! and `/1.0` shapes), its socket and mount over an instance's run, a
//! caller outside the instance refused, and `security.devlxd=false`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use crate::testing::{self, TestHost};
use crate::Engine;

async fn get(engine: &Engine, name: &str, path: &str) -> (u16, String) {
    let r = engine.devlxd_answer(name, "GET", path).await;
    (r.status, r.text())
}

async fn with_instance(host: &TestHost, config: &[(&str, &str)]) -> std::sync::Arc<Engine> {
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", config).await;
    engine
}

#[tokio::test]
async fn config_lists_only_user_and_cloud_init_keys_with_plain_values() {
    let host = TestHost::new();
    let engine = with_instance(
        &host,
        &[
            ("user.foo", "bar baz"),
            ("cloud-init.user-data", "#cloud-config\nusers: []\n"),
            ("security.nesting", "true"),
            ("environment.SECRET", "x"),
        ],
    )
    .await;
    let (status, body) = get(&engine, "c1", "/1.0/config").await;
    assert_eq!(status, 200);
    let keys: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        keys,
        ["/1.0/config/cloud-init.user-data", "/1.0/config/user.foo"]
    );
    assert_eq!(
        get(&engine, "c1", "/1.0/config/user.foo").await,
        (200, "bar baz".to_string())
    );
    assert_eq!(
        get(&engine, "c1", "/1.0/config/cloud-init.user-data").await,
        (200, "#cloud-config\nusers: []\n".to_string())
    );
    // Keys outside the guest's prefixes are forbidden, set or not; a
    // missing guest key is not found.
    for key in ["security.nesting", "environment.SECRET", "volatile.uuid"] {
        let (status, _) = get(&engine, "c1", &format!("/1.0/config/{key}")).await;
        assert_eq!(status, 403, "{key}");
    }
    assert_eq!(get(&engine, "c1", "/1.0/config/user.nope").await.0, 404);
    assert_eq!(get(&engine, "c1", "/1.0/nosuch").await.0, 404);
    let put = engine.devlxd_answer("c1", "PUT", "/1.0/config").await;
    assert_eq!(put.status, 405);
}

#[tokio::test]
async fn root_and_meta_data_have_lxds_shape() {
    let host = TestHost::new();
    let engine = with_instance(&host, &[("user.meta-data", "foo: bar")]).await;
    let (status, body) = get(&engine, "c1", "/1.0").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["api_version"], "1.0");
    assert_eq!(v["instance_type"], "container");
    assert_eq!(v["state"], "Started");
    assert!(v["location"].as_str().is_some_and(|l| !l.is_empty()), "{v}");
    assert_eq!(get(&engine, "c1", "/").await, (200, "[\"/1.0\"]".into()));
    let id = super::config(&engine, "c1").await["volatile.cloud-init.instance-id"].clone();
    assert!(!id.is_empty());
    assert_eq!(
        get(&engine, "c1", "/1.0/meta-data").await,
        (
            200,
            format!("#cloud-config\ninstance-id: {id}\nlocal-hostname: c1\nfoo: bar\n")
        )
    );
    let (status, body) = get(&engine, "c1", "/1.0/devices").await;
    assert_eq!(status, 200);
    let devices: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(devices["root"]["type"], "disk", "{devices}");
    // Another instance's name answers nothing of this one.
    assert_eq!(get(&engine, "c2", "/1.0/config").await.0, 404);
}

#[tokio::test]
async fn a_running_instance_has_its_socket_mounted_and_refuses_the_host() {
    let host = TestHost::new();
    let engine = with_instance(&host, &[("user.foo", "bar")]).await;
    let sock = engine.devlxd_dir("c1").join("sock");
    assert!(!sock.exists());
    testing::start(&engine, "c1").await;
    let spec = host.runtime.spec("c1").unwrap();
    let m = spec
        .mounts
        .iter()
        .find(|m| m.target == "/dev/lxd")
        .expect("the guest API mount");
    assert_eq!(m.source, engine.devlxd_dir("c1"));
    // Shifted like the rootfs (this instance is unprivileged), read-only.
    assert!(m.readonly && m.idmapped);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let md = std::fs::metadata(&sock).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o666);
    // This test is a host process, not one of c1's: 403 whatever it asks.
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"GET /1.0/config/user.foo HTTP/1.1\r\nHost: lxd\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(!reply.contains("bar"), "{reply}");
    testing::stop(&engine, "c1").await;
    assert!(
        !engine.devlxd_dir("c1").exists(),
        "the socket outlived its instance"
    );
}

#[tokio::test]
async fn devlxd_false_means_no_socket_and_no_mount_and_bad_values_are_refused() {
    let host = TestHost::new();
    let engine = with_instance(&host, &[("security.devlxd", "false")]).await;
    testing::start(&engine, "c1").await;
    let spec = host.runtime.spec("c1").unwrap();
    assert!(spec.mounts.iter().all(|m| m.target != "/dev/lxd"));
    assert!(!engine.devlxd_dir("c1").exists());
    testing::stop(&engine, "c1").await;
    let bad = testing::create_request("c2", "img", &[("security.devlxd", "maybe")]);
    let e = engine.instance_create(bad).await.expect_err("refused");
    assert_eq!(e.status(), 400);
    let images = testing::create_request("c2", "img", &[("security.devlxd.images", "often")]);
    let e = engine.instance_create(images).await.expect_err("refused");
    assert_eq!(e.status(), 400);
}

#[tokio::test]
async fn an_update_becomes_config_and_device_events_for_the_guest() {
    use crate::devlxd::events::{changes, Types};
    use kante_api::instance::InstancePut;
    let host = TestHost::new();
    let engine = with_instance(&host, &[("user.foo", "old"), ("user.gone", "x")]).await;
    let mut rx = engine.events.subscribe();
    let before = engine.devlxd_view("c1").await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let disk: kante_api::ConfigMap = [
        ("type", "disk"),
        ("path", "/mnt"),
        ("source", data.path().to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let row = engine.instance_row("c1").await.unwrap();
    let mut config = row.config.clone();
    config.insert("user.foo".into(), "new".into());
    config.remove("user.gone");
    config.insert("limits.processes".into(), "100".into());
    engine
        .instance_update(
            "c1",
            InstancePut {
                config,
                devices: [("data".to_string(), disk.clone())].into(),
                profiles: Some(row.profiles.clone()),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    // The bus says the instance changed: that is what a stream waits for.
    assert!(super::actions(&mut rx).contains(&"instance-updated".to_string()));
    let after = engine.devlxd_view("c1").await.unwrap();
    let all = Types::parse(None).unwrap();
    let got: Vec<serde_json::Value> = changes(&before, &after, all)
        .into_iter()
        .map(|mut e| {
            assert!(e["timestamp"].is_string(), "{e}");
            e.as_object_mut().unwrap().remove("timestamp");
            e
        })
        .collect();
    assert_eq!(
        got,
        [
            serde_json::json!({"type": "config", "metadata":
                {"key": "user.foo", "old_value": "old", "value": "new"}}),
            serde_json::json!({"type": "config", "metadata":
                {"key": "user.gone", "old_value": "x", "value": ""}}),
            serde_json::json!({"type": "device", "metadata":
                {"action": "added", "name": "data", "config": disk}}),
        ]
    );
    // `?type=` filters; an unknown type is refused.
    let devices_only = Types::parse(Some("type=device")).unwrap();
    assert_eq!(changes(&before, &after, devices_only).len(), 1);
    assert!(Types::parse(Some("type=config,bogus")).is_none());
}

#[tokio::test]
async fn a_restarted_daemon_binds_a_fresh_socket_in_the_mounted_directory() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let host = TestHost::new();
    let engine = with_instance(&host, &[]).await;
    testing::start(&engine, "c1").await;
    let dir = engine.devlxd_dir("c1");
    let (dir_ino, sock_ino) = (
        std::fs::metadata(&dir).unwrap().ino(),
        std::fs::metadata(dir.join("sock")).unwrap().ino(),
    );
    drop(engine);
    let again = host.open().await;
    // The same directory (the one the guest has mounted), a new socket in it.
    assert_eq!(std::fs::metadata(&dir).unwrap().ino(), dir_ino);
    let md = std::fs::metadata(dir.join("sock")).unwrap();
    assert!(md.file_type().is_socket());
    assert_ne!(md.ino(), sock_ino);
    testing::stop(&again, "c1").await;
    assert!(!dir.exists());
}

#[tokio::test]
async fn image_export_needs_security_devlxd_images() {
    use crate::devlxd::export::{export_fingerprint, ExportFiles};
    let host = TestHost::new();
    let engine = host.open().await;
    let fp = host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[]).await;
    let refused = engine.devlxd_image_export("c1", &fp).await.err().unwrap();
    assert_eq!(refused.status, 403);
    let row = engine.instance_row("c1").await.unwrap();
    let mut config = row.config.clone();
    config.insert("security.devlxd.images".into(), "true".into());
    engine
        .instance_update(
            "c1",
            kante_api::instance::InstancePut {
                config,
                profiles: Some(row.profiles.clone()),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    let files = engine.devlxd_image_export("c1", &fp).await.ok().unwrap();
    assert_eq!(files.parts, engine.image_export_files(&fp).await.unwrap());
    assert!(files.parts[0].1.exists());
    let missing = "ab".repeat(32);
    let gone = engine
        .devlxd_image_export("c1", &missing)
        .await
        .err()
        .unwrap();
    assert_eq!(gone.status, 404);
    // Only `/1.0/images/<hex>/export` is an export.
    assert_eq!(
        export_fingerprint(&format!("/1.0/images/{fp}/export")),
        Some(fp.as_str())
    );
    for path in [
        "/1.0/images",
        "/1.0/images//export",
        "/1.0/images/../x/export",
    ] {
        assert_eq!(export_fingerprint(path), None, "{path}");
    }
    // A split image is sent as multipart form data, metadata first.
    let split = ExportFiles {
        parts: vec![("meta-x".into(), "/m".into()), ("x".into(), "/r".into())],
    };
    let (ctype, heads, tail) = split.framing("B");
    assert_eq!(ctype, "multipart/form-data; boundary=B");
    let head0 = String::from_utf8(heads[0].clone()).unwrap();
    assert!(head0.starts_with(
        "--B\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"meta-x\""
    ));
    let head1 = String::from_utf8(heads[1].clone()).unwrap();
    assert!(head1.starts_with("\r\n--B\r\n") && head1.contains("name=\"rootfs\"; filename=\"x\""));
    assert_eq!(tail, b"\r\n--B--\r\n");
}
