//! Migration between two engines (`migration/`), relayed in the test as lxc
//! relays it (both sides listen, the test joins their websockets): the
//! instance arrives with its snapshots and files; refusals happen before
//! any operation; a running source is frozen while it is read; a peer that aborts or cuts the stream leaves no record
//! and no volume on the target, and gives up only the name it took (what
//! the instance holds by its name stays its source's); an LXD source (no Kante field) is answered
//! on LXD's terms (rsync, no compression, no index frame).

use std::sync::Arc;

use crate::instance::snapshots::SnapshotsPost;
use kante_api::instance::{InstancePost, InstanceSource, InstancesPost};
use kante_store::ReservationKind;
use prost::Message;

use crate::migration::proto::{MigrationControl, MigrationHeader, RsyncFeatures};
use crate::operations::Op;
use crate::testing::{self, TestHost};
use crate::ws::{WsConn, WsMsg};
use crate::Engine;

fn rootfs(engine: &Engine, name: &str) -> std::path::PathBuf {
    engine
        .paths
        .pool("default")
        .join(format!("containers/{name}/rootfs"))
}

/// A source engine holding a stopped `c1` with snapshot `s0` and a file.
async fn source(host: &TestHost) -> Arc<Engine> {
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(&engine, "c1", "img", &[("user.note", "hi")])
        .await;
    let file = rootfs(&engine, "c1").join("root/f");
    std::fs::write(&file, "old").unwrap();
    let snap = SnapshotsPost {
        name: "s0".into(),
        ..Default::default()
    };
    testing::wait_ok(&engine.snapshot_create("c1", snap).await.unwrap()).await;
    std::fs::write(&file, "new").unwrap();
    engine
}

