//! Running a command inside a container from the (multi-threaded) daemon.
//!
//! The daemon forks a helper; the helper joins the container's cgroups and
//! then all its namespaces at once through init's pidfd (user namespace
//! included, so the command never runs as real host root), and starts the
//! command with `clone(CLONE_VM | CLONE_VFORK | CLONE_PARENT)`: inside the
//! pid namespace, and a child of the daemon, not of the helper. That step
//! shares memory instead of copying the daemon's page tables again (a fork
//! costs ~0.4 ms here; the vfork-style clone is what posix_spawn uses).
//! Between fork and exec nothing allocates: all strings, fds, the seccomp
//! program and the command's stack are prepared beforehand.
//!
//! The helper exits as soon as it has reported the command's pid, so its
//! copy of the daemon's memory lives for a millisecond, not for the length
//! of an interactive session, and its teardown is off the exit path: the
//! daemon reaps the command itself and learns its status directly.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use thiserror::Error;

use crate::process::ChildProcess;
use crate::pty::PtyMaster;
use crate::seccomp::Program;
use crate::spec::IdMap;

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("invalid exec request: {0}")]
    Invalid(String),
    #[error("exec: {0}")]
    Io(#[from] io::Error),
    #[error("exec setup failed in the container: {0}")]
    Setup(String),
    #[error("exec: {0}")]
    Process(#[from] crate::process::ProcessError),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Allocate a pty (in the container's devpts) of this size instead of pipes.
    pub pty: Option<(u16, u16)>,
}

/// The container to run it in.
pub struct ExecTarget<'a> {
    pub init_pid: i32,
    pub init_pidfd: RawFd,
    pub cgroup_procs: Vec<PathBuf>,
    /// A leaf cgroup below the container's unified one, joined instead when
    /// the kernel refuses the command there (EBUSY: on a pure cgroup v2
    /// host, once the guest's systemd has enabled controllers for its
    /// sub-cgroups, no process may live in the container's cgroup itself).
    /// Made by the helper if missing.
    pub cgroup_leaf: Option<PathBuf>,
    pub idmap: Option<IdMap>,
    pub cap_drop: &'a [u32],
    pub seccomp: &'a Program,
    /// Connected to the monitor's `seccomp.sock`: the command's filter gets a
    /// listener, sent there before the exec.
    pub notify: Option<RawFd>,
}

/// The daemon's ends of a running command.
pub struct ExecProcess {
    /// The helper (our child), already exiting: reap it, its status means
    /// nothing. `None` when the command was started without one (a fake
    /// runtime in tests).
    pub helper: Option<ChildProcess>,
    /// The command itself, held by its pidfd: also our child, so reaping it
    /// yields the exit status; signals go through the pidfd, so none can
    /// reach another process once it is reaped.
    pub process: ChildProcess,
    pub stdio: ExecStdio,
}

pub enum ExecStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Pty {
        master: PtyMaster,
    },
}

fn cstr(s: &str) -> Result<CString, ExecError> {
    CString::new(s).map_err(|_| ExecError::Invalid(format!("{s:?} contains a NUL byte")))
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Candidate paths for argv[0]: itself if it has a '/', else each PATH entry.
fn exec_candidates(argv0: &str, env: &[String]) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_string()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{}", d.trim_end_matches('/'), argv0))
        .collect()
}

