//! Images made from instances (`POST /1.0/images` with an instance or
//! snapshot source) and images from a simplestreams server (a tree served
//! by the test): the publish is recorded with its alias and launches an
//! instance, a running instance is refused; a split simplestreams image is
//! stored under its combined fingerprint, a launch's image is cached and
//! not downloaded again, and a file that does not match its sha256 stores
//! nothing.

use std::net::SocketAddr;

use kante_api::image::{ImageAliasRef, ImagesPost};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::image_pull::{serve, start, store_is_empty, Routes};
use crate::front::{Reply, Request};
use crate::testing::{self, image, wait_err, wait_ok, TestHost};

fn alias(name: &str) -> Vec<ImageAliasRef> {
    vec![ImageAliasRef {
        name: name.into(),
        description: String::new(),
    }]
}

#[tokio::test]
async fn a_stopped_instance_is_published_and_a_running_one_refused() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "base").await;
    host.launch(&engine, "c1", "base").await;
    let publish = |a: &str| {
        Request::ImageCreate(ImagesPost {
            aliases: alias(a),
            source: Some(json!({"type": "instance", "name": "c1"})),
            ..Default::default()
        })
    };
    let Err(e) = engine.handle(publish("live")).await else {
        panic!("a running instance was published")
    };
    assert!(e.to_string().contains("running"), "{e}");
    assert!(engine.alias_get("live", true).await.is_err());

    testing::stop(&engine, "c1").await;
    let op = start(&engine, publish("pub1")).await;
    let done = wait_ok(&op).await;
    let fp = done.metadata["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(engine.alias_get("pub1", true).await.unwrap().target, fp);
    let stored = std::fs::read(engine.paths.images().join(&fp)).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&stored)), fp);
    // Nothing of the packing is left beside the store.
    let uploads = engine.paths.images().join(".uploads");
    assert!(std::fs::read_dir(uploads).unwrap().next().is_none());
    host.create(&engine, "c2", "pub1", &[]).await;

    // A missing snapshot is a 404 before any work.
    let missing = Request::ImageCreate(ImagesPost {
        source: Some(json!({"type": "snapshot", "name": "c1/nope"})),
        ..Default::default()
    });
    let Err(e) = engine.handle(missing).await else {
        panic!("a missing snapshot was published")
    };
    assert!(e.to_string().contains("not found"), "{e}");
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn file(body: Vec<u8>) -> (&'static str, Vec<u8>, Option<usize>) {
    ("application/octet-stream", body, None)
}

/// A tree serving `meta` and `rootfs` (whose listed sha256 is that of
/// `listed_rootfs`) as `test/1`; returns the server and the fingerprint.
async fn tree(
    server: &kante_tls::KeyPair,
    meta: &[u8],
    rootfs: &[u8],
    listed_rootfs: &[u8],
    with_files: bool,
) -> (SocketAddr, String) {
    let combined = sha(&[meta, listed_rootfs].concat());
    let arch = kante_images::streams::host_arch();
    let products = json!({"products": {"test:1": {
        "aliases": "test/1,test", "arch": arch, "os": "Testos", "release": "1",
        "versions": {"20260101_00:00": {"items": {
            "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "i/lxd.tar.xz", "sha256": sha(meta),
                "size": meta.len(), "combined_rootxz_sha256": combined},
            "root.tar.xz": {"ftype": "root.tar.xz", "path": "i/root.tar.xz",
                "sha256": sha(listed_rootfs), "size": listed_rootfs.len()}
        }}}
    }}});
    let index = json!({"index": {"images": {"datatype": "image-downloads",
        "path": "streams/v1/images.json"}}});
    let mut routes = Routes::new();
    let doc = |v: Value| ("application/json", v.to_string().into_bytes(), None);
    routes.insert("/streams/v1/index.json".into(), doc(index));
    routes.insert("/streams/v1/images.json".into(), doc(products));
    if with_files {
        routes.insert("/i/lxd.tar.xz".into(), file(meta.to_vec()));
        routes.insert("/i/root.tar.xz".into(), file(rootfs.to_vec()));
    }
    (serve(server, routes).await, combined)
}

fn source(addr: SocketAddr, pem: &str, name: &str) -> Value {
    json!({"type": "image", "mode": "pull", "protocol": "simplestreams",
        "server": format!("https://{addr}"), "certificate": pem, "alias": name})
}

