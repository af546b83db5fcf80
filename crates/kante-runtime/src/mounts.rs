//! The container's filesystem view, built inside its new mount namespace
//! (run by the container's first process before it execs init).
//!
//! Mirrors what LXC gives a system container: proc with /proc/sys read-only
//! (but /proc/sys/net writable; with nesting, proc as is), sysfs (read-only for privileged containers
//! except /sys/devices/virtual/net), a cgroup2 view at /sys/fs/cgroup, a
//! minimal /dev on tmpfs with bind-mounted standard nodes, a private devpts,
//! /dev/console bound to the pty the monitor holds, and tmpfs /run and /tmp.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::spec::ContainerSpec;
use crate::sys;

/// Errors here travel to the monitor as text, so they carry their context.
pub type SetupResult<T> = Result<T, String>;

fn ctx<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

fn do_mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> SetupResult<()> {
    mount(src, target, fstype, flags, data).map_err(ctx(format!(
        "mount {} on {} ({})",
        src.unwrap_or("none"),
        target.display(),
        fstype.unwrap_or("bind")
    )))
}

fn bind(src: &Path, target: &Path, readonly: bool) -> SetupResult<()> {
    mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(ctx(format!(
        "bind {} on {}",
        src.display(),
        target.display()
    )))?;
    if readonly {
        remount_ro(target)?;
    }
    Ok(())
}

fn remount_ro(target: &Path) -> SetupResult<()> {
    // Keep the flags the kernel locked on the source (nosuid/nodev/noexec) or
    // the remount is refused inside a user namespace.
    let st =
        nix::sys::statvfs::statvfs(target).map_err(ctx(format!("statvfs {}", target.display())))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    use nix::sys::statvfs::FsFlags;
    for (f, m) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.flags().contains(f) {
            flags |= m;
        }
    }
    do_mount(None, target, None, flags, None)
}

fn ensure_dir(p: &Path) -> SetupResult<()> {
    fs::create_dir_all(p).map_err(ctx(format!("mkdir {}", p.display())))
}

fn ensure_file(p: &Path) -> SetupResult<()> {
    if !p.exists() {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .map_err(ctx(format!("create {}", p.display())))?;
    }
    Ok(())
}

/// Resolves a container path under the rootfs without following symlinks out
/// of it: components that are symlinks are refused (mount targets come from
/// the image and device config, which must not redirect mounts onto the host).
pub fn target_in_root(root: &Path, inside: &str) -> SetupResult<PathBuf> {
    let mut p = root.to_path_buf();
    for comp in inside.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err(format!("mount target {inside} contains '..'"));
        }
        p.push(comp);
        if let Ok(md) = fs::symlink_metadata(&p) {
            if md.file_type().is_symlink() {
                return Err(format!(
                    "mount target {inside} goes through a symlink ({})",
                    p.display()
                ));
            }
        }
    }
    Ok(p)
}

/// A privileged container (no user namespace): binds the rootfs at its own
/// path inside the new namespace, then builds the standard mounts under it.
pub fn setup_rootfs(
    spec: &ContainerSpec,
    bind_trees: &[Option<OwnedFd>],
    console_pty: &Path,
) -> SetupResult<()> {
    // Nothing we mount may propagate back to the host.
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None,
    )?;
    let root = spec.rootfs.as_path();
    bind(root, root, false)?;
    // pivot_root refuses a shared new root.
    do_mount(
        None,
        root,
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    setup_proc(root, spec.nesting)?;
    setup_rest(root, spec, bind_trees, console_pty)
}