/// Opens a new pty in the container's own devpts instance, so the command
/// sees a normal /dev/pts/N; the slave is owned by the exec user.
fn container_pty(
    target: &ExecTarget,
    spec: &ExecSpec,
    (w, h): (u16, u16),
) -> Result<(OwnedFd, OwnedFd), ExecError> {
    let ptmx = format!("/proc/{}/root/dev/pts/ptmx", target.init_pid);
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&ptmx)
        .map_err(|e| ExecError::Setup(format!("opening the container's pty multiplexer: {e}")))?
        .into();
    // SAFETY: ioctls on a valid pty master.
    unsafe {
        let unlock: libc::c_int = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(io::Error::last_os_error().into());
        }
        let ws = libc::winsize {
            ws_row: h.max(1),
            ws_col: w.max(1),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
    // SAFETY: TIOCGPTPEER returns a new fd for the slave.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: new fd from the kernel.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let (uid, gid) = match &target.idmap {
        Some(m) => (m.host_uid_of(spec.uid), m.host_gid_of(5)),
        None => (Some(spec.uid), Some(5)),
    };
    // SAFETY: fchown on our fd.
    unsafe {
        libc::fchown(
            slave.as_raw_fd(),
            uid.unwrap_or(u32::MAX),
            gid.unwrap_or(u32::MAX),
        )
    };
    Ok((master, slave))
}

use std::os::unix::fs::OpenOptionsExt;

