//! Storage changes on running instances and kanted's own snapshot work,
//! against a real kanted: custom volumes through the `kante storage volume`
//! verbs, disks hot-plugged and unplugged, profile edits reaching running
//! instances, device references checked up front, `copy --refresh`, and
//! scheduled and expiring snapshots.

#[path = "storage/helpers.rs"]
mod helpers;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use helpers::*;
use kante_integration::{kante_fails as fails, kante_ok as ok, run, Daemon, TestImage};
use serde_json::{json, Value};

/// Mount points inside the instance (from its own /proc/self/mounts).
async fn guest_mounts(d: &Daemon, name: &str) -> Vec<String> {
    let (code, out, err) = sh(d, name, "cat /proc/self/mounts").await;
    assert_eq!(code, 0, "{err}");
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The memory limit in force for `name`'s init: the first set limit from
/// its own cgroup upwards, on either cgroup layout.
async fn cgroup_memory_limit(d: &Daemon, name: &str) -> u64 {
    let pid = d.init_pid(name).await;
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let host = kante_integration::HostCgroups::read();
    // v1: the memory hierarchy's line; pure v2: the unified one (`0::`).
    let (root, file, path) = match host.v1_mount("memory") {
        Some(m) => {
            let line = cg
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == "memory"))
                })
                .expect("memory controller line");
            (
                m.to_path_buf(),
                "memory.limit_in_bytes",
                line.splitn(3, ':').nth(2).unwrap().to_string(),
            )
        }
        None => {
            let line = cg
                .lines()
                .find(|l| l.starts_with("0::"))
                .expect("cgroup2 line");
            (
                host.unified.clone().unwrap(),
                "memory.max",
                line[3..].to_string(),
            )
        }
    };
    // init sits in a child cgroup of the instance's on some layouts: walk up.
    let mut dir = root.join(path.trim_start_matches('/'));
    loop {
        if let Ok(v) = std::fs::read_to_string(dir.join(file)) {
            if let Ok(v) = v.trim().parse::<u64>() {
                if v < (1 << 50) {
                    return v;
                }
            }
        }
        assert!(dir != root, "no memory limit found above {path}");
        dir = dir.parent().unwrap().to_path_buf();
    }
}

