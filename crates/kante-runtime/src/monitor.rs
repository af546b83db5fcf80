//! The per-container monitor: a small single-threaded process that creates
//! the container, reports its init pid to the daemon, then stays as init's
//! parent. It holds the console pty, logs its output and records how init
//! ended. Because it is not the daemon, containers outlive a crash or
//! restart of `kanted`.
//!
//! Started as `kanted __monitor <spec.json>` with the status pipe on fd 3.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup::{Cgroup, CgroupLayout};
use crate::console::{open_console, ConsoleHub, ConsoleLog, ConsolePty};
use crate::idmap;
use crate::intercept::Interceptor;
use crate::mounts;
use crate::notify;
use crate::seccomp::Program;
use crate::spec::{ContainerSpec, Intercept};
use crate::sys::{self, Forked};

/// The fd on which the monitor reports the outcome of the start.
pub const STATUS_FD: i32 = 3;
/// The fd on which the daemon answers `Created` with `go` (or anything else to abort).
pub const CONTROL_FD: i32 = 4;

/// One JSON line on the status pipe.
#[derive(Debug, Serialize, Deserialize)]
pub enum StartReport {
    /// The namespaces exist, init has not run yet: the daemon may now plug
    /// network interfaces into the new network namespace, then says `go`.
    Created {
        init_pid: i32,
    },
    Started {
        init_pid: i32,
    },
    Failed {
        error: String,
    },
}

/// How init ended, as written to `exit-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitExit {
    Exited(i32),
    Signaled(i32),
}

impl InitExit {
    /// A pid-namespace init that called reboot(2) dies of SIGHUP.
    pub fn is_reboot(self) -> bool {
        self == InitExit::Signaled(libc::SIGHUP)
    }
}

/// Entry point of the monitor process; returns its exit code.
pub fn monitor_main(spec_path: &Path) -> i32 {
    // SAFETY: fd 3 was set up by the daemon for us; we own it from here.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    let spec: ContainerSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            report(
                &mut status,
                StartReport::Failed {
                    error: format!("reading {}: {e}", spec_path.display()),
                },
            );
            return 1;
        }
    };
    // The monitor must not pin any mount and must survive the daemon's terminal going away.
    let _ = std::env::set_current_dir("/");
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE] {
        // SAFETY: setting a disposition to Ignore is always sound.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    // SAFETY: fd 4 was set up by the daemon for us; we own it from here.
    let control = unsafe { File::from_raw_fd(CONTROL_FD) };
    match start(&spec, &mut status, control) {
        Ok(started) => {
            report(
                &mut status,
                StartReport::Started {
                    init_pid: started.pid,
                },
            );
            drop(status);
            supervise(&spec, started);
            0
        }
        Err(error) => {
            report(&mut status, StartReport::Failed { error });
            1
        }
    }
}

fn report(out: &mut File, r: StartReport) {
    let mut line = serde_json::to_vec(&r).unwrap_or_default();
    line.push(b'\n');
    let _ = out.write_all(&line);
}

struct Started {
    pid: i32,
    pidfd: OwnedFd,
    console: ConsolePty,
    /// Seccomp listener of init's filter, when syscalls are intercepted.
    listener: Option<OwnedFd>,
    /// Where exec'd commands' listeners arrive (`seccomp.sock`).
    listener_socket: Option<UnixListener>,
    /// Where the daemon attaches to the console (`console.sock`).
    hub: ConsoleHub,
}

/// Everything that must be undone if the start fails half-way.
struct Revert<'a> {
    cgroup: Option<&'a Cgroup>,
    child: Option<i32>,
}

impl Drop for Revert<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.child.take() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
    }
}