/// Starts `spec` in the container. Blocking (briefly): call it off the async runtime.
pub fn spawn(target: &ExecTarget, spec: &ExecSpec) -> Result<ExecProcess, ExecError> {
    if spec.argv.is_empty() {
        return Err(ExecError::Invalid("empty command".into()));
    }
    if let Some(m) = &target.idmap {
        if spec.uid >= m.size || spec.gid >= m.size {
            return Err(ExecError::Invalid(format!(
                "uid/gid {}:{} is outside the container's id range",
                spec.uid, spec.gid
            )));
        }
    }
    // Everything the children need, prepared while allocating is still allowed.
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<_, _>>()?;
    let envv: Vec<CString> = spec.env.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?;
    let candidates: Vec<CString> = exec_candidates(&spec.argv[0], &spec.env)
        .iter()
        .map(|c| cstr(c))
        .collect::<Result<_, _>>()?;
    let cwd = cstr(if spec.cwd.is_empty() { "/" } else { &spec.cwd })?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envv.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let cgroup_fds: Vec<File> = target
        .cgroup_procs
        .iter()
        .filter_map(|p| std::fs::OpenOptions::new().write(true).open(p).ok())
        .collect();
    let leaf = match &target.cgroup_leaf {
        Some(dir) => Some((path_cstr(dir)?, path_cstr(&dir.join("cgroup.procs"))?)),
        None => None,
    };
    let mut ns_flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP;
    if target.idmap.is_some() {
        ns_flags |= libc::CLONE_NEWUSER;
    }

    // Our ends, and the command's fds 0, 1, 2.
    let (ours, theirs): (ExecStdio, [OwnedFd; 3]) = match spec.pty {
        Some(size) => {
            let (master, slave) = container_pty(target, spec, size)?;
            let s1 = slave.try_clone()?;
            let s2 = slave.try_clone()?;
            (
                ExecStdio::Pty {
                    master: PtyMaster::from_fd(master),
                },
                [slave, s1, s2],
            )
        }
        None => {
            let (in_r, in_w) = pipe_cloexec()?;
            let (out_r, out_w) = pipe_cloexec()?;
            let (err_r, err_w) = pipe_cloexec()?;
            (
                ExecStdio::Pipes {
                    stdin: in_w,
                    stdout: out_r,
                    stderr: err_r,
                },
                [in_r, out_w, err_w],
            )
        }
    };
    // The helper reports the command's pid on one pipe (or its own
    // failure); the command reports an exec failure on another, whose write
    // end closes on a successful execve.
    let (rep_r, rep_w) = pipe_cloexec()?;
    let (cerr_r, cerr_w) = pipe_cloexec()?;
    let fds = [
        theirs[0].as_raw_fd(),
        theirs[1].as_raw_fd(),
        theirs[2].as_raw_fd(),
    ];
    let rep_w_fd = rep_w.as_raw_fd();
    let command = CommandArgs {
        fds,
        is_pty: spec.pty.is_some(),
        target,
        cwd: &cwd,
        candidates: &candidates,
        argv: &argv_ptrs,
        env: &env_ptrs,
        report: cerr_w.as_raw_fd(),
    };
    // The command's stack while it shares the helper's memory (until its
    // execve): u128s keep the top 16-byte aligned. Left uninitialised, so
    // only the pages the command touches are ever faulted in.
    let mut stack = Vec::<u128>::with_capacity(COMMAND_STACK / 16);
    // SAFETY: one past the end of the allocation, as a stack top.
    let stack_top = unsafe { stack.as_mut_ptr().add(stack.capacity()) }.cast::<libc::c_void>();

    // The fds the helper keeps: the command's stdio, both report pipes, the
    // container's pidfd and the seccomp socket. Everything else the daemon
    // has open (its database, its listeners, cgroup files, other
    // containers' pidfds) is closed before the helper joins anything.
    let mut keep = [-1 as RawFd; 7];
    let mut nkeep = 0;
    for fd in fds
        .into_iter()
        .chain([rep_w_fd, cerr_w.as_raw_fd(), target.init_pidfd])
        .chain(target.notify)
    {
        keep[nkeep] = fd;
        nkeep += 1;
    }
    let keep = &mut keep[..nkeep];
    keep.sort_unstable();

    // SAFETY: after fork the child only makes async-signal-safe syscalls on
    // data prepared above, and leaves with _exit or execve.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if helper == 0 {
        // SAFETY: the forked helper of a multi-threaded daemon: only raw
        // syscalls on data prepared before the fork, no allocation, and it
        // leaves through _exit (directly or in child_fail).
        unsafe {
            // Not dumpable from here on: once the command is visible in the
            // container's pid namespace, the guest's root must not be able
            // to ptrace it (the mm is the daemon's until the execve).
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            for f in &cgroup_fds {
                if libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) < 0
                    && *libc::__errno_location() == libc::EBUSY
                {
                    if let Some((dir, procs)) = &leaf {
                        join_leaf(dir, procs);
                    }
                }
            }
            close_all_but(keep);
            // Every namespace at once. Joining a pid namespace only places
            // our children in it: the command appears there when it is
            // cloned below, after we took its ids, so it is never host root
            // (nor the daemon's dumpable copy) while the guest can see it.
            if libc::setns(target.init_pidfd, ns_flags) != 0 {
                child_fail(rep_w_fd, *libc::__errno_location(), b"setns");
            }
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
                child_fail(rep_w_fd, *libc::__errno_location(), b"setgroups");
            }
            if libc::syscall(libc::SYS_setresgid, spec.gid, spec.gid, spec.gid) != 0 {
                child_fail(rep_w_fd, *libc::__errno_location(), b"setresgid");
            }
            if libc::syscall(libc::SYS_setresuid, spec.uid, spec.uid, spec.uid) != 0 {
                child_fail(rep_w_fd, *libc::__errno_location(), b"setresuid");
            }
            // Dropping the bounding set and loading seccomp still need the
            // capabilities a non-root id loses from its effective set;
            // execve recomputes them all.
            let _ = crate::sys::set_effective_caps(|permitted| permitted);
            // The credential change made us non-dumpable already (suid_dumpable
            // is 0); say so again in case the host's setting differs.
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            libc::close(target.init_pidfd);
            // No handler may run on the shared memory before the command
            // has reset them: block everything; the command unblocks.
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
            // Suspends us until the command has exec'd or failed. No
            // CLONE_FILES: its fd changes stay its own. CLONE_PARENT: it
            // exits to the daemon with the daemon's exit signal (SIGCHLD).
            let pid = libc::clone(
                command_entry,
                stack_top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT,
                (&command as *const CommandArgs).cast_mut().cast(),
            );
            if pid < 0 {
                child_fail(rep_w_fd, *libc::__errno_location(), b"clone");
            }
            let bytes = pid.to_ne_bytes();
            libc::write(rep_w_fd, bytes.as_ptr().cast(), 4);
            // Close everything before exiting: the kernel tears our memory
            // down before it closes files, and the daemon reads to EOF.
            libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
            libc::_exit(0);
        }
    }
    drop(theirs);
    drop(rep_w);
    drop(cerr_w);
    drop(cgroup_fds);
    // Only the helper's copy was used.
    drop(stack);
    // The pid (4 bytes), or 0 followed by the helper's failure record.
    let mut rep = Vec::new();
    File::from(rep_r).read_to_end(&mut rep)?;
    let pid = if rep.len() >= 4 {
        i32::from_ne_bytes([rep[0], rep[1], rep[2], rep[3]])
    } else {
        0
    };
    let mut cerr = Vec::new();
    if pid > 0 {
        File::from(cerr_r).read_to_end(&mut cerr)?;
    }
    if pid <= 0 || !cerr.is_empty() {
        let mut status = 0;
        // SAFETY: reap our direct children (the command exited at once).
        unsafe {
            libc::waitpid(helper, &mut status, 0);
            if pid > 0 {
                libc::waitpid(pid, &mut status, libc::__WALL);
            }
        }
        let rec = if pid <= 0 {
            rep.get(4..).unwrap_or(&[])
        } else {
            &cerr[..]
        };
        return Err(decode_failure(rec, &spec.argv[0]));
    }
    // Both are our children, not yet reaped: their pids are theirs until we
    // reap them, so the pidfds name exactly them.
    let held =
        ChildProcess::from_child(helper).and_then(|h| Ok((h, ChildProcess::from_child(pid)?)));
    match held {
        Ok((helper, process)) => Ok(ExecProcess {
            helper: Some(helper),
            process,
            stdio: ours,
        }),
        Err(e) => {
            let mut status = 0;
            // SAFETY: kill and reap our own direct children, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(helper, &mut status, 0);
                libc::waitpid(pid, &mut status, libc::__WALL);
            }
            Err(e.into())
        }
    }
}