#[test]
fn volume_verbs_and_disk_hotplug_on_a_running_instance() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        launch_on(&d, &fp, "c1", "default", &[]).await;

        // The lxc verbs for custom volumes.
        assert!(ok(
            &d,
            &[
                "storage",
                "volume",
                "create",
                "default",
                "data",
                "user.purpose=test"
            ]
        )
        .contains("Storage volume data created"));
        let list = ok(&d, &["storage", "volume", "list", "default", "-f", "csv"]);
        assert!(
            list.lines().any(|l| l == "custom,data,,filesystem,0"),
            "{list}"
        );
        assert!(ok(&d, &["storage", "volume", "show", "default", "data"])
            .contains("user.purpose: test"));
        ok(
            &d,
            &[
                "storage",
                "volume",
                "set",
                "default",
                "data",
                "user.owner",
                "ops",
            ],
        );
        assert_eq!(
            ok(
                &d,
                &["storage", "volume", "get", "default", "data", "user.owner"]
            ),
            "ops\n"
        );
        ok(
            &d,
            &[
                "storage",
                "volume",
                "unset",
                "default",
                "data",
                "user.owner",
            ],
        );
        assert_eq!(
            ok(
                &d,
                &["storage", "volume", "get", "default", "data", "user.owner"]
            ),
            "\n"
        );
        let err = fails(&d, &["storage", "volume", "create", "default", "a/b"]);
        assert!(err.starts_with("Error: "), "{err}");

        // Attached while running: mounted at once, written by the guest's root.
        ok(
            &d,
            &[
                "storage",
                "volume",
                "attach",
                "default",
                "data",
                "c1",
                "/srv/data",
            ],
        );
        assert!(guest_mounts(&d, "c1")
            .await
            .contains(&"/srv/data".to_string()));
        let (code, out, err) = sh(
            &d,
            "c1",
            "echo live > /srv/data/f && stat -c '%u %g' /srv/data/f",
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "0 0\n"), "{err}");
        let on_host = pool_dir(&d, "default").join("custom/data/f");
        assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "live\n");
        // Shifted: on disk the container's ids, not the host range's.
        assert_eq!(std::fs::metadata(&on_host).unwrap().uid(), 0);
        let used: Value = d
            .client
            .get_json("/1.0/storage-pools/default/volumes/custom/data")
            .await
            .unwrap();
        assert_eq!(used["used_by"], json!(["/1.0/instances/c1"]));
        // In use: not deleted.
        let err = fails(&d, &["storage", "volume", "delete", "default", "data"]);
        assert!(err.contains("in use") || err.contains("used"), "{err}");
        // The same volume twice in one instance is refused.
        let msg = expect_400(
            &d,
            "PATCH",
            "/1.0/instances/c1",
            json!({"devices": {"again": {"type": "disk", "pool": "default", "source": "data", "path": "/mnt"}}}),
        )
        .await;
        assert!(msg.contains("already attached"), "{msg}");

        // A read-only host path, hot-plugged too.
        // Outside KANTE_DIR: Kante's own state cannot be shared.
        let host_dir = std::path::PathBuf::from(format!("{}-hostdir", d.dir.display()));
        let _ = std::fs::remove_dir_all(&host_dir);
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(host_dir.join("ro"), "from host\n").unwrap();
        let hd = host_dir.display().to_string();
        let src = format!("source={hd}");
        ok(
            &d,
            &[
                "config",
                "device",
                "add",
                "c1",
                "hostro",
                "disk",
                &src,
                "path=/mnt/host",
                "readonly=true",
            ],
        );
        let (code, out, _) = sh(
            &d,
            "c1",
            "cat /mnt/host/ro; touch /mnt/host/x 2>/dev/null; echo $?",
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "from host\n1\n"));

        // Snapshot, change, detach, restore.
        ok(
            &d,
            &["storage", "volume", "snapshot", "default", "data", "before"],
        );
        sh(&d, "c1", "echo changed > /srv/data/f").await;
        // Detached while running: unmounted at once, the data stays in the volume.
        ok(
            &d,
            &["storage", "volume", "detach", "default", "data", "c1"],
        );
        assert!(!guest_mounts(&d, "c1")
            .await
            .contains(&"/srv/data".to_string()));
        assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "changed\n");
        ok(
            &d,
            &["storage", "volume", "restore", "default", "data", "before"],
        );
        assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "live\n");
        let info = ok(&d, &["storage", "volume", "info", "default", "data"]);
        assert!(
            info.contains("Snapshots:") && info.contains("before"),
            "{info}"
        );
        ok(&d, &["config", "device", "remove", "c1", "hostro"]);
        assert!(!guest_mounts(&d, "c1")
            .await
            .contains(&"/mnt/host".to_string()));

        ok(
            &d,
            &["storage", "volume", "rename", "default", "data", "data2"],
        );
        ok(
            &d,
            &[
                "storage",
                "volume",
                "copy",
                "default",
                "data2/before",
                "data3",
            ],
        );
        assert_eq!(
            std::fs::read_to_string(pool_dir(&d, "default").join("custom/data3/f")).unwrap(),
            "live\n"
        );
        ok(
            &d,
            &["storage", "volume", "delete", "default", "data2/before"],
        );
        ok(&d, &["storage", "volume", "delete", "default", "data2"]);
        ok(&d, &["storage", "volume", "delete", "default", "data3"]);
        delete_instance(&d, "c1").await;
        std::fs::remove_dir_all(&host_dir).unwrap();
        d.shutdown().await;
    });
}

