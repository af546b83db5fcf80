//! The `dir` driver's tree copy (`kante_storage::copytree`), on real files
//! as root: a tree with every kind of entry and hard links spread over many
//! directories (so that threads meet later names of an inode while its
//! first is still being copied) is copied exactly — bytes, holes, owners,
//! modes with set-id bits, times (of directories too), xattrs and ACLs,
//! the hard-link structure, symlinks, fifos and device nodes — and an
//! existing destination is refused.

mod common;

use std::os::unix::fs::MetadataExt;

use common::tree::{describe, sh};
use kante_storage::copytree::copy_tree;

#[test]
fn a_tree_copy_is_exact() {
    if !common::prerequisite(nix::unistd::geteuid().is_root(), "root (owners, xattrs)") {
        return;
    }
    let _l = common::lock();
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let s = src.display();
    sh(&format!(
        "mkdir -p {s}/etc {s}/bin {s}/var/locked && cd {s} && \
         printf 'root:x:0:0\\n' > etc/passwd && setfattr -n user.note -v v etc/passwd && \
         printf '#!/bin/sh\\n' > bin/suid && chown 1000:1000 bin/suid && chmod 4755 bin/suid && \
         printf 'sg' > bin/sgid && chmod 2711 bin/sgid && chown 0:42 bin/sgid && \
         truncate -s 16M sparse && printf 'tail' | dd of=sparse bs=1 seek=8M conv=notrunc status=none && \
         dd if=/dev/urandom of=big bs=1M count=2 status=none && : > empty && \
         ln -s ../etc/passwd bin/link && ln -s /nowhere bin/abs && mkfifo var/fifo && \
         mknod var/null c 1 3 && mknod var/loop b 7 200 && chown 3:4 var/null && \
         printf 'shared\\n' > etc/first && \
         for i in $(seq 1 60); do mkdir -p d$i/sub && printf \"$i\" > d$i/sub/own && \
           ln etc/first d$i/sub/link && chown $i:$i d$i; done && \
         printf 'pair' > d7/p && ln d7/p d59/p && \
         setfattr -n trusted.t -v 1 big && chmod 0000 var/locked && chmod 1777 var && \
         touch -d '2001-02-03 04:05:06.123456789' etc/passwd bin/suid d5 d5/sub && \
         touch -h -d '2002-01-01' bin/link && touch -d '2003-03-03' etc var/locked"
    ));
    if std::process::Command::new("setfacl")
        .arg("--version")
        .output()
        .is_ok()
    {
        sh(&format!(
            "setfacl -m u:4242:rw {s}/etc/passwd && setfacl -d -m u:4242:rx {s}/etc"
        ));
    }
    let want = describe(&src);

    let stats = copy_tree(&src, &dst).unwrap();

    assert_eq!(describe(&dst), want, "the copy is the source");
    assert_eq!(describe(&src), want, "the source is untouched");
    // 60 directories, each with a subdirectory, two files and a link.
    assert!(stats.entries > 240, "{stats:?}");
    assert!(stats.bytes < 3 * 1024 * 1024, "holes stay holes: {stats:?}");
    let m = std::fs::metadata(dst.join("etc/first")).unwrap();
    assert_eq!(m.nlink(), 61, "one inode for all its names");
    assert_ne!(
        m.ino(),
        std::fs::metadata(src.join("etc/first")).unwrap().ino(),
        "a copy, not a link to the source"
    );
    // A later write in the copy leaves the source as it was.
    std::fs::write(dst.join("d3/sub/link"), "changed").unwrap();
    assert_eq!(describe(&src), want);

    // An existing destination is refused, not merged into.
    let err = copy_tree(&src, &dst).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
}
