//! Timings of volume operations on a ~300 MB Debian tree, btrfs (loop file)
//! against dir (on the temp directory's filesystem). Not a pass/fail test:
//!
//! ```text
//! cargo test -p kante-storage --test measure -- --ignored --nocapture
//! ```
//!
//! Uses `KANTE_MEASURE_IMAGE` (default
//! `/var/cache/kante/images/debian-bookworm-amd64.tar.zst`, a unified LXD image).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kante_storage::{Pool, VolumeKind};

const C: VolumeKind = VolumeKind::Container;

fn timed<T>(what: &str, rows: &mut Vec<(String, Duration)>, f: impl FnOnce() -> T) -> T {
    nix::unistd::sync();
    let t = Instant::now();
    let r = f();
    let d = t.elapsed();
    rows.push((what.to_string(), d));
    r
}

fn run_ops(pool: &Pool, image: &Path) -> Vec<(String, Duration)> {
    let mut rows = Vec::new();
    timed("unpack image volume", &mut rows, || {
        pool.create_image_volume("debian", &mut |p: &Path| {
            std::fs::create_dir(p)?;
            let st = Command::new("sh")
                .arg("-c")
                .arg(
                    "zstd -dc \"$0\" | tar -x --numeric-owner --xattrs --xattrs-include='*' -C \"$1\"",
                )
                .arg(image)
                .arg(p)
                .status()?;
            st.success()
                .then_some(())
                .ok_or_else(|| "unpack failed".into())
        })
        .unwrap()
    });
    timed("create instance from image", &mut rows, || {
        pool.create_instance_from_image("debian", "c1").unwrap()
    });
    let v = pool.volume_path(C, "c1");
    std::fs::write(v.join("rootfs/etc/hostname"), "c1").unwrap();
    timed("snapshot", &mut rows, || {
        pool.snapshot(C, "c1", "s0").unwrap()
    });
    std::fs::write(v.join("rootfs/etc/hostname"), "changed").unwrap();
    std::fs::remove_dir_all(v.join("rootfs/usr/share/doc")).unwrap();
    timed("restore", &mut rows, || {
        pool.restore(C, "c1", "s0").unwrap()
    });
    assert_eq!(read(&v.join("rootfs/etc/hostname")), "c1");
    assert!(v.join("rootfs/usr/share/doc").is_dir());
    timed("copy instance", &mut rows, || {
        pool.copy_into(&v, C, "c2").unwrap()
    });
    timed("delete instance", &mut rows, || {
        pool.delete_volume(C, "c2").unwrap()
    });
    timed("delete instance with 1 snapshot", &mut rows, || {
        pool.delete_volume(C, "c1").unwrap()
    });
    rows
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture"]
fn measure_debian_tree() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let image = std::env::var("KANTE_MEASURE_IMAGE")
        .unwrap_or_else(|_| "/var/cache/kante/images/debian-bookworm-amd64.tar.zst".into());
    let image = Path::new(&image);
    if !image.exists() {
        eprintln!("skipping: no image at {}", image.display());
        return;
    }
    let s = Scratch::new("measure");
    let b = s.pool("btrfs", "b", &[("size", "4GiB")]);
    let d = s.pool("dir", "d", &[]);
    let tb = run_ops(&b, image);
    let td = run_ops(&d, image);
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&s.root)
        .output()
        .unwrap();
    println!(
        "\n{:<34} {:>12} {:>16}",
        "operation (~300 MB Debian tree)",
        "btrfs",
        format!("dir ({})", String::from_utf8_lossy(&fs.stdout).trim())
    );
    for ((what, x), (_, y)) in tb.iter().zip(td.iter()) {
        println!("{what:<34} {:>12} {:>16}", ms(*x), ms(*y));
    }
    b.delete_volume(VolumeKind::Image, "debian").unwrap();
    b.driver.delete_pool(&b.base, &b.config).unwrap();
    d.driver.delete_pool(&d.base, &d.config).unwrap();
    s.assert_clean();
}
