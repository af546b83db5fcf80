//! Running out of space (issue 20): a small `dir` pool on a tmpfs of its
//! own, filled so that an image unpack, a create, a copy and an import hit
//! ENOSPC part way, and a small btrfs pool on a loop file (`size=`), where
//! the image unpack and the import do (a copy there is a snapshot). Each gives a clear error, leaves nothing half-made (no
//! volume, staging directory, record or mount), and the daemon keeps
//! working: a create on a pool with space succeeds, and once space is
//! freed every retry succeeds.

#[path = "storage/helpers.rs"]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::Command;

use kante_api::instance::{InstanceSource, InstancesPost};
use kante_client::{BackupImportOptions, ClientError};
use kante_integration::{kante, kante_ok, mounts_under, run, Daemon, TestImage};
use serde_json::json;

const POOL: &str = "small";

fn free_bytes(dir: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    st.blocks_available() * st.fragment_size()
}

/// Fills the pool's filesystem so that about `leave` bytes stay free
/// (btrfs counts its free space loosely: a refused size is retried smaller).
fn fill_leaving(base: &Path, leave: u64) -> PathBuf {
    let filler = base.join("filler");
    let mut size = free_bytes(base).saturating_sub(leave);
    loop {
        let o = Command::new("fallocate")
            .args(["-l", &size.to_string()])
            .arg(&filler)
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(size > 8 << 20, "{}", String::from_utf8_lossy(&o.stderr));
        size -= 4 << 20;
    }
    sync(base);
    // The busybox rootfs (about 2 MB) cannot fit any more.
    assert!(
        free_bytes(base) < 2 << 20,
        "{} bytes free",
        free_bytes(base)
    );
    filler
}

/// Frees the filler's space (btrfs frees it at its next commit).
fn free_space(filler: &Path) {
    std::fs::remove_file(filler).unwrap();
    sync(filler.parent().unwrap());
}

fn sync(dir: &Path) {
    assert!(Command::new("sync")
        .arg("-f")
        .arg(dir)
        .status()
        .unwrap()
        .success());
}

