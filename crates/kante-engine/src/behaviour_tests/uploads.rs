//! Upload bodies read once, through the front door: a backup import
//! unpacks into the pool's staging directory and an image goes into the
//! store while its body still arrives (nothing spooled, no reply before
//! the body's end), a backup whose index is not first is
//! spooled and imported all the same, and a body that breaks half-way
//! (the client went away) leaves nothing, for backups and images alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use kante_api::backup::InstanceBackupsPost;
use kante_storage::VolumeKind;
use tokio::sync::mpsc;

use crate::front::{ByteStream, ImageUploadInfo, Parts, Reply, Request, UploadBody};
use crate::testing::{self, image, TestHost};
use crate::Engine;

/// A body whose chunks the test sends, one at a time; it ends when the
/// sender goes.
fn controlled() -> (mpsc::Sender<std::io::Result<Bytes>>, ByteStream) {
    let (tx, rx) = mpsc::channel(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Box::pin(stream))
}

fn broken() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")
}

/// A body of `bytes` that breaks after its first half.
fn breaking(bytes: Vec<u8>) -> ByteStream {
    let half = Bytes::from(bytes).slice(..);
    let first = half.slice(..half.len() / 2);
    Box::pin(futures_util::stream::iter([Ok(first), Err(broken())]))
}

/// Pseudo-random (incompressible) bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// An uncompressed backup of `c1` (made with `big` bytes of noise at the
/// end of its rootfs), as bytes.
async fn backup_of_c1(host: &TestHost, engine: &Engine, big: usize) -> Vec<u8> {
    host.import_image(engine, "img").await;
    host.create(engine, "c1", "img", &[]).await;
    let rootfs = volume(engine, "c1").join("rootfs");
    std::fs::write(rootfs.join("zz-big"), noise(big)).unwrap();
    let post = InstanceBackupsPost {
        name: "b0".into(),
        instance_only: true,
        compression_algorithm: "none".into(),
        ..Default::default()
    };
    testing::wait_ok(&engine.backup_create("c1", post).await.unwrap()).await;
    std::fs::read(engine.paths.root.join("backups/instances/c1/b0")).unwrap()
}

fn volume(engine: &Engine, name: &str) -> PathBuf {
    engine
        .pool("default")
        .unwrap()
        .volume_path(VolumeKind::Container, name)
}

