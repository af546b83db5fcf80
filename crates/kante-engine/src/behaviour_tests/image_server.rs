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
    };
    let export = |fp: &str| Request::ImageExport {
        fingerprint: fp.into(),
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
