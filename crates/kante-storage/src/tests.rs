//! Unit tests of pools and volumes on the dir driver.

use super::*;
use std::os::unix::fs::MetadataExt;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kstorage-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn dir_pool(base: &Path) -> Pool {
    let driver = driver("dir").unwrap();
    let mut config = ConfigMap::new();
    driver.create_pool(base, &mut config).unwrap();
    Pool {
        name: "default".into(),
        base: base.to_path_buf(),
        config,
        driver,
    }
}

#[test]
fn registry_refuses_unknown_drivers() {
    assert!(driver("dir").is_ok());
    let e = driver("zfs").err().unwrap().to_string();
    assert!(e.contains("zfs") && e.contains("dir"), "{e}");
}

#[test]
fn image_volume_then_independent_instance_copy() {
    let base = tmp("copy");
    let pool = dir_pool(&base);
    assert_eq!(pool.config["source"], base.display().to_string());
    pool.create_image_volume("abc", &mut |p: &Path| {
        std::fs::create_dir_all(p.join("rootfs/etc"))?;
        std::fs::write(p.join("rootfs/etc/hostname"), "img")?;
        std::os::unix::fs::chown(p.join("rootfs/etc/hostname"), Some(1234), Some(4321))?;
        Ok(())
    })
    .unwrap();
    let inst = pool.create_instance_from_image("abc", "c1").unwrap();
    std::fs::write(inst.join("rootfs/etc/hostname"), "c1").unwrap();
    let img_file = pool
        .volume_path(VolumeKind::Image, "abc")
        .join("rootfs/etc/hostname");
    assert_eq!(std::fs::read_to_string(&img_file).unwrap(), "img");
    let md = std::fs::metadata(inst.join("rootfs/etc/hostname")).unwrap();
    if nix::unistd::geteuid().is_root() {
        assert_eq!((md.uid(), md.gid()), (1234, 4321));
    }
    assert_eq!(pool.list_volumes(VolumeKind::Container), vec!["c1"]);
    assert!(matches!(
        pool.create_instance_from_image("abc", "c1"),
        Err(StorageError::Exists(_))
    ));
    pool.delete_volume(VolumeKind::Container, "c1").unwrap();
    assert!(!inst.exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn failed_fill_leaves_nothing() {
    let base = tmp("fail");
    let pool = dir_pool(&base);
    let r = pool.create_image_volume("bad", &mut |p: &Path| {
        std::fs::create_dir_all(p.join("rootfs")).unwrap();
        Err("corrupt tarball".into())
    });
    assert!(matches!(r, Err(StorageError::Fill { .. })));
    let left: Vec<_> = std::fs::read_dir(base.join("images")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(matches!(
        pool.create_instance_from_image("bad", "c1"),
        Err(StorageError::NotFound(_))
    ));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn dir_pool_refuses_non_empty_source() {
    let base = tmp("nonempty");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("x"), "y").unwrap();
    let mut config = ConfigMap::new();
    assert!(DirDriver.create_pool(&base, &mut config).is_err());
    assert!(DirDriver
        .validate_config(&[("size".to_string(), "1GiB".to_string())].into())
        .is_err());
    std::fs::remove_dir_all(&base).unwrap();
}

fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn btrfs_config_validation() {
    let d = driver("btrfs").unwrap();
    assert_eq!(d.info().name, "btrfs");
    assert!(supported().contains(&"btrfs"));
    for ok in [
        cfg(&[]),
        cfg(&[("size", "5GiB")]),
        cfg(&[("size", "128MiB")]),
        cfg(&[("size", "1073741824")]),
        cfg(&[("source", "/dev/sdb")]),
        cfg(&[("source", "/srv/btrfs/kante"), ("user.note", "x")]),
        cfg(&[(
            "btrfs.mount_options",
            "user_subvol_rm_allowed,compress=zstd",
        )]),
    ] {
        assert!(d.validate_config(&ok).is_ok(), "{ok:?} refused");
    }
    for (bad, needle) in [
        (cfg(&[("size", "5XB")]), "unknown unit"),
        (cfg(&[("size", "")]), "invalid size"),
        (cfg(&[("size", "64MiB")]), "too small"),
        (cfg(&[("source", "relative/path")]), "absolute"),
        (cfg(&[("zfs.pool_name", "x")]), "unknown key"),
        (cfg(&[("volume.size", "1GiB")]), "unknown key"),
        (cfg(&[("btrfs.mount_options", "a\0b")]), "NUL"),
    ] {
        let e = d.validate_config(&bad).unwrap_err();
        assert!(
            matches!(e, StorageError::InvalidConfig(_)) && e.to_string().contains(needle),
            "{bad:?}: {e}"
        );
    }
    // create_pool validates too, before touching anything.
    let base = tmp("btrfs-invalid");
    let mut c = cfg(&[("bogus", "1")]);
    assert!(matches!(
        d.create_pool(&base, &mut c),
        Err(StorageError::InvalidConfig(_))
    ));
    assert!(!base.exists());
}

#[test]
fn disks_dir_is_a_sibling_of_storage_pools() {
    assert_eq!(
        btrfs::disks_dir(Path::new("/var/lib/kante/storage-pools/p1")).unwrap(),
        PathBuf::from("/var/lib/kante/disks")
    );
    assert!(btrfs::disks_dir(Path::new("/")).is_err());
}

#[test]
fn name_rules() {
    for ok in ["snap0", "a-b_c.d", "é", &"x".repeat(255)] {
        assert!(validate_snapshot_name(ok).is_ok(), "{ok:?}");
        assert!(validate_volume_name(ok).is_ok(), "{ok:?}");
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "/",
        "a b",
        "tab\t",
        "nl\n",
        ".hidden",
        &"x".repeat(256),
    ] {
        assert!(
            matches!(
                validate_snapshot_name(bad),
                Err(StorageError::InvalidName(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(validate_volume_name(bad), Err(StorageError::InvalidName(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn dir_snapshots_restore_and_custom_volumes() {
    let base = tmp("snap");
    let pool = dir_pool(&base);
    let vol = pool.create_instance_empty("c1").unwrap();
    std::fs::write(vol.join("rootfs/a"), "1").unwrap();
    let snap = pool.snapshot(VolumeKind::Container, "c1", "s0").unwrap();
    assert_eq!(snap, base.join("containers-snapshots/c1/s0"));
    std::fs::write(vol.join("rootfs/a"), "2").unwrap();
    std::fs::write(vol.join("rootfs/b"), "new").unwrap();
    pool.restore(VolumeKind::Container, "c1", "s0").unwrap();
    assert_eq!(std::fs::read_to_string(vol.join("rootfs/a")).unwrap(), "1");
    assert!(!vol.join("rootfs/b").exists());
    assert!(matches!(
        pool.snapshot(VolumeKind::Container, "c1", "s0"),
        Err(StorageError::Exists(_))
    ));
    assert!(matches!(
        pool.snapshot(VolumeKind::Container, "c1", "a/b"),
        Err(StorageError::InvalidName(_))
    ));
    assert!(matches!(
        pool.snapshot(VolumeKind::Image, "c1", "s"),
        Err(StorageError::NotFound(_)) | Err(StorageError::Unsupported(_))
    ));
    // Size limits need btrfs; nothing is left behind by the refusal.
    assert!(matches!(
        pool.create_custom_volume("v1", Some(1 << 30)),
        Err(StorageError::Unsupported(_))
    ));
    assert!(pool.list_custom_volumes().is_empty());
    assert!(std::fs::read_dir(base.join("custom"))
        .unwrap()
        .next()
        .is_none());
    pool.create_custom_volume("v1", None).unwrap();
    assert!(pool.set_volume_size(VolumeKind::Custom, "v1", None).is_ok());
    assert!(matches!(
        pool.create_custom_volume("a/b", None),
        Err(StorageError::InvalidName(_))
    ));
    // A pool with volumes cannot be deleted.
    assert!(matches!(
        pool.driver.delete_pool(&base, &pool.config),
        Err(StorageError::InUse(_))
    ));
    pool.delete_custom_volume("v1").unwrap();
    pool.delete_volume(VolumeKind::Container, "c1").unwrap();
    assert!(!base.join("containers-snapshots/c1").exists());
    pool.driver.delete_pool(&base, &pool.config).unwrap();
    assert!(!base.exists());
}

#[test]
fn custom_volumes_keep_no_records_but_hand_over_old_sidecars() {
    let base = tmp("meta");
    let pool = dir_pool(&base);
    pool.create_custom_volume("v", None).unwrap();
    // Unknown keys and unenforceable sizes are refused.
    let none = kante_api::ConfigMap::new();
    let mut bad = none.clone();
    bad.insert("bogus".into(), "1".into());
    assert!(matches!(
        pool.resize_custom("v", &none, &bad),
        Err(StorageError::InvalidConfig(_))
    ));
    bad.clear();
    bad.insert("size".into(), "1GiB".into());
    assert!(matches!(
        pool.resize_custom("v", &none, &bad),
        Err(StorageError::Unsupported(_))
    ));
    let mut user = none.clone();
    user.insert("user.a".into(), "1".into());
    pool.resize_custom("v", &none, &user).unwrap();
    assert!(matches!(
        pool.resize_custom("gone", &none, &user),
        Err(StorageError::NotFound(_))
    ));
    // An older version's sidecar is handed over once, then removed.
    let meta = VolumeMeta {
        description: "d".into(),
        config: user,
        created_at: "2024-01-01T00:00:00Z".into(),
    };
    std::fs::write(
        base.join("custom-meta/v.json"),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
    std::fs::write(base.join("custom-meta/.w.json.tmp"), b"{").unwrap();
    assert_eq!(pool.legacy_custom_meta(), [("v".to_string(), meta)]);
    pool.drop_legacy_custom_meta("v").unwrap();
    pool.drop_legacy_custom_meta("v").unwrap();
    assert!(pool.legacy_custom_meta().is_empty());
    std::fs::remove_file(base.join("custom-meta/.w.json.tmp")).unwrap();
    pool.rename_custom_volume("v", "w").unwrap();
    assert_eq!(pool.list_custom_volumes(), vec!["w"]);
    pool.delete_custom_volume("w").unwrap();
    assert!(volumes_in_use(&base).is_empty());
    pool.driver.delete_pool(&base, &pool.config).unwrap();
}

#[test]
fn running_out_of_space_is_said_so_with_the_pool() {
    // How the kernel's ENOSPC/EDQUOT reach us: cp, GNU tar (a short write),
    // btrfs-progs, an io::Error.
    for text in [
        "cp: error copying 'a' to 'b': No space left on device",
        "tar: rootfs/bin/busybox: Wrote only 8704 of 10240 bytes",
        "ERROR: cannot snapshot: Disk quota exceeded",
        &std::io::Error::from_raw_os_error(libc::ENOSPC).to_string(),
        &std::io::Error::from_raw_os_error(libc::EDQUOT).to_string(),
    ] {
        assert!(is_out_of_space(text), "{text}");
    }
    assert!(!is_out_of_space(
        "cp: cannot stat 'a': No such file or directory"
    ));
    let base = tmp("nospace");
    let pool = dir_pool(&base);
    let full = StorageError::Command("copying a to b: cp: b: No space left on device".into());
    let e = pool.space_error::<()>(Err(full), || "volume c1".into());
    assert!(matches!(e, Err(StorageError::NoSpace { .. })), "{e:?}");
    assert_eq!(
        e.unwrap_err().to_string(),
        "not enough space on storage pool \"default\" for volume c1"
    );
    let other = StorageError::Command("cp: permission denied".into());
    let e = pool.space_error::<()>(Err(other), || unreachable!());
    assert!(matches!(e, Err(StorageError::Command(_))), "{e:?}");
    std::fs::remove_dir_all(&base).unwrap();
}