#[test]
fn profile_edits_reach_running_instances_and_bad_references_are_refused() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        ok(&d, &["profile", "create", "limits"]);
        ok(&d, &["profile", "set", "limits", "limits.memory", "256MiB"]);
        let post: kante_api::instance::InstancesPost = serde_json::from_value(json!({
            "name": "c1",
            "source": {"type": "image", "fingerprint": fp},
            "profiles": ["default", "limits"],
        }))
        .unwrap();
        d.client.create_instance(&post).await.unwrap();
        start(&d, "c1").await;
        assert_eq!(cgroup_memory_limit(&d, "c1").await, 256 << 20);

        // A changed limit applies to the running instance at once; the
        // response says which changes were live.
        let resp = d
            .client
            .patch(
                "/1.0/profiles/limits",
                &json!({"config": {"limits.memory": "384MiB", "security.privileged": "true"}}),
            )
            .await
            .unwrap();
        let report: Value = resp.metadata().unwrap();
        assert_eq!(report["c1"]["live"], json!(["limits.memory"]));
        assert_eq!(report["c1"]["next_start"], json!(["security.privileged"]));
        assert_eq!(cgroup_memory_limit(&d, "c1").await, 384 << 20);
        ok(&d, &["profile", "unset", "limits", "security.privileged"]);

        // A disk added to the profile is mounted in the running instance.
        call(
            &d,
            "POST",
            "/1.0/storage-pools/default/volumes/custom",
            Some(json!({"name": "shared"})),
        )
        .await
        .unwrap();
        ok(
            &d,
            &[
                "profile",
                "device",
                "add",
                "limits",
                "shared",
                "disk",
                "pool=default",
                "source=shared",
                "path=/shared",
            ],
        );
        assert!(guest_mounts(&d, "c1")
            .await
            .contains(&"/shared".to_string()));
        ok(&d, &["profile", "device", "remove", "limits", "shared"]);
        assert!(!guest_mounts(&d, "c1")
            .await
            .contains(&"/shared".to_string()));

        // References to what does not exist: 400, and the profile is unchanged.
        let before: Value = d.client.get_json("/1.0/profiles/limits").await.unwrap();
        for (what, dev) in [
            (
                "network",
                json!({"type": "nic", "network": "nonet", "name": "eth9"}),
            ),
            (
                "pool",
                json!({"type": "disk", "pool": "nopool", "source": "v", "path": "/x"}),
            ),
            (
                "volume",
                json!({"type": "disk", "pool": "default", "source": "novol", "path": "/x"}),
            ),
        ] {
            let msg = expect_400(
                &d,
                "PATCH",
                "/1.0/profiles/limits",
                json!({"devices": {"bad": dev}}),
            )
            .await;
            assert!(msg.contains("not found"), "{what}: {msg}");
            let msg = expect_400(
                &d,
                "PATCH",
                "/1.0/instances/c1",
                json!({"devices": {"bad": dev}}),
            )
            .await;
            assert!(
                msg.contains("not found") || msg.contains("does not exist"),
                "{what}: {msg}"
            );
        }
        let after: Value = d.client.get_json("/1.0/profiles/limits").await.unwrap();
        assert_eq!(before, after);
        // A limit above the host's memory leaves the profile as it was too.
        expect_400(
            &d,
            "PATCH",
            "/1.0/profiles/limits",
            json!({"config": {"limits.memory": "64TiB"}}),
        )
        .await;
        assert_eq!(cgroup_memory_limit(&d, "c1").await, 384 << 20);

        // New cloud-init data through a profile gives its instances a new
        // instance-id, as an instance edit does (so cloud-init runs again).
        let id = |v: &Value| v["config"]["volatile.cloud-init.instance-id"].clone();
        let before: Value = d.client.get_json("/1.0/instances/c1").await.unwrap();
        d.client
            .patch(
                "/1.0/profiles/limits",
                &json!({"config": {"user.user-data": "#cloud-config\nhostname: x\n"}}),
            )
            .await
            .unwrap();
        let after: Value = d.client.get_json("/1.0/instances/c1").await.unwrap();
        assert!(!id(&after).is_null());
        assert_ne!(id(&before), id(&after));

        // Renamed: instances follow.
        ok(&d, &["profile", "rename", "limits", "small"]);
        let c1: Value = d.client.get_json("/1.0/instances/c1").await.unwrap();
        assert_eq!(c1["profiles"], json!(["default", "small"]));

        delete_instance(&d, "c1").await;
        call(
            &d,
            "DELETE",
            "/1.0/storage-pools/default/volumes/custom/shared",
            None,
        )
        .await
        .unwrap();
        d.shutdown().await;
    });
}