fn start(spec: &ContainerSpec, status: &mut File, control: File) -> Result<Started, String> {
    let layout = CgroupLayout::detect().map_err(|e| e.to_string())?;
    let cgroup = Cgroup::new(layout, spec.cgroup.clone());
    let owner = spec.idmap.map(|m| (m.host_uid, m.host_gid));
    if cgroup.exists() {
        // Left over from an instance that died with nobody to clean up.
        cgroup
            .remove()
            .map_err(|e| format!("removing stale cgroup: {e}"))?;
    }
    cgroup.create(owner).map_err(|e| e.to_string())?;
    let mut revert = Revert {
        cgroup: Some(&cgroup),
        child: None,
    };

    let console = open_console(owner).map_err(|e| format!("console pty: {e}"))?;
    // Idmapped trees are made here, in the initial user namespace (the
    // child could not): the rootfs, and the bind mounts that ask for it.
    let mut binds: Vec<Option<OwnedFd>> = spec.mounts.iter().map(|_| None).collect();
    let tree = match &spec.idmap {
        Some(map) => {
            let userns = idmap::userns_fd(map).map_err(|e| format!("idmap user namespace: {e}"))?;
            let tree = idmap::idmapped_tree(&spec.rootfs, &userns, false)
                .map_err(|e| format!("idmapped mount of {}: {e}", spec.rootfs.display()))?;
            for (slot, m) in binds.iter_mut().zip(&spec.mounts) {
                if m.idmapped {
                    let t = idmap::idmapped_tree(&m.source, &userns, m.readonly)
                        .map_err(|e| format!("idmapped mount of {}: {e}", m.source.display()))?;
                    *slot = Some(t);
                }
            }
            Some(tree)
        }
        None => None,
    };
    let seccomp = Program::policy(spec.intercept).map_err(|e| e.to_string())?;
    // Init's first process hands its seccomp listener over this pair.
    let listener_pair = match spec.intercept.any() {
        true => Some(notify::socketpair().map_err(|e| format!("socketpair: {e}"))?),
        false => None,
    };
    let listener_socket = match spec.intercept.any() {
        true => Some(bind_listener_socket(spec)?),
        false => None,
    };
    let hub = ConsoleHub::bind(&spec.runtime_dir).map_err(|e| format!("console socket: {e}"))?;

    // Unprivileged: the rootfs is attached from the host side, in a mount
    // namespace of the monitor's own; the container unshares its own from
    // it and never looks up the host path of its rootfs (see mounts.rs).
    if let Some(tree) = &tree {
        attach_rootfs_here(spec, tree)?;
    }
    let (go_r, go_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let mut ns =
        (libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET) as u64;
    if spec.idmap.is_some() {
        ns |= libc::CLONE_NEWUSER as u64;
    } else {
        ns |= libc::CLONE_NEWNS as u64;
    }
    match sys::clone_fork(ns).map_err(|e| format!("clone: {e}"))? {
        Forked::Child => {
            drop(go_w);
            drop(err_r);
            std::mem::forget(revert);
            let send = listener_pair.as_ref().map(|(_, theirs)| theirs);
            let err = child_setup(spec, go_r, &binds, &console, &seccomp, send);
            let mut w = File::from(err_w);
            let _ = w.write_all(err.as_bytes());
            // SAFETY: leave the child without running the monitor's destructors.
            unsafe { libc::_exit(1) }
        }
        Forked::Parent { pid, pidfd } => {
            revert.child = Some(pid);
            drop(go_r);
            drop(err_w);
            drop(tree);
            drop(binds);
            let listener_rx = listener_pair.map(|(ours, _)| ours);
            if let Some(map) = &spec.idmap {
                idmap::write_id_maps(pid, map).map_err(|e| format!("writing id maps: {e}"))?;
            }
            cgroup.attach(pid).map_err(|e| e.to_string())?;
            // Let the daemon set up the network namespace before init runs.
            report(status, StartReport::Created { init_pid: pid });
            let mut answer = String::new();
            let _ = std::io::BufReader::new(control).read_line(&mut answer);
            if answer.trim() != "go" {
                return Err(match answer.trim().strip_prefix("abort:") {
                    Some(why) => why.trim().to_string(),
                    None => "the daemon went away during the start".into(),
                });
            }
            File::from(go_w)
                .write_all(b"g")
                .map_err(|e| format!("releasing the container: {e}"))?;
            // EOF (the close-on-exec end closed by execve) means init is running.
            let mut msg = String::new();
            File::from(err_r)
                .read_to_string(&mut msg)
                .map_err(|e| format!("reading start result: {e}"))?;
            if !msg.is_empty() {
                return Err(msg);
            }
            // Sent before the exec, so it is already queued.
            let listener = match &listener_rx {
                Some(rx) => Some(
                    notify::recv_fd(rx.as_raw_fd())
                        .map_err(|e| format!("receiving init's seccomp listener: {e}"))?
                        .ok_or("init's seccomp listener did not arrive")?,
                ),
                None => None,
            };
            // Recorded here, before the daemon hears of the start: a daemon
            // killed from now on finds the container at its next start
            // instead of leaving it running unknown.
            crate::ContainerRecord::of_started(spec, pid, std::process::id() as i32)
                .and_then(|r| r.save())
                .map_err(|e| format!("recording the container: {e}"))?;
            revert.child = None;
            revert.cgroup = None;
            Ok(Started {
                pid,
                pidfd,
                console,
                listener,
                listener_socket,
                hub,
            })
        }
    }
}

/// Runs in the container's first process, inside its new namespaces.
/// Returns only on failure, with the reason.
fn child_setup(
    spec: &ContainerSpec,
    go: OwnedFd,
    binds: &[Option<OwnedFd>],
    console: &ConsolePty,
    seccomp: &Program,
    send_listener: Option<&OwnedFd>,
) -> String {
    let mut b = [0u8; 1];
    match File::from(go).read(&mut b) {
        Ok(1) => {}
        _ => return "the monitor went away before the start".into(),
    }
    if spec.idmap.is_some() {
        if let Err(e) = become_namespace_root() {
            return e;
        }
    }
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
        return format!("cgroup namespace: {e}");
    }
    let pivoted = if spec.idmap.is_some() {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
            return format!("mount namespace: {e}");
        }
        if let Err(e) = mounts::setup_rootfs_in_cwd(spec, binds, &console.slave_path) {
            return e;
        }
        sys::pivot_into_cwd()
    } else {
        if let Err(e) = mounts::setup_rootfs(spec, binds, &console.slave_path) {
            return e;
        }
        sys::pivot_into(&spec.rootfs)
    };
    if let Err(e) = pivoted {
        return format!("pivot_root into {}: {e}", spec.rootfs.display());
    }
    if let Err(e) = loopback_up() {
        return format!("bringing up lo: {e}");
    }
    if let Err(e) = nix::unistd::sethostname(&spec.hostname) {
        return format!("sethostname: {e}");
    }
    let _ = nix::unistd::setsid();
    let cons = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")
    {
        Ok(f) => f,
        Err(e) => return format!("open /dev/console: {e}"),
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard fds.
        unsafe { libc::dup2(cons.as_raw_fd(), fd) };
    }
    drop(cons);
    for cap in &spec.cap_drop {
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0) };
    }
    reset_signals();
    match send_listener {
        Some(sock) => {
            let sent = seccomp.load_with_listener().and_then(|l| {
                let r = notify::send_fd(sock.as_raw_fd(), l);
                // SAFETY: our own copy of the listener; the monitor has its own now.
                unsafe { libc::close(l) };
                r
            });
            if let Err(e) = sent {
                return format!("seccomp listener: {e}");
            }
        }
        None => {
            if let Err(e) = seccomp.load() {
                return format!("seccomp: {e}");
            }
        }
    }
    let argv: Vec<std::ffi::CString> = match spec
        .init
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()))
        .collect()
    {
        Ok(v) => v,
        Err(_) => return "init command contains a NUL byte".into(),
    };
    if argv.is_empty() {
        return "no init command".into();
    }
    let mut env: Vec<std::ffi::CString> = vec![
        c"container=lxc".into(),
        c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        c"TERM=linux".into(),
        c"HOME=/".into(),
    ];
    env.extend(
        spec.env
            .iter()
            .filter_map(|e| std::ffi::CString::new(e.as_str()).ok()),
    );
    // Close everything else on exec (the error pipe already is).
    // SAFETY: plain syscall.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let e = nix::unistd::execve(&argv[0], &argv, &env).unwrap_err();
    format!("exec {} in the container: {e}", spec.init[0])
}

