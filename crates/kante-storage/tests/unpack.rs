//! The real image unpacker filling image volumes of both drivers: it wants
//! to create its destination itself, inside the fresh (sub)volume.

mod common;

use std::path::Path;

use common::*;
use kante_storage::{Pool, VolumeKind};

const IMAGE: &str = "/var/cache/kante/images/busybox-amd64.tar.zst";

fn unpack_into(pool: &Pool, images: &Path, fp: &str) {
    pool.create_image_volume(fp, &mut |staging| {
        kante_images::unpack(
            images,
            fp,
            staging,
            &kante_images::Limits::none(),
            &mut |_, _| {},
        )?;
        Ok(())
    })
    .unwrap();
    let v = pool.volume_path(VolumeKind::Image, fp);
    assert!(v.join("metadata.yaml").is_file());
    assert!(v.join("rootfs/bin").exists());
    let names: Vec<String> = std::fs::read_dir(&v)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let inst = pool.create_instance_from_image(fp, "c1").unwrap();
    assert!(inst.join("rootfs/bin").exists());
    pool.delete_volume(VolumeKind::Container, "c1").unwrap();
}

#[test]
fn unpacker_fills_image_volumes() {
    let _l = lock();
    if !prerequisite(Path::new(IMAGE).exists(), IMAGE) || !btrfs_ready() {
        return;
    }
    let s = Scratch::new("unpack");
    let images = s.root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let f = std::fs::File::open(IMAGE).unwrap();
    let fp = kante_images::store_unified(&images, f, None, &kante_images::Limits::none())
        .unwrap()
        .fingerprint;
    for driver in ["dir", "btrfs"] {
        let pool = s.pool(
            driver,
            driver,
            &[("size", "256MiB")][..usize::from(driver == "btrfs")],
        );
        unpack_into(&pool, &images, &fp);
        pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    }
    s.assert_clean();
}
