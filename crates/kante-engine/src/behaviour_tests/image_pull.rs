//! Copying an image from another server (`POST /1.0/images`, source type
//! `image`, protocol `lxd`) against a small HTTPS image server run by the
//! test: the copy is stored with the source's fingerprint, its aliases and
//! `auto_update`; a wrong certificate, an unreachable server, a body that
//! does not match its fingerprint or stops short fail the operation and
//! store nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kante_api::image::{ImageAliasRef, ImagesPost};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::front::{Reply, Request};
use crate::testing::{image, wait_err, wait_ok, TestHost};
use crate::Engine;

/// What the fake server answers per path: (content type, body, and a
/// Content-Length to claim instead of the body's own).
pub(super) type Routes = HashMap<String, (&'static str, Vec<u8>, Option<usize>)>;

/// Serves `routes` over TLS with `identity`; returns its address.
pub(super) async fn serve(identity: &kante_tls::KeyPair, routes: Routes) -> SocketAddr {
    let cfg = Arc::new(kante_tls::server_config(identity).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (cfg, routes) = (cfg.clone(), routes.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head);
                // The client escapes an alias's slashes, as LXD's does.
                let path = text.split(' ').nth(1).unwrap_or("").replace("%2F", "/");
                let (status, ctype, body, claimed) = match routes.get(&path) {
                    Some((t, b, c)) => ("200 OK", *t, b.clone(), *c),
                    None => (
                        "404 Not Found",
                        "application/json",
                        br#"{"type":"error","error":"not found","error_code":404}"#.to_vec(),
                        None,
                    ),
                };
                let len = claimed.unwrap_or(body.len());
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn sync(metadata: serde_json::Value) -> (&'static str, Vec<u8>, Option<usize>) {
    let doc =
        json!({"type": "sync", "status": "Success", "status_code": 200, "metadata": metadata});
    ("application/json", doc.to_string().into_bytes(), None)
}

/// The routes of a server holding `file` (claimed to be `fp`) under `alias`.
fn routes(alias: &str, fp: &str, file: Vec<u8>, claimed: Option<usize>) -> Routes {
    let mut r = Routes::new();
    r.insert(
        format!("/1.0/images/aliases/{alias}"),
        sync(json!({"name": alias, "target": fp})),
    );
    r.insert(
        format!("/1.0/images/{fp}"),
        sync(
            json!({"fingerprint": fp, "size": file.len(), "filename": "src.tar.gz",
            "properties": {"os": "testos"}, "public": true}),
        ),
    );
    r.insert(
        format!("/1.0/images/{fp}/export"),
        ("application/octet-stream", file, claimed),
    );
    r
}

fn pull(addr: SocketAddr, pem: &str, alias: &str, new_alias: &str, auto: bool) -> Request {
    Request::ImageCreate(ImagesPost {
        aliases: vec![ImageAliasRef {
            name: new_alias.into(),
            description: String::new(),
        }],
        auto_update: auto,
        source: Some(json!({"type": "image", "mode": "pull", "protocol": "lxd",
            "server": format!("https://{addr}"), "certificate": pem, "alias": alias})),
        ..Default::default()
    })
}

pub(super) async fn start(engine: &Engine, req: Request) -> Arc<crate::Op> {
    match engine.handle(req).await.unwrap() {
        Reply::Operation(op) => op,
        other => panic!("expected an operation, got {}", other.kind()),
    }
}

/// The image store holds no image file (only its own working dirs).
pub(super) fn store_is_empty(engine: &Engine) -> bool {
    std::fs::read_dir(engine.paths.images())
        .map(|d| {
            d.flatten()
                .all(|e| e.file_name().to_string_lossy().starts_with('.'))
        })
        .unwrap_or(true)
}

#[tokio::test]
async fn an_image_is_copied_from_another_server_verified_and_recorded() {
    let host = TestHost::new();
    let engine = host.open().await;
    let tarball = image::build(host.path(), &image::Spec::default());
    let file = std::fs::read(&tarball).unwrap();
    let fp = kante_tls::fingerprint(&file);
    let server = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["src".into()]).unwrap();
    let addr = serve(&server, routes("debian/12", &fp, file.clone(), None)).await;

    let mut rx = engine.events.subscribe();
    let op = start(
        &engine,
        pull(addr, &server.cert_pem, "debian/12", "copied", true),
    )
    .await;
    let done = wait_ok(&op).await;
    assert_eq!(done.metadata["fingerprint"], fp);
    // The download's progress went out in the operation's events, as lxc
    // shows it, up to the whole file.
    let mut progress = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Some(p) = e.metadata["metadata"]["download_progress"].as_str() {
            progress.push(p.to_string());
        }
    }
    assert!(
        progress
            .last()
            .is_some_and(|p| p.starts_with("rootfs: 100% (")),
        "{progress:?}"
    );
    let img = engine.image_get(&fp).await.unwrap();
    assert!(img.auto_update);
    assert!(!img.public);
    assert_eq!(img.properties.get("os").map(String::as_str), Some("testos"));
    assert_eq!(engine.alias_get("copied", true).await.unwrap().target, fp);
    // A second copy of the same image only adds its alias.
    let op = start(
        &engine,
        pull(addr, &server.cert_pem, "debian/12", "again", false),
    )
    .await;
    wait_ok(&op).await;
    assert_eq!(engine.alias_get("again", true).await.unwrap().target, fp);
    // An instance is made from the copy.
    host.create(&engine, "c1", "copied", &[]).await;
}

#[tokio::test]
async fn a_bad_source_fails_the_copy_and_stores_nothing() {
    let host = TestHost::new();
    let engine = host.open().await;
    let tarball = image::build(host.path(), &image::Spec::default());
    let file = std::fs::read(&tarball).unwrap();
    let fp = kante_tls::fingerprint(&file);
    let server = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["src".into()]).unwrap();
    let other = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["other".into()]).unwrap();
    let good = serve(&server, routes("a", &fp, file.clone(), None)).await;

    // The wrong certificate: refused with both fingerprints.
    let op = start(&engine, pull(good, &other.cert_pem, "a", "x", false)).await;
    let err = wait_err(&op).await;
    assert!(
        err.contains(&server.fingerprint()) && err.contains(&other.fingerprint()),
        "{err}"
    );

    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let op = start(&engine, pull(closed, &server.cert_pem, "a", "x", false)).await;
    assert!(wait_err(&op).await.contains("Cannot reach"));

    // A body that is not the image its fingerprint names.
    let mut corrupt = file.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let bad = serve(&server, routes("a", &fp, corrupt, None)).await;
    let op = start(&engine, pull(bad, &server.cert_pem, "a", "x", false)).await;
    wait_err(&op).await;

    // A body that stops short of its length.
    let short = serve(
        &server,
        routes("a", &fp, file[..file.len() / 2].to_vec(), Some(file.len())),
    )
    .await;
    let op = start(&engine, pull(short, &server.cert_pem, "a", "x", false)).await;
    wait_err(&op).await;

    // An image the server does not show (private, or missing).
    let op = start(&engine, pull(good, &server.cert_pem, "private", "x", false)).await;
    assert!(wait_err(&op).await.contains("not found"));

    // An answer too large to be a record (2 MiB for an alias), refused
    // while it is read.
    let mut huge = routes("a", &fp, file.clone(), None);
    huge.insert(
        "/1.0/images/aliases/a".into(),
        sync(json!({"name": "a", "target": fp, "pad": "x".repeat(2 << 20)})),
    );
    let huge = serve(&server, huge).await;
    let op = start(&engine, pull(huge, &server.cert_pem, "a", "x", false)).await;
    let err = wait_err(&op).await;
    assert!(err.contains("too large"), "{err}");

    // Nothing was stored or recorded, no alias made.
    assert!(engine.image_get(&fp).await.is_err());
    assert!(engine.alias_get("x", true).await.is_err());
    assert!(store_is_empty(&engine), "the store kept a partial image");
}

