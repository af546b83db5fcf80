//! The front door: requests handed to `Engine::handle` only, checked by
//! the reply they get (its kind and content, or the error status), the
//! state they leave, and the target they name.

use std::sync::Arc;

use crate::front::{
    ByteStream, ImageUploadInfo, ListDetail, Parts, Reply, Request, Target, UploadBody,
};
use crate::testing::{self, image, TestHost};
use crate::ws::{WsConn, WsMsg};
use crate::{Engine, Op};
use bytes::Bytes;
use kante_api::console::ConsolePost;
use kante_api::instance::InstanceStatePut;
use kante_api::operation::OperationClass;
use kante_api::profile::{ProfilePut, ProfilesPost};
use kante_api::storage::{StorageVolumePut, StorageVolumesPost};

/// The error status `req` is refused with, and its message.
async fn refused(engine: &Engine, req: Request) -> (u16, String) {
    match engine.handle(req).await {
        Ok(r) => panic!("expected a refusal, got a {} reply", r.kind()),
        Err(e) => (e.status(), e.to_string()),
    }
}

fn op_of(reply: Reply) -> Arc<Op> {
    reply.into_operation().expect("an operation")
}

fn stream_of(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(Bytes::from(bytes))
    }))
}

fn instance(name: &str) -> String {
    name.to_string()
}

async fn names(engine: &Engine) -> Vec<String> {
    let req = Request::InstanceList {
        detail: ListDetail::Names,
        filter: String::new(),
        all_members: true,
    };
    match engine.handle(req).await.unwrap() {
        Reply::InstanceNames(n) => n,
        other => panic!("expected names, got {}", other.kind()),
    }
}

/// Creates `name` from `alias` through the door and waits for it.
async fn create(engine: &Engine, name: &str, alias: &str) {
    let req = Request::InstanceCreate(Box::new(testing::create_request(name, alias, &[])));
    testing::wait_ok(&op_of(engine.handle(req).await.unwrap())).await;
}

async fn state_put(engine: &Engine, name: &str, action: &str) -> Arc<Op> {
    let put = InstanceStatePut {
        action: action.into(),
        force: true,
        timeout: -1,
        ..Default::default()
    };
    let req = Request::InstanceStatePut {
        instance: instance(name),
        put,
    };
    op_of(engine.handle(req).await.unwrap())
}

#[tokio::test]
async fn an_unknown_instance_is_a_404() {
    let host = TestHost::new();
    let engine = host.open().await;
    let (status, _) = refused(
        &engine,
        Request::InstanceGet {
            instance: instance("ghost"),
            full: false,
        },
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = refused(
        &engine,
        Request::InstanceStateGet {
            instance: instance("ghost"),
        },
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = refused(&engine, Request::OperationGet { id: "nope".into() }).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn create_returns_an_operation_that_leaves_the_instance_listed() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    assert!(names(&engine).await.is_empty());
    let reply = engine
        .handle(Request::InstanceCreate(Box::new(testing::create_request(
            "c1",
            "img",
            &[],
        ))))
        .await
        .unwrap();
    let op = op_of(reply);
    // The operation is the engine's: the door finds it by id.
    match engine
        .handle(Request::OperationWait {
            id: op.id(),
            timeout: None,
        })
        .await
        .unwrap()
    {
        Reply::OperationState(o) => assert_eq!(o.status, "Success", "{}", o.err),
        other => panic!("expected an operation state, got {}", other.kind()),
    }
    assert_eq!(names(&engine).await, ["c1"]);
    match engine
        .handle(Request::InstanceGet {
            instance: instance("c1"),
            full: false,
        })
        .await
        .unwrap()
    {
        Reply::Instance(i) => assert_eq!((i.name.as_str(), i.status.as_str()), ("c1", "Stopped")),
        other => panic!("expected an instance, got {}", other.kind()),
    }
}

#[tokio::test]
async fn targets_and_names_come_from_the_request_alone() {
    let exec = Request::InstanceExec {
        instance: instance("web"),
        post: Default::default(),
    };
    assert_eq!(exec.target(), Target::Instance("web".into()));
    assert_eq!(exec.name(), "instance_exec");
    let del = Request::SnapshotDelete {
        instance: instance("web"),
        snapshot: "s0".into(),
    };
    assert_eq!(del.target(), Target::Instance("web".into()));
    let vol = Request::VolumeDelete {
        pool: "p".into(),
        kind: "custom".into(),
        volume: "v".into(),
    };
    assert_eq!(
        vol.target(),
        Target::Volume {
            pool: "p".into(),
            name: "v".into()
        }
    );
    assert_eq!(Request::ProfileList.target(), Target::Server);
    assert_eq!(Request::Events { types: vec![] }.target(), Target::Member);
    assert_eq!(
        Request::OperationCancel { id: "x".into() }.target(),
        Target::Operation("x".into())
    );
}

#[tokio::test]
async fn a_running_instance_is_not_deleted() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    create(&engine, "c1", "img").await;
    testing::wait_ok(&state_put(&engine, "c1", "start").await).await;
    let (status, msg) = refused(
        &engine,
        Request::InstanceDelete {
            instance: instance("c1"),
        },
    )
    .await;
    assert_eq!((status, msg.as_str()), (400, "Instance is running"));
    assert_eq!(names(&engine).await, ["c1"]);
    testing::wait_ok(&state_put(&engine, "c1", "stop").await).await;
    let op = op_of(
        engine
            .handle(Request::InstanceDelete {
                instance: instance("c1"),
            })
            .await
            .unwrap(),
    );
    testing::wait_ok(&op).await;
    assert!(names(&engine).await.is_empty());
}

#[tokio::test]
async fn a_listing_keeps_what_its_filter_matches() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    create(&engine, "c1", "img").await;
    create(&engine, "c2", "img").await;
    let list = |detail, filter: &str| Request::InstanceList {
        detail,
        filter: filter.into(),
        all_members: true,
    };
    match engine
        .handle(list(ListDetail::Names, "name eq c2"))
        .await
        .unwrap()
    {
        Reply::InstanceNames(n) => assert_eq!(n, ["c2"]),
        other => panic!("expected names, got {}", other.kind()),
    }
    match engine
        .handle(list(ListDetail::Full, "name eq c1"))
        .await
        .unwrap()
    {
        Reply::InstancesFull(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].instance.name, "c1");
        }
        other => panic!("expected full instances, got {}", other.kind()),
    }
    let (status, msg) = refused(&engine, list(ListDetail::Records, "name eq")).await;
    assert_eq!(status, 400);
    assert!(msg.contains("Invalid filter"), "{msg}");
}

