//! Changes to instances and their devices: limits rewritten live in the
//! cgroup, keys that wait for the next start, disks hot-plugged, NICs made
//! at start and hot-plugged, and refusals that store nothing.

use std::collections::BTreeMap;

use crate::testing::{self, TestHost};
use crate::Engine;
use kante_api::instance::InstancePut;
use kante_api::network::NetworksPost;
use kante_api::{ConfigMap, DevicesMap};

use super::{actions, cgroup_file, config};

fn dev(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn keys(pairs: &[(&str, &str)]) -> ConfigMap {
    dev(pairs)
}

async fn running(host: &TestHost, name: &str) -> std::sync::Arc<Engine> {
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.launch(&engine, name, "img").await;
    engine
}

/// A PATCH of config keys and devices.
async fn patch(
    engine: &Engine,
    name: &str,
    config: ConfigMap,
    devices: DevicesMap,
) -> crate::Result<crate::instance::live::ChangeReport> {
    let row = engine.instance_row(name).await.unwrap();
    engine
        .instance_update(
            name,
            InstancePut {
                config,
                devices,
                ephemeral: row.ephemeral,
                ..Default::default()
            },
            true,
        )
        .await
}

/// A full update that keeps the instance's config and profiles and drops
/// every device of its own.
async fn drop_own_devices(engine: &Engine, name: &str) {
    let row = engine.instance_row(name).await.unwrap();
    engine
        .instance_update(
            name,
            InstancePut {
                config: row.config.clone(),
                devices: DevicesMap::new(),
                profiles: Some(row.profiles.clone()),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn limits_are_written_to_the_cgroup_at_start() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.create(
        &engine,
        "c1",
        "img",
        &[("limits.memory", "256MiB"), ("limits.processes", "100")],
    )
    .await;
    testing::start(&engine, "c1").await;
    assert_eq!(cgroup_file(&host, &engine, "c1", "memory.max"), "268435456");
    assert_eq!(cgroup_file(&host, &engine, "c1", "memory.swap.max"), "max");
    assert_eq!(cgroup_file(&host, &engine, "c1", "pids.max"), "100");
    assert_eq!(cgroup_file(&host, &engine, "c1", "cpu.max"), "max 100000");
}

/// A nested host's cgroup2 may offer no controllers: an instance without
/// limits still starts (nothing is written), one that asks for a limit is
/// refused with the reason.
#[tokio::test]
async fn limits_need_the_controllers_the_host_offers() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.runtime.offer_controllers("");
    host.import_image(&engine, "img").await;
    host.create(&engine, "plain", "img", &[]).await;
    testing::start(&engine, "plain").await;
    let dir = host
        .runtime
        .cgroup_dir(&engine.paths.instance_cgroup("plain"));
    for file in ["memory.max", "pids.max", "cpu.max", "cpuset.cpus"] {
        assert!(!dir.join(file).exists(), "{file} written");
    }
    host.create(&engine, "limited", "img", &[("limits.memory", "256MiB")])
        .await;
    let done = testing::wait(&testing::state(&engine, "limited", "start", false).await).await;
    assert_eq!(done.status, "Failure");
    assert!(
        done.err
            .contains("limits.memory needs the cgroup memory controller"),
        "{}",
        done.err
    );
}

#[tokio::test]
async fn limits_change_live_and_the_report_says_so() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let mut rx = engine.events.subscribe();
    let report = patch(
        &engine,
        "c1",
        keys(&[
            ("limits.memory", "512MiB"),
            ("limits.memory.swap", "false"),
            ("limits.cpu.allowance", "50%"),
        ]),
        DevicesMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        report.live,
        [
            "limits.cpu.allowance",
            "limits.memory",
            "limits.memory.swap"
        ]
    );
    assert!(report.next_start.is_empty());
    assert_eq!(cgroup_file(&host, &engine, "c1", "memory.max"), "536870912");
    assert_eq!(cgroup_file(&host, &engine, "c1", "memory.swap.max"), "0");
    assert_eq!(cgroup_file(&host, &engine, "c1", "cpu.weight"), "50");
    assert_eq!(config(&engine, "c1").await["limits.memory"], "512MiB");
    assert_eq!(actions(&mut rx), ["instance-updated"]);
}

#[tokio::test]
async fn a_count_of_cpus_picks_the_least_used_ones() {
    if crate::instance::config::online_cpus() < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    for name in ["a", "b"] {
        host.create(&engine, name, "img", &[("limits.cpu", "1")])
            .await;
        testing::start(&engine, name).await;
    }
    assert_eq!(cgroup_file(&host, &engine, "a", "cpuset.cpus"), "0");
    assert_eq!(cgroup_file(&host, &engine, "b", "cpuset.cpus"), "1");
}

#[tokio::test]
async fn keys_that_cannot_change_live_wait_for_the_next_start() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let report = patch(
        &engine,
        "c1",
        keys(&[("security.nesting", "true")]),
        DevicesMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.next_start, ["security.nesting"]);
    assert!(!host.runtime.spec("c1").unwrap().nesting);
    testing::wait_ok(&testing::state(&engine, "c1", "restart", true).await).await;
    assert!(host.runtime.spec("c1").unwrap().nesting);
}