#[tokio::test]
async fn a_split_image_is_copied_from_its_multipart_export() {
    let host = TestHost::new();
    let engine = host.open().await;
    let (meta, rootfs) = image::build_split(host.path(), &image::Spec::default());
    let (meta, rootfs) = (std::fs::read(meta).unwrap(), std::fs::read(rootfs).unwrap());
    let fp = kante_tls::fingerprint(&[meta.as_slice(), rootfs.as_slice()].concat());
    let mut body = Vec::new();
    for (name, data) in [("metadata", &meta), ("rootfs", &rootfs)] {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.tar\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    // Cut short: refused, nothing kept.
    let mut cut = routes("split", &fp, Vec::new(), None);
    let half = body[..body.len() / 2].to_vec();
    cut.insert(
        format!("/1.0/images/{fp}/export"),
        (MULTIPART, half, Some(body.len())),
    );
    let server0 = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["s0".into()]).unwrap();
    let short = serve(&server0, cut).await;
    let op = start(&engine, pull(short, &server0.cert_pem, "split", "s", false)).await;
    wait_err(&op).await;
    assert!(engine.image_get(&fp).await.is_err());
    assert!(store_is_empty(&engine), "the store kept a partial image");

    let mut r = routes("split", &fp, Vec::new(), None);
    r.insert(format!("/1.0/images/{fp}/export"), (MULTIPART, body, None));
    let server = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["src".into()]).unwrap();
    let addr = serve(&server, r).await;
    let op = start(&engine, pull(addr, &server.cert_pem, "split", "s", false)).await;
    assert_eq!(wait_ok(&op).await.metadata["fingerprint"], fp);
    assert!(engine.paths.images().join(format!("{fp}.rootfs")).is_file());
    host.create(&engine, "c1", "s", &[]).await;
}

const BOUNDARY: &str = "kante-test-boundary";
const MULTIPART: &str = "multipart/form-data; boundary=kante-test-boundary";
