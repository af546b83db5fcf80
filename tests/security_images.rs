//! Attacks through images and backups (issue 13: F4, F9, S1, S2), each run
//! for real against a daemon and checked from outside: a crafted image or
//! backup that carries device nodes for a host loop device and `/dev/kmsg`
//! (no node may appear on disk, the guest must not reach the device), a
//! guest's sparse file that an export must not expand, imports and
//! backups past their byte caps (refused, nothing left), a pax
//! `GNU.sparse.name` that must not put a file outside the rootfs, and
//! backup snapshot records that must be checked like the instance's.

#[path = "storage/helpers.rs"]
mod helpers;
#[path = "security_images/tarcraft.rs"]
mod tarcraft;

use std::path::{Path, PathBuf};

use helpers::*;
use kante_client::BackupImportOptions;
use kante_integration::{kante, run, Daemon, TestImage};
use tarcraft::*;

/// The busybox test image as a plain tar with `extra` entries appended.
fn crafted_image(work: &Path, name: &str, extra: &[Vec<u8>]) -> PathBuf {
    let tar = unzstd(&TestImage::Busybox.path());
    let path = work.join(name);
    std::fs::write(&path, append(&tar, extra)).unwrap();
    path
}

/// The two device entries of the audit's F4 image, under `prefix`.
fn device_entries(prefix: &str, lo: &LoopDev) -> Vec<Vec<u8>> {
    vec![
        device(
            &format!("{prefix}hostloop"),
            b'4',
            lo.major,
            lo.minor,
            0o666,
        ),
        device(&format!("{prefix}kmsg"), b'3', 1, 11, 0o6666),
    ]
}

/// From inside `name`: /hostloop and /kmsg are no devices, reading gives
/// nothing of the host's loop device, writing reaches neither the loop
/// device's file nor the host's kernel log.
async fn guest_cannot_reach_the_devices(d: &Daemon, name: &str, lo: &LoopDev) {
    let (code, out, err) = sh(
        d,
        name,
        "if [ -b /hostloop ] || [ -c /hostloop ] || [ -c /kmsg ]; then echo DEVICE; fi; \
         ls -l /hostloop /kmsg; head -c 19 /hostloop",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("DEVICE"), "a device node in the guest: {out}");
    assert!(
        !out.contains("HOST-LOOP-ORIGINAL"),
        "read the host's loop device: {out}"
    );
    let marker = format!("KANTE-SEC-KMSG-{}-{name}", std::process::id());
    let (code, out, err) = sh(
        d,
        name,
        &format!(
            "printf 'WRITTEN-FROM-CONTAINER-{name}\\n' | dd of=/hostloop conv=notrunc 2>&1; \
             echo {marker} > /kmsg; sync"
        ),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(lo.untouched(), "the guest wrote to the host's loop device");
    let dmesg = std::process::Command::new("dmesg").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&dmesg.stdout).contains(&marker),
        "the guest wrote to the host's kernel log"
    );
}

fn assert_no_device_nodes(dir: &Path) {
    assert!(dir.is_dir(), "{} missing", dir.display());
    let nodes = device_nodes_under(dir);
    assert!(nodes.is_empty(), "device nodes on the host: {nodes:?}");
}

#[test]
fn image_device_nodes_are_never_made() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let lo = LoopDev::new(work.path());
        let image = crafted_image(work.path(), "t6.tar", &device_entries("rootfs/", &lo));
        let d = Daemon::start().await;
        let fp = d
            .client
            .upload_image(&image, &Default::default(), |_, _| {})
            .await
            .unwrap_or_else(|e| panic!("import of the crafted image: {e}"));
        d.launch(&fp, "d6", &[]).await;

        // On the host: neither the unpacked image nor the instance has a node;
        // the entries became plain empty files.
        let pool = pool_dir(&d, "default");
        assert_no_device_nodes(&pool.join("images").join(&fp));
        let rootfs = pool.join("containers/d6/rootfs");
        assert_no_device_nodes(&rootfs);
        for f in ["hostloop", "kmsg"] {
            let m = std::fs::symlink_metadata(rootfs.join(f)).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert!(m.is_file() && m.len() == 0, "{f}: {m:?}");
            assert_eq!(m.permissions().mode() & 0o6000, 0, "{f}: setuid/setgid");
        }
        assert!(
            d.log_text().contains("device nodes in the archive"),
            "the daemon logs what it dropped"
        );
        guest_cannot_reach_the_devices(&d, "d6", &lo).await;
        d.shutdown().await;
        drop(lo);
    });
}