#[tokio::test]
async fn a_profile_patch_merges_into_what_is_stored() {
    let host = TestHost::new();
    let engine = host.open().await;
    let mut post = ProfilesPost {
        name: "p".into(),
        ..Default::default()
    };
    post.put.config.insert("user.a".into(), "1".into());
    match engine.handle(Request::ProfileCreate(post)).await.unwrap() {
        Reply::Created { location } => assert_eq!(location, "/1.0/profiles/p"),
        other => panic!("expected created, got {}", other.kind()),
    }
    let mut put = ProfilePut::default();
    put.config.insert("user.b".into(), "2".into());
    let req = Request::ProfileUpdate {
        name: "p".into(),
        put,
        merge: true,
    };
    assert!(matches!(
        engine.handle(req).await.unwrap(),
        Reply::ProfileChanges(_)
    ));
    let stored = engine.profile_get("p").await.unwrap().config;
    assert_eq!(
        (stored["user.a"].as_str(), stored["user.b"].as_str()),
        ("1", "2")
    );
    // PUT replaces.
    let req = Request::ProfileUpdate {
        name: "p".into(),
        put: ProfilePut::default(),
        merge: false,
    };
    engine.handle(req).await.unwrap();
    assert!(engine.profile_get("p").await.unwrap().config.is_empty());
    // A rename of a missing profile is a 404.
    let req = Request::ProfileRename {
        name: "ghost".into(),
        new_name: "x".into(),
    };
    assert_eq!(refused(&engine, req).await.0, 404);
}

#[tokio::test]
async fn only_custom_volumes_change_and_types_must_agree() {
    let host = TestHost::new();
    let engine = host.open().await;
    let post = StorageVolumesPost {
        name: "v1".into(),
        kind: "custom".into(),
        ..Default::default()
    };
    let req = Request::VolumeCreate {
        pool: "default".into(),
        kind: Some("image".into()),
        post: post.clone(),
    };
    let (status, msg) = refused(&engine, req).await;
    assert_eq!(status, 400);
    assert!(msg.contains("does not match"), "{msg}");
    let req = Request::VolumeCreate {
        pool: "default".into(),
        kind: Some("custom".into()),
        post,
    };
    match engine.handle(req).await.unwrap() {
        Reply::Created { location } => {
            assert_eq!(location, "/1.0/storage-pools/default/volumes/custom/v1")
        }
        other => panic!("expected created, got {}", other.kind()),
    }
    let req = Request::VolumeUpdate {
        pool: "default".into(),
        kind: "container".into(),
        volume: "v1".into(),
        put: StorageVolumePut::default(),
        merge: true,
    };
    let (status, msg) = refused(&engine, req).await;
    assert_eq!(status, 400);
    assert!(msg.contains("Only custom volumes"), "{msg}");
    let req = Request::VolumeDelete {
        pool: "default".into(),
        kind: "custom".into(),
        volume: "v1".into(),
    };
    assert!(matches!(engine.handle(req).await.unwrap(), Reply::Empty));
    let req = Request::VolumeList {
        pool: "default".into(),
        kind: Some("custom".into()),
        all_members: true,
    };
    match engine.handle(req).await.unwrap() {
        Reply::Volumes { pool, volumes } => {
            assert_eq!(pool, "default");
            assert!(volumes.is_empty(), "the volume is gone");
        }
        other => panic!("expected volumes, got {}", other.kind()),
    }
}

