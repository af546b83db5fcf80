//! The BusyBox builder, end to end: build → store → unpack → run.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kante_images::{build_busybox, store_unified, unpack, BuildEvent, Limits};

fn have_static_busybox() -> bool {
    common::prerequisite(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox (busybox-static)",
    )
}

#[test]
fn busybox_image_builds_unpacks_and_runs() {
    if !have_static_busybox() || !common::prerequisite(is_root(), "root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("busybox.tar.zst");
    let mut phases = Vec::new();
    let built = build_busybox(&out, &mut |e| {
        if let BuildEvent::Phase(p) = e {
            phases.push(p)
        }
    })
    .unwrap();
    assert_eq!(built, out);
    assert_eq!(phases, ["rootfs", "pack"]);
    // Only the tarball and its stamp: the build dir is gone.
    let mut left: Vec<_> = entries(dir.path())
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["busybox.tar.zst", "busybox.tar.zst.stamp"]);

    // Second build is served from the cache.
    let mut phases = Vec::new();
    build_busybox(&out, &mut |e| {
        if let BuildEvent::Phase(p) = e {
            phases.push(p)
        }
    })
    .unwrap();
    assert_eq!(phases, ["cached"]);

    let images = dir.path().join("images");
    let img = store_unified(
        &images,
        fs::File::open(&out).unwrap(),
        None,
        &Limits::none(),
    )
    .unwrap();
    assert_eq!(img.metadata.architecture, "x86_64");
    assert_eq!(img.metadata.properties["os"], "busybox");
    let stop_signal = img.metadata.properties.get("kante.stop_signal").cloned();
    assert!(img.metadata.properties["description"].starts_with("BusyBox 1."));
    assert!(img.metadata.templates.contains_key("/etc/hostname"));

    let dest = dir.path().join("c1");
    unpack(
        &images,
        &img.fingerprint,
        &dest,
        &Limits::none(),
        &mut |_, _| {},
    )
    .unwrap();
    let rootfs = dest.join("rootfs");
    assert_eq!(
        fs::read_link(rootfs.join("sbin/init")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(fs::read_to_string(rootfs.join("etc/inittab"))
        .unwrap()
        .contains("::shutdown:"));
    assert!(fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    let out = Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/sh", "-c", "echo hello from $(uname -s); ls /bin/ls"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from Linux\n/bin/ls\n"
    );

    // LXD's default (SIGPWR) must stop init unless the image says otherwise;
    // SIGUSR2 (poweroff) is the fallback the builder publishes.
    match stop_signal.as_deref() {
        None => stop_signal_halts_init(&rootfs, libc::SIGPWR),
        Some("SIGUSR2") => {}
        Some(other) => panic!("unexpected kante.stop_signal {other}"),
    }
    stop_signal_halts_init(&rootfs, libc::SIGUSR2);
}

/// Boots the image's init as PID 1 of fresh PID and UTS namespaces and checks
/// that the published stop signal makes it shut down: reboot(2) in a child
/// PID namespace kills its init with SIGINT (halt/poweroff).
fn stop_signal_halts_init(rootfs: &Path, sig: i32) {
    let mut child = match Command::new("unshare")
        .args(["--pid", "--uts", "--fork", "--kill-child", "chroot"])
        .arg(rootfs)
        .arg("/sbin/init")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => {
            common::prerequisite(false, "unshare (util-linux)");
            return;
        }
    };
    // The init is unshare's only child.
    let init_pid = wait_for(|| {
        fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
            })
    });
    let Some(init_pid) = init_pid else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("init did not start");
    };
    // Let init finish sysinit and install its handlers.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling the init process this test started.
    assert_eq!(unsafe { libc::kill(init_pid, sig) }, 0);
    let status = wait_for(|| child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("init ignored signal {sig}");
    };
    // unshare re-raises the signal that killed its child: SIGINT = halted.
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