/// Failure record: errno (4 bytes) then a short ASCII tag.
fn decode_failure(rec: &[u8], argv0: &str) -> ExecError {
    if rec.len() < 4 {
        return ExecError::Setup("the exec helper exited without a report".into());
    }
    let errno = i32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
    let tag = String::from_utf8_lossy(&rec[4..]).to_string();
    let err = io::Error::from_raw_os_error(errno);
    if tag == "execve" {
        return ExecError::Setup(format!("{argv0}: {err}"));
    }
    ExecError::Setup(format!("{tag}: {err}"))
}

/// Closes every fd except those in `keep` (sorted ascending), with
/// close_range over the gaps: async-signal-safe, no allocation.
pub(crate) unsafe fn close_all_but(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > from {
            libc::syscall(libc::SYS_close_range, from, fd - 1, 0u32);
        }
        from = fd.saturating_add(1);
    }
    libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32);
}

/// The helper failed: a zero pid, then errno and a tag.
/// In the helper: joins the leaf cgroup `dir`, making it if needed (no
/// allocation: both paths were prepared before the fork).
unsafe fn join_leaf(dir: &CString, procs: &CString) {
    libc::mkdir(dir.as_ptr(), 0o755);
    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd >= 0 {
        libc::write(fd, b"0".as_ptr().cast(), 1);
        libc::close(fd);
    }
}

fn path_cstr(p: &std::path::Path) -> Result<CString, ExecError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ExecError::Invalid(format!("{} contains a NUL byte", p.display())))
}

unsafe fn child_fail(fd: RawFd, errno: i32, tag: &[u8]) -> ! {
    let p = 0i32.to_ne_bytes();
    libc::write(fd, p.as_ptr().cast(), 4);
    let e = errno.to_ne_bytes();
    libc::write(fd, e.as_ptr().cast(), 4);
    libc::write(fd, tag.as_ptr().cast(), tag.len());
    libc::_exit(255);
}

/// Room for `command_child`'s frames (a sigset, a msghdr: well under this).
const COMMAND_STACK: usize = 64 * 1024;

