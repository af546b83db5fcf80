//! Helpers of tests/storage.rs: pools, instances on them, requests that may
//! be operations, and `btrfs subvolume show`.
//! Each test crate that includes it uses only some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kante_api::instance::{InstanceSource, InstancesPost};
use kante_client::ClientError;
use kante_integration::{loop_devices_under, mounts_under, Daemon};
use serde_json::{json, Value};

/// btrfs in the kernel (`scripts/deps.sh` loads the module) and btrfs-progs.
pub fn btrfs_ready() -> bool {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let kernel = fs.lines().any(|l| l.trim_end().ends_with("btrfs"));
    let progs = Command::new("mkfs.btrfs").arg("--version").output().is_ok();
    kante_integration::prerequisite(
        kernel && progs,
        &format!("btrfs in the kernel ({kernel}) and btrfs-progs ({progs})"),
    )
}

/// `POST /1.0/storage-pools` (sync).
pub async fn create_pool(d: &Daemon, name: &str, driver: &str, config: Value) {
    d.client
        .post(
            "/1.0/storage-pools",
            &json!({"name": name, "driver": driver, "config": config}),
        )
        .await
        .unwrap_or_else(|e| panic!("creating pool {name}: {e}\n{}", d.log_text()));
}

/// A btrfs pool on a 2 GiB loop file in the daemon's directory.
pub async fn btrfs_pool(d: &Daemon, name: &str) {
    create_pool(d, name, "btrfs", json!({"size": "2GiB"})).await;
}

pub fn root_disk(pool: &str, extra: &[(&str, &str)]) -> Value {
    let mut root = json!({"type": "disk", "path": "/", "pool": pool});
    for (k, v) in extra {
        root[*k] = json!(v);
    }
    root
}

/// Creates (does not start) `name` from image `fp` with `devices` and `config`.
pub async fn create_with(
    d: &Daemon,
    fp: &str,
    name: &str,
    devices: Value,
    config: Value,
) -> Result<(), ClientError> {
    let mut post = InstancesPost {
        name: name.into(),
        source: InstanceSource {
            kind: "image".into(),
            fingerprint: fp.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    post.put.devices = serde_json::from_value(devices).unwrap();
    if !config.is_null() {
        post.put.config = serde_json::from_value(config).unwrap();
    }
    d.client.create_instance(&post).await.map(drop)
}

/// Creates and starts `name` with its root disk on `pool`.
pub async fn launch_on(d: &Daemon, fp: &str, name: &str, pool: &str, root: &[(&str, &str)]) {
    create_with(
        d,
        fp,
        name,
        json!({"root": root_disk(pool, root)}),
        Value::Null,
    )
    .await
    .unwrap_or_else(|e| panic!("creating {name}: {e}\n{}", d.log_text()));
    start(d, name).await;
}

pub async fn start(d: &Daemon, name: &str) {
    d.client
        .start_instance(name)
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}\n{}", d.log_text()));
}

/// Runs a shell script in the instance: (exit code, stdout, stderr).
pub async fn sh(d: &Daemon, name: &str, script: &str) -> (i32, String, String) {
    let out = d
        .client
        .exec_capture(name, &["sh", "-c", script], &[], None)
        .await
        .unwrap_or_else(|e| panic!("exec in {name}: {e}"));
    (out.code, out.stdout_str(), out.stderr_str())
}

/// Sends a request whose response may be an operation and waits for it.
pub async fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Option<kante_api::operation::Operation>, ClientError> {
    let c = &d.client;
    let body = body.unwrap_or(Value::Null);
    let resp = match method {
        "POST" => c.post(path, &body).await?,
        "PUT" => c.put(path, &body).await?,
        "PATCH" => c.patch(path, &body).await?,
        "DELETE" => c.delete(path).await?,
        m => panic!("method {m}"),
    };
    c.finish(resp).await
}

/// The request must be refused with 400 up front; returns the message.
pub async fn expect_400(d: &Daemon, method: &str, path: &str, body: Value) -> String {
    match call(d, method, path, Some(body.clone())).await {
        Err(ClientError::Api {
            status: 400,
            message,
        }) => message,
        other => panic!("{method} {path} {body}: expected a 400, got {other:?}"),
    }
}

/// Fields of `btrfs subvolume show` (`UUID`, `Parent UUID`, `Flags`, …).
pub fn subvolume_field(path: &Path, field: &str) -> String {
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "btrfs subvolume show {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .find(|(k, _)| k.trim() == field)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field:?} in:\n{text}"))
}

pub fn pool_dir(d: &Daemon, pool: &str) -> PathBuf {
    d.dir.join("storage-pools").join(pool)
}

/// Deletes the pool and checks that nothing of it stays on the host.
pub async fn delete_pool(d: &Daemon, pool: &str) {
    call(d, "DELETE", &format!("/1.0/storage-pools/{pool}"), None)
        .await
        .unwrap_or_else(|e| panic!("deleting pool {pool}: {e}"));
    let base = pool_dir(d, pool);
    assert!(!base.exists(), "{} still exists", base.display());
    assert!(
        mounts_under(&base).is_empty(),
        "still mounted: {:?}",
        mounts_under(&base)
    );
    let img = d.dir.join("disks").join(format!("{pool}.img"));
    assert!(!img.exists(), "loop file {} left", img.display());
    assert!(
        loop_devices_under(&d.dir).is_empty(),
        "loop devices left: {:?}",
        loop_devices_under(&d.dir)
    );
}

pub async fn delete_instance(d: &Daemon, name: &str) {
    let _ = d.client.stop_instance(name, true, -1).await;
    d.client
        .delete_instance(name)
        .await
        .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
}