/// The receiving request lxc sends in push and relay modes.
async fn push_request(src: &Engine, name: &str) -> InstancesPost {
    let row = src.instance_row("c1").await.unwrap();
    let mut post = InstancesPost {
        name: name.into(),
        source: InstanceSource {
            kind: "migration".into(),
            mode: "push".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    post.put.config = row.config;
    post.put.devices = row.devices;
    post.put.profiles = Some(row.profiles);
    post
}

fn secret(op: &Op, channel: &str) -> String {
    op.snapshot().metadata[channel]
        .as_str()
        .expect("a string secret")
        .to_string()
}

/// Connects the test to one of `op`'s listening sockets.
fn connect(op: &Op, channel: &str) -> WsConn {
    let slot = op.claim_socket(&secret(op, channel)).unwrap();
    let (engine_side, test_side) = WsConn::pair();
    slot.send(engine_side).ok().unwrap();
    test_side
}

/// Pumps every message from `a` to `b` and back, as lxc's relay does.
fn join(a: WsConn, b: WsConn) {
    let WsConn {
        incoming: mut a_in,
        outgoing: a_out,
    } = a;
    let WsConn {
        incoming: mut b_in,
        outgoing: b_out,
    } = b;
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

fn migrate() -> InstancePost {
    InstancePost {
        migration: true,
        ..Default::default()
    }
}

/// Nothing of `name` on `engine`: no record, no volume, no snapshots.
async fn nothing_of(engine: &Engine, name: &str) {
    assert!(engine.node.instance_get(name).await.unwrap().is_none());
    assert!(engine.node.snapshot_list(name).await.unwrap().is_empty());
    let pool = engine.paths.pool("default");
    assert!(!pool.join("containers").join(name).exists());
    assert!(!pool.join("containers-snapshots").join(name).exists());
    let staging: Vec<String> = std::fs::read_dir(pool.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
}

#[tokio::test]
async fn a_relayed_migration_brings_the_instance_with_its_snapshots() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;
    let mut events = dst.events.subscribe();
    let src_op = src.migration_source("c1", None, migrate()).await.unwrap();
    let dst_op = dst
        .migration_create(push_request(&src, "c2").await)
        .await
        .unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    testing::wait_ok(&src_op).await;

    let row = dst.instance_row("c2").await.unwrap();
    assert_eq!(row.config["user.note"], "hi");
    assert_eq!(
        row.config["volatile.idmap.base"],
        dst.idmap.host_uid.to_string()
    );
    let snaps = dst.node.snapshot_list("c2").await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].name, "s0");
    assert_eq!(snaps[0].config["user.note"], "hi");
    assert!(
        !snaps[0].config.contains_key("volatile.idmap.next"),
        "{:?}",
        snaps[0].config
    );
    let src_snap = src.node.snapshot_get("c1", "s0").await.unwrap().unwrap();
    // This server's keys stayed behind.
    assert!(src_snap.config.contains_key("volatile.idmap.next"));
    assert_eq!(
        crate::util::parse_time(&snaps[0].created_at).timestamp(),
        crate::util::parse_time(&src_snap.created_at).timestamp()
    );
    assert_eq!(
        std::fs::read_to_string(rootfs(&dst, "c2").join("root/f")).unwrap(),
        "new"
    );
    let snap_file = dst
        .paths
        .pool("default")
        .join("containers-snapshots/c2/s0/rootfs/root/f");
    assert_eq!(std::fs::read_to_string(snap_file).unwrap(), "old");
    assert!(dst.node.instances_pending().await.unwrap().is_empty());
    let created = super::lifecycle_events(&mut events);
    assert!(
        created.contains(&("instance-created".into(), "/1.0/instances/c2".into())),
        "{created:?}"
    );
    // The source is untouched.
    assert_eq!(
        std::fs::read_to_string(rootfs(&src, "c1").join("root/f")).unwrap(),
        "new"
    );
    assert_eq!(src.node.snapshot_list("c1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn instance_only_leaves_the_snapshots_behind() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;
    let mut post = migrate();
    post.instance_only = true;
    let src_op = src.migration_source("c1", None, post).await.unwrap();
    let dst_op = dst
        .migration_create(push_request(&src, "c2").await)
        .await
        .unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    assert!(dst.node.snapshot_list("c2").await.unwrap().is_empty());
    assert!(rootfs(&dst, "c2").join("root/f").exists());
}

#[tokio::test]
async fn refusals_come_before_any_operation() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;
    h2.import_image(&dst, "img").await;
    h2.create(&dst, "taken", "img", &[]).await;
    h2.launch(&dst, "busy", "img").await;

    let status = |e: crate::EngineError| (e.status(), e.to_string());
    let ops_before = dst.ops.list().len();
    // The target: a name in use, a missing pool or profile, live, refresh,
    // an unusable peer.
    let e = dst
        .migration_create(push_request(&src, "taken").await)
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 409);
    let mut req = push_request(&src, "c2").await;
    req.put.devices.insert(
        "root".into(),
        [("type", "disk"), ("path", "/"), ("pool", "nosuch")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let (code, msg) = status(dst.migration_create(req).await.unwrap_err());
    assert!((400..500).contains(&code), "{code} {msg}");
    assert!(msg.contains("nosuch"), "{msg}");
    let mut req = push_request(&src, "c2").await;
    req.put.profiles = Some(vec!["nosuch".into()]);
    assert!((400..500).contains(&status(dst.migration_create(req).await.unwrap_err()).0));
    let mut req = push_request(&src, "c2").await;
    req.put.devices.insert(
        "eth0".into(),
        [("type", "nic"), ("network", "nosuchnet")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let (code, msg) = status(dst.migration_create(req).await.unwrap_err());
    assert!((400..500).contains(&code), "{code} {msg}");
    assert!(msg.contains("nosuchnet"), "{msg}");
    let mut req = push_request(&src, "c2").await;
    req.source.live = true;
    assert_eq!(status(dst.migration_create(req).await.unwrap_err()).0, 400);
    // A refresh of a copy that is not stopped.
    let mut req = push_request(&src, "busy").await;
    req.source.refresh = true;
    let (code, msg) = status(dst.migration_create(req).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(msg.contains("stop it"), "{msg}");
    let mut req = push_request(&src, "c2").await;
    req.source.mode = "pull".into();
    req.source.operation = "https://127.0.0.1:1/1.0/operations/x".into();
    req.source.certificate = "not a certificate".into();
    let (code, msg) = status(dst.migration_create(req).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(msg.contains("certificate"), "{msg}");
    assert_eq!(dst.ops.list().len(), ops_before, "an operation was started");
    nothing_of(&dst, "c2").await;

    // The source: live (CRIU).
    let mut post = migrate();
    post.live = true;
    let (code, msg) = status(src.migration_source("c1", None, post).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(msg.contains("Live migration"), "{msg}");
}

#[tokio::test]
async fn a_running_source_is_frozen_while_it_is_read_then_thawed() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;
    testing::start(&src, "c1").await;
    let mut events = src.events.subscribe();
    let src_op = src.migration_source("c1", None, migrate()).await.unwrap();
    let dst_op = dst
        .migration_create(push_request(&src, "c2").await)
        .await
        .unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    testing::wait_ok(&src_op).await;
    let seen: Vec<String> = super::lifecycle_events(&mut events)
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| a == "instance-paused" || a == "instance-resumed")
        .collect();
    assert_eq!(seen, ["instance-paused", "instance-resumed"]);
    assert_eq!(
        src.instance_status("c1"),
        kante_api::instance::InstanceStatus::Running
    );
    assert!(rootfs(&dst, "c2").join("root/f").exists());
    testing::stop(&src, "c1").await;
}

/// A target whose sockets the test drives as a (misbehaving) source.
async fn target_driven_by_test(dst: &Engine, src: &Engine) -> (Arc<Op>, WsConn, WsConn) {
    let op = dst
        .migration_create(push_request(src, "c2").await)
        .await
        .unwrap();
    let control = connect(&op, "control");
    let fs = connect(&op, "fs");
    (op, control, fs)
}

fn offer(types: &[&str]) -> WsMsg {
    WsMsg::Binary(
        MigrationHeader {
            fs: 0,
            criu: Some(2),
            kante_types: types.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

#[tokio::test]
async fn an_lxd_source_gets_an_rsync_answer_and_its_abort_leaves_nothing() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;
    let (op, mut control, _fs) = target_driven_by_test(&dst, &src).await;
    // LXD 5.0's offer for a stopped container on a dir pool: rsync with
    // every feature, an index header, no Kante field.
    let lxd_offer = MigrationHeader {
        fs: 0,
        rsync_features: Some(RsyncFeatures {
            xattrs: Some(true),
            delete: Some(true),
            compress: Some(true),
            bidirectional: Some(true),
        }),
        index_header_version: Some(1),
        ..Default::default()
    };
    control
        .outgoing
        .send(WsMsg::Binary(lxd_offer.encode_to_vec()))
        .await
        .unwrap();
    let Some(WsMsg::Binary(b)) = control.incoming.recv().await else {
        panic!("no answer");
    };
    let answer = MigrationHeader::decode(b.as_slice()).unwrap();
    // LXD's terms: rsync without compression, no index frame, no final
    // sync, and nothing of Kante's own stream.
    assert_eq!(answer.fs, 0);
    assert!(answer.kante_types.is_empty());
    assert_eq!(
        answer.rsync_features.unwrap().names(),
        ["xattrs", "delete", "bidirectional"]
    );
    assert_eq!(answer.index_header_version, Some(0));
    assert_eq!(answer.criu, None);
    // LXD fails mid-transfer: told on control, the target undoes it all.
    let abort = MigrationControl::failed("disk on fire").encode_to_vec();
    control.outgoing.send(WsMsg::Binary(abort)).await.unwrap();
    let err = testing::wait_err(&op).await;
    assert!(err.contains("disk on fire"), "{err}");
    nothing_of(&dst, "c2").await;
}

#[tokio::test]
async fn a_cut_or_aborted_stream_leaves_nothing_and_the_name_is_free_again() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;

    // Cut: the header of a stream, a little data, then the source goes.
    let (op, mut control, fs) = target_driven_by_test(&dst, &src).await;
    control.outgoing.send(offer(&["tar"])).await.unwrap();
    let Some(WsMsg::Binary(_answer)) = control.incoming.recv().await else {
        panic!("no answer");
    };
    let mut stream = kante_storage::stream::MAGIC.to_vec();
    let header = serde_json::json!({"version": 1, "type": "tar", "kind": "container",
        "name": "c1", "snapshots": []});
    let h = serde_json::to_vec(&header).unwrap();
    stream.extend((h.len() as u32).to_be_bytes());
    stream.extend(h);
    stream.extend(100u32.to_be_bytes());
    stream.extend([0u8; 50]);
    fs.outgoing.send(WsMsg::Binary(stream)).await.unwrap();
    drop(fs);
    drop(control);
    let err = testing::wait_err(&op).await;
    assert!(!err.is_empty());
    nothing_of(&dst, "c2").await;

    // Aborted by the source's MigrationControl. What the instance holds
    // by its name cluster-wide (an overlay address, an id block: the
    // source's, which still has it) stays; the name the target took goes.
    let (overlay, ids) = (ReservationKind::OverlayAddress, ReservationKind::IdBlock);
    let (hold, holder) = ("ov1/10.9.0.7", "c2/00:16:3e:00:00:07");
    dst.shared.reserve(overlay, hold, holder).await.unwrap();
    dst.shared.reserve(ids, "1065536", "c2").await.unwrap();
    let (op, mut control, _fs) = target_driven_by_test(&dst, &src).await;
    control.outgoing.send(offer(&["tar"])).await.unwrap();
    let _answer = control.incoming.recv().await.unwrap();
    let abort = MigrationControl::failed("disk on fire").encode_to_vec();
    control.outgoing.send(WsMsg::Binary(abort)).await.unwrap();
    let err = testing::wait_err(&op).await;
    assert!(err.contains("disk on fire"), "{err}");
    nothing_of(&dst, "c2").await;
    let held = |k| {
        let dst = dst.clone();
        async move { dst.shared.reservations(k).await.unwrap() }
    };
    assert_eq!(
        held(overlay).await.get(hold).map(String::as_str),
        Some(holder)
    );
    assert_eq!(
        held(ids).await.get("1065536").map(String::as_str),
        Some("c2")
    );
    let names = held(ReservationKind::InstanceName).await;
    assert!(!names.contains_key("c2"), "{names:?}");
    dst.shared.release(overlay, hold, holder).await.unwrap();
    dst.shared.release(ids, "1065536", "c2").await.unwrap();

    // The same name, relayed from the real source: it arrives.
    let src_op = src.migration_source("c1", None, migrate()).await.unwrap();
    let dst_op = dst
        .migration_create(push_request(&src, "c2").await)
        .await
        .unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    assert!(dst.instance_row("c2").await.is_ok());
}

#[tokio::test]
async fn a_source_whose_target_fails_ends_in_failure_and_stays_usable() {
    let h1 = TestHost::new();
    let src = source(&h1).await;
    let op = src.migration_source("c1", None, migrate()).await.unwrap();
    let mut control = connect(&op, "control");
    let _fs = connect(&op, "fs");
    let Some(WsMsg::Binary(b)) = control.incoming.recv().await else {
        panic!("no offer");
    };
    let offer = MigrationHeader::decode(b.as_slice()).unwrap();
    assert_eq!(offer.snapshot_names, ["s0"]);
    assert!(offer.kante_types.contains(&"tar".to_string()));
    let refuse = MigrationControl::failed("no room").encode_to_vec();
    control.outgoing.send(WsMsg::Binary(refuse)).await.unwrap();
    let err = testing::wait_err(&op).await;
    assert!(err.contains("no room"), "{err}");
    // The instance lock is free again: it starts.
    testing::start(&src, "c1").await;
    testing::stop(&src, "c1").await;
}

#[tokio::test]
async fn a_listening_source_is_cancelled_as_lxc_does_when_the_target_refuses() {
    let h1 = TestHost::new();
    let src = source(&h1).await;
    let op = src.migration_source("c1", None, migrate()).await.unwrap();
    let snap = op.snapshot();
    assert!(snap.may_cancel);
    // Only string secrets, as lxc reads them.
    let meta = snap.metadata.as_object().unwrap();
    assert_eq!(meta.len(), 2);
    assert!(meta
        .values()
        .all(|v| v.as_str().is_some_and(|s| s.len() >= 32)));
    op.cancel().unwrap();
    let err = testing::wait_err(&op).await;
    assert!(err.contains("cancelled"), "{err}");
    testing::start(&src, "c1").await;
    testing::stop(&src, "c1").await;
}

#[tokio::test]
async fn a_delete_sent_at_once_waits_for_the_copy() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;
    let src_op = src.migration_source("c1", None, migrate()).await.unwrap();
    // pylxd's migrate() without wait: the delete follows the create.
    let dst_op = dst
        .migration_create(push_request(&src, "c2").await)
        .await
        .unwrap();
    tokio::task::yield_now().await;
    let delete = src.instance_delete_op("c1").await.unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    testing::wait_ok(&src_op).await;
    testing::wait_ok(&delete).await;
    assert!(src.node.instance_get("c1").await.unwrap().is_none());
    assert_eq!(
        std::fs::read_to_string(rootfs(&dst, "c2").join("root/f")).unwrap(),
        "new"
    );
    assert_eq!(dst.node.snapshot_list("c2").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_snapshot_migrates_as_a_new_instance_even_from_a_running_source() {
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let src = source(&h1).await;
    let dst = h2.open().await;
    testing::start(&src, "c1").await;
    let e = src
        .migration_source("c1", Some("nosuch"), migrate())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 404);
    let src_op = src
        .migration_source("c1", Some("s0"), migrate())
        .await
        .unwrap();
    let dst_op = dst
        .migration_create(push_request(&src, "c9").await)
        .await
        .unwrap();
    relay(&src_op, &dst_op);
    testing::wait_ok(&dst_op).await;
    testing::wait_ok(&src_op).await;
    assert_eq!(
        std::fs::read_to_string(rootfs(&dst, "c9").join("root/f")).unwrap(),
        "old"
    );
    assert!(dst.node.snapshot_list("c9").await.unwrap().is_empty());
    testing::stop(&src, "c1").await;
}