async fn create_on(d: &Daemon, fp: &str, name: &str, pool: &str) -> Result<String, ClientError> {
    let mut post = InstancesPost {
        name: name.into(),
        source: InstanceSource {
            kind: "image".into(),
            fingerprint: fp.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    post.put.devices =
        serde_json::from_value(json!({"root": {"type": "disk", "path": "/", "pool": pool}}))
            .unwrap();
    d.client.create_instance(&post).await
}

/// The error says what happened, where, on one line.
fn says_no_space(what: &str, msg: &str) {
    eprintln!("{what}: {}", msg.trim_end());
    assert!(
        msg.contains(&format!("not enough space on storage pool \"{POOL}\"")),
        "{what}: {msg:?}"
    );
    assert_eq!(msg.trim_end().lines().count(), 1, "{what}: {msg:?}");
}

/// Imports `backup` as `c4` on the test pool.
async fn import_c4(d: &Daemon, backup: &Path) -> Result<(), ClientError> {
    let opts = BackupImportOptions {
        name: Some("c4".into()),
        pool: Some(POOL.into()),
    };
    d.client
        .import_backup(backup, &opts, |_, _| {})
        .await
        .map(|_| ())
}

/// Nothing of `name` is left: no record, no volume, no staging or unpack
/// directory in the pool, no mount but the pool's own filesystem.
async fn nothing_left(d: &Daemon, base: &Path, name: &str) {
    let e = d.client.instance(name).await.expect_err("no record");
    assert!(e.is_not_found(), "{name}: {e}");
    for sub in ["containers", "containers-snapshots", "images"] {
        let left: Vec<String> = std::fs::read_dir(base.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n == name || n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{name}: left in {sub}: {left:?}");
    }
    assert_eq!(mounts_under(base), vec![base.to_path_buf()], "{name}");
    let uploads = d.dir.join("backups/.uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "uploads left: {left:?}");
}

#[test]
fn a_full_pool_fails_cleanly_and_recovers() {
    run(async {
        // The import cap (free space minus a 64 MiB reserve) would refuse
        // the import up front; lifted, the unpack really runs out of space.
        let d = Daemon::start_with_env(&[("KANTE_MAX_IMPORT_BYTES", "1073741824")]).await;
        let fp = d.import(TestImage::Busybox).await;
        let base = d.dir.join("storage-pools").join(POOL);
        std::fs::create_dir_all(&base).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=96m,mode=0711",
                "kante-test-small",
            ])
            .arg(&base)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let body = json!({"name": POOL, "driver": "dir", "config": {}});
        d.client.post("/1.0/storage-pools", &body).await.unwrap();
        let work = tempfile::tempdir().unwrap();

        // Mid-create, unpacking the image into the pool (its first use).
        let filler = fill_leaving(&base, 1 << 20);
        let e = create_on(&d, &fp, "c1", POOL).await.unwrap_err();
        // An operation's failure: LXD's envelope (status Failure, its err).
        assert!(matches!(e, ClientError::Operation(_)), "{e:?}");
        says_no_space("create (image unpack)", &e.to_string());
        nothing_left(&d, &base, "c1").await;
        // After freeing space, the retry succeeds.
        free_space(&filler);
        create_on(&d, &fp, "c1", POOL).await.unwrap();
        let backup = work.path().join("c1.tar.gz");
        kante_ok(&d, &["export", "c1", backup.to_str().unwrap()]);
        // A custom volume with 2 MiB of data, to copy.
        let v1 = json!({"name": "v1", "type": "custom"});
        let volumes = format!("/1.0/storage-pools/{POOL}/volumes/custom");
        d.client.post(&volumes, &v1).await.unwrap();
        std::fs::write(base.join("custom/v1/data"), vec![7u8; 2 << 20]).unwrap();

        // Mid-create, copying the image's volume; mid-copy; mid-import.
        let filler = fill_leaving(&base, 1 << 20);
        let e = create_on(&d, &fp, "c2", POOL).await.unwrap_err();
        says_no_space("create (copy of the image)", &e.to_string());
        nothing_left(&d, &base, "c2").await;
        let o = kante(&d, &["copy", "c1", "c3"]);
        assert!(!o.status.success());
        says_no_space("copy", &String::from_utf8_lossy(&o.stderr));
        nothing_left(&d, &base, "c3").await;
        let e = import_c4(&d, &backup).await.unwrap_err();
        says_no_space("import", &e.to_string());
        nothing_left(&d, &base, "c4").await;

        // A synchronous request says it in its envelope's status: 507.
        let copy = json!({"name": "v2", "type": "custom",
            "source": {"type": "copy", "pool": POOL, "name": "v1"}});
        let volumes = format!("/1.0/storage-pools/{POOL}/volumes/custom");
        match d.client.post(&volumes, &copy).await.unwrap_err() {
            ClientError::Api { status, message } => {
                assert_eq!(status, 507, "{message}");
                says_no_space("volume copy", &message);
            }
            e => panic!("{e:?}"),
        }
        for (sub, name) in [("custom", "v2"), ("custom-meta", "v2.json")] {
            let left: Vec<String> = std::fs::read_dir(base.join(sub))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n == name || n.starts_with('.'))
                .collect();
            assert!(left.is_empty(), "left in {sub}: {left:?}");
        }

        // The daemon keeps working: a pool with space takes a new instance.
        create_on(&d, &fp, "c5", "default").await.unwrap();
        // Space freed: every retry succeeds.
        free_space(&filler);
        d.client.post(&volumes, &copy).await.unwrap();
        create_on(&d, &fp, "c2", POOL).await.unwrap();
        kante_ok(&d, &["copy", "c1", "c3"]);
        import_c4(&d, &backup).await.unwrap();
        for n in ["c1", "c2", "c3", "c4"] {
            let rootfs = base.join("containers").join(n).join("rootfs");
            assert!(rootfs.join("bin/busybox").exists(), "{n}");
            kante_ok(&d, &["delete", n]);
        }
        assert_eq!(
            std::fs::read(base.join("custom/v2/data")).unwrap().len(),
            2 << 20
        );
        for v in ["v1", "v2"] {
            d.client.delete(&format!("{volumes}/{v}")).await.unwrap();
        }
        // The pool's filesystem goes first: the pool's removal takes its
        // (then empty) directory.
        nix::mount::umount(&base).unwrap();
        d.client
            .delete(&format!("/1.0/storage-pools/{POOL}"))
            .await
            .unwrap();
        d.shutdown().await;
    });
}

#[test]
fn a_full_btrfs_pool_fails_cleanly_and_recovers() {
    if !helpers::btrfs_ready() {
        return;
    }
    run(async {
        let d = Daemon::start_with_env(&[("KANTE_MAX_IMPORT_BYTES", "1073741824")]).await;
        let fp = d.import(TestImage::Busybox).await;
        // The smallest pool the driver makes.
        helpers::create_pool(&d, POOL, "btrfs", json!({"size": "128MiB"})).await;
        let base = d.dir.join("storage-pools").join(POOL);
        let work = tempfile::tempdir().unwrap();

        let filler = fill_leaving(&base, 1 << 20);
        let e = create_on(&d, &fp, "c1", POOL).await.unwrap_err();
        says_no_space("btrfs create (image unpack)", &e.to_string());
        nothing_left(&d, &base, "c1").await;
        free_space(&filler);
        create_on(&d, &fp, "c1", POOL).await.unwrap();
        let backup = work.path().join("c1.tar.gz");
        kante_ok(&d, &["export", "c1", backup.to_str().unwrap()]);

        let filler = fill_leaving(&base, 1 << 20);
        let e = import_c4(&d, &backup).await.unwrap_err();
        says_no_space("btrfs import", &e.to_string());
        nothing_left(&d, &base, "c4").await;
        create_on(&d, &fp, "c5", "default").await.unwrap();
        free_space(&filler);
        import_c4(&d, &backup).await.unwrap();
        for n in ["c1", "c4", "c5"] {
            kante_ok(&d, &["delete", n]);
        }
        d.client
            .delete(&format!("/1.0/storage-pools/{POOL}"))
            .await
            .unwrap();
        d.shutdown().await;
    });
}
