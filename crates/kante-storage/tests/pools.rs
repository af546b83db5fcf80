//! Storage pools on real filesystems: btrfs on loop files (root only; the
//! tests skip themselves otherwise) and dir pools in temp directories. The
//! tests run one at a time and clean up (unmount, detach, remove) even when
//! they fail.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::*;
use kante_storage::{driver, Pool, StorageError, VolumeKind};

const C: VolumeKind = VolumeKind::Container;

/// An image volume `img` holding rootfs/etc/hostname and a `big` file.
fn make_image(pool: &Pool, fp: &str, big: usize) {
    pool.create_image_volume(fp, &mut |p: &Path| {
        std::fs::create_dir_all(p.join("rootfs/etc"))?;
        std::fs::write(p.join("metadata.yaml"), "architecture: x86_64\n")?;
        std::fs::write(p.join("rootfs/etc/hostname"), "image")?;
        std::fs::write(p.join("rootfs/keep"), "k")?;
        if big > 0 {
            write_file(&p.join("rootfs/big"), big);
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn btrfs_instances_are_constant_time_snapshots() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("snapcopy");
    let pool = s.pool("btrfs", "p1", &[("size", "2GiB")]);
    assert_eq!(pool.config["source"], s.img("p1").display().to_string());
    assert_eq!(pool.config["size"], "2GiB");
    assert_eq!(
        std::fs::metadata(s.img("p1")).unwrap().len(),
        2 << 30,
        "sparse loop file of the pool's size"
    );

    let t = Instant::now();
    make_image(&pool, "img", 200 << 20);
    eprintln!("image volume with a 200 MiB file: {}", ms(t.elapsed()));
    let img = pool.volume_path(VolumeKind::Image, "img");
    assert_eq!(read(&img.join("metadata.yaml")), "architecture: x86_64\n");
    assert!(!img.join(".kante-fill").exists());
    let show = subvolume_show(&img);
    assert!(
        show["Flags"].contains("readonly"),
        "image not sealed: {show:?}"
    );
    assert!(
        std::fs::write(img.join("rootfs/x"), "x").is_err(),
        "image volume is writable"
    );
    let img_uuid = show["UUID"].clone();

    let used_before = fs_used(&pool.base);
    let mut times = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let v = pool
            .create_instance_from_image("img", &format!("c{i}"))
            .unwrap();
        times.push(t.elapsed());
        let show = subvolume_show(&v);
        assert_eq!(
            show["Parent UUID"], img_uuid,
            "c{i} is not a snapshot of the image"
        );
        assert!(!show["Flags"].contains("readonly"));
        assert_eq!(read(&v.join("rootfs/etc/hostname")), "image");
    }
    // Make sure everything the copies did is on disk before measuring.
    nix::unistd::sync();
    let grown = fs_used(&pool.base).saturating_sub(used_before);
    eprintln!(
        "5 instance volumes from a 200 MiB image: {}; filesystem grew by {} KiB",
        times.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
        grown >> 10
    );
    assert!(
        grown < 20 << 20,
        "copies used {grown} bytes: data was copied"
    );

    // The instances are independent of the image and of each other.
    let c0 = pool.volume_path(C, "c0");
    std::fs::write(c0.join("rootfs/etc/hostname"), "c0").unwrap();
    assert_eq!(read(&img.join("rootfs/etc/hostname")), "image");
    assert_eq!(
        read(&pool.volume_path(C, "c1").join("rootfs/etc/hostname")),
        "image"
    );

    for i in 0..5 {
        pool.delete_volume(C, &format!("c{i}")).unwrap();
    }
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    assert!(!s.img("p1").exists() && !pool.base.exists());
    s.assert_clean();
}

/// Snapshot, modify, restore; snapshot rename, delete; copies from snapshots.
fn snapshot_cycle(pool: &Pool) {
    make_image(pool, "img", 0);
    let v = pool.create_instance_from_image("img", "c1").unwrap();
    let f = |n: &str| v.join("rootfs").join(n);
    std::fs::write(f("a"), "1").unwrap();
    let snap = pool.snapshot(C, "c1", "s0").unwrap();
    assert_eq!(snap, pool.base.join("containers-snapshots/c1/s0"));
    assert_eq!(pool.list_snapshots(C, "c1"), vec!["s0"]);
    assert!(pool.has_snapshot(C, "c1", "s0"));
    if pool.driver.info().name == "btrfs" {
        assert!(
            std::fs::write(snap.join("rootfs/a"), "x").is_err(),
            "snapshot is writable"
        );
        assert!(subvolume_show(&snap)["Flags"].contains("readonly"));
    }

    // Modify, then restore.
    std::fs::write(f("a"), "2").unwrap();
    std::fs::write(f("new"), "n").unwrap();
    std::fs::remove_file(f("keep")).unwrap();
    std::fs::write(f("etc/hostname"), "changed").unwrap();
    pool.restore(C, "c1", "s0").unwrap();
    assert_eq!(read(&f("a")), "1");
    assert!(!f("new").exists());
    assert_eq!(read(&f("keep")), "k");
    assert_eq!(read(&f("etc/hostname")), "image");
    // No staging left (once the replaced tree's deletion has run), and
    // the volume is writable again.
    kante_storage::background::settle();
    assert_eq!(pool.list_volumes(C), vec!["c1"]);
    assert!(std::fs::read_dir(pool.base.join("containers"))
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with('.')));
    std::fs::write(f("a"), "3").unwrap();

    // A second snapshot, rename, duplicates, invalid names.
    pool.snapshot(C, "c1", "s1").unwrap();
    assert_eq!(pool.list_snapshots(C, "c1"), vec!["s0", "s1"]);
    assert!(matches!(
        pool.snapshot(C, "c1", "s1"),
        Err(StorageError::Exists(_))
    ));
    assert!(matches!(
        pool.rename_snapshot(C, "c1", "s0", "s1"),
        Err(StorageError::Exists(_))
    ));
    assert!(matches!(
        pool.rename_snapshot(C, "c1", "nope", "s9"),
        Err(StorageError::NotFound(_))
    ));
    pool.rename_snapshot(C, "c1", "s0", "first").unwrap();
    assert_eq!(pool.list_snapshots(C, "c1"), vec!["first", "s1"]);
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "with space",
        "tab\tx",
        &"x".repeat(256),
    ] {
        assert!(
            matches!(
                pool.snapshot(C, "c1", bad),
                Err(StorageError::InvalidName(_))
            ),
            "snapshot name {bad:?} accepted"
        );
        assert!(matches!(
            pool.rename_snapshot(C, "c1", "s1", bad),
            Err(StorageError::InvalidName(_))
        ));
    }
    assert!(matches!(
        pool.restore(C, "c1", "missing"),
        Err(StorageError::NotFound(_))
    ));

    // A copy from a snapshot is a writable, independent volume.
    let c2 = pool.copy_from_snapshot(C, "c1", "first", "c2").unwrap();
    assert_eq!(read(&c2.join("rootfs/a")), "1");
    std::fs::write(c2.join("rootfs/a"), "c2").unwrap();
    assert_eq!(
        read(
            &pool
                .snapshot_path(C, "c1", "first")
                .unwrap()
                .join("rootfs/a")
        ),
        "1"
    );
    assert_eq!(read(&f("a")), "3");

    pool.delete_snapshot(C, "c1", "s1").unwrap();
    assert!(matches!(
        pool.delete_snapshot(C, "c1", "s1"),
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(pool.list_snapshots(C, "c1"), vec!["first"]);

    // Renaming a volume carries its snapshots; deleting it deletes them.
    pool.rename_volume(C, "c1", "c1b").unwrap();
    assert_eq!(pool.list_snapshots(C, "c1b"), vec!["first"]);
    assert!(pool.list_snapshots(C, "c1").is_empty());
    pool.delete_volume(C, "c1b").unwrap();
    assert!(!pool.base.join("containers-snapshots/c1b").exists());
    pool.delete_volume(C, "c2").unwrap();
    assert!(pool.list_volumes(C).is_empty());

    // Custom volumes have snapshots too.
    let cv = pool.create_custom_volume("data", None).unwrap();
    std::fs::write(cv.join("f"), "1").unwrap();
    pool.snapshot(VolumeKind::Custom, "data", "s").unwrap();
    std::fs::write(cv.join("f"), "2").unwrap();
    pool.restore(VolumeKind::Custom, "data", "s").unwrap();
    assert_eq!(read(&cv.join("f")), "1");
    assert_eq!(pool.list_custom_volumes(), vec!["data"]);
    assert!(matches!(
        pool.create_custom_volume("data", None),
        Err(StorageError::Exists(_))
    ));
    assert!(matches!(
        pool.create_custom_volume("a/b", None),
        Err(StorageError::InvalidName(_))
    ));
    pool.delete_custom_volume("data").unwrap();
    assert!(!pool.base.join("custom-snapshots/data").exists());
}

#[test]
fn snapshot_modify_restore_btrfs() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("snapb");
    let pool = s.pool("btrfs", "p1", &[("size", "512MiB")]);
    snapshot_cycle(&pool);
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    s.assert_clean();
}

#[test]
fn snapshot_modify_restore_dir() {
    let _l = lock();
    let s = Scratch::new("snapd");
    let pool = s.pool("dir", "p1", &[]);
    snapshot_cycle(&pool);
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    assert!(!pool.base.exists());
}

fn copy_independence(pool: &Pool) {
    make_image(pool, "img", 1 << 20);
    let a = pool.create_instance_from_image("img", "a").unwrap();
    std::fs::write(a.join("rootfs/own"), "a").unwrap();
    let b = pool.copy_into(&a, C, "b").unwrap();
    assert_eq!(read(&b.join("rootfs/own")), "a");
    std::fs::write(b.join("rootfs/own"), "b").unwrap();
    std::fs::write(a.join("rootfs/etc/hostname"), "a").unwrap();
    assert_eq!(read(&a.join("rootfs/own")), "a");
    assert_eq!(read(&b.join("rootfs/etc/hostname")), "image");
    let md = std::fs::metadata(b.join("rootfs/big")).unwrap();
    assert_eq!(md.len(), 1 << 20);
    assert!(matches!(
        pool.copy_into(&a, C, "b"),
        Err(StorageError::Exists(_))
    ));
    pool.delete_volume(C, "a").unwrap();
    assert_eq!(read(&b.join("rootfs/keep")), "k");
    pool.delete_volume(C, "b").unwrap();
}

#[test]
fn copies_are_independent_btrfs() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("copyb");
    let pool = s.pool("btrfs", "p1", &[("size", "512MiB")]);
    copy_independence(&pool);
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    s.assert_clean();
}

