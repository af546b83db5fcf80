//! The image server: an untrusted caller sees the public images and the
//! aliases pointing at them, and may export them; a private image is "not
//! found" to it (404, never 403), and nothing that changes an image opens.

use std::net::SocketAddr;

use kante_api::image::ImagePut;

use crate::front::{Reply, Request};
use crate::remote::Caller;
use crate::testing::TestHost;
use crate::Engine;

fn stranger() -> Caller {
    Caller::remote(SocketAddr::from(([192, 0, 2, 7], 40000)), None)
}

async fn make_public(engine: &Engine, fp: &str) {
    let put = ImagePut {
        public: true,
        ..Default::default()
    };
    engine
        .handle(Request::ImageUpdate {
            fingerprint: fp.into(),
            put,
            merge: true,
        })
        .await
        .unwrap();
}

async fn status(engine: &Engine, req: Request) -> u16 {
    match engine.handle_from(&stranger(), req).await {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

#[tokio::test]
async fn untrusted_callers_see_public_images_only() {
    let host = TestHost::new();
    let engine = host.open().await;
    let private = host.import_image(&engine, "secret-one").await;
    // A second, different image, made public.
    let tarball = crate::testing::image::build(
        host.path(),
        &crate::testing::image::Spec {
            file_name: "public-one.tar.gz".into(),
            description: "public one".into(),
            ..Default::default()
        },
    );
    let public = crate::testing::import_tarball(&engine, &tarball, Some("shared")).await;
    assert_ne!(private, public);
    make_public(&engine, &public).await;

    let Reply::Images(list) = engine
        .handle_from(&stranger(), Request::ImageList)
        .await
        .unwrap()
    else {
        panic!("expected images");
    };
    let fps: Vec<_> = list.iter().map(|i| i.fingerprint.as_str()).collect();
    assert_eq!(fps, [public.as_str()]);
    let Reply::Aliases(aliases) = engine
        .handle_from(&stranger(), Request::AliasList)
        .await
        .unwrap()
    else {
        panic!("expected aliases");
    };
    let names: Vec<_> = aliases.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["shared"]);
    // The trusted caller still sees both.
    let Reply::Images(all) = engine.handle(Request::ImageList).await.unwrap() else {
        panic!("expected images");
    };
    assert_eq!(all.len(), 2);

    // The public image, its alias and its file are served.
    let Reply::Alias(a) = engine
        .handle_from(
            &stranger(),
            Request::AliasGet {
                name: "shared".into(),
            },
        )
        .await
        .unwrap()
    else {
        panic!("expected the alias");
    };
    assert_eq!(a.target, public);
    let get = |fp: &str| Request::ImageGet {
        fingerprint: fp.into(),
        secret: None,
    };
    let export = |fp: &str| Request::ImageExport {
        fingerprint: fp.into(),
        secret: None,
    };
    assert_eq!(status(&engine, get(&public)).await, 200);
    assert_eq!(status(&engine, export(&public)).await, 200);

    // The private one is not found, exactly as a missing one.
    assert_eq!(status(&engine, get(&private)).await, 404);
    assert_eq!(status(&engine, export(&private)).await, 404);
    assert_eq!(status(&engine, get(&"0".repeat(64))).await, 404);
    // A prefix is matched among the public images only.
    assert_eq!(status(&engine, get(&public[..12])).await, 200);
    assert_eq!(status(&engine, export(&public[..12])).await, 200);
    assert_eq!(status(&engine, get(&private[..12])).await, 404);
    assert_eq!(status(&engine, get("")).await, 404);
    let alias = |n: &str| Request::AliasGet { name: n.into() };
    assert_eq!(status(&engine, alias("secret-one")).await, 404);
    assert_eq!(status(&engine, alias("nothing-here")).await, 404);

    // Nothing that changes an image is open, public or not.
    let del = Request::ImageDelete {
        fingerprint: public.clone(),
    };
    assert_eq!(status(&engine, del).await, 403);
    let upd = Request::ImageUpdate {
        fingerprint: private.clone(),
        put: ImagePut {
            public: true,
            ..Default::default()
        },
        merge: true,
    };
    assert_eq!(status(&engine, upd).await, 403);
    assert!(!engine.image_get(&private).await.unwrap().public);
    assert_eq!(
        status(
            &engine,
            Request::AliasDelete {
                name: "shared".into()
            }
        )
        .await,
        403
    );
}

/// Issues a secret for `fp` as a trusted client does; its operation too.
async fn secret_for(engine: &Engine, fp: &str) -> (String, std::sync::Arc<crate::Op>) {
    let Reply::Operation(op) = engine
        .handle(Request::ImageSecret {
            fingerprint: fp.into(),
        })
        .await
        .unwrap()
    else {
        panic!("expected an operation");
    };
    let snap = op.snapshot();
    assert_eq!(snap.class, kante_api::operation::OperationClass::Token);
    assert_eq!(
        snap.resources["images"],
        [format!("/1.0/images/{fp}")],
        "the secret names its image"
    );
    let secret = snap.metadata["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    (secret, op)
}

#[tokio::test]
async fn a_private_image_opens_once_to_its_secret() {
    let host = TestHost::new();
    let engine = host.open().await;
    let private = host.import_image(&engine, "private-one").await;
    let tarball = crate::testing::image::build(
        host.path(),
        &crate::testing::image::Spec {
            file_name: "other.tar.gz".into(),
            description: "other private".into(),
            ..Default::default()
        },
    );
    let other = crate::testing::import_tarball(&engine, &tarball, None).await;
    let get = |fp: &str, s: &str| Request::ImageGet {
        fingerprint: fp.into(),
        secret: Some(s.into()),
    };
    let export = |fp: &str, s: &str| Request::ImageExport {
        fingerprint: fp.into(),
        secret: Some(s.into()),
    };
    // No secret can be asked for by a stranger, nor for a missing image.
    let ask = Request::ImageSecret {
        fingerprint: private.clone(),
    };
    assert_eq!(status(&engine, ask).await, 403);
    let missing = engine
        .handle(Request::ImageSecret {
            fingerprint: "0".repeat(64),
        })
        .await;
    assert_eq!(missing.err().map(|e| e.status()), Some(404));

    let (secret, op) = secret_for(&engine, &private).await;
    // A wrong secret, or the right one for another image, finds nothing.
    assert_eq!(status(&engine, get(&private, &"f".repeat(64))).await, 404);
    assert_eq!(status(&engine, get(&other, &secret)).await, 404);
    assert_eq!(status(&engine, export(&other, &secret)).await, 404);
    // The record may be read with it (a puller reads it before the files)
    // and stays readable until the download.
    assert_eq!(status(&engine, get(&private, &secret)).await, 200);
    assert_eq!(status(&engine, get(&private, &secret)).await, 200);
    assert_eq!(
        op.snapshot().status_code,
        103,
        "still running before the download"
    );
    // One download, then the secret is spent and its operation done.
    assert_eq!(status(&engine, export(&private, &secret)).await, 200);
    assert_eq!(status(&engine, export(&private, &secret)).await, 404);
    assert_eq!(status(&engine, get(&private, &secret)).await, 404);
    let done = op.wait(Some(std::time::Duration::from_secs(5))).await;
    assert_eq!(done.status_code, 200, "used: {done:?}");

    // A revoked secret (its operation cancelled) opens nothing.
    let (revoked, op) = secret_for(&engine, &other).await;
    engine
        .handle(Request::OperationCancel { id: op.id() })
        .await
        .unwrap();
    let done = op.wait(Some(std::time::Duration::from_secs(5))).await;
    assert_eq!(done.status_code, 400, "cancelled: {done:?}");
    assert_eq!(status(&engine, export(&other, &revoked)).await, 404);
    // The images themselves are unchanged and still private.
    assert!(!engine.image_get(&private).await.unwrap().public);
    assert!(!engine.image_get(&other).await.unwrap().public);
}

#[tokio::test]
async fn refreshing_an_uploaded_image_changes_nothing() {
    let host = TestHost::new();
    let engine = host.open().await;
    let fp = host.import_image(&engine, "uploaded").await;
    let Reply::Operation(op) = engine
        .handle(Request::ImageRefresh {
            fingerprint: fp[..12].into(),
        })
        .await
        .unwrap()
    else {
        panic!("expected an operation");
    };
    let done = op.wait(Some(std::time::Duration::from_secs(10))).await;
    assert_eq!(done.status_code, 200, "{done:?}");
    assert_eq!(done.metadata["refreshed"], false);
    assert_eq!(done.metadata["fingerprint"], fp.as_str());
    assert!(engine.image_get(&fp).await.is_ok());
}