#[tokio::test]
async fn verbs_not_supported_yet_are_501s() {
    let host = TestHost::new();
    let engine = host.open().await;
    for req in [Request::ImageCreate(kante_api::image::ImagesPost {
        source: Some(serde_json::json!({"type": "url"})),
        ..Default::default()
    })] {
        let verb = req.name();
        assert_eq!(refused(&engine, req).await.0, 501, "{verb}");
    }
}

fn console_attach(name: &str, kind: &str, (width, height): (i64, i64)) -> Request {
    Request::ConsoleAttach {
        instance: instance(name),
        post: ConsolePost {
            width,
            height,
            kind: kind.into(),
        },
    }
}

/// Reads a console websocket until `want` has arrived; what arrived.
async fn console_until(ws: &mut WsConn, want: &str) -> String {
    let mut seen = String::new();
    let read = async {
        while !seen.contains(want) {
            match ws.incoming.recv().await {
                Some(WsMsg::Binary(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                Some(WsMsg::Text(t)) => seen.push_str(&t),
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    assert!(seen.contains(want), "waited for {want:?}, got {seen:?}");
    seen
}

/// Claims the console operation's two websockets: (data, control).
fn console_sockets(op: &Op) -> (WsConn, WsConn) {
    let fds = op.snapshot().metadata["fds"].as_object().unwrap().clone();
    let mut names: Vec<&String> = fds.keys().collect();
    names.sort();
    assert_eq!(names, ["0", "control"], "{fds:?}");
    let claim = |n: &str| {
        let (engine_end, client_end) = WsConn::pair();
        let slot = op.claim_socket(fds[n].as_str().unwrap()).unwrap();
        assert!(slot.send(engine_end).is_ok());
        client_end
    };
    let control = claim("control");
    (claim("0"), control)
}

/// `POST …/console`: keys reach the guest's console and its answers come
/// back on `0`, a `window-resize` on `control` sets the console's size,
/// closing `control` detaches (the instance runs on, a second attach works)
/// and a stop ends a session; `vga`, unknown types and a stopped instance
/// are refused as LXD refuses them.
#[tokio::test]
async fn a_console_attach_carries_keys_answers_and_resizes() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let (status, msg) = refused(&engine, console_attach("nope", "console", (80, 25))).await;
    assert_eq!(status, 404, "{msg}");
    host.create(&engine, "c1", "img", &[]).await;
    let (status, msg) = refused(&engine, console_attach("c1", "", (80, 25))).await;
    assert_eq!((status, msg.as_str()), (400, "Instance is not running"));
    testing::start(&engine, "c1").await;
    let (status, msg) = refused(&engine, console_attach("c1", "vga", (0, 0))).await;
    assert_eq!(
        (status, msg.as_str()),
        (400, "VGA console is only supported by virtual machines")
    );
    let (status, _) = refused(&engine, console_attach("c1", "spice", (0, 0))).await;
    assert_eq!(status, 400);

    let op = op_of(
        engine
            .handle(console_attach("c1", "console", (100, 40)))
            .await
            .unwrap(),
    );
    let snap = op.snapshot();
    assert_eq!(snap.class, OperationClass::Websocket);
    assert_eq!(snap.description, "Showing console");
    let (mut data, control) = console_sockets(&op);
    data.outgoing
        .send(WsMsg::Binary(b"hello\r".to_vec()))
        .await
        .unwrap();
    console_until(&mut data, "hello from the console at 100x40").await;
    let resize = r#"{"command":"window-resize","args":{"width":"132","height":"50"}}"#;
    control
        .outgoing
        .send(WsMsg::Text(resize.into()))
        .await
        .unwrap();
    // The resize is handled before later keys on the same session.
    let mut answered = String::new();
    for _ in 0..50 {
        data.outgoing
            .send(WsMsg::Text("again\r".into()))
            .await
            .unwrap();
        answered = console_until(&mut data, "again from the console at").await;
        if answered.contains("at 132x50") {
            break;
        }
    }
    assert!(
        answered.contains("again from the console at 132x50"),
        "{answered:?}"
    );
    // Ctrl+a q in lxc: the control socket closes; the session ends, the instance runs on.
    drop(control);
    testing::wait_ok(&op).await;
    console_until(&mut data, "\n\r").await;
    assert_eq!(host.runtime.running(), ["c1"]);

    // A second attach, ended by the instance stopping.
    let op = op_of(
        engine
            .handle(console_attach("c1", "console", (0, 0)))
            .await
            .unwrap(),
    );
    let (mut data, _control) = console_sockets(&op);
    data.outgoing
        .send(WsMsg::Binary(b"twice\r".to_vec()))
        .await
        .unwrap();
    console_until(&mut data, "twice from the console at 80x25").await;
    testing::wait_ok(&state_put(&engine, "c1", "stop").await).await;
    testing::wait_ok(&op).await;
    let calls = host.runtime.calls_for("c1");
    assert_eq!(
        calls.iter().filter(|c| c.as_str() == "console c1").count(),
        2,
        "{calls:?}"
    );
}

#[tokio::test]
async fn an_uploaded_image_is_imported_in_an_operation() {
    let host = TestHost::new();
    let engine = host.open().await;
    let tarball = image::build(host.path(), &image::Spec::default());
    let info = ImageUploadInfo {
        filename: "test-image.tar.gz".into(),
        aliases: vec![kante_api::image::ImageAliasRef {
            name: "up".into(),
            description: String::new(),
        }],
        ..Default::default()
    };
    let body = UploadBody::Single(stream_of(std::fs::read(&tarball).unwrap()));
    let op = op_of(
        engine
            .handle(Request::ImageUpload { info, body })
            .await
            .unwrap(),
    );
    let fp = testing::wait_ok(&op).await.metadata["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    match engine
        .handle(Request::AliasGet { name: "up".into() })
        .await
        .unwrap()
    {
        Reply::Alias(a) => assert_eq!(a.target, fp),
        other => panic!("expected an alias, got {}", other.kind()),
    }
    match engine
        .handle(Request::ImageExport {
            fingerprint: fp,
            secret: None,
        })
        .await
        .unwrap()
    {
        Reply::Download(d) => {
            assert_eq!(d.parts.len(), 1);
            assert_eq!(d.parts[0].len, std::fs::metadata(&tarball).unwrap().len());
        }
        other => panic!("expected a download, got {}", other.kind()),
    }
    // Nothing is left spooled.
    let uploads = engine.upload_dir().unwrap();
    assert_eq!(std::fs::read_dir(uploads).unwrap().count(), 0);
}

/// Parts of a multipart upload, from memory.
struct MemParts(Vec<(String, Vec<u8>)>);

#[async_trait::async_trait]
impl Parts for MemParts {
    async fn next_part(&mut self) -> crate::Result<Option<(String, ByteStream)>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (name, bytes) = self.0.remove(0);
        Ok(Some((name, stream_of(bytes))))
    }
}

#[tokio::test]
async fn a_virtual_machine_upload_is_refused_and_leaves_nothing() {
    let host = TestHost::new();
    let engine = host.open().await;
    let parts = MemParts(vec![
        ("metadata".into(), b"meta".to_vec()),
        ("rootfs.img".into(), b"disk".to_vec()),
    ]);
    let req = Request::ImageUpload {
        info: ImageUploadInfo::default(),
        body: UploadBody::Parts(Box::new(parts)),
    };
    let (status, msg) = refused(&engine, req).await;
    assert_eq!(status, 400);
    assert!(msg.contains("Virtual-machine"), "{msg}");
    let uploads = engine.upload_dir().unwrap();
    assert_eq!(
        std::fs::read_dir(uploads).unwrap().count(),
        0,
        "spool removed"
    );
    match engine.handle(Request::ImageList).await.unwrap() {
        Reply::Images(v) => assert!(v.is_empty()),
        other => panic!("expected images, got {}", other.kind()),
    }
}

#[tokio::test]
async fn the_event_stream_keeps_only_the_types_asked_for() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let mut events = engine
        .handle(Request::Events {
            types: vec!["lifecycle".into()],
        })
        .await
        .unwrap()
        .into_events()
        .unwrap();
    // The create's operation events come first on the bus; none get through.
    create(&engine, "c1", "img").await;
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .expect("an event")
        .expect("the bus is open");
    assert_eq!(ev.kind, "lifecycle");
    assert_eq!(ev.metadata["action"], "instance-created");
}