#[test]
fn copies_are_independent_dir() {
    let _l = lock();
    let s = Scratch::new("copyd");
    let pool = s.pool("dir", "p1", &[]);
    copy_independence(&pool);
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
}

/// Writes 1 MiB chunks until an error; returns (bytes written, errno).
fn fill_until_error(path: &Path, max: usize) -> (usize, Option<i32>) {
    let mut f = std::fs::File::create(path).unwrap();
    let buf = vec![0x5au8; 1 << 20];
    let mut done = 0;
    while done < max {
        match f.write_all(&buf) {
            Ok(()) => done += buf.len(),
            Err(e) => return (done, e.raw_os_error()),
        }
        // Flush regularly: qgroup limits are checked as space is reserved.
        if done % (8 << 20) == 0 {
            if let Err(e) = f.sync_data() {
                return (done, e.raw_os_error());
            }
        }
    }
    match f.sync_all() {
        Ok(()) => (done, None),
        Err(e) => (done, e.raw_os_error()),
    }
}

#[test]
fn quota_refuses_writes_past_size() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("quota");
    let pool = s.pool("btrfs", "p1", &[("size", "1GiB")]);
    // A custom volume with a 64 MiB limit.
    let v = pool.create_custom_volume("data", Some(64 << 20)).unwrap();
    assert_eq!(
        pool.volume_size(VolumeKind::Custom, "data").unwrap(),
        Some(64 << 20)
    );
    let (written, errno) = fill_until_error(&v.join("fill"), 512 << 20);
    eprintln!(
        "custom volume limited to 64 MiB: write failed after {} MiB with errno {errno:?}",
        written >> 20
    );
    assert_eq!(errno, Some(libc::EDQUOT));
    assert!(
        written <= (64 + 16) << 20,
        "wrote {written} bytes past a 64 MiB limit"
    );

    // An instance volume: the limit counts what it references (the image too).
    make_image(&pool, "img", 16 << 20);
    pool.create_instance_from_image("img", "c1").unwrap();
    pool.set_volume_size(C, "c1", Some(48 << 20)).unwrap();
    let c1 = pool.volume_path(C, "c1");
    let (written, errno) = fill_until_error(&c1.join("rootfs/fill"), 512 << 20);
    eprintln!("instance volume (16 MiB image) limited to 48 MiB: write failed after {} MiB with errno {errno:?}", written >> 20);
    assert_eq!(errno, Some(libc::EDQUOT));
    assert!(written <= (48 - 16 + 16) << 20, "wrote {written} bytes");
    std::fs::remove_file(c1.join("rootfs/fill")).unwrap();

    // The limit survives a restore; it can be lifted.
    pool.snapshot(C, "c1", "s").unwrap();
    pool.restore(C, "c1", "s").unwrap();
    assert_eq!(pool.volume_size(C, "c1").unwrap(), Some(48 << 20));
    pool.set_volume_size(C, "c1", None).unwrap();
    assert_eq!(pool.volume_size(C, "c1").unwrap(), None);
    let (written, errno) = fill_until_error(&c1.join("rootfs/fill"), 96 << 20);
    assert_eq!((written, errno), (96 << 20, None));
    // Usage is accounted at transaction commits.
    nix::unistd::sync();
    assert!(pool.volume_usage(C, "c1").unwrap().unwrap() >= 96 << 20);

    pool.delete_volume(C, "c1").unwrap();
    pool.delete_custom_volume("data").unwrap();
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    s.assert_clean();
}