use std::os::unix::fs::OpenOptionsExt;

/// In a mount namespace of the monitor's own (still the host's user
/// namespace): attaches the idmapped rootfs at its path and makes it the
/// current directory, which the container inherits.
fn attach_rootfs_here(spec: &ContainerSpec, tree: &OwnedFd) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("monitor mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("monitor mount namespace: {e}"))?;
    sys::move_mount_to(tree.as_raw_fd(), &spec.rootfs)
        .map_err(|e| format!("attach idmapped rootfs: {e}"))?;
    nix::unistd::fchdir(tree).map_err(|e| format!("enter the rootfs: {e}"))?;
    Ok(())
}

/// A new network namespace has `lo` down; system containers expect it up
/// before init (LXC does the same).
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket and two SIOC[GS]IFFLAGS ioctls on a zeroed ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(err);
        }
    }
    Ok(())
}

fn become_namespace_root() -> Result<(), String> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into())
        .map_err(|e| format!("setresgid in user namespace: {e}"))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into())
        .map_err(|e| format!("setresuid in user namespace: {e}"))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups in user namespace: {e}"))?;
    Ok(())
}

/// Init must start with default signal dispositions and nothing blocked
/// (the monitor ignores some signals, and ignored dispositions survive exec).
fn reset_signals() {
    for s in Signal::iterator() {
        if s != Signal::SIGKILL && s != Signal::SIGSTOP {
            // SAFETY: restoring the default disposition.
            let _ = unsafe { signal(s, SigHandler::SigDfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// The socket on which the daemon hands over exec'd commands' seccomp
/// listeners; only root may connect (mode 0600, peer checked too).
fn bind_listener_socket(spec: &ContainerSpec) -> Result<UnixListener, String> {
    let path = Intercept::socket_path(&spec.runtime_dir);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("seccomp socket: {e}"))?;
    Ok(l)
}

/// Logs console output and answers intercepted syscalls until init exits,
/// then records how it ended.
fn supervise(spec: &ContainerSpec, started: Started) {
    let mut log = ConsoleLog::open(&spec.console_log_path(), spec.console_log_limit).ok();
    let mut hub = started.hub;
    let mut buf = [0u8; 8192];
    let master = started.console.master.as_fd();
    let interceptor = Interceptor::new(spec.intercept);
    let mut listeners: Vec<OwnedFd> = started.listener.into_iter().collect();
    // Accepted connections whose listener fd has not arrived yet.
    let mut pending: Vec<OwnedFd> = Vec::new();
    loop {
        let mut fds = vec![
            PollFd::new(master, PollFlags::POLLIN),
            PollFd::new(started.pidfd.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(l) = &started.listener_socket {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        fds.push(PollFd::new(hub.listener(), PollFlags::POLLIN));
        let clients = hub.clients();
        let n_clients = clients.len();
        fds.extend(clients.into_iter().map(|(fd, out)| {
            let mut ev = PollFlags::POLLIN;
            if out {
                ev |= PollFlags::POLLOUT;
            }
            PollFd::new(fd, ev)
        }));
        fds.extend(
            pending
                .iter()
                .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN)),
        );
        fds.extend(
            listeners
                .iter()
                .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let console_ready = !ready[0].is_empty();
        let init_done = !ready[1].is_empty();
        // Attached clients first, in the order polled (before output or
        // new clients change the list).
        let h = 2 + usize::from(started.listener_socket.is_some());
        let client_ready: Vec<(bool, bool)> = ready[h + 1..h + 1 + n_clients]
            .iter()
            .map(|r| {
                (
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR),
                    r.contains(PollFlags::POLLOUT),
                )
            })
            .collect();
        hub.service(&client_ready);
        if !ready[h].is_empty() {
            hub.accept(master);
        }
        if console_ready {
            match nix::unistd::read(master, &mut buf) {
                Ok(n) if n > 0 => {
                    if let Some(l) = log.as_mut() {
                        let _ = l.write(&buf[..n]);
                    }
                    hub.broadcast(&buf[..n]);
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        let mut i = 2;
        // New connections join `pending` only after this round's indexes are used.
        let mut accepted = Vec::new();
        if let Some(l) = &started.listener_socket {
            if !ready[i].is_empty() {
                while let Ok((conn, _)) = l.accept() {
                    let conn = OwnedFd::from(conn);
                    if notify::peer_uid(&conn).ok() == Some(0) {
                        accepted.push(conn);
                    }
                }
            }
            i += 1;
        }
        i += 1 + n_clients;
        let (pend_ready, lis_ready) = ready[i..].split_at(pending.len());
        // Answer before anything else changes the lists' order.
        let mut gone = Vec::new();
        for (k, r) in lis_ready.iter().enumerate() {
            if r.contains(PollFlags::POLLIN) {
                if let Err(e) = interceptor.handle(listeners[k].as_raw_fd()) {
                    eprintln!("seccomp notification: {e}");
                }
            } else if !r.is_empty() {
                // POLLHUP: no process uses this filter any more.
                gone.push(k);
            }
        }
        for k in gone.into_iter().rev() {
            listeners.swap_remove(k);
        }
        let mut arrived = Vec::new();
        for (k, r) in pend_ready.iter().enumerate().rev() {
            if !r.is_empty() {
                let conn = pending.swap_remove(k);
                if let Ok(Some(l)) = notify::recv_fd(conn.as_raw_fd()) {
                    arrived.push(l);
                }
            }
        }
        listeners.extend(arrived);
        pending.extend(accepted);
        if init_done {
            break;
        }
    }
    drop(started.listener_socket);
    let _ = std::fs::remove_file(Intercept::socket_path(&spec.runtime_dir));
    // Attached clients see the end of the stream.
    drop(hub);
    let exit = match waitpid(Pid::from_raw(started.pid), None) {
        Ok(WaitStatus::Exited(_, code)) => InitExit::Exited(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => InitExit::Signaled(sig as i32),
        _ => InitExit::Exited(-1),
    };
    let _ = std::fs::write(
        spec.exit_status_path(),
        serde_json::to_vec(&exit).unwrap_or_default(),
    );
    drop(started.console);
}

/// Reads the recorded exit of a container's init, if the monitor wrote one.
pub fn read_exit(spec_runtime_dir: &Path) -> Option<InitExit> {
    let b = std::fs::read(spec_runtime_dir.join("exit-status")).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Reads the next report line from the monitor's status pipe.
pub fn read_report(r: &mut impl BufRead) -> io::Result<StartReport> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.trim().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the monitor exited without reporting",
        ));
    }
    serde_json::from_str(line.trim()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