#[test]
fn copy_refresh_brings_a_standby_up_to_date() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        launch_on(&d, &fp, "src", "default", &[]).await;
        sh(&d, "src", "echo one > /root/state").await;
        ok(&d, &["snapshot", "src", "s0"]);
        ok(&d, &["copy", "src", "standby"]);
        let mac = |v: &Value| v["config"]["volatile.eth0.hwaddr"].clone();
        let standby_before: Value = d.client.get_json("/1.0/instances/standby").await.unwrap();

        // The source moves on: new data, a new snapshot, an old one gone.
        sh(
            &d,
            "src",
            "echo two > /root/state && echo new > /root/added",
        )
        .await;
        ok(&d, &["snapshot", "src", "s1"]);
        ok(&d, &["delete", "src/s0"]);
        ok(&d, &["copy", "src", "standby", "--refresh"]);

        let rootfs = pool_dir(&d, "default").join("containers/standby/rootfs");
        assert_eq!(
            std::fs::read_to_string(rootfs.join("root/state")).unwrap(),
            "two\n"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("root/added")).unwrap(),
            "new\n"
        );
        let snaps: Vec<String> = d
            .client
            .get_json::<Vec<String>>("/1.0/instances/standby/snapshots")
            .await
            .unwrap();
        assert_eq!(snaps, vec!["/1.0/instances/standby/snapshots/s1"]);
        // The standby keeps its own identity.
        let standby_after: Value = d.client.get_json("/1.0/instances/standby").await.unwrap();
        assert_eq!(mac(&standby_before), mac(&standby_after));
        // A running target is refused.
        start(&d, "standby").await;
        let err = fails(&d, &["copy", "src", "standby", "--refresh"]);
        assert!(err.contains("stopped"), "{err}");
        assert_eq!(sh(&d, "standby", "cat /root/state").await.1, "two\n");
        for n in ["src", "standby"] {
            delete_instance(&d, n).await;
        }
        d.shutdown().await;
    });
}

#[test]
fn scheduled_snapshots_are_taken_and_expired_ones_removed() {
    run(async {
        let d = Daemon::start_with_env(&[("KANTE_EXPIRY_CHECK_SECS", "1")]).await;
        let fp = d.import(TestImage::Busybox).await;
        launch_on(&d, &fp, "c1", "default", &[]).await;
        let msg = expect_400(
            &d,
            "PATCH",
            "/1.0/instances/c1",
            json!({"config": {"snapshots.schedule": "61 * * * *"}}),
        )
        .await;
        assert!(msg.contains("snapshots.schedule"), "{msg}");

        // Every minute, named by the pattern.
        ok(
            &d,
            &[
                "config",
                "set",
                "c1",
                "snapshots.schedule=* * * * *",
                "snapshots.pattern=auto%d",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(75);
        let snaps = loop {
            let s: Vec<String> = d
                .client
                .get_json("/1.0/instances/c1/snapshots")
                .await
                .unwrap();
            if !s.is_empty() || Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(
            snaps,
            vec!["/1.0/instances/c1/snapshots/auto0"],
            "{}",
            d.log_text()
        );
        ok(&d, &["config", "unset", "c1", "snapshots.schedule"]);

        // A snapshot whose expiry has passed is removed by kanted.
        let expires = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
        call(
            &d,
            "POST",
            "/1.0/instances/c1/snapshots",
            Some(json!({"name": "short", "expires_at": expires})),
        )
        .await
        .unwrap();
        let keep = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        call(
            &d,
            "POST",
            "/1.0/instances/c1/snapshots",
            Some(json!({"name": "long", "expires_at": keep})),
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s: Vec<String> = d
                .client
                .get_json("/1.0/instances/c1/snapshots")
                .await
                .unwrap();
            if !s.iter().any(|x| x.ends_with("/short")) {
                assert!(s.iter().any(|x| x.ends_with("/long")), "{s:?}");
                break;
            }
            assert!(Instant::now() < deadline, "short never expired: {s:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(!pool_dir(&d, "default")
            .join("containers-snapshots/c1/short")
            .exists());
        delete_instance(&d, "c1").await;
        d.shutdown().await;
    });
}