#[tokio::test]
async fn an_invalid_change_is_refused_and_nothing_is_stored() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let before = engine.instance_row("c1").await.unwrap();
    let e = patch(
        &engine,
        "c1",
        keys(&[("limits.memory", "lots")]),
        DevicesMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 400);
    let e = patch(
        &engine,
        "c1",
        ConfigMap::new(),
        DevicesMap::from([("x".into(), dev(&[("type", "usb")]))]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 400);
    let e = patch(
        &engine,
        "c1",
        ConfigMap::new(),
        DevicesMap::from([(
            "p".into(),
            dev(&[
                ("type", "proxy"),
                ("listen", "tcp:nowhere"),
                ("connect", "tcp:127.0.0.1:80"),
            ]),
        )]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 400);
    let after = engine.instance_row("c1").await.unwrap();
    assert_eq!(
        (after.config, after.devices),
        (before.config, before.devices)
    );
}

#[tokio::test]
async fn a_disk_is_hot_plugged_and_unplugged() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let data = host.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let disk = dev(&[
        ("type", "disk"),
        ("source", data.to_str().unwrap()),
        ("path", "/mnt/data"),
    ]);
    let report = patch(
        &engine,
        "c1",
        ConfigMap::new(),
        DevicesMap::from([("data".into(), disk)]),
    )
    .await
    .unwrap();
    assert_eq!(report.live, ["devices.data"]);
    assert_eq!(host.runtime.mounts("c1"), ["/mnt/data"]);
    assert!(engine
        .instance_row("c1")
        .await
        .unwrap()
        .devices
        .contains_key("data"));
    // A full update without the device removes it.
    drop_own_devices(&engine, "c1").await;
    assert!(host.runtime.mounts("c1").is_empty());
    assert!(host
        .runtime
        .calls_for("c1")
        .contains(&"unmount c1 /mnt/data".to_string()));
}

#[tokio::test]
async fn disks_that_would_share_the_host_or_do_not_exist_are_refused() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let kante = host.kante_dir();
    for source in [kante.to_str().unwrap(), "/etc", "/nonexistent/kante-test"] {
        let disk = dev(&[("type", "disk"), ("source", source), ("path", "/mnt/x")]);
        let e = patch(
            &engine,
            "c1",
            ConfigMap::new(),
            DevicesMap::from([("x".into(), disk)]),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 400, "{source}: {e}");
    }
    assert!(host.runtime.mounts("c1").is_empty());
    assert!(!engine
        .instance_row("c1")
        .await
        .unwrap()
        .devices
        .contains_key("x"));
}

