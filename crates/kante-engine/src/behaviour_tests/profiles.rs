//! Profiles: expansion in order with the instance's own keys last,
//! changes that reach running instances, and what cannot be done to a
//! profile in use or to `default`.

use std::collections::BTreeMap;

use crate::testing::{self, TestHost};
use crate::Engine;
use kante_api::profile::{ProfilePut, ProfilesPost};
use kante_api::{ConfigMap, DevicesMap};

use super::cgroup_file;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn profile(engine: &Engine, name: &str, config: &[(&str, &str)], devices: DevicesMap) {
    engine
        .profile_create(ProfilesPost {
            name: name.into(),
            put: ProfilePut {
                config: map(config),
                devices,
                description: String::new(),
            },
        })
        .await
        .unwrap();
}

async fn create_with(engine: &Engine, name: &str, profiles: &[&str], config: &[(&str, &str)]) {
    let mut req = testing::create_request(name, "img", config);
    req.put.profiles = Some(profiles.iter().map(|p| p.to_string()).collect());
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
}

#[tokio::test]
async fn later_profiles_win_and_the_instance_wins_over_all() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    profile(
        &engine,
        "small",
        &[("limits.memory", "1GiB"), ("limits.processes", "50")],
        DevicesMap::new(),
    )
    .await;
    profile(
        &engine,
        "big",
        &[("limits.memory", "2GiB")],
        DevicesMap::new(),
    )
    .await;
    create_with(&engine, "a", &["default", "small", "big"], &[]).await;
    create_with(
        &engine,
        "b",
        &["default", "big", "small"],
        &[("limits.processes", "7")],
    )
    .await;
    let a = engine.instance_get("a").await.unwrap();
    assert_eq!(a.expanded_config["limits.memory"], "2GiB");
    assert_eq!(a.expanded_config["limits.processes"], "50");
    assert!(
        !a.config.contains_key("limits.memory"),
        "profiles' keys stay theirs"
    );
    let b = engine.instance_get("b").await.unwrap();
    assert_eq!(b.expanded_config["limits.memory"], "1GiB");
    assert_eq!(b.expanded_config["limits.processes"], "7");
    assert_eq!(b.expanded_devices["root"]["pool"], "default");
}

#[tokio::test]
async fn a_profile_device_reaches_the_instance_and_its_start() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let data = host.path().join("shared");
    std::fs::create_dir(&data).unwrap();
    let disk = map(&[
        ("type", "disk"),
        ("source", data.to_str().unwrap()),
        ("path", "/srv"),
    ]);
    profile(
        &engine,
        "withdisk",
        &[],
        DevicesMap::from([("shared".into(), disk)]),
    )
    .await;
    create_with(&engine, "c1", &["default", "withdisk"], &[]).await;
    assert!(engine
        .instance_get("c1")
        .await
        .unwrap()
        .expanded_devices
        .contains_key("shared"));
    testing::start(&engine, "c1").await;
    let spec = host.runtime.spec("c1").unwrap();
    let m = spec
        .mounts
        .iter()
        .find(|m| m.target == "/srv")
        .expect("the disk's mount");
    assert_eq!(m.source, data);
    assert!(!m.idmapped, "a host path is not shifted");
}

#[tokio::test]
async fn a_profile_change_reaches_running_instances() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    profile(
        &engine,
        "lim",
        &[("limits.memory", "1GiB")],
        DevicesMap::new(),
    )
    .await;
    create_with(&engine, "c1", &["default", "lim"], &[]).await;
    testing::start(&engine, "c1").await;
    assert_eq!(
        cgroup_file(&host, &engine, "c1", "memory.max"),
        "1073741824"
    );
    let reports = engine
        .profile_update(
            "lim",
            ProfilePut {
                config: map(&[("limits.memory", "256MiB"), ("security.nesting", "true")]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = &reports["c1"];
    assert_eq!(r.live, ["limits.memory"]);
    assert_eq!(r.next_start, ["security.nesting"]);
    assert_eq!(cgroup_file(&host, &engine, "c1", "memory.max"), "268435456");
    assert_eq!(
        engine.profile_get("lim").await.unwrap().config["limits.memory"],
        "256MiB"
    );
}

#[tokio::test]
async fn a_profile_change_that_breaks_a_user_is_refused() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    create_with(&engine, "c1", &["default"], &[]).await;
    // Without its root disk, c1 would have none.
    let e = engine
        .profile_update("default", ProfilePut::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(engine
        .profile_get("default")
        .await
        .unwrap()
        .devices
        .contains_key("root"));
    let e = engine
        .profile_update(
            "default",
            ProfilePut {
                config: map(&[("limits.memory", "lots")]),
                devices: engine.profile_get("default").await.unwrap().devices,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test]
async fn profiles_in_use_and_the_default_one_are_protected() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    profile(&engine, "p", &[], DevicesMap::new()).await;
    create_with(&engine, "c1", &["default", "p"], &[]).await;
    assert_eq!(
        engine.profile_get("p").await.unwrap().used_by,
        ["/1.0/instances/c1"]
    );
    assert_eq!(engine.profile_delete("p").await.unwrap_err().status(), 400);
    assert_eq!(
        engine.profile_delete("default").await.unwrap_err().status(),
        400
    );
    assert_eq!(
        engine
            .profile_rename("default", "x")
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        engine.profile_delete("nosuch").await.unwrap_err().status(),
        404
    );
    let dup = ProfilesPost {
        name: "p".into(),
        put: ProfilePut::default(),
    };
    assert_eq!(engine.profile_create(dup).await.unwrap_err().status(), 409);
    // Renamed, it follows in the instance's list.
    engine.profile_rename("p", "q").await.unwrap();
    assert_eq!(
        engine.instance_row("c1").await.unwrap().profiles,
        ["default", "q"]
    );
    let cfg: ConfigMap = engine.profile_get("q").await.unwrap().config;
    assert!(cfg.is_empty());
}
