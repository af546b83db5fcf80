//! The `dir` restore delta (`kante_storage::delta`), on real files as root:
//! after many changes of every kind in the current tree (a same-size write
//! with its mtime put back, deletions, additions, a hard link broken, modes,
//! owners and xattrs changed, a directory swapped for a symlink out of the
//! tree), the staging tree is exactly the snapshot — bytes, owners, modes,
//! set-id bits, times, xattrs and ACLs, hard-link structure, holes,
//! symlinks, fifos — and only files equal in every respect were linked
//! from the current tree. Through `Pool::restore`: a restore that fails
//! (the pool's file system full) changes nothing, and a restored volume
//! written again leaves its snapshot as it was.

mod common;

use common::tree::{describe, sh};

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use kante_storage::delta;

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn a_delta_restore_is_exact_and_links_only_what_is_equal() {
    if !common::prerequisite(nix::unistd::geteuid().is_root(), "root (owners, xattrs)") {
        return;
    }
    let _l = common::lock();
    let tmp = tempfile::tempdir().unwrap();
    let (snap, cur, stg, host) = (
        tmp.path().join("snap"),
        tmp.path().join("cur"),
        tmp.path().join("stg"),
        tmp.path().join("host"),
    );
    let s = snap.display();
    sh(&format!(
        "mkdir -p {s}/etc/sub {s}/bin {s}/var/empty {s}/data && cd {s} && \
         printf 'root:x:0:0\\n' > etc/passwd && printf 'same size A\\n' > etc/forged && \
         printf 'keep\\n' > etc/sub/keep && printf 'gone\\n' > etc/deleted && \
         printf '#!/bin/sh\\n' > bin/suid && chown 1000:1000 bin/suid && chmod 4755 bin/suid && \
         printf 'linked\\n' > data/a && ln data/a data/b && ln data/a etc/c && \
         printf 'split\\n' > data/h1 && ln data/h1 data/h2 && \
         truncate -s 8M data/sparse && printf 'tail' | dd of=data/sparse bs=1 seek=4M conv=notrunc status=none && \
         dd if=/dev/urandom of=data/big bs=1M count=3 status=none && \
         ln -s ../etc/passwd bin/link && mkfifo var/fifo && mknod var/null c 1 3 && \
         mknod var/loop b 7 200 && ln -s gone var/dangling && ln -s ../etc var/same && \
         chown 1234:4321 var/empty && chmod 0750 var/empty && \
         setfattr -n user.note -v snapshot etc/passwd && setfattr -n trusted.t -v 1 data/big && \
         touch -d '2001-02-03 04:05:06.123456789' etc/passwd etc/forged bin/suid var/empty"
    ));
    if Command::new("setfacl").arg("--version").output().is_ok() {
        sh(&format!(
            "setfacl -m u:4242:rw {s}/etc/sub/keep && setfacl -d -m u:4242:rx {s}/var/empty"
        ));
    }
    // The current tree: the snapshot, then a guest's changes.
    sh(&format!(
        "cp -a {s} {} && mkdir -p {}",
        cur.display(),
        host.display()
    ));
    let c = cur.display();
    sh(&format!(
        "cd {c} && printf 'same size B\\n' > etc/forged && \
         touch -d '2001-02-03 04:05:06.123456789' etc/forged && \
         rm etc/deleted && printf 'new\\n' > etc/added && chmod 0600 etc/sub/keep && \
         setfattr -n user.note -v changed data/big && \
         rm data/h2 && cp -a data/h1 data/h2 && chown 7:7 bin/link -h && \
         printf 'x' | dd of=data/sparse bs=1 seek=1M conv=notrunc status=none && \
         rm var/null && mknod var/null c 1 5 && chown 3:3 var/loop && \
         rm var/dangling && ln -s elsewhere var/dangling && touch -h -d '2001-01-01' bin/link && \
         cp -a {c}/etc/sub {}/sub && rm -r etc/sub && ln -s {}/sub etc/sub",
        host.display(),
        host.display()
    ));
    let before_cur = describe(&cur);
    let want = describe(&snap);

    let stats = delta::build(&snap, &cur, &stg).unwrap();

    assert_eq!(describe(&stg), want, "the staging tree is the snapshot");
    assert_eq!(describe(&cur), before_cur, "the current tree is untouched");
    assert_eq!(describe(&snap), want, "the snapshot is untouched");
    // Equal files come from the current tree, changed ones never do.
    assert_eq!(ino(&stg.join("etc/passwd")), ino(&cur.join("etc/passwd")));
    assert_eq!(ino(&stg.join("data/a")), ino(&cur.join("data/a")));
    assert_eq!(
        ino(&stg.join("etc/c")),
        ino(&cur.join("data/a")),
        "hard links stay one inode"
    );
    for changed in ["etc/forged", "data/big", "data/sparse", "etc/deleted"] {
        let s = std::fs::symlink_metadata(stg.join(changed)).unwrap().ino();
        if let Ok(m) = std::fs::symlink_metadata(cur.join(changed)) {
            assert_ne!(s, m.ino(), "{changed} was linked though it changed");
        }
    }
    // Nothing reached through the guest's symlink out of its tree.
    let keep = stg.join("etc/sub/keep");
    assert!(std::fs::symlink_metadata(stg.join("etc/sub"))
        .unwrap()
        .is_dir());
    assert_ne!(ino(&keep), ino(&host.join("sub/keep")));
    assert_eq!(std::fs::metadata(&keep).unwrap().nlink(), 1);
    assert_eq!(
        std::fs::metadata(stg.join("bin/suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert!(stats.linked >= 4, "{stats:?}");
    assert!(
        stats.bytes_copied < 4 * 1024 * 1024 + 64 * 1024,
        "only changed files are written, holes stay holes: {stats:?}"
    );

    // Unchanged symlinks are taken from the current tree too.
    assert_eq!(ino(&stg.join("var/same")), ino(&cur.join("var/same")));
    assert_ne!(
        ino(&stg.join("var/dangling")),
        ino(&cur.join("var/dangling")),
        "a symlink whose target changed is made again"
    );
    assert_ne!(ino(&stg.join("bin/link")), ino(&cur.join("bin/link")));

    // The restored tree written again (every file appended to, modes and
    // owners changed) leaves the snapshot as it was.
    sh(&format!(
        "cd {} && find . -type f -exec sh -c 'printf more >> \"$1\"' _ {{}} \\; && \
         find . -type f -exec chmod 0606 {{}} + && chown -R 99:99 . && \
         setfattr -n user.note -v after etc/passwd",
        stg.display()
    ));
    assert_eq!(
        describe(&snap),
        want,
        "the snapshot is untouched by later writes"
    );

    // A second restore into a fresh staging tree from a current tree that
    // is itself a restore: still exact.
    let stg2 = tmp.path().join("stg2");
    delta::build(&snap, &stg, &stg2).unwrap();
    assert_eq!(describe(&stg2), want);
}

#[test]
fn a_missing_current_tree_is_a_plain_copy() {
    if !common::prerequisite(nix::unistd::geteuid().is_root(), "root (owners, xattrs)") {
        return;
    }
    let _l = common::lock();
    let tmp = tempfile::tempdir().unwrap();
    let (snap, stg) = (tmp.path().join("snap"), tmp.path().join("stg"));
    sh(&format!(
        "mkdir -p {0}/d && printf 'x\\n' > {0}/d/f && chown 5:6 {0}/d/f && chmod 0751 {0}/d",
        snap.display()
    ));
    let stats = delta::build(&snap, &tmp.path().join("nothing"), &stg).unwrap();
    assert_eq!(describe(&stg), describe(&snap));
    assert_eq!((stats.linked, stats.copied), (0, 1));
    // An existing staging path is refused, not merged into.
    assert!(delta::build(&snap, &snap, &stg).is_err());
}

/// A tmpfs of `size` mounted at `at` (removed with the scratch directory).
fn tmpfs(at: &Path, size: &str) {
    std::fs::create_dir_all(at).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size={size} kante-test {}",
        at.display()
    ));
}

#[test]
fn a_restore_that_fails_changes_nothing_and_the_snapshot_outlives_writes() {
    if !common::prerequisite(nix::unistd::geteuid().is_root(), "root (mounts)") {
        return;
    }
    let _l = common::lock();
    let s = common::Scratch::new("delta-fail");
    // The pool lives on an 8 MiB tmpfs: room for the volume and its
    // snapshot (3 MiB each), not for a third copy of the changed file.
    let mnt = s.root.join("small");
    tmpfs(&mnt, "8m");
    let driver = kante_storage::driver("dir").unwrap();
    let base = mnt.join("pool");
    let mut config = Default::default();
    driver.create_pool(&base, &mut config).unwrap();
    let pool = kante_storage::Pool {
        name: "small".into(),
        base: base.clone(),
        config,
        driver,
    };
    let c = kante_storage::VolumeKind::Custom;
    let v = pool.create_custom_volume("data", None).unwrap();
    sh(&format!(
        "cd {} && dd if=/dev/urandom of=big bs=1M count=3 status=none && \
         mkdir d && printf 'one\\n' > d/f && ln -s d/f link && chmod 0640 d/f",
        v.display()
    ));
    let snap = pool.snapshot(c, "data", "s").unwrap();
    let want = describe(&snap);
    // The guest's changes: the big file rewritten in place (no new space),
    // a file changed, one added.
    sh(&format!(
        "cd {} && dd if=/dev/urandom of=big bs=1M count=3 conv=notrunc status=none && \
         printf 'two\\n' > d/f && printf 'new\\n' > added",
        v.display()
    ));
    let changed = describe(&v);

    let err = pool.restore(c, "data", "s").unwrap_err();
    assert!(
        err.to_string().contains("No space left"),
        "the restore fails for want of space: {err}"
    );
    assert_eq!(describe(&v), changed, "a failed restore changes nothing");
    assert_eq!(describe(&snap), want, "nor the snapshot");
    kante_storage::background::settle();
    let left: Vec<String> = std::fs::read_dir(base.join("custom"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["data"], "nothing half-made is left");

    // With room, the same restore is exact; the restored volume written
    // again leaves the snapshot as it was.
    sh(&format!("mount -o remount,size=16m {}", mnt.display()));
    pool.restore(c, "data", "s").unwrap();
    assert_eq!(describe(&v), want);
    sh(&format!(
        "cd {} && printf more >> big && printf 'three\\n' > d/f && chmod 0777 d/f && \
         chown 5:5 big && rm link",
        v.display()
    ));
    assert_eq!(
        describe(&snap),
        want,
        "the snapshot outlives the volume's writes"
    );
    kante_storage::background::settle();
    pool.delete_custom_volume("data").unwrap();
    pool.driver.delete_pool(&pool.base, &pool.config).unwrap();
}
