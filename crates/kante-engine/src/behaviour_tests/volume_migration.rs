//! Custom volumes migrated between two engines (`migration/volume.rs`),
//! relayed in the test as lxc relays them: the volume arrives with its
//! snapshot, file and config (`volume_only` leaves the snapshot; a
//! snapshot as the source arrives as a volume of its content); the
//! refusals come before any operation (a taken name, a missing pool or
//! source); a source that aborts mid-stream, or a stream of an instance
//! volume, leaves no record and no volume on the target, and the same
//! name is free again; an LXD peer (no Kante field) is refused.

use std::sync::Arc;

use kante_api::storage::{
    StorageVolumePost, StorageVolumesPost, VolumeSnapshotsPost, VolumeSource,
};
use prost::Message;

use crate::error::ErrorKind;
use crate::migration::proto::{MigrationControl, MigrationHeader, RsyncFeatures};
use crate::operations::Op;
use crate::testing::{self, TestHost};
use crate::ws::{WsConn, WsMsg};
use crate::Engine;

fn volume(engine: &Engine, name: &str) -> std::path::PathBuf {
    engine.paths.pool("default").join("custom").join(name)
}

/// A custom volume `v1` (config `user.note=hi`) with file `f` ("old" in
/// snapshot `s0`, "new" now).
async fn source(engine: &Engine) {
    let mut post = StorageVolumesPost {
        name: "v1".into(),
        kind: "custom".into(),
        ..Default::default()
    };
    post.config.insert("user.note".into(), "hi".into());
    engine.volume_create("default", post).await.unwrap();
    std::fs::write(volume(engine, "v1").join("f"), "old").unwrap();
    let snap = VolumeSnapshotsPost { name: "s0".into() };
    let op = engine
        .volume_snapshot_create("default", "v1", snap)
        .unwrap();
    testing::wait_ok(&op).await;
    std::fs::write(volume(engine, "v1").join("f"), "new").unwrap();
}

