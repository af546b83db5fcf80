//! Backups against real daemons: `kante export` of an instance with a
//! snapshot, `kante import` on a second daemon (its own KANTE_DIR) that
//! brings back data and snapshot, on dir and (if the host can) btrfs; and
//! the imports that must be refused without leaving anything behind.

#[path = "storage/helpers.rs"]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use helpers::*;
use kante_client::{BackupImportOptions, ClientError};
use kante_integration::{kante, run, Daemon, TestImage};

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

async fn cat(d: &Daemon, name: &str) -> String {
    let (code, out, err) = sh(d, name, "cat /data.txt").await;
    assert_eq!(code, 0, "cat: {err}");
    out.trim().to_string()
}

/// Nothing of an import named `name` is left in `pool` or the database.
async fn nothing_left(d: &Daemon, pool: &str, name: &str) {
    let names = d.client.instance_names().await.unwrap();
    assert!(!names.contains(&name.to_string()), "row left: {names:?}");
    let base = pool_dir(d, pool);
    for sub in ["containers", "containers-snapshots"] {
        let left: Vec<String> = std::fs::read_dir(base.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n == name || n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "left in {sub}: {left:?}");
    }
    // Every caller uploaded a backup, so the spool exists (a renamed spool
    // would otherwise pass as empty).
    let spool = d.dir.join("backups/.uploads");
    let uploads: Vec<_> = std::fs::read_dir(&spool)
        .unwrap_or_else(|e| panic!("{}: {e}", spool.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(uploads.is_empty(), "uploads left: {uploads:?}");
}

/// A plain tar with the given (name, data) regular files (`None`: a directory).
fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        let body = data.unwrap_or(b"");
        octal(&mut h, 100, 8, if data.is_some() { 0o644 } else { 0o755 });
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, body.len() as u64);
        octal(&mut h, 136, 12, 0);
        h[156] = if data.is_some() { b'0' } else { b'5' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

async fn import_fails(d: &Daemon, file: &Path, name: &str) -> ClientError {
    let opts = BackupImportOptions {
        name: Some(name.into()),
        pool: None,
    };
    let e = d
        .client
        .import_backup(file, &opts, |_, _| {})
        .await
        .expect_err("the import must fail");
    nothing_left(d, "default", name).await;
    e
}

/// Exports `c1` (with snapshot `snap0` holding "one", "two" now) from `a`.
async fn export_c1(a: &Daemon, work: &Path) -> PathBuf {
    let fp = a.import(TestImage::Busybox).await;
    a.launch(&fp, "c1", &[]).await;
    assert_eq!(sh(a, "c1", "echo one > /data.txt").await.0, 0);
    a.client
        .create_snapshot("c1", "snap0", false)
        .await
        .unwrap();
    assert_eq!(sh(a, "c1", "echo two > /data.txt").await.0, 0);
    let file = work.join("c1.tar.gz");
    let t = Instant::now();
    ok(
        &kante(a, &["export", "c1", file.to_str().unwrap()]),
        "kante export",
    );
    eprintln!(
        "export of busybox c1 (running, 1 snapshot): {:.2?}, {} bytes",
        t.elapsed(),
        std::fs::metadata(&file).unwrap().len()
    );
    // The server-side backup was only a vehicle.
    assert!(a.client.backups("c1").await.unwrap().is_empty());
    file
}

/// Imports `file` on `b` as `name` (into `pool` if given) and checks data,
/// snapshot and restore.
async fn import_and_check(b: &Daemon, file: &Path, name: &str, pool: Option<&str>) {
    let mut args = vec!["import", file.to_str().unwrap(), name];
    if let Some(p) = pool {
        args.extend(["--storage", p]);
    }
    let t = Instant::now();
    ok(&kante(b, &args), "kante import");
    eprintln!("import as {name} ({pool:?}): {:.2?}", t.elapsed());
    let snaps = b.client.snapshots(name).await.unwrap();
    assert_eq!(
        snaps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["snap0"]
    );
    let pool = pool.unwrap_or("default");
    let inst = b.client.instance(name).await.unwrap();
    let root = inst
        .expanded_devices
        .values()
        .find(|d| d.get("path").map(String::as_str) == Some("/"))
        .unwrap();
    assert_eq!(root["pool"], pool);
    assert!(pool_dir(b, pool).join("containers").join(name).is_dir());
    start(b, name).await;
    assert_eq!(cat(b, name).await, "two");
    b.client.stop_instance(name, true, -1).await.unwrap();
    b.client
        .restore_snapshot(name, "snap0", false)
        .await
        .unwrap();
    start(b, name).await;
    assert_eq!(cat(b, name).await, "one");
    b.client.stop_instance(name, true, -1).await.unwrap();
}

#[test]
fn export_then_import_on_a_second_daemon() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let a = Daemon::start().await;
        let file = export_c1(&a, work.path()).await;

        // A missing instance: 404 from the API, an error and exit 1 from the CLI.
        let e = a
            .client
            .start_backup("nope", &Default::default())
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(404), "{e}");
        let out = kante(
            &a,
            &[
                "export",
                "nope",
                work.path().join("n.tgz").to_str().unwrap(),
            ],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains("not found"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");

        // Backups go with their instance.
        a.client.stop_instance("c1", true, -1).await.unwrap();
        let op = a
            .client
            .start_backup("c1", &Default::default())
            .await
            .unwrap();
        a.client.wait_operation(&op.id, None).await.unwrap();
        assert_eq!(a.client.backups("c1").await.unwrap().len(), 1);
        a.client.delete_instance("c1").await.unwrap();
        assert!(!a.dir.join("backups/instances/c1").exists());
        a.shutdown().await;

        let b = Daemon::start().await;
        import_and_check(&b, &file, "c1", None).await;

        // The name is taken now.
        let e = b
            .client
            .import_backup(&file, &Default::default(), |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(409), "{e}");

        // A truncated tarball.
        let data = std::fs::read(&file).unwrap();
        let cut = work.path().join("cut.tar.gz");
        std::fs::write(&cut, &data[..data.len() * 2 / 3]).unwrap();
        let e = import_fails(&b, &cut, "cut").await;
        assert!(e.to_string().contains("truncated"), "{e}");

        // `..` in a member.
        let evil = work.path().join("evil.tar");
        std::fs::write(
            &evil,
            tar_of(&[
                ("backup/", None),
                (
                    "backup/index.yaml",
                    Some(b"name: evil\nbackend: dir\npool: default\n"),
                ),
                ("backup/container/", None),
                ("backup/container/rootfs/", None),
                ("backup/../../../evil.txt", Some(b"x")),
            ]),
        )
        .unwrap();
        let e = import_fails(&b, &evil, "evil").await;
        assert!(e.to_string().contains("Unsafe path"), "{e}");
        // …and nothing was written where the name points, or anywhere else.
        let found = std::process::Command::new("find")
            .arg(&b.dir)
            .arg(b.dir.parent().unwrap())
            .args(["-maxdepth", "6", "-name", "evil.txt"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&found.stdout),
            "",
            "evil.txt was written"
        );

        // No index.yaml: refused before any operation.
        let noindex = work.path().join("noindex.tar");
        std::fs::write(
            &noindex,
            tar_of(&[("backup/", None), ("backup/container/", None)]),
        )
        .unwrap();
        let e = import_fails(&b, &noindex, "noindex").await;
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains("index.yaml"), "{e}");

        // Not a tarball at all.
        let junk = work.path().join("junk.tar.gz");
        std::fs::write(&junk, [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        import_fails(&b, &junk, "junk").await;

        // The CLI: one line and a non-zero exit.
        let out = kante(&b, &["import", cut.to_str().unwrap(), "cut2"]);
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim().lines().count(),
            1
        );

        if btrfs_ready() {
            btrfs_pool(&b, "bt").await;
            import_and_check(&b, &file, "c2", Some("bt")).await;
            let vol = pool_dir(&b, "bt").join("containers/c2");
            assert!(!subvolume_field(&vol, "UUID").is_empty());
            let snap = pool_dir(&b, "bt").join("containers-snapshots/c2/snap0");
            assert!(subvolume_field(&snap, "Flags").contains("readonly"));
            delete_instance(&b, "c2").await;
            delete_pool(&b, "bt").await;
        }
        b.shutdown().await;
    });
}