/// An unprivileged container, in the mount namespace it just unshared from
/// the monitor's, where the monitor attached the idmapped rootfs. The
/// current directory is that rootfs: nothing here looks up a host path
/// above it (the host's directories may be closed to the container's ids).
/// Puts an unlocked recursive copy of the rootfs on top of itself (a mount
/// inherited from the monitor's namespace is locked, and pivot_root refuses
/// a locked new root), enters it and builds the standard mounts.
///
/// /proc's read-only and masked parts are made here, by the guest's root,
/// so it could unmount them, as in LXC and LXD: locked, they would make
/// the kernel refuse every new procfs in the guest (systemd mounts one for
/// each unit with ProtectProc=, logind, networkd and resolved among them).
/// What they hide is only writable by host root, and nothing acts as host
/// root inside the guest's mounts (exec and file I/O take the guest's ids).
pub fn setup_rootfs_in_cwd(
    spec: &ContainerSpec,
    bind_trees: &[Option<OwnedFd>],
    console_pty: &Path,
) -> SetupResult<()> {
    let dot = Path::new(".");
    let top = sys::open_tree_clone(dot, true).map_err(ctx("copy of the rootfs tree"))?;
    sys::move_mount_to(top.as_raw_fd(), dot).map_err(ctx("attach the rootfs copy"))?;
    nix::unistd::fchdir(&top).map_err(ctx("enter the rootfs copy"))?;
    do_mount(None, dot, None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    setup_proc(dot, spec.nesting)?;
    setup_rest(dot, spec, bind_trees, console_pty)
}

/// Everything after /proc: sysfs, /dev, /run, /tmp, lxcfs, disks.
fn setup_rest(
    root: &Path,
    spec: &ContainerSpec,
    bind_trees: &[Option<OwnedFd>],
    console_pty: &Path,
) -> SetupResult<()> {
    // Nesting: sys:rw (a nested runtime mounts its own sysfs; see setup_proc).
    setup_sys(root, spec.privileged() && !spec.nesting)?;
    setup_dev(root, console_pty)?;
    for (dir, opts) in [("run", "mode=0755,size=20%"), ("tmp", "mode=1777")] {
        let t = target_in_root(root, dir)?;
        ensure_dir(&t)?;
        do_mount(
            Some("tmpfs"),
            &t,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts),
        )?;
    }
    if let Some(dir) = &spec.lxcfs {
        setup_lxcfs(root, dir, spec.nesting)?;
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        let t = target_in_root(root, &m.target)?;
        let tree = bind_trees.get(i).and_then(Option::as_ref);
        // A prepared tree is asked directly: its source's path may be
        // closed to the guest's ids (the pools are root's alone).
        let is_dir = match tree {
            Some(fd) => nix::sys::stat::fstat(fd)
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .map_err(ctx(format!("stat of {}", m.source.display())))?,
            None => m.source.is_dir(),
        };
        if is_dir {
            ensure_dir(&t)?;
        } else {
            if let Some(parent) = t.parent() {
                ensure_dir(parent)?;
            }
            ensure_file(&t)?;
        }
        match tree {
            // Already idmapped (and read-only if asked) by the monitor.
            Some(fd) => sys::move_mount_to(fd.as_raw_fd(), &t)
                .map_err(ctx(format!("attach idmapped {}", m.source.display())))?,
            None => bind(&m.source, &t, m.readonly)?,
        }
    }
    Ok(())
}

fn setup_proc(root: &Path, nesting: bool) -> SetupResult<()> {
    let proc_ = root.join("proc");
    ensure_dir(&proc_)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    do_mount(Some("proc"), &proc_, Some("proc"), flags, None)?;
    if nesting {
        // proc:rw, nothing mounted over it: a nested runtime that makes its
        // own user namespace may only mount proc if an uncovered one is
        // visible (the kernel's mount_too_revealing check). Sysctls the
        // container's root does not own stay unwritable through their owner.
        return Ok(());
    }
    // proc:mixed: /proc/sys read-only, but the network namespace's own sysctls writable.
    let sys = proc_.join("sys");
    bind(&sys, &sys, true)?;
    let net = sys.join("net");
    if net.is_dir() {
        bind(&net, &net, false)?;
        do_mount(
            None,
            &net,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None,
        )?;
    }
    let sysrq = proc_.join("sysrq-trigger");
    if sysrq.exists() {
        bind(&sysrq, &sysrq, true)?;
    }
    // Kernel internals a container has no business reading.
    for f in ["kcore", "timer_list", "sched_debug"] {
        let p = proc_.join(f);
        if p.exists() {
            bind(Path::new("/dev/null"), &p, false)?;
        }
    }
    Ok(())
}

