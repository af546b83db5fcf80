//! Creating instances: what is recorded, what is refused (with which
//! status), copies, empty instances, and undo when storage fails half-way.

use crate::testing::{self, TestHost};
use crate::Engine;
use kante_api::instance::{InstanceSource, InstancesPost};
use kante_api::storage::StoragePoolsPost;
use kante_api::DevicesMap;

use super::{actions, config};

async fn with_image(host: &TestHost) -> (std::sync::Arc<Engine>, String) {
    let engine = host.open().await;
    let fp = host.import_image(&engine, "img").await;
    (engine, fp)
}

fn root_on(pool: &str, extra: &[(&str, &str)]) -> DevicesMap {
    let mut root: std::collections::BTreeMap<String, String> =
        [("type", "disk"), ("path", "/"), ("pool", pool)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    for (k, v) in extra {
        root.insert(k.to_string(), v.to_string());
    }
    DevicesMap::from([("root".to_string(), root)])
}

async fn mock_pool(engine: &Engine) {
    engine
        .pool_create(StoragePoolsPost {
            name: "m".into(),
            driver: "mock".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The error status of a create refused before its operation starts.
async fn refused(engine: &Engine, req: InstancesPost) -> (u16, String) {
    let e = engine.instance_create(req).await.expect_err("refused");
    (e.status(), e.to_string())
}

#[tokio::test]
async fn create_records_the_instance_and_its_volatile_keys() {
    let host = TestHost::new();
    let (engine, fp) = with_image(&host).await;
    let mut rx = engine.events.subscribe();
    host.create(&engine, "c1", "img", &[("user.note", "hi")])
        .await;
    let row = engine.instance_row("c1").await.unwrap();
    assert_eq!(row.profiles, ["default"]);
    assert_eq!(row.architecture, "x86_64");
    let c = &row.config;
    assert_eq!(c["volatile.base_image"], fp);
    assert_eq!(c["image.os"], "kantetest");
    assert_eq!(c["volatile.apply_template"], "create");
    assert_eq!(c["volatile.idmap.base"], host.id_range.uid.to_string());
    assert_eq!(c["user.note"], "hi");
    assert_eq!(c["volatile.uuid"].len(), 36);
    let rootfs = engine.paths.pool("default").join("containers/c1/rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hostname")).unwrap(),
        "c1\n"
    );
    assert!(rootfs.join("sbin/init").exists());
    assert_eq!(actions(&mut rx), ["instance-created"]);
    let i = engine.instance_get("c1").await.unwrap();
    assert_eq!(
        (i.status.as_str(), i.kind.as_str()),
        ("Stopped", "container")
    );
}

#[tokio::test]
async fn the_first_start_renders_the_image_templates_once() {
    let host = TestHost::new();
    let (engine, _) = with_image(&host).await;
    host.launch(&engine, "c1", "img").await;
    let hosts = engine
        .paths
        .pool("default")
        .join("containers/c1/rootfs/etc/hosts");
    assert_eq!(std::fs::read_to_string(&hosts).unwrap(), "127.0.1.1 c1\n");
    assert!(!config(&engine, "c1")
        .await
        .contains_key("volatile.apply_template"));
    testing::stop(&engine, "c1").await;
    std::fs::write(&hosts, "edited\n").unwrap();
    testing::start(&engine, "c1").await;
    assert_eq!(std::fs::read_to_string(&hosts).unwrap(), "edited\n");
}

#[tokio::test]
async fn a_taken_name_is_a_conflict() {
    let host = TestHost::new();
    let (engine, _) = with_image(&host).await;
    host.create(&engine, "c1", "img", &[]).await;
    let (status, msg) = refused(&engine, testing::create_request("c1", "img", &[])).await;
    assert_eq!(
        (status, msg.as_str()),
        (409, "Instance \"c1\" already exists")
    );
}

#[tokio::test]
async fn requests_that_cannot_work_are_refused_with_their_status() {
    let host = TestHost::new();
    let (engine, _) = with_image(&host).await;
    let bad_name = testing::create_request("bad_name", "img", &[]);
    assert_eq!(refused(&engine, bad_name).await.0, 400);
    let no_image = testing::create_request("c1", "nosuch", &[]);
    assert_eq!(
        refused(&engine, no_image).await,
        (404, "Image not found".to_string())
    );
    let mut vm = testing::create_request("c1", "img", &[]);
    vm.kind = "virtual-machine".into();
    assert_eq!(
        refused(&engine, vm).await,
        (400, "Virtual machines are not supported".to_string())
    );
    let bad_key = testing::create_request("c1", "img", &[("limits.memory", "lots")]);
    assert_eq!(refused(&engine, bad_key).await.0, 400);
    let unknown_key = testing::create_request("c1", "img", &[("frobnicate", "1")]);
    assert_eq!(refused(&engine, unknown_key).await.0, 400);
    let mut twice = testing::create_request("c1", "img", &[]);
    twice.put.profiles = Some(vec!["default".into(), "default".into()]);
    assert_eq!(refused(&engine, twice).await.0, 400);
    let mut missing = testing::create_request("c1", "img", &[]);
    missing.put.profiles = Some(vec!["nosuch".into()]);
    assert_eq!(refused(&engine, missing).await.0, 404);
    let mut no_root = testing::create_request("c1", "img", &[]);
    no_root.put.profiles = Some(vec![]);
    let (status, msg) = refused(&engine, no_root).await;
    assert_eq!(status, 400);
    assert!(msg.starts_with("Failed getting root disk"), "{msg}");
    // Nothing of any of them was recorded.
    assert!(engine.instance_names().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_server_picked_name_when_none_is_given() {
    let host = TestHost::new();
    let (engine, _) = with_image(&host).await;
    let op = engine
        .instance_create(testing::create_request("", "img", &[]))
        .await
        .unwrap();
    testing::wait_ok(&op).await;
    let names = engine.instance_names().await.unwrap();
    assert_eq!(names.len(), 1);
    assert!(names[0].starts_with("kante-"), "{names:?}");
    let res = &op.snapshot().resources["instances"];
    assert_eq!(res, &[format!("/1.0/instances/{}", names[0])]);
}

#[tokio::test]
async fn an_empty_instance_has_an_empty_rootfs_and_cannot_start() {
    let host = TestHost::new();
    let engine = host.open().await;
    let req = InstancesPost {
        name: "empty".into(),
        source: InstanceSource {
            kind: "none".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    let rootfs = engine.paths.pool("default").join("containers/empty/rootfs");
    assert!(!rootfs.join("sbin/init").exists());
    assert!(!config(&engine, "empty")
        .await
        .contains_key("volatile.base_image"));
    let op = testing::state(&engine, "empty", "start", false).await;
    assert_eq!(
        testing::wait_err(&op).await,
        "The instance's rootfs has no /sbin/init"
    );
}

#[tokio::test]
async fn a_copy_is_a_new_machine_with_the_same_files() {
    let host = TestHost::new();
    let (engine, fp) = with_image(&host).await;
    host.create(&engine, "c1", "img", &[("user.x", "1")]).await;
    let rootfs = |n: &str| {
        engine
            .paths
            .pool("default")
            .join(format!("containers/{n}/rootfs"))
    };
    std::fs::write(rootfs("c1").join("root/data"), "kept").unwrap();
    let req = InstancesPost {
        name: "c2".into(),
        source: InstanceSource {
            kind: "copy".into(),
            source: "c1".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    let (a, b) = (config(&engine, "c1").await, config(&engine, "c2").await);
    assert_eq!(b["user.x"], "1");
    assert_eq!(b["volatile.base_image"], fp);
    assert_eq!(b["volatile.apply_template"], "copy");
    assert_ne!(a["volatile.uuid"], b["volatile.uuid"]);
    assert_eq!(
        std::fs::read_to_string(rootfs("c2").join("root/data")).unwrap(),
        "kept"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs("c2").join("etc/hostname")).unwrap(),
        "c2\n"
    );
}

#[tokio::test]
async fn creation_goes_through_the_pool_driver() {
    let host = TestHost::new();
    let (engine, fp) = with_image(&host).await;
    mock_pool(&engine).await;
    let mut req = testing::create_request("c1", "img", &[]);
    req.put.devices = root_on("m", &[]);
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    let calls = host.storage.calls();
    let short = &fp[..];
    assert!(
        calls.contains(&format!("create_volume images/.staging-{short}")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!(
            "copy_volume images/{short} containers/.staging-c1"
        )),
        "{calls:?}"
    );
    assert!(engine
        .paths
        .pool("m")
        .join("containers/c1/rootfs/sbin/init")
        .exists());
}

#[tokio::test]
async fn a_storage_failure_undoes_the_creation() {
    let host = TestHost::new();
    let (engine, _) = with_image(&host).await;
    mock_pool(&engine).await;
    host.storage.fail("copy_volume", "no space left");
    let mut req = testing::create_request("c1", "img", &[]);
    req.put.devices = root_on("m", &[]);
    let op = engine.instance_create(req).await.unwrap();
    let err = testing::wait_err(&op).await;
    assert!(err.contains("mock copy_volume: no space left"), "{err}");
    assert_eq!(engine.instance_row("c1").await.unwrap_err().status(), 404);
    let left: Vec<_> = std::fs::read_dir(engine.paths.pool("m").join("containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Once storage works again, the same name can be used.
    host.storage.heal("copy_volume");
    let mut req = testing::create_request("c1", "img", &[]);
    req.put.devices = root_on("m", &[]);
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
}

#[tokio::test]
async fn a_root_disk_size_needs_a_driver_that_limits() {
    let host = TestHost::new();
    let (engine, _) = with_image(&host).await;
    let mut req = testing::create_request("c1", "img", &[]);
    req.put.devices = root_on("default", &[("size", "1GiB")]);
    let (status, msg) = refused(&engine, req).await;
    assert_eq!(status, 400);
    assert!(msg.contains("dir driver"), "{msg}");
    mock_pool(&engine).await;
    let mut req = testing::create_request("c2", "img", &[]);
    req.put.devices = root_on("m", &[("size", "1GiB")]);
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    assert!(host
        .storage
        .calls()
        .contains(&"set_volume_size containers/c2".to_string()));
}
