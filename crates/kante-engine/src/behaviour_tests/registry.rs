//! The device registry: unknown and unsupported kinds refused, each kind's
//! own validation, `none` masking an inherited device, and the live diff
//! sorting changes into hot-plugged and deferred ones.

use std::collections::BTreeMap;

use crate::instance::live::ChangeReport;
use crate::testing::{self, TestHost};
use crate::Engine;
use kante_api::instance::InstancePut;
use kante_api::profile::{ProfilePut, ProfilesPost};
use kante_api::{ConfigMap, DevicesMap};

use super::actions;

fn dev(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn one(name: &str, pairs: &[(&str, &str)]) -> DevicesMap {
    DevicesMap::from([(name.to_string(), dev(pairs))])
}

/// Creating `c1` with one extra device: the error, if refused.
async fn create_with(engine: &Engine, name: &str, pairs: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut req = testing::create_request("c1", "img", &[]);
    req.put.devices.insert(name.into(), dev(pairs));
    match engine.instance_create(req).await {
        Ok(op) => {
            testing::wait_ok(&op).await;
            None
        }
        Err(e) => Some((e.status(), e.to_string())),
    }
}

async fn profile_with(engine: &Engine, devices: DevicesMap) -> crate::Result<()> {
    engine
        .profile_create(ProfilesPost {
            name: "p".into(),
            put: ProfilePut {
                devices,
                ..Default::default()
            },
        })
        .await
}

async fn patch(engine: &Engine, name: &str, devices: DevicesMap) -> crate::Result<ChangeReport> {
    let row = engine.instance_row(name).await.unwrap();
    engine
        .instance_update(
            name,
            InstancePut {
                config: ConfigMap::new(),
                devices,
                ephemeral: row.ephemeral,
                ..Default::default()
            },
            true,
        )
        .await
}

#[tokio::test]
async fn an_unknown_or_untyped_device_is_refused_and_nothing_is_stored() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let e = create_with(&engine, "x", &[("type", "frobnicator")]).await;
    assert_eq!(
        e,
        Some((
            400,
            "Device \"x\": unknown device type \"frobnicator\"".into()
        ))
    );
    let e = create_with(&engine, "x", &[("path", "/mnt")]).await;
    assert_eq!(e, Some((400, "Device \"x\" has no type".into())));
    let e = create_with(&engine, "a/b", &[("type", "none")]).await;
    assert_eq!(e, Some((400, "Invalid device name \"a/b\"".into())));
    assert!(engine.instance_names().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_kind_lxd_has_but_kante_does_not_is_refused_by_name() {
    let host = TestHost::new();
    let engine = host.open().await;
    for kind in ["unix-char", "unix-block", "gpu", "usb", "tpm"] {
        let e = profile_with(&engine, one("d", &[("type", kind)]))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400, "{kind}");
        assert_eq!(
            e.to_string(),
            format!("Device \"d\": type {kind:?} is not supported by this kanted yet")
        );
    }
    assert!(engine.profile_get("p").await.is_err(), "nothing stored");
}

#[tokio::test]
async fn nics_are_registered_by_nictype() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let e = profile_with(
        &engine,
        one("eth0", &[("type", "nic"), ("nictype", "p2p-magic")]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(
        e.to_string(),
        "invalid nic device: eth0: unknown nictype \"p2p-magic\" (supported: bridged, macvlan)"
    );
    // Only a nic reads `nictype`: on a disk it is an unknown option.
    let e = profile_with(
        &engine,
        one(
            "d",
            &[
                ("type", "disk"),
                ("path", "/d"),
                ("source", "/srv"),
                ("nictype", "bridged"),
            ],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Device \"d\": unknown disk option \"nictype\""
    );
    for nictype in ["bridged", "macvlan"] {
        let e = create_with(
            &engine,
            "eth0",
            &[("type", "nic"), ("nictype", nictype), ("parent", "nosuch0")],
        )
        .await
        .expect("refused at planning");
        assert_eq!(e.0, 400, "{nictype}: {}", e.1);
    }
    assert!(engine.instance_names().await.unwrap().is_empty());
}

#[tokio::test]
async fn each_kind_validates_its_own_keys() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("type", "disk"), ("path", "mnt"), ("source", "/srv")],
            "Device \"d\": disk path must be absolute",
        ),
        (
            &[
                ("type", "disk"),
                ("path", "/mnt"),
                ("source", "/srv"),
                ("colour", "red"),
            ],
            "Device \"d\": unknown disk option \"colour\"",
        ),
        (
            &[("type", "disk"), ("path", "/mnt")],
            "Device \"d\": a disk other than the root needs a source",
        ),
        (
            &[
                ("type", "disk"),
                ("path", "/mnt"),
                ("pool", "default"),
                ("source", "a/b"),
            ],
            "Device \"d\": ",
        ),
        (
            &[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:80"),
                ("connect", "udp:127.0.0.1:80"),
            ],
            "Device \"d\": udp goes to udp; tcp and unix sockets go to tcp or unix sockets",
        ),
        (
            &[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:80"),
                ("colour", "red"),
            ],
            "Device \"d\": unknown proxy option \"colour\"",
        ),
    ];
    for (pairs, message) in cases {
        let (status, e) = create_with(&engine, "d", pairs).await.expect("refused");
        assert_eq!(status, 400, "{pairs:?}");
        assert!(e.starts_with(message), "{pairs:?}: {e}");
    }
    assert!(engine.instance_names().await.unwrap().is_empty());
    // A root disk needs a pool; `none` accepts anything of its own.
    let mut req = testing::create_request("c1", "img", &[]);
    req.put
        .devices
        .insert("root".into(), dev(&[("type", "disk"), ("path", "/")]));
    let e = engine.instance_create(req).await.unwrap_err();
    assert_eq!(e.to_string(), "Device \"root\": the root disk needs a pool");
}