#[test]
fn zstd_and_instance_only_exports() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let a = Daemon::start().await;
        let fp = a.import(TestImage::Busybox).await;
        a.create(&fp, "c1", &[]).await;
        a.client
            .create_snapshot("c1", "snap0", false)
            .await
            .unwrap();
        let file = work.path().join("c1.tar.zst");
        ok(
            &kante(
                &a,
                &[
                    "export",
                    "c1",
                    file.to_str().unwrap(),
                    "--instance-only",
                    "--compression",
                    "zstd",
                ],
            ),
            "kante export --instance-only",
        );
        let head = std::fs::read(&file).unwrap();
        assert_eq!(&head[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        ok(
            &kante(&a, &["import", file.to_str().unwrap(), "c2"]),
            "kante import",
        );
        assert!(a.client.snapshots("c2").await.unwrap().is_empty());
        // Optimized storage is refused up front.
        let e = a
            .client
            .start_backup(
                "c1",
                &kante_api::backup::InstanceBackupsPost {
                    optimized_storage: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        a.shutdown().await;
    });
}

/// Staging directories of imports in the default pool.
fn staging(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(pool_dir(d, "default").join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn an_upload_cut_by_its_client_unpacks_as_it_arrives_and_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    run(async {
        let work = tempfile::tempdir().unwrap();
        let d = Daemon::start().await;
        let file = export_c1(&d, work.path()).await;
        let body = std::fs::read(&file).unwrap();
        // By hand: half the announced body, then the connection goes.
        let mut s = tokio::net::UnixStream::connect(d.dir.join("unix.socket"))
            .await
            .unwrap();
        let head = format!(
            "POST /1.0/instances HTTP/1.1\r\nHost: unix.socket\r\n\
             Content-Type: application/octet-stream\r\nX-LXD-name: gone\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body[..body.len() / 2]).await.unwrap();
        s.flush().await.unwrap();
        // The first half is being unpacked in the pool, nothing spooled.
        until("no staging directory while the body arrives", || {
            !staging(&d).is_empty()
        })
        .await;
        let spool: Vec<_> = std::fs::read_dir(d.dir.join("backups/.uploads"))
            .unwrap()
            .flatten()
            .collect();
        assert!(spool.is_empty(), "spooled: {spool:?}");
        drop(s);
        until("the cut import's staging directory stays", || {
            staging(&d).is_empty()
        })
        .await;
        nothing_left(&d, "default", "gone").await;
        // The daemon takes the whole upload afterwards.
        import_and_check(&d, &file, "back", None).await;
        d.shutdown().await;
    });
}