#[test]
fn pool_delete_refused_while_volumes_exist() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("del");
    let pool = s.pool("btrfs", "p1", &[("size", "512MiB")]);
    assert_eq!(s.loops().len(), 1, "{:?}", s.loops());
    assert_eq!(s.mounts().len(), 1, "{:?}", s.mounts());
    make_image(&pool, "img", 0);
    pool.create_instance_from_image("img", "c1").unwrap();
    pool.snapshot(C, "c1", "s").unwrap();
    pool.create_custom_volume("v", None).unwrap();
    let refused = |pool: &Pool| {
        let e = pool
            .driver
            .delete_pool(&pool.base, &pool.config)
            .unwrap_err();
        assert!(matches!(e, StorageError::InUse(_)), "{e}");
        e.to_string()
    };
    let e = refused(&pool);
    assert!(e.contains("containers/c1") && e.contains("custom/v"), "{e}");
    pool.delete_custom_volume("v").unwrap();
    refused(&pool);
    pool.delete_volume(C, "c1").unwrap();
    // Only the image volume is left: it goes with the pool.
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    assert!(!pool.base.exists());
    assert!(!s.img("p1").exists());
    s.assert_clean();
    // Deleting again (source gone) is fine.
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
}

#[test]
fn failed_pool_creates_leave_nothing() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("fail");
    let d = driver("btrfs").unwrap();
    let base = s.base("p1");
    let nothing_left = || {
        assert!(!base.exists(), "{} left", base.display());
        assert!(!s.img("p1").exists(), "loop file left");
        s.assert_clean();
    };

    // A non-empty directory that is not on btrfs.
    let src = s.root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), "x").unwrap();
    let mut c = cfg(&[("source", src.to_str().unwrap())]);
    let e = d.create_pool(&base, &mut c).unwrap_err();
    assert!(matches!(e, StorageError::InvalidConfig(_)), "{e}");
    assert!(e.to_string().contains("not on a btrfs"), "{e}");
    nothing_left();
    assert!(src.join("file").exists());

    // An empty directory that is not on btrfs either.
    std::fs::remove_file(src.join("file")).unwrap();
    assert!(d.create_pool(&base, &mut c).is_err());
    nothing_left();

    // A regular file as source; unknown keys; too small; size with source.
    for bad in [
        cfg(&[("source", s.root.join("src").join("f").to_str().unwrap())]),
        cfg(&[("bogus", "1")]),
        cfg(&[("size", "10MiB")]),
        cfg(&[("size", "1GiB"), ("source", "/dev/null")]),
    ] {
        std::fs::write(src.join("f"), "x").unwrap();
        let mut c = bad.clone();
        assert!(d.create_pool(&base, &mut c).is_err(), "{bad:?} accepted");
        nothing_left();
    }

    // Failing late: the loop file is made and formatted, attached, then
    // the mount fails on a bad option.
    let mut c = cfg(&[
        ("size", "256MiB"),
        ("btrfs.mount_options", "no_such_option"),
    ]);
    let e = d.create_pool(&base, &mut c).unwrap_err();
    assert!(e.to_string().contains("mounting"), "{e}");
    nothing_left();

    // A base that is not empty.
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("x"), "x").unwrap();
    let mut c = cfg(&[("size", "256MiB")]);
    assert!(matches!(
        d.create_pool(&base, &mut c),
        Err(StorageError::InvalidConfig(_))
    ));
    assert!(!s.img("p1").exists());
    s.assert_clean();
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn pool_remounts_after_restart() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("remount");
    let pool = s.pool("btrfs", "p1", &[("size", "512MiB")]);
    make_image(&pool, "img", 1 << 20);
    let v = pool.create_instance_from_image("img", "c1").unwrap();
    std::fs::write(v.join("rootfs/state"), "kept").unwrap();
    pool.snapshot(C, "c1", "s").unwrap();
    pool.create_custom_volume("data", Some(100 << 20)).unwrap();
    // Idempotent while mounted.
    pool.mount().unwrap();
    assert_eq!(s.mounts().len(), 1);

    // "Daemon restart": the host rebooted, say: nothing is mounted or attached.
    nix::unistd::sync();
    nix::mount::umount2(&pool.base, nix::mount::MntFlags::empty()).unwrap();
    for l in s.loops() {
        let dev = l.split(':').next().unwrap();
        let _ = Command::new("losetup").args(["-d", dev]).status();
    }
    s.assert_clean();
    assert!(!v.join("rootfs/state").exists());

    let pool = Pool {
        name: pool.name.clone(),
        base: pool.base.clone(),
        config: pool.config.clone(),
        driver: driver("btrfs").unwrap(),
    };
    pool.mount().unwrap();
    pool.mount().unwrap();
    assert_eq!(s.mounts().len(), 1, "{:?}", s.mounts());
    assert_eq!(s.loops().len(), 1, "{:?}", s.loops());
    assert_eq!(read(&v.join("rootfs/state")), "kept");
    assert_eq!(pool.list_volumes(C), vec!["c1"]);
    assert_eq!(pool.list_snapshots(C, "c1"), vec!["s"]);
    assert_eq!(pool.list_custom_volumes(), vec!["data"]);
    assert_eq!(
        pool.volume_size(VolumeKind::Custom, "data").unwrap(),
        Some(100 << 20)
    );
    assert!(
        subvolume_show(&pool.volume_path(VolumeKind::Image, "img"))["Flags"].contains("readonly")
    );
    pool.create_instance_from_image("img", "c2").unwrap();

    // Deleting an unmounted pool mounts it to look inside first.
    nix::mount::umount2(&pool.base, nix::mount::MntFlags::empty()).unwrap();
    assert!(matches!(
        pool.driver.delete_pool(&pool.base, &pool.config),
        Err(StorageError::InUse(_))
    ));
    for c in ["c1", "c2"] {
        pool.delete_volume(C, c).unwrap();
    }
    pool.delete_custom_volume("data").unwrap();
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    s.assert_clean();
}

