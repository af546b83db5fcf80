//! Checks on the built Debian image (`scripts/images.sh` builds it, as the
//! ignored `debian_build` test does): its metadata, and the hygiene of its
//! root once unpacked (no SSH host keys, an empty machine-id, ping by file
//! capability instead of setuid, the units a container must not run
//! masked). A prerequisite: missing, it is a skip, or a failure under
//! `KANTE_REQUIRE_ALL=1` (the suite).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kante_images::{store_unified, unpack, xattr, Limits};

#[test]
fn built_debian_image_unpacks_correctly() {
    let image = PathBuf::from(
        std::env::var("KANTE_DEBIAN_OUT")
            .unwrap_or_else(|_| "/var/cache/kante/images/debian-bookworm-amd64.tar.zst".into()),
    );
    let built = format!(
        "the Debian image at {} (scripts/images.sh)",
        image.display()
    );
    if !common::prerequisite(image.is_file(), &built)
        || !common::prerequisite(common::is_root(), "root (file capabilities)")
    {
        return;
    }
    // Next to the image: same filesystem as a real images dir would be.
    let work = tempfile::tempdir_in(image.parent().unwrap()).unwrap();
    let images = work.path().join("images");

    let t = Instant::now();
    let img = store_unified(
        &images,
        fs::File::open(&image).unwrap(),
        None,
        &Limits::none(),
    )
    .unwrap();
    eprintln!(
        "store_unified: {:?} ({} bytes, fp {})",
        t.elapsed(),
        img.size,
        img.fingerprint
    );
    let p = &img.metadata.properties;
    assert_eq!(img.metadata.architecture, "x86_64");
    assert_eq!(
        (
            p["os"].as_str(),
            p["release"].as_str(),
            p["variant"].as_str()
        ),
        ("debian", "bookworm", "cloud")
    );
    for t in ["/etc/hostname", "/etc/hosts"] {
        assert_eq!(img.metadata.templates[t].when, ["create", "copy"]);
    }

    let dest = work.path().join("instance");
    let t = Instant::now();
    let mut calls = 0;
    unpack(
        &images,
        &img.fingerprint,
        &dest,
        &Limits::none(),
        &mut |_, _| calls += 1,
    )
    .unwrap();
    eprintln!("unpack: {:?} ({calls} progress calls)", t.elapsed());

    let r = dest.join("rootfs");
    let ping = r.join("usr/bin/ping");
    let cap = xattr::get(&ping, "security.capability").expect("ping has file capabilities");
    assert_eq!(cap.len(), 20);
    assert_eq!(
        fs::metadata(&ping).unwrap().mode() & 0o4000,
        0,
        "ping is not setuid"
    );
    assert_eq!(fs::metadata(r.join("etc/machine-id")).unwrap().len(), 0);
    assert!(!r.join("var/lib/dbus/machine-id").exists());
    assert_eq!(
        fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "localhost\n"
    );
    assert_eq!(
        fs::read_link(r.join("etc/resolv.conf")).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
    let keys: Vec<_> = fs::read_dir(r.join("etc/ssh"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ssh_host_"))
        .collect();
    assert!(keys.is_empty(), "ssh host keys must not ship");
    for unit in [
        "systemd-binfmt.service",
        "proc-sys-fs-binfmt_misc.automount",
        "proc-sys-fs-binfmt_misc.mount",
    ] {
        assert_eq!(
            fs::read_link(r.join("etc/systemd/system").join(unit)).unwrap(),
            Path::new("/dev/null"),
            "{unit} masked"
        );
    }
    for wanted in [
        "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
        "etc/systemd/system/multi-user.target.wants/kante-ssh-keygen.service",
        "etc/systemd/system/sysinit.target.wants/systemd-resolved.service",
        "etc/systemd/network/10-eth0.network",
        "usr/bin/cloud-init",
        "usr/sbin/sshd",
        "usr/bin/ps",
        "sbin/init",
        "var/cache/apt/archives/partial",
    ] {
        assert!(
            r.join(wanted).symlink_metadata().is_ok(),
            "{wanted} missing"
        );
    }
    assert!(!r.join("usr/sbin/policy-rc.d").exists());
    assert_eq!(
        fs::read_dir(r.join("var/lib/apt/lists"))
            .unwrap()
            .filter(|e| !e.as_ref().unwrap().path().is_dir())
            .count(),
        0
    );
    eprintln!("unpacked size: {} MiB", du(&r) >> 20);
}

fn du(p: &Path) -> u64 {
    let m = fs::symlink_metadata(p).unwrap();
    if m.is_dir() {
        fs::read_dir(p)
            .unwrap()
            .map(|e| du(&e.unwrap().path()))
            .sum::<u64>()
            + m.blocks() * 512
    } else {
        m.blocks() * 512
    }
}