#[tokio::test]
async fn a_bridged_nic_is_made_at_start_and_removed_at_stop() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    let mut req = testing::create_request("c1", "img", &[]);
    req.put.devices.insert(
        "eth0".into(),
        dev(&[("type", "nic"), ("nictype", "bridged"), ("parent", "br0")]),
    );
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    let hwaddr = config(&engine, "c1").await["volatile.eth0.hwaddr"].clone();
    assert!(hwaddr.starts_with("00:16:3e:"), "{hwaddr}");
    testing::start(&engine, "c1").await;
    let pid = host.runtime.pid("c1").unwrap();
    let c = config(&engine, "c1").await;
    let veth = c["volatile.eth0.host_name"].clone();
    assert_eq!(c["volatile.eth0.hwaddr"], hwaddr, "the MAC is kept");
    let calls = host.net.calls();
    assert!(
        calls.contains(&format!(
            "create_veth {veth} eth0 /proc/{pid}/ns/net master=Some(\"br0\")"
        )),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("set_up_in /proc/{pid}/ns/net eth0")),
        "{calls:?}"
    );
    testing::stop(&engine, "c1").await;
    assert!(host.net.calls().contains(&format!("delete_link {veth}")));
    assert!(!config(&engine, "c1")
        .await
        .contains_key("volatile.eth0.host_name"));
}

#[tokio::test]
async fn a_nic_is_hot_plugged_into_a_running_instance() {
    let host = TestHost::new();
    let engine = running(&host, "c1").await;
    let nic = dev(&[
        ("type", "nic"),
        ("nictype", "bridged"),
        ("parent", "br0"),
        ("name", "eth9"),
    ]);
    let report = patch(
        &engine,
        "c1",
        ConfigMap::new(),
        DevicesMap::from([("n".into(), nic)]),
    )
    .await
    .unwrap();
    assert_eq!(report.live, ["devices.n"]);
    let c = config(&engine, "c1").await;
    let veth = c["volatile.n.host_name"].clone();
    assert!(host
        .net
        .calls()
        .iter()
        .any(|l| l.starts_with(&format!("create_veth {veth} eth9 "))));
    drop_own_devices(&engine, "c1").await;
    assert!(host.net.calls().contains(&format!("delete_link {veth}")));
    let c = config(&engine, "c1").await;
    assert!(!c.contains_key("volatile.n.hwaddr") && !c.contains_key("volatile.n.host_name"));
}

#[tokio::test]
async fn a_nic_on_a_macvlan_network() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    engine
        .network_create(NetworksPost {
            name: "mv".into(),
            kind: "macvlan".into(),
            config: keys(&[("parent", "eth0")]),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut req = testing::create_request("c1", "img", &[]);
    req.put
        .devices
        .insert("eth0".into(), dev(&[("type", "nic"), ("network", "mv")]));
    testing::wait_ok(&engine.instance_create(req).await.unwrap()).await;
    testing::start(&engine, "c1").await;
    assert!(
        host.net
            .calls()
            .iter()
            .any(|c| c.starts_with("create_macvlan eth0 eth0 ")),
        "{:?}",
        host.net.calls()
    );
    let used = engine.network_get("mv").await.unwrap().used_by;
    assert_eq!(used, ["/1.0/instances/c1"]);
    let e = engine.network_delete("mv").await.unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test]
async fn nics_naming_what_does_not_exist_are_refused() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    for nic in [
        dev(&[("type", "nic"), ("network", "nonet")]),
        dev(&[("type", "nic"), ("nictype", "bridged"), ("parent", "nobr")]),
        dev(&[("type", "nic"), ("nictype", "warp")]),
    ] {
        let mut req = testing::create_request("c1", "img", &[]);
        req.put.devices.insert("eth0".into(), nic.clone());
        let e = engine.instance_create(req).await.expect_err("refused");
        assert!(matches!(e.status(), 400 | 404), "{nic:?}: {e}");
    }
    assert!(engine.instance_names().await.unwrap().is_empty());
    assert!(host.net.calls().iter().all(|c| !c.starts_with("create_")));
}
