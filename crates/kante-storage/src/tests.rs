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
        std::fs::create_dir_all(p.join("rootfs/etc")).map_err(|e| e.to_string())?;
        std::fs::write(p.join("rootfs/etc/hostname"), "img").map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(p.join("rootfs/etc/hostname"), Some(1234), Some(4321))
            .map_err(|e| e.to_string())
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