/// What lxc sends the target in push and relay modes.
fn push(name: &str) -> StorageVolumesPost {
    let mut post = StorageVolumesPost {
        name: name.into(),
        kind: "custom".into(),
        source: VolumeSource {
            kind: "migration".into(),
            mode: "push".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    post.config.insert("user.note".into(), "hi".into());
    post
}

fn offer_of(name: &str, volume_only: bool) -> StorageVolumePost {
    StorageVolumePost {
        name: name.into(),
        migration: true,
        volume_only,
        ..Default::default()
    }
}

/// `name` (`VOLUME` or `VOLUME/SNAPSHOT`) of `src`'s default pool
/// relayed into `dst` as `post` asks; returns the source's operation once
/// the target's is done.
async fn relayed(
    src: &Engine,
    name: &str,
    volume_only: bool,
    dst: &Engine,
    post: StorageVolumesPost,
) -> Arc<Op> {
    let src_op = src
        .volume_migration_source("default", name, offer_of(name, volume_only))
        .await
        .unwrap();
    let dst_op = dst.volume_migration_create("default", post).await.unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    src_op
}

fn connect(op: &Op, channel: &str) -> WsConn {
    let secret = op.snapshot().metadata[channel]
        .as_str()
        .expect("a string secret")
        .to_string();
    let slot = op.claim_socket(&secret).unwrap();
    let (engine_side, test_side) = WsConn::pair();
    slot.send(engine_side).ok().unwrap();
    test_side
}

fn join(a: WsConn, b: WsConn) {
    let (mut a_in, a_out) = (a.incoming, a.outgoing);
    let (mut b_in, b_out) = (b.incoming, b.outgoing);
    tokio::spawn(async move {
        while let Some(m) = a_in.recv().await {
            if b_out.send(m).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(m) = b_in.recv().await {
            if a_out.send(m).await.is_err() {
                break;
            }
        }
    });
}

fn relay(src_op: &Op, dst_op: &Op) {
    for c in ["control", "fs"] {
        join(connect(src_op, c), connect(dst_op, c));
    }
}

/// Nothing of volume `name` on `engine`: no record, no volume, no
/// snapshots, no staging leftovers.
async fn nothing_of(engine: &Engine, name: &str) {
    assert!(engine
        .node
        .volume_get("default", name)
        .await
        .unwrap()
        .is_none());
    assert!(engine.node.volumes_pending().await.unwrap().is_empty());
    let pool = engine.paths.pool("default");
    assert!(!pool.join("custom").join(name).exists());
    assert!(!pool.join("custom-snapshots").join(name).exists());
    for sub in ["custom", "custom-snapshots"] {
        let hidden: Vec<String> = std::fs::read_dir(pool.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{sub}: {hidden:?}");
    }
}

#[tokio::test]
async fn a_relayed_volume_arrives_with_its_snapshot_file_and_config() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = h1.open().await;
    source(&src).await;
    let dst = h2.open().await;
    testing::wait_ok(&relayed(&src, "v1", false, &dst, push("v2")).await).await;
    assert_eq!(
        std::fs::read_to_string(volume(&dst, "v2").join("f")).unwrap(),
        "new"
    );
    let snap = dst.paths.pool("default").join("custom-snapshots/v2/s0/f");
    assert_eq!(std::fs::read_to_string(snap).unwrap(), "old");
    let v = dst.volume_get("default", "custom", "v2").await.unwrap();
    assert_eq!(v.config["user.note"], "hi");
    assert!(dst.node.volumes_pending().await.unwrap().is_empty());
    // The source is as it was.
    assert_eq!(
        std::fs::read_to_string(volume(&src, "v1").join("f")).unwrap(),
        "new"
    );

    // volume_only: no snapshots.
    relayed(&src, "v1", true, &dst, push("v3")).await;
    assert!(!dst
        .paths
        .pool("default")
        .join("custom-snapshots/v3")
        .exists());

    // A snapshot as the source: its content, as a volume without
    // snapshots, with the volume's config; a missing snapshot is a 404.
    let mut from_snap = push("v4");
    from_snap.config.clear();
    testing::wait_ok(&relayed(&src, "v1/s0", false, &dst, from_snap).await).await;
    assert_eq!(
        std::fs::read_to_string(volume(&dst, "v4").join("f")).unwrap(),
        "old"
    );
    assert!(!dst
        .paths
        .pool("default")
        .join("custom-snapshots/v4")
        .exists());
    let v = dst.volume_get("default", "custom", "v4").await.unwrap();
    assert_eq!(v.config["user.note"], "hi", "the stream's config");
    let e = src
        .volume_migration_source("default", "v1/nope", offer_of("v1/nope", false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // Refused before any operation exists.
    let e = dst
        .volume_migration_create("default", push("v2"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = dst
        .volume_migration_create("nopool", push("v9"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = src
        .volume_migration_source("default", "nope", offer_of("nope", false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn an_aborted_or_foreign_stream_leaves_nothing_and_the_name_is_free() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = h1.open().await;
    source(&src).await;
    let dst = h2.open().await;
    let offer = |types: &[&str]| {
        let h = MigrationHeader {
            kante_types: types.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        WsMsg::Binary(h.encode_to_vec())
    };

    // Aborted by the source after the answer.
    let op = dst
        .volume_migration_create("default", push("v2"))
        .await
        .unwrap();
    let (mut control, _fs) = (connect(&op, "control"), connect(&op, "fs"));
    control.outgoing.send(offer(&["tar"])).await.unwrap();
    let _answer = control.incoming.recv().await.unwrap();
    let abort = MigrationControl::failed("disk on fire").encode_to_vec();
    control.outgoing.send(WsMsg::Binary(abort)).await.unwrap();
    let err = testing::wait_err(&op).await;
    assert!(err.contains("disk on fire"), "{err}");
    nothing_of(&dst, "v2").await;

    // An instance volume's stream where a custom volume is expected.
    let op = dst
        .volume_migration_create("default", push("v2"))
        .await
        .unwrap();
    let (mut control, fs) = (connect(&op, "control"), connect(&op, "fs"));
    control.outgoing.send(offer(&["tar"])).await.unwrap();
    let _answer = control.incoming.recv().await.unwrap();
    let mut stream = Vec::new();
    let header = kante_storage::StreamHeader {
        version: kante_storage::stream::STREAM_VERSION,
        migration_type: kante_storage::MigrationType::Tar,
        kind: kante_storage::VolumeKind::Container,
        name: "c1".into(),
        snapshots: Vec::new(),
        size: None,
        meta: None,
        base: None,
    };
    kante_storage::stream::write_header(&mut stream, &header).unwrap();
    {
        // An empty tree: a tar archive's end, two zero blocks.
        let mut w = kante_storage::stream::SectionWriter::new(&mut stream);
        std::io::Write::write_all(&mut w, &[0u8; 1024]).unwrap();
        w.finish().unwrap();
    }
    kante_storage::stream::write_trailer(&mut stream).unwrap();
    fs.outgoing.send(WsMsg::Binary(stream)).await.unwrap();
    let err = testing::wait_err(&op).await;
    assert!(!err.is_empty());
    nothing_of(&dst, "v2").await;
    assert!(!dst.paths.pool("default").join("containers/v2").exists());

    // An LXD source (no Kante field) is refused.
    let op = dst
        .volume_migration_create("default", push("v2"))
        .await
        .unwrap();
    let (control, _fs) = (connect(&op, "control"), connect(&op, "fs"));
    // LXD 5.0's offer: rsync with its features, no Kante field.
    let lxd = MigrationHeader {
        criu: Some(crate::migration::proto::CRIU_NONE),
        rsync_features: Some(RsyncFeatures::kante()),
        index_header_version: Some(1),
        ..Default::default()
    };
    control
        .outgoing
        .send(WsMsg::Binary(lxd.encode_to_vec()))
        .await
        .unwrap();
    let err = testing::wait_err(&op).await;
    assert!(err.contains("Kante servers only"), "{err}");
    nothing_of(&dst, "v2").await;

    // The same name, from the real source: it arrives.
    let src_op = src
        .volume_migration_source("default", "v1", offer_of("v1", false))
        .await
        .unwrap();
    let dst_op = dst
        .volume_migration_create("default", push("v2"))
        .await
        .unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    assert!(volume(&dst, "v2").join("f").exists());
}