/// Binds lxcfs's files over the guest's proc and sysfs ones. With nesting,
/// also mounts an uncovered proc and sysfs under /dev/.lxc (as LXC does): a
/// nested runtime in its own user namespace may only mount proc or sysfs
/// while a fully visible one exists (the kernel's mount_too_revealing check).
fn setup_lxcfs(root: &Path, dir: &Path, nesting: bool) -> SetupResult<()> {
    for m in crate::lxcfs::binds(dir) {
        let t = target_in_root(root, &m.target)?;
        if t.exists() {
            bind(&m.source, &t, false)?;
        }
    }
    if nesting {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        for (fs, sub) in [("proc", "proc"), ("sysfs", "sys")] {
            let t = root.join("dev/.lxc").join(sub);
            ensure_dir(&t)?;
            do_mount(Some(fs), &t, Some(fs), flags, None)?;
        }
    }
    Ok(())
}

fn setup_sys(root: &Path, privileged: bool) -> SetupResult<()> {
    let sys = root.join("sys");
    ensure_dir(&sys)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    do_mount(Some("sysfs"), &sys, Some("sysfs"), flags, None)?;
    let cg = sys.join("fs/cgroup");
    do_mount(Some("cgroup2"), &cg, Some("cgroup2"), flags, None)?;
    if privileged {
        // sys:mixed: read-only, except the container's own network devices.
        let net = sys.join("devices/virtual/net");
        if net.is_dir() {
            bind(&net, &net, false)?;
        }
        do_mount(
            None,
            &sys,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
            None,
        )?;
    }
    Ok(())
}

fn setup_dev(root: &Path, console_pty: &Path) -> SetupResult<()> {
    let dev = root.join("dev");
    ensure_dir(&dev)?;
    do_mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=500k"),
    )?;
    // Device nodes cannot be created in a user namespace: bind the host's.
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let t = dev.join(node);
        ensure_file(&t)?;
        bind(&Path::new("/dev").join(node), &t, false)?;
    }
    for (node, sub) in [("fuse", None), ("tun", Some("net"))] {
        let host = match sub {
            Some(s) => Path::new("/dev").join(s).join(node),
            None => Path::new("/dev").join(node),
        };
        if host.exists() {
            let t = match sub {
                Some(s) => {
                    ensure_dir(&dev.join(s))?;
                    dev.join(s).join(node)
                }
                None => dev.join(node),
            };
            ensure_file(&t)?;
            bind(&host, &t, false)?;
        }
    }
    let pts = dev.join("pts");
    ensure_dir(&pts)?;
    do_mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    symlink("pts/ptmx", dev.join("ptmx")).map_err(ctx("symlink /dev/ptmx"))?;
    let console = dev.join("console");
    ensure_file(&console)?;
    bind(console_pty, &console, false)?;
    let shm = dev.join("shm");
    ensure_dir(&shm)?;
    do_mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    let mq = dev.join("mqueue");
    ensure_dir(&mq)?;
    do_mount(
        Some("mqueue"),
        &mq,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(ctx(format!("symlink /dev/{name}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_targets_stay_in_root() {
        let dir = tempfile_dir();
        fs::create_dir_all(dir.join("srv/data")).unwrap();
        symlink("/etc", dir.join("evil")).unwrap();
        assert_eq!(
            target_in_root(&dir, "/srv/data").unwrap(),
            dir.join("srv/data")
        );
        assert!(target_in_root(&dir, "/evil/x").is_err());
        assert!(target_in_root(&dir, "/srv/../../etc").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("kante-mounts-test-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }
}