/// Hidden entries (staging directories) beside the container volumes.
fn staging_dirs(engine: &Engine) -> Vec<PathBuf> {
    let parent = volume(engine, "x").parent().unwrap().to_path_buf();
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn import(body: ByteStream, name: &str) -> Request {
    Request::InstanceImport {
        body,
        name: Some(name.into()),
        pool: None,
    }
}

/// The error `req` fails with.
async fn refused(engine: &Engine, req: Request) -> crate::EngineError {
    match engine.handle(req).await {
        Ok(r) => panic!("expected a refusal, got a {} reply", r.kind()),
        Err(e) => e,
    }
}

/// Nothing of an import named `name`: no record, no volume, no staging
/// directory, no spooled upload.
async fn nothing_left(engine: &Engine, name: &str) {
    assert!(engine.node.instance_get(name).await.unwrap().is_none());
    assert!(!volume(engine, name).exists(), "volume left");
    assert!(
        staging_dirs(engine).is_empty(),
        "{:?}",
        staging_dirs(engine)
    );
    let uploads = files_in(&engine.backup_upload_dir().unwrap());
    assert!(uploads.is_empty(), "{uploads:?}");
}

#[tokio::test]
async fn a_backup_unpacks_while_its_body_still_arrives() {
    let host = TestHost::new();
    let engine = host.open().await;
    let tar = Bytes::from(backup_of_c1(&host, &engine, 2 << 20).await);
    let (tx, body) = controlled();
    let e2 = engine.clone();
    let reply = tokio::spawn(async move { e2.handle(import(body, "c2")).await });
    tx.send(Ok(tar.slice(..tar.len() / 2))).await.unwrap();

    // Half the body is in: the staging tree already holds the first files
    // (all three waited for: tar makes the rootfs directory after
    // backup.yaml, and a loaded machine sees the gap between them).
    let staged = async {
        loop {
            let found = staging_dirs(&engine).into_iter().find(|d| {
                d.join("backup/index.yaml").is_file()
                    && d.join("backup/container/backup.yaml").is_file()
                    && d.join("backup/container/rootfs").is_dir()
            });
            if found.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), staged)
        .await
        .expect("nothing unpacked from the first half");
    assert!(
        files_in(&engine.backup_upload_dir().unwrap()).is_empty(),
        "spooled"
    );
    assert!(!reply.is_finished(), "replied before the whole body");
    assert!(engine.node.instance_get("c2").await.unwrap().is_none());

    tx.send(Ok(tar.slice(tar.len() / 2..))).await.unwrap();
    drop(tx);
    let op = reply.await.unwrap().unwrap().into_operation().unwrap();
    testing::wait_ok(&op).await;
    let big = std::fs::read(volume(&engine, "c2").join("rootfs/zz-big")).unwrap();
    assert_eq!(big, noise(2 << 20));
    assert!(engine.node.instance_get("c2").await.unwrap().is_some());
    assert!(staging_dirs(&engine).is_empty());
}

#[tokio::test]
async fn a_backup_whose_index_is_not_first_is_spooled_and_imported() {
    let host = TestHost::new();
    let engine = host.open().await;
    let tar = backup_of_c1(&host, &engine, 4096).await;
    // The same backup, its index last.
    let work = host.path().join("reorder");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("in.tar"), &tar).unwrap();
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("tar")
            .current_dir(&work)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    sh(&["-xf", "in.tar"]);
    sh(&[
        "-cf",
        "out.tar",
        "--numeric-owner",
        "backup/container",
        "backup/index.yaml",
    ]);
    let listing = String::from_utf8(sh(&["-tf", "out.tar"])).unwrap();
    assert!(
        listing.trim_end().ends_with("backup/index.yaml"),
        "{listing}"
    );
    let reordered = std::fs::read(work.join("out.tar")).unwrap();

    let body: ByteStream = Box::pin(futures_util::stream::iter(
        reordered
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    let op = engine
        .handle(import(body, "c3"))
        .await
        .unwrap()
        .into_operation()
        .unwrap();
    testing::wait_ok(&op).await;
    assert!(engine.node.instance_get("c3").await.unwrap().is_some());
    assert!(volume(&engine, "c3").join("rootfs/zz-big").is_file());
    // The spool went with the import.
    assert!(files_in(&engine.backup_upload_dir().unwrap()).is_empty());
    assert!(staging_dirs(&engine).is_empty());
}

#[tokio::test]
async fn a_backup_body_broken_half_way_leaves_nothing() {
    let host = TestHost::new();
    let engine = host.open().await;
    let tar = backup_of_c1(&host, &engine, 1 << 20).await;
    let e = refused(&engine, import(breaking(tar), "c4")).await;
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("Reading the upload"), "{e}");
    nothing_left(&engine, "c4").await;
    // The index had arrived: the operation started, and is over, failed.
    let ops: Vec<_> = engine
        .ops
        .list()
        .into_iter()
        .filter(|o| o.description == "Creating instance from backup")
        .collect();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].status, "Failure", "{}", ops[0].err);
}

/// What the images directory holds besides the (empty) upload directory.
fn images_dir_files(engine: &Engine) -> Vec<PathBuf> {
    let uploads = engine.upload_dir().unwrap();
    let mut left = files_in(&uploads);
    left.extend(
        files_in(&engine.paths.images())
            .into_iter()
            .filter(|p| *p != uploads),
    );
    left
}

async fn no_images(engine: &Engine) {
    match engine.handle(Request::ImageList).await.unwrap() {
        Reply::Images(v) => assert!(v.is_empty(), "{v:?}"),
        other => panic!("expected images, got {}", other.kind()),
    }
    let left = images_dir_files(engine);
    assert!(left.is_empty(), "left in the images directory: {left:?}");
}

#[tokio::test]
async fn an_image_body_broken_half_way_leaves_nothing() {
    let host = TestHost::new();
    let engine = host.open().await;
    let spec = image::Spec {
        filler: 1 << 20,
        ..Default::default()
    };
    let tarball = std::fs::read(image::build(host.path(), &spec)).unwrap();
    let req = Request::ImageUpload {
        info: ImageUploadInfo::default(),
        body: UploadBody::Single(breaking(tarball)),
    };
    let e = refused(&engine, req).await;
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("Reading the upload"), "{e}");
    no_images(&engine).await;
}

/// A split upload whose rootfs part breaks half-way.
struct BrokenSplit(Vec<(String, ByteStream)>);

#[async_trait::async_trait]
impl Parts for BrokenSplit {
    async fn next_part(&mut self) -> crate::Result<Option<(String, ByteStream)>> {
        Ok((!self.0.is_empty()).then(|| self.0.remove(0)))
    }
}