/// What the command needs, prepared before the first fork.
struct CommandArgs<'a> {
    fds: [RawFd; 3],
    is_pty: bool,
    target: &'a ExecTarget<'a>,
    cwd: &'a CString,
    candidates: &'a [CString],
    argv: &'a [*const libc::c_char],
    env: &'a [*const libc::c_char],
    /// Failure records; closes on a successful execve.
    report: RawFd,
}

extern "C" fn command_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the CommandArgs prepared before the fork, in the
    // suspended helper's memory; CLONE_VFORK keeps it alive until we exec
    // or exit.
    unsafe { command_child(&*(arg as *const CommandArgs)) }
}

/// Runs in the command's process, sharing memory with the suspended helper: raw syscalls only (glibc's set*id wrappers would signal
/// "other threads" through shared state), no allocation, no unwinding.
unsafe fn command_child(a: &CommandArgs) -> ! {
    let CommandArgs {
        fds,
        is_pty,
        target,
        cwd,
        candidates,
        argv,
        env,
        report: rep,
    } = *a;
    let fail = |errno: i32, tag: &[u8]| -> ! {
        let e = errno.to_ne_bytes();
        libc::write(rep, e.as_ptr().cast(), 4);
        libc::write(rep, tag.as_ptr().cast(), tag.len());
        libc::_exit(if tag == b"execve" {
            if errno == libc::ENOENT {
                127
            } else {
                126
            }
        } else {
            255
        })
    };
    libc::setsid();
    for (i, fd) in fds.iter().enumerate() {
        if libc::dup2(*fd, i as RawFd) < 0 {
            fail(*libc::__errno_location(), b"dup2");
        }
    }
    if is_pty {
        libc::ioctl(0, libc::TIOCSCTTY, 0);
    }
    for cap in target.cap_drop {
        libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0);
    }
    match target.notify {
        Some(sock) => match target.seccomp.load_with_listener() {
            Ok(l) => {
                let sent = crate::notify::send_fd(sock, l);
                libc::close(l);
                libc::close(sock);
                if sent.is_err() {
                    fail(*libc::__errno_location(), b"seccomp listener");
                }
            }
            Err(_) => fail(*libc::__errno_location(), b"seccomp"),
        },
        None => {
            if target.seccomp.load().is_err() {
                fail(*libc::__errno_location(), b"seccomp");
            }
        }
    }
    if libc::chdir(cwd.as_ptr()) != 0 {
        libc::chdir(c"/".as_ptr());
    }
    // Signals: default dispositions, then nothing blocked (the helper
    // blocked all; the daemon's threads block some).
    for s in 1..32 {
        if s != libc::SIGKILL && s != libc::SIGSTOP {
            libc::signal(s, libc::SIG_DFL);
        }
    }
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    let mut last = libc::ENOENT;
    for c in candidates {
        libc::execve(c.as_ptr(), argv.as_ptr(), env.as_ptr());
        let e = *libc::__errno_location();
        // Keep the most telling error: permission problems beat "not here".
        if e != libc::ENOENT && e != libc::ENOTDIR {
            last = e;
        }
    }
    fail(last, b"execve")
}

impl ExecError {
    /// The exit status a shell would report for this failure, if any.
    pub fn exit_status(&self) -> Option<i32> {
        match self {
            ExecError::Setup(msg) if msg.contains("No such file or directory") => Some(127),
            ExecError::Setup(msg) if msg.contains("Permission denied") => Some(126),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search_candidates() {
        assert_eq!(exec_candidates("/bin/sh", &[]), vec!["/bin/sh"]);
        let env = vec!["PATH=/a:/b/".to_string()];
        assert_eq!(exec_candidates("ls", &env), vec!["/a/ls", "/b/ls"]);
        assert_eq!(exec_candidates("ls", &[]).len(), 6);
    }

    #[test]
    fn failure_records_decode() {
        let mut rec = libc::ENOENT.to_ne_bytes().to_vec();
        rec.extend_from_slice(b"execve");
        let e = decode_failure(&rec, "nosuch");
        assert_eq!(e.exit_status(), Some(127));
        assert!(e.to_string().contains("nosuch"), "{e}");
    }
}