#[test]
fn backup_device_nodes_are_never_made() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let lo = LoopDev::new(work.path());
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "c1", &[]).await;
        let plain = work.path().join("c1.tar");
        let out = kante(
            &d,
            &[
                "export",
                "c1",
                plain.to_str().unwrap(),
                "--compression",
                "none",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tar = std::fs::read(&plain).unwrap();
        let evil = work.path().join("evil.tar");
        let extra = device_entries("backup/container/rootfs/", &lo);
        std::fs::write(&evil, append(&tar, &extra)).unwrap();

        let out = kante(&d, &["import", evil.to_str().unwrap(), "d7"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vol = pool_dir(&d, "default").join("containers/d7");
        assert_no_device_nodes(&vol);
        start(&d, "d7").await;
        guest_cannot_reach_the_devices(&d, "d7", &lo).await;
        d.shutdown().await;
        drop(lo);
    });
}

#[test]
fn sparse_files_stay_sparse_in_exports() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        let (code, out, err) = sh(&d, "c1", "truncate -s 2G /sparse && wc -c < /sparse").await;
        assert_eq!((code, out.trim()), (0, "2147483648"), "{err}");
        // No compression: zeros must not be hidden by gzip.
        let file = work.path().join("c1.tar");
        let out = kante(
            &d,
            &[
                "export",
                "c1",
                file.to_str().unwrap(),
                "--compression",
                "none",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size < 50 << 20, "a 2 GiB hole made a {size}-byte archive");

        let out = kante(&d, &["import", file.to_str().unwrap(), "c2"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let restored = pool_dir(&d, "default").join("containers/c2/rootfs/sparse");
        let m = std::fs::metadata(&restored).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(m.len(), 2 << 30, "apparent size restored");
        assert!(
            m.blocks() * 512 < 50 << 20,
            "restored sparse: {} blocks",
            m.blocks()
        );
        d.shutdown().await;
    });
}

/// Nothing of an import named `name` is left: no row, no volume, no
/// staging directory, no upload.
async fn nothing_left(d: &Daemon, name: &str) {
    let names = d.client.instance_names().await.unwrap();
    assert!(!names.contains(&name.to_string()), "row left: {names:?}");
    let base = pool_dir(d, "default");
    for sub in ["containers", "containers-snapshots"] {
        let left: Vec<String> = std::fs::read_dir(base.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n == name || n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "left in {sub}: {left:?}");
    }
    let uploads: Vec<_> = std::fs::read_dir(d.dir.join("backups/.uploads"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(uploads.is_empty(), "uploads left: {uploads:?}");
}

#[test]
fn imports_and_backups_past_their_caps_are_refused() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let d = Daemon::start_with_env(&[
            ("KANTE_MAX_IMPORT_BYTES", "48MiB"),
            ("KANTE_MAX_BACKUP_BYTES", "96MiB"),
        ])
        .await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "c1", &[]).await;
        // 64 MiB of zeros: a backup of a few hundred KiB, a bomb for a 48 MiB cap.
        let (code, out, err) = sh(&d, "c1", "dd if=/dev/zero of=/big bs=1M count=64 2>&1").await;
        assert_eq!(code, 0, "{out}{err}");
        let file = work.path().join("c1.tar.gz");
        let out = kante(&d, &["export", "c1", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(std::fs::metadata(&file).unwrap().len() < 8 << 20);

        let opts = BackupImportOptions {
            name: Some("bomb".into()),
            pool: None,
        };
        let e = d
            .client
            .import_backup(&file, &opts, |_, _| {})
            .await
            .expect_err("an import past KANTE_MAX_IMPORT_BYTES must fail");
        let msg = e.to_string();
        assert!(
            msg.contains("too large") && msg.contains("KANTE_MAX_IMPORT_BYTES"),
            "{msg}"
        );
        nothing_left(&d, "bomb").await;
        // The CLI: one clear line, a failure.
        let out = kante(&d, &["import", file.to_str().unwrap(), "bomb"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("too large"), "{err}");
        nothing_left(&d, "bomb").await;

        // Past KANTE_MAX_BACKUP_BYTES, the backup fails and leaves nothing.
        let (code, out, err) = sh(&d, "c1", "dd if=/dev/zero of=/big2 bs=1M count=64 2>&1").await;
        assert_eq!(code, 0, "{out}{err}");
        let file2 = work.path().join("c1-big.tar.gz");
        let out = kante(&d, &["export", "c1", file2.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "an export past the backup cap must fail"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("too large") && err.contains("KANTE_MAX_BACKUP_BYTES"),
            "{err}"
        );
        assert!(!file2.exists());
        assert!(d.client.backups("c1").await.unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(d.dir.join("backups/instances"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "backup files left: {left:?}");
        d.shutdown().await;
    });
}

/// Top-level entries of an unpacked image or instance volume beyond the
/// expected ones.
fn strays(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    !["metadata.yaml", "rootfs", "templates", "backup.yaml"].contains(&n.as_str())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn gnu_sparse_name_cannot_put_a_file_outside_the_rootfs() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let abs = format!("/tmp/kante-sec-escape-{}", std::process::id());
        let sparse_named = |name: &str| pax(&[("GNU.sparse.name", name)]);
        // The audit's t5b (outside rootfs/), an absolute name, and t5c
        // (through a symlink from the same archive).
        let variants: Vec<(&str, Vec<Vec<u8>>)> = vec![
            (
                "top",
                vec![
                    sparse_named("escaped-top-level"),
                    file("rootfs/innocent1", b"x\n"),
                ],
            ),
            (
                "abs",
                vec![sparse_named(&abs), file("rootfs/innocent2", b"x\n")],
            ),
            (
                "link",
                vec![
                    symlink("rootfs/lnk5c", "etc"),
                    sparse_named("rootfs/lnk5c/T5c-through-link"),
                    file("rootfs/innocent3", b"x\n"),
                ],
            ),
        ];
        let d = Daemon::start().await;
        for (i, (what, extra)) in variants.into_iter().enumerate() {
            let image = crafted_image(work.path(), &format!("{what}.tar"), &extra);
            match d
                .client
                .upload_image(&image, &Default::default(), |_, _| {})
                .await
            {
                // Refused by the import operation, with the reason.
                Err(e) => assert!(e.to_string().contains("unsafe path"), "{what}: {e}"),
                Ok(fp) => {
                    // Accepted: it must unpack inside rootfs/ only.
                    let name = format!("s{i}");
                    d.create(&fp, &name, &[]).await;
                    let pool = pool_dir(&d, "default");
                    let image_dir = pool.join("images").join(&fp);
                    let inst = pool.join("containers").join(&name);
                    assert_eq!(strays(&image_dir), Vec::<String>::new(), "{what}");
                    assert_eq!(strays(&inst), Vec::<String>::new(), "{what}");
                    for dir in [&image_dir, &inst] {
                        let through = dir.join("rootfs/etc/T5c-through-link");
                        assert!(!through.exists(), "{what}: {}", through.display());
                    }
                }
            }
            assert!(!Path::new(&abs).exists(), "{what}: {abs} on the host");
        }
        // Nothing was stored for what was refused, and nothing half-made.
        let stored: Vec<String> = std::fs::read_dir(d.dir.join("images"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".kante-"))
            .collect();
        assert!(stored.is_empty(), "temporary files left: {stored:?}");
        d.shutdown().await;
    });
}

/// `backup/index.yaml` with `line` added to the config of its first snapshot.
fn poison_snapshot_config(index: &str, line: &str) -> String {
    let start = index
        .find("\n  snapshots:\n")
        .expect("config.snapshots in the index");
    let at = index[start..]
        .find("\n    config:")
        .map(|i| start + i + "\n    config:".len())
        .expect("a snapshot config");
    let (head, tail) = index.split_at(at);
    let tail = tail.strip_prefix(" {}").unwrap_or(tail);
    format!("{head}\n      {line}{tail}")
}

/// `backup/index.yaml` with the first snapshot's `default` profile renamed.
fn rename_snapshot_profile(index: &str, to: &str) -> String {
    let start = index
        .find("\n  snapshots:\n")
        .expect("config.snapshots in the index");
    let (head, tail) = index.split_at(start);
    format!(
        "{head}{}",
        tail.replacen("\n    - default", &format!("\n    - {to}"), 1)
    )
}

#[test]
fn backup_snapshot_records_are_checked_like_the_instance() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.create(&fp, "c1", &[]).await;
        d.client
            .create_snapshot("c1", "snap0", false)
            .await
            .unwrap();
        let plain = work.path().join("c1.tar");
        let out = kante(
            &d,
            &[
                "export",
                "c1",
                plain.to_str().unwrap(),
                "--compression",
                "none",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tar = std::fs::read(&plain).unwrap();
        let index = String::from_utf8(member(&tar, "backup/index.yaml")).unwrap();
        // A restore would make these the instance's own: a key refused on
        // any instance, a profile that does not exist here.
        let cases = [
            (
                "raw.lxc",
                poison_snapshot_config(
                    &index,
                    "raw.lxc: 'lxc.mount.entry = / mnt none bind,create=dir'",
                ),
            ),
            (
                "a missing profile",
                rename_snapshot_profile(&index, "no-such-profile"),
            ),
        ];
        for (what, poisoned) in cases {
            assert_ne!(poisoned, index, "{what}: the index was changed");
            let evil = work.path().join("poisoned.tar");
            std::fs::write(
                &evil,
                replace_member(&tar, "backup/index.yaml", poisoned.as_bytes()),
            )
            .unwrap();
            let opts = BackupImportOptions {
                name: Some("c2".into()),
                pool: None,
            };
            let e = d
                .client
                .import_backup(&evil, &opts, |_, _| {})
                .await
                .expect_err(what);
            assert_eq!(e.status(), Some(400), "{what}: {e}");
            assert!(
                e.to_string().contains("snap0"),
                "{what}: names the snapshot: {e}"
            );
            nothing_left(&d, "c2").await;
        }
        // The untouched backup imports.
        let out = kante(&d, &["import", plain.to_str().unwrap(), "c3"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        d.shutdown().await;
    });
}