#[test]
fn nested_subvolumes_and_staging_leftovers() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("nested");
    let pool = s.pool("btrfs", "p1", &[("size", "512MiB")]);
    make_image(&pool, "img", 0);
    let v = pool.create_instance_from_image("img", "c1").unwrap();
    // What systemd in a guest does: subvolumes for machines and portables.
    let mk = |p: &Path| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let st = Command::new("btrfs")
            .args(["-q", "subvolume", "create"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    };
    mk(&v.join("rootfs/var/lib/machines"));
    mk(&v.join("rootfs/var/lib/portables"));
    mk(&v.join("rootfs/var/lib/machines/deeper"));
    std::fs::write(v.join("rootfs/var/lib/machines/deeper/f"), "x").unwrap();
    assert_eq!(
        std::fs::metadata(v.join("rootfs/var/lib/machines"))
            .unwrap()
            .ino(),
        256
    );
    // Restoring replaces the volume, nested subvolumes included.
    pool.snapshot(C, "c1", "s").unwrap();
    pool.restore(C, "c1", "s").unwrap();
    assert!(!v.join("rootfs/var/lib/machines/deeper").exists());
    mk(&v.join("rootfs/var/lib/machines2"));
    mk(&v.join("rootfs/var/lib/machines2/inner"));
    pool.delete_volume(C, "c1").unwrap();
    assert!(!v.exists());

    // A crash mid-create leaves staging subvolumes (a read-only one too).
    let st = pool.base.join("containers/.staging-c9");
    pool.driver.create_volume(&st).unwrap();
    mk(&st.join("nested"));
    let st2 = pool.base.join("images/.staging-x");
    pool.driver.create_volume(&st2).unwrap();
    pool.driver.seal_volume(&st2).unwrap();
    std::fs::create_dir_all(pool.base.join("containers-snapshots/c1")).unwrap();
    let st3 = pool.base.join("containers-snapshots/c1/.staging-s");
    pool.driver.create_volume(&st3).unwrap();
    assert!(pool.list_volumes(C).is_empty());
    pool.remove_staging_leftovers();
    assert!(!st.exists() && !st2.exists() && !st3.exists());
    // The snapshots directory it left empty goes too.
    assert!(!pool.base.join("containers-snapshots/c1").exists());

    // A failed fill leaves no subvolume.
    let r = pool.create_image_volume("bad", &mut |p: &Path| {
        std::fs::create_dir_all(p.join("rootfs")).unwrap();
        Err("corrupt".into())
    });
    assert!(matches!(r, Err(StorageError::Fill { .. })));
    assert_eq!(
        std::fs::read_dir(pool.base.join("images"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect::<Vec<_>>(),
        vec!["img"]
    );
    let out = Command::new("btrfs")
        .args(["subvolume", "list", "-o"])
        .arg(pool.base.join("images"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");

    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    s.assert_clean();
}

#[test]
fn block_device_and_directory_sources() {
    let _l = lock();
    if !btrfs_ready() {
        return;
    }
    let s = Scratch::new("sources");
    std::fs::create_dir_all(s.root.join("files")).unwrap();
    let attach = |name: &str| -> String {
        let f = s.root.join("files").join(name);
        std::fs::File::create(&f)
            .unwrap()
            .set_len(300 << 20)
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let d = driver("btrfs").unwrap();

    // A device holding ext4 is refused and left alone.
    let ext = attach("ext4.img");
    assert!(Command::new("mkfs.ext4")
        .args(["-q", &ext])
        .status()
        .unwrap()
        .success());
    let mut c = cfg(&[("source", &ext)]);
    let e = d.create_pool(&s.base("px"), &mut c).unwrap_err();
    assert!(matches!(e, StorageError::InvalidConfig(_)), "{e}");
    assert!(e.to_string().contains("existing filesystem"), "{e}");
    assert!(!s.base("px").exists());
    let probe = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", &ext])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "ext4");

    // A blank device is formatted and used.
    let blank = attach("blank.img");
    let pool = s.pool("btrfs", "pb", &[("source", &blank)]);
    assert_eq!(pool.config["source"], blank);
    assert!(!pool.config.contains_key("size"));
    make_image(&pool, "img", 0);
    pool.create_instance_from_image("img", "c1").unwrap();
    pool.snapshot(C, "c1", "s").unwrap();
    // Remount after "restart".
    nix::mount::umount2(&pool.base, nix::mount::MntFlags::empty()).unwrap();
    pool.mount().unwrap();
    assert_eq!(pool.list_snapshots(C, "c1"), vec!["s"]);
    pool.delete_volume(C, "c1").unwrap();
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    assert!(!pool.base.exists());
    // The device is the user's: still attached, holding an empty btrfs,
    // which a new pool accepts.
    let pool = s.pool("btrfs", "pb2", &[("source", &blank)]);
    make_image(&pool, "img", 0);
    pool.create_instance_from_image("img", "c1").unwrap();
    nix::mount::umount2(&pool.base, nix::mount::MntFlags::empty()).unwrap();
    // ... but a non-empty one is refused.
    let mut c = cfg(&[("source", &blank)]);
    let e = d.create_pool(&s.base("pb3"), &mut c).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert!(!s.base("pb3").exists());
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());

    // A directory on a btrfs filesystem (mounted by hand here).
    let fsimg = s.root.join("files/fs.img");
    std::fs::File::create(&fsimg)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    assert!(Command::new("mkfs.btrfs")
        .arg("-q")
        .arg(&fsimg)
        .output()
        .unwrap()
        .status
        .success());
    let mnt = s.root.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    assert!(Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(&fsimg)
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(mnt.join("busy")).unwrap();
    std::fs::write(mnt.join("busy/f"), "x").unwrap();
    let mut c = cfg(&[("source", mnt.join("busy").to_str().unwrap())]);
    let e = d.create_pool(&s.base("pd"), &mut c).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert!(!s.base("pd").exists());

    let src = mnt.join("kante-pool");
    let pool = s.pool("btrfs", "pd", &[("source", src.to_str().unwrap())]);
    assert_eq!(
        std::fs::metadata(&src).unwrap().ino(),
        256,
        "source made a subvolume"
    );
    assert_eq!(pool.config["source"], src.display().to_string());
    make_image(&pool, "img", 1 << 20);
    let t = Instant::now();
    let v = pool.create_instance_from_image("img", "c1").unwrap();
    eprintln!(
        "instance volume on a bind-mounted subvolume: {}",
        ms(t.elapsed())
    );
    assert!(subvolume_show(&v)["Parent UUID"] != "-");
    assert!(src.join("containers/c1/rootfs/keep").exists());
    nix::mount::umount2(&pool.base, nix::mount::MntFlags::empty()).unwrap();
    pool.mount().unwrap();
    assert_eq!(read(&v.join("rootfs/keep")), "k");
    assert!(matches!(
        pool.driver.delete_pool(&pool.base, &pool.config),
        Err(StorageError::InUse(_))
    ));
    pool.delete_volume(C, "c1").unwrap();
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
    assert!(!pool.base.exists());
    assert!(src.exists() && std::fs::read_dir(&src).unwrap().next().is_none());
    // Everything left is ours to clean: the guard does it.
}