#[tokio::test]
async fn a_split_image_whose_rootfs_breaks_half_way_leaves_nothing() {
    let host = TestHost::new();
    let engine = host.open().await;
    let spec = image::Spec {
        filler: 1 << 20,
        ..Default::default()
    };
    let (meta, rootfs) = image::build_split(host.path(), &spec);
    let (meta, rootfs) = (std::fs::read(meta).unwrap(), std::fs::read(rootfs).unwrap());
    let whole = |b: Vec<u8>| -> ByteStream {
        Box::pin(futures_util::stream::once(
            async move { Ok(Bytes::from(b)) },
        ))
    };
    let parts = BrokenSplit(vec![
        ("metadata".into(), whole(meta.clone())),
        ("rootfs".into(), breaking(rootfs.clone())),
    ]);
    let req = Request::ImageUpload {
        info: ImageUploadInfo::default(),
        body: UploadBody::Parts(Box::new(parts)),
    };
    let e = refused(&engine, req).await;
    assert_eq!(e.status(), 400);
    no_images(&engine).await;

    // Whole, the same parts make one split image, stored in one pass.
    let parts = BrokenSplit(vec![
        ("metadata".into(), whole(meta)),
        ("rootfs".into(), whole(rootfs)),
    ]);
    let req = Request::ImageUpload {
        info: ImageUploadInfo::default(),
        body: UploadBody::Parts(Box::new(parts)),
    };
    let op = engine.handle(req).await.unwrap().into_operation().unwrap();
    let fp = testing::wait_ok(&op).await.metadata["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(engine.paths.images().join(format!("{fp}.rootfs")).is_file());
    assert!(files_in(&engine.upload_dir().unwrap()).is_empty());
}

#[tokio::test]
async fn an_image_goes_into_the_store_while_its_body_still_arrives() {
    let host = TestHost::new();
    let engine = host.open().await;
    let spec = image::Spec {
        filler: 2 << 20,
        ..Default::default()
    };
    let tarball = Bytes::from(std::fs::read(image::build(host.path(), &spec)).unwrap());
    let (tx, body) = controlled();
    let e2 = engine.clone();
    let req = Request::ImageUpload {
        info: ImageUploadInfo::default(),
        body: UploadBody::Single(body),
    };
    let reply = tokio::spawn(async move { e2.handle(req).await });
    let half = tarball.len() / 2;
    tx.send(Ok(tarball.slice(..half))).await.unwrap();

    // Half the body is in: the store's temp file holds most of it (the
    // store writes through a buffer of its own), nothing is spooled.
    let uploads = engine.upload_dir().unwrap();
    let in_store = async {
        loop {
            let written: u64 = files_in(&engine.paths.images())
                .iter()
                .filter(|p| **p != uploads)
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            if written >= half as u64 / 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), in_store)
        .await
        .expect("the first half never reached the store");
    assert!(
        files_in(&engine.upload_dir().unwrap()).is_empty(),
        "spooled"
    );
    assert!(!reply.is_finished(), "replied before the whole body");

    tx.send(Ok(tarball.slice(half..))).await.unwrap();
    drop(tx);
    let op = reply.await.unwrap().unwrap().into_operation().unwrap();
    let fp = testing::wait_ok(&op).await.metadata["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    // Stored under its fingerprint, byte for byte, and nothing else.
    assert_eq!(
        std::fs::read(engine.paths.images().join(&fp)).unwrap(),
        tarball
    );
    assert_eq!(images_dir_files(&engine).len(), 1);
}

#[tokio::test]
async fn a_rootfs_part_before_its_metadata_is_spooled_and_stored_split() {
    let host = TestHost::new();
    let engine = host.open().await;
    let (meta, rootfs) = image::build_split(host.path(), &image::Spec::default());
    let (meta, rootfs) = (std::fs::read(meta).unwrap(), std::fs::read(rootfs).unwrap());
    let whole = |b: Vec<u8>| -> ByteStream {
        Box::pin(futures_util::stream::once(
            async move { Ok(Bytes::from(b)) },
        ))
    };
    let parts = BrokenSplit(vec![
        ("rootfs".into(), whole(rootfs.clone())),
        ("metadata".into(), whole(meta.clone())),
    ]);
    let req = Request::ImageUpload {
        info: ImageUploadInfo::default(),
        body: UploadBody::Parts(Box::new(parts)),
    };
    let op = engine.handle(req).await.unwrap().into_operation().unwrap();
    let fp = testing::wait_ok(&op).await.metadata["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let images = engine.paths.images();
    assert_eq!(std::fs::read(images.join(&fp)).unwrap(), meta);
    assert_eq!(
        std::fs::read(images.join(format!("{fp}.rootfs"))).unwrap(),
        rootfs
    );
    assert!(
        files_in(&engine.upload_dir().unwrap()).is_empty(),
        "spool left"
    );
}