#[tokio::test]
async fn a_simplestreams_image_is_verified_stored_cached_and_reused() {
    let host = TestHost::new();
    let engine = host.open().await;
    let (meta, rootfs) = image::build_split(host.path(), &image::Spec::default());
    let (meta, rootfs) = (std::fs::read(meta).unwrap(), std::fs::read(rootfs).unwrap());
    let server = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["ss".into()]).unwrap();

    // A rootfs that is not what the products file lists: refused, nothing stored.
    let mut bad = rootfs.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let (addr, bad_fp) = tree(&server, &meta, &bad, &rootfs, true).await;
    let req = Request::ImageCreate(ImagesPost {
        aliases: alias("bad"),
        source: Some(source(addr, &server.cert_pem, "test/1")),
        ..Default::default()
    });
    let err = wait_err(&start(&engine, req).await).await;
    assert!(err.contains("sha256"), "{err}");
    assert!(engine.image_get(&bad_fp).await.is_err());
    assert!(store_is_empty(&engine));

    // The good tree: a launch stores the split image under its combined
    // fingerprint, marked cached.
    let (addr, fp) = tree(&server, &meta, &rootfs, &rootfs, true).await;
    let mut post = testing::create_request("c1", "", &[]);
    post.source = serde_json::from_value(source(addr, &server.cert_pem, "test")).unwrap();
    let Ok(Reply::Operation(op)) = engine.handle(Request::InstanceCreate(Box::new(post))).await
    else {
        panic!()
    };
    wait_ok(&op).await;
    let img = engine.image_get(&fp).await.unwrap();
    assert!(img.cached);
    assert_eq!(img.properties.get("os").map(String::as_str), Some("Testos"));
    assert_eq!(
        testing::instance_row(&engine, "c1").await.unwrap().config["volatile.base_image"],
        fp
    );

    // A server without the files: the cached image serves the next launch.
    let (empty, _) = tree(&server, &meta, &rootfs, &rootfs, false).await;
    let mut post = testing::create_request("c2", "", &[]);
    post.source = serde_json::from_value(source(empty, &server.cert_pem, "test/1")).unwrap();
    let Ok(Reply::Operation(op)) = engine.handle(Request::InstanceCreate(Box::new(post))).await
    else {
        panic!()
    };
    wait_ok(&op).await;

    // An unknown alias is a clear error.
    let mut post = testing::create_request("c3", "", &[]);
    post.source = serde_json::from_value(source(addr, &server.cert_pem, "nope/1")).unwrap();
    let Ok(Reply::Operation(op)) = engine.handle(Request::InstanceCreate(Box::new(post))).await
    else {
        panic!()
    };
    assert!(wait_err(&op).await.contains("not found"));
    assert!(testing::instance_row(&engine, "c3").await.is_err());
}

#[tokio::test]
async fn a_unified_simplestreams_image_is_copied_with_its_alias() {
    let host = TestHost::new();
    let engine = host.open().await;
    let unified = std::fs::read(image::build(host.path(), &image::Spec::default())).unwrap();
    let fp = sha(&unified);
    let server = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["ss".into()]).unwrap();
    let products = json!({"products": {"u:1": {
        "aliases": "u/1", "arch": kante_images::streams::host_arch(), "os": "U",
        "versions": {"1": {"items": {"lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz",
            "path": "u.tar.gz", "sha256": fp, "size": unified.len()}}}}
    }}});
    let index = json!({"index": {"i": {"datatype": "image-downloads", "path": "p.json"}}});
    let mut routes = Routes::new();
    let doc = |v: Value| ("application/json", v.to_string().into_bytes(), None);
    routes.insert("/sub/streams/v1/index.json".into(), doc(index));
    routes.insert("/sub/p.json".into(), doc(products));
    routes.insert("/sub/u.tar.gz".into(), file(unified));
    let addr = serve(&server, routes).await;
    let mut src = source(addr, &server.cert_pem, "u/1");
    src["server"] = json!(format!("https://{addr}/sub/"));
    let req = Request::ImageCreate(ImagesPost {
        aliases: alias("mine"),
        public: true,
        source: Some(src),
        ..Default::default()
    });
    let done = wait_ok(&start(&engine, req).await).await;
    assert_eq!(done.metadata["fingerprint"], fp);
    let img = engine.image_get(&fp).await.unwrap();
    assert!(img.public && !img.cached);
    assert_eq!(engine.alias_get("mine", true).await.unwrap().target, fp);
}