#[tokio::test]
async fn a_none_device_masks_the_inherited_one_at_start() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let data = host.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let disk = dev(&[
        ("type", "disk"),
        ("source", data.to_str().unwrap()),
        ("path", "/mnt/data"),
    ]);
    profile_with(&engine, DevicesMap::from([("data".into(), disk)]))
        .await
        .unwrap();
    for (name, devices) in [
        ("a", DevicesMap::new()),
        ("b", one("data", &[("type", "none")])),
    ] {
        let mut req = testing::create_request(name, "img", &[]);
        req.put.profiles = Some(vec!["default".into(), "p".into()]);
        req.put.devices = devices;
        testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
        testing::start(&engine, name).await;
    }
    let targets = |name: &str| -> Vec<String> {
        host.runtime
            .spec(name)
            .unwrap()
            .mounts
            .iter()
            // The guest API's mount is every instance's, not a device's.
            .filter(|m| m.target != crate::devlxd::GUEST_DIR)
            .map(|m| m.target.clone())
            .collect()
    };
    assert_eq!(targets("a"), ["/mnt/data"]);
    assert!(targets("b").is_empty());
    assert_eq!(
        engine.instance_row("b").await.unwrap().devices["data"]["type"],
        "none"
    );
}

#[test]
fn the_diff_sorts_device_changes_into_live_and_next_start() {
    let root = |pool: &str| dev(&[("type", "disk"), ("path", "/"), ("pool", pool)]);
    let old = (
        ConfigMap::new(),
        DevicesMap::from([
            ("root".into(), root("a")),
            (
                "gone".into(),
                dev(&[
                    ("type", "proxy"),
                    ("listen", "tcp:0.0.0.0:1"),
                    ("connect", "tcp:127.0.0.1:1"),
                ]),
            ),
            ("odd".into(), dev(&[("type", "frobnicator")])),
            ("same".into(), dev(&[("type", "nic"), ("network", "n")])),
        ]),
    );
    let mut new = old.clone();
    new.1.insert("root".into(), root("b"));
    new.1.remove("gone");
    new.1
        .insert("odd".into(), dev(&[("type", "frobnicator"), ("x", "1")]));
    new.1.insert(
        "eth1".into(),
        dev(&[("type", "nic"), ("network", "n"), ("name", "eth1")]),
    );
    new.1.insert(
        "data".into(),
        dev(&[("type", "disk"), ("path", "/d"), ("source", "/srv")]),
    );
    let r = ChangeReport::between(&old, &new);
    assert_eq!(r.live, ["devices.data", "devices.eth1", "devices.gone"]);
    assert_eq!(r.next_start, ["devices.odd", "devices.root"]);
}

#[tokio::test]
async fn hot_pluggable_changes_apply_at_once_and_the_root_disk_waits() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.launch(&engine, "c1", "img").await;
    let mut rx = engine.events.subscribe();
    let data = host.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut devices = one(
        "data",
        &[
            ("type", "disk"),
            ("source", data.to_str().unwrap()),
            ("path", "/mnt/data"),
        ],
    );
    devices.insert(
        "eth1".into(),
        dev(&[
            ("type", "nic"),
            ("nictype", "bridged"),
            ("parent", "br0"),
            ("name", "eth1"),
        ]),
    );
    devices.insert(
        "root".into(),
        dev(&[
            ("type", "disk"),
            ("path", "/"),
            ("pool", "default"),
            ("size", "1GiB"),
        ]),
    );
    let report = patch(&engine, "c1", devices).await.unwrap();
    assert_eq!(report.live, ["devices.data", "devices.eth1"]);
    assert_eq!(report.next_start, ["devices.root"]);
    assert_eq!(host.runtime.mounts("c1"), ["/mnt/data"]);
    let c = engine.instance_row("c1").await.unwrap().config;
    assert!(c.contains_key("volatile.eth1.host_name"), "{c:?}");
    assert_eq!(actions(&mut rx), ["instance-updated"]);
    // A change of a hot-plugged disk is an unmount, then a mount.
    let other = host.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let report = patch(
        &engine,
        "c1",
        one(
            "data",
            &[
                ("type", "disk"),
                ("source", other.to_str().unwrap()),
                ("path", "/mnt/data"),
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(report.live, ["devices.data"]);
    let calls = host.runtime.calls_for("c1");
    let unmount = calls.iter().rposition(|c| c == "unmount c1 /mnt/data");
    let mount = calls
        .iter()
        .rposition(|c| c.starts_with("mount c1 /mnt/data ") && c.ends_with("/other"));
    assert!(unmount.is_some() && mount > unmount, "{calls:?}");
}

#[test]
fn devices_bound_to_this_host_cannot_migrate() {
    let devices = DevicesMap::from([
        (
            "root".into(),
            dev(&[("type", "disk"), ("path", "/"), ("pool", "default")]),
        ),
        (
            "vol".into(),
            dev(&[
                ("type", "disk"),
                ("path", "/v"),
                ("pool", "default"),
                ("source", "v"),
            ]),
        ),
        (
            "host".into(),
            dev(&[("type", "disk"), ("path", "/h"), ("source", "/srv")]),
        ),
        ("managed".into(), dev(&[("type", "nic"), ("network", "n")])),
        (
            "phys".into(),
            dev(&[("type", "nic"), ("nictype", "macvlan"), ("parent", "eth0")]),
        ),
        (
            "web".into(),
            dev(&[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:80"),
                ("connect", "tcp:127.0.0.1:80"),
            ]),
        ),
    ]);
    assert_eq!(crate::devices::unmigratable(&devices), ["host", "phys"]);
}
