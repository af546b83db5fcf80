//! A [`Runtime`] that starts no container: it records every call, keeps a
//! table of "guests", and lets a test end one's init (`exit`) to drive the
//! engine's state machine the way a real guest would.
//!
//! What stands in for what:
//! * **init** is a pid above the kernel's `PID_MAX_LIMIT` (so no `/proc`
//!   entry, netns or signal can ever reach a real process) and a pipe whose
//!   write ends the guest holds: its read end is the container's "pidfd",
//!   readable once every write end is dropped, i.e. once init "exited";
//! * **cgroups** are directories under a test directory, laid out as a pure
//!   cgroup2 host, so limits the engine writes can be read back;
//! * **exec** runs the command as a child of the test process, in the
//!   guest's rootfs directory, with every `PATH` entry looked up inside the
//!   rootfs first and the host's binaries after: a script in an image
//!   (`/usr/bin/systemctl`, say) answers for the guest, `sh` and `cat` are
//!   the host's. `FAKE_ROOTFS` names the rootfs for such scripts;
//! * **files** of a running guest are done on its rootfs as the guest's
//!   root would through a user namespace: owners are shifted by its id map
//!   (without root, every owner is the test's own user);
//! * **hot-plugged mounts** are only recorded;
//! * **the console** is a host pty per attach whose guest side is a thread
//!   answering each line it reads with `<line> from the console at WxH`
//!   (the pty's window size then) on the output stream, as a getty's
//!   output would come back through the monitor.
//!
//! Youki's recording syscall double is the idea: calls are kept as short
//! strings (`start c1`, `signal c1 15`, `freeze c1 true`, `exec c1 sh -c …`).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kante_runtime::cgroup::{Cgroup, CgroupLayout};
use kante_runtime::console::ConsoleSession;
use kante_runtime::exec::{ExecError, ExecProcess, ExecSpec, ExecStdio};
use kante_runtime::fileio::{self, FileOp, Reply};
use kante_runtime::fileserver::FileSession;
use kante_runtime::process::{signal, ChildProcess};
use kante_runtime::pty::PtyMaster;
use kante_runtime::rootdir::RootDir;
use kante_runtime::sys::Errno;
use kante_runtime::{
    BindMount, Container, ContainerRecord, ContainerSpec, IdMap, InitExit, Runtime, RuntimeError,
    Stats,
};

/// First fake init pid: above `PID_MAX_LIMIT` (4194304 on 64-bit Linux).
pub const FAKE_PID_BASE: i32 = 5_000_000;

/// What the fake reports as a running guest's usage.
pub const FAKE_MEMORY_USAGE: i64 = 32 << 20;

struct Guest {
    name: String,
    pid: i32,
    spec: ContainerSpec,
    /// Write ends of the pipes handed out as init's pidfd (one per start
    /// or attach); dropping them all is init's exit.
    exit_writers: Vec<OwnedFd>,
    exit: Option<InitExit>,
    frozen: bool,
    mounts: Vec<String>,
}

#[derive(Default)]
struct State {
    calls: Vec<String>,
    /// By runtime directory (what `attach` is given).
    guests: BTreeMap<PathBuf, Guest>,
    next_pid: i32,
    fail_start: Option<String>,
    /// Instances whose init ignores the polite stop signals.
    stubborn: BTreeSet<String>,
    /// The last spec each instance was started with.
    specs: BTreeMap<String, ContainerSpec>,
    /// `cgroup.controllers` of new cgroups (`None`: all of them).
    controllers: Option<String>,
}

/// See the module docs.
pub struct FakeRuntime {
    cgroup_root: PathBuf,
    layout: CgroupLayout,
    state: Mutex<State>,
}

impl FakeRuntime {
    /// Cgroups go under `cgroup_root` (made if missing).
    pub fn new(cgroup_root: &Path) -> FakeRuntime {
        let _ = std::fs::create_dir_all(cgroup_root);
        FakeRuntime {
            cgroup_root: cgroup_root.to_path_buf(),
            layout: CgroupLayout {
                v1: Vec::new(),
                unified: Some(cgroup_root.to_path_buf()),
            },
            state: Mutex::new(State {
                next_pid: FAKE_PID_BASE,
                ..Default::default()
            }),
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, call: String) {
        self.st().calls.push(call);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    /// The calls that concern instance `name` (`start c1`, `signal c1 9`…).
    pub fn calls_for(&self, name: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.split(' ').nth(1) == Some(name))
            .collect()
    }

    /// Instances whose init runs.
    pub fn running(&self) -> Vec<String> {
        let st = self.st();
        let mut v: Vec<String> = st
            .guests
            .values()
            .filter(|g| g.exit.is_none())
            .map(|g| g.name.clone())
            .collect();
        v.sort();
        v
    }

    /// The spec instance `name` was last started with.
    pub fn spec(&self, name: &str) -> Option<ContainerSpec> {
        self.st().specs.get(name).cloned()
    }

    /// The pid of `name`'s init, while it runs.
    pub fn pid(&self, name: &str) -> Option<i32> {
        let st = self.st();
        let g = st
            .guests
            .values()
            .find(|g| g.name == name && g.exit.is_none())?;
        Some(g.pid)
    }

    /// Mount targets hot-plugged into `name`.
    pub fn mounts(&self, name: &str) -> Vec<String> {
        let st = self.st();
        st.guests
            .values()
            .find(|g| g.name == name)
            .map(|g| g.mounts.clone())
            .unwrap_or_default()
    }

    /// Ends `name`'s init as `how` (a shutdown from inside, a crash, a
    /// reboot: `InitExit::Signaled(SIGHUP)`). False if it was not running.
    pub fn exit(&self, name: &str, how: InitExit) -> bool {
        let mut st = self.st();
        match st
            .guests
            .values_mut()
            .find(|g| g.name == name && g.exit.is_none())
        {
            Some(g) => {
                end(g, how);
                true
            }
            None => false,
        }
    }

    /// Makes the next start fail with `message`, as a monitor reporting an
    /// error would.
    pub fn fail_next_start(&self, message: &str) {
        self.st().fail_start = Some(message.to_string());
    }

    /// `name`'s init ignores SIGPWR/SIGRTMIN+3/SIGTERM: only SIGKILL ends it.
    pub fn ignore_stop_signals(&self, name: &str) {
        self.st().stubborn.insert(name.to_string());
    }

    /// New cgroups list only `controllers` (space-separated) as offered, as
    /// a nested host's cgroup2 may.
    pub fn offer_controllers(&self, controllers: &str) {
        self.st().controllers = Some(controllers.to_string());
    }

    /// The directory of a cgroup (relative path as the engine names it).
    pub fn cgroup_dir(&self, rel: &str) -> PathBuf {
        self.cgroup_root.join(rel)
    }

    fn guest_name(&self, c: &Container) -> String {
        let st = self.st();
        st.guests
            .get(&c.record.runtime_dir)
            .map(|g| g.name.clone())
            .unwrap_or_else(|| "?".into())
    }

    /// A pipe whose read end is handed out as init's pidfd.
    fn exit_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        kante_runtime::sys::pipe()
    }
}

/// The guest side of a fake console (see the module's doc); it ends when
/// the engine closes the master (reads fail) or the output.
fn console_guest(slave: OwnedFd, mut out: std::os::unix::net::UnixStream) {
    use std::io::{BufRead, Write};
    use std::os::fd::AsFd;
    let tty = std::fs::File::from(slave);
    let mut lines = io::BufReader::new(&tty);
    let mut line = String::new();
    while matches!(lines.read_line(&mut line), Ok(n) if n > 0) {
        let (w, h) = kante_runtime::pty::window_size(tty.as_fd()).unwrap_or((0, 0));
        let answer = format!("{} from the console at {w}x{h}\r\n", line.trim_end());
        if out.write_all(answer.as_bytes()).is_err() {
            break;
        }
        line.clear();
    }
}

fn end(g: &mut Guest, how: InitExit) {
    g.exit = Some(how);
    g.exit_writers.clear();
}

fn is_polite_stop(sig: i32) -> bool {
    sig == signal::PWR || sig == signal::TERM || sig == signal::INT || sig == signal::rtmin_plus(3)
}

impl Runtime for FakeRuntime {
    fn start(
        &self,
        spec: &ContainerSpec,
        prepare: &mut dyn FnMut(i32) -> Result<(), kante_runtime::PrepareError>,
    ) -> Result<Container, RuntimeError> {
        let pid = {
            let mut st = self.st();
            st.calls.push(format!("start {}", spec.name));
            st.specs.insert(spec.name.clone(), spec.clone());
            if let Some(m) = st.fail_start.take() {
                return Err(RuntimeError::Start(m));
            }
            st.next_pid += 1;
            st.next_pid
        };
        std::fs::create_dir_all(&spec.runtime_dir)?;
        let cg = self.cgroup_dir(&spec.cgroup);
        std::fs::create_dir_all(&cg)?;
        let offered = self.st().controllers.clone();
        let offered = offered.unwrap_or_else(|| "cpuset cpu io memory pids".into());
        std::fs::write(cg.join("cgroup.controllers"), format!("{offered}\n"))?;
        // A host that accounts swap has this file.
        if offered.split_whitespace().any(|c| c == "memory") {
            std::fs::write(cg.join("memory.swap.max"), "max")?;
        }
        // Not under the state lock: `prepare` makes NICs (the fake netlink).
        if let Err(e) = prepare(pid) {
            self.record(format!("abort {} {e}", spec.name));
            let _ = std::fs::remove_dir_all(&cg);
            return Err(RuntimeError::Prepare(e));
        }
        let (r, w) = Self::exit_pipe()?;
        {
            use std::io::Write;
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(spec.runtime_dir.join("console.log"))?;
            writeln!(log, "[fake init] {} booted", spec.name)?;
        }
        let record = ContainerRecord {
            init_pid: pid,
            init_start: 0,
            monitor_pid: 0,
            cgroup: spec.cgroup.clone(),
            idmap: spec.idmap,
            cap_drop: spec.cap_drop.clone(),
            runtime_dir: spec.runtime_dir.clone(),
            intercept: spec.intercept,
        };
        self.st().guests.insert(
            spec.runtime_dir.clone(),
            Guest {
                name: spec.name.clone(),
                pid,
                spec: spec.clone(),
                exit_writers: vec![w],
                exit: None,
                frozen: false,
                mounts: Vec::new(),
            },
        );
        Ok(Container::new(record, r))
    }

    fn attach(&self, runtime_dir: &Path) -> Option<Container> {
        let (r, w) = Self::exit_pipe().ok()?;
        let mut st = self.st();
        let g = st.guests.get_mut(runtime_dir)?;
        if g.exit.is_some() {
            return None;
        }
        g.exit_writers.push(w);
        let record = ContainerRecord {
            init_pid: g.pid,
            init_start: 0,
            monitor_pid: 0,
            cgroup: g.spec.cgroup.clone(),
            idmap: g.spec.idmap,
            cap_drop: g.spec.cap_drop.clone(),
            runtime_dir: runtime_dir.to_path_buf(),
            intercept: g.spec.intercept,
        };
        let call = format!("attach {}", g.name);
        st.calls.push(call);
        Some(Container::new(record, r))
    }

    fn signal(&self, c: &Container, sig: i32) -> Result<(), RuntimeError> {
        let mut st = self.st();
        let stubborn = st.stubborn.clone();
        let name = match st.guests.get_mut(&c.record.runtime_dir) {
            Some(g) => {
                let ends = sig == signal::KILL
                    || (is_polite_stop(sig) && !stubborn.contains(&g.name) && !g.frozen);
                if ends && g.exit.is_none() {
                    let how = match sig {
                        signal::KILL => InitExit::Signaled(signal::KILL),
                        _ => InitExit::Exited(0),
                    };
                    end(g, how);
                }
                g.name.clone()
            }
            None => "?".into(),
        };
        st.calls.push(format!("signal {name} {sig}"));
        Ok(())
    }

    fn freeze(&self, c: &Container, frozen: bool) -> Result<(), RuntimeError> {
        let mut st = self.st();
        let name = match st.guests.get_mut(&c.record.runtime_dir) {
            Some(g) => {
                g.frozen = frozen;
                g.name.clone()
            }
            None => "?".into(),
        };
        st.calls.push(format!("freeze {name} {frozen}"));
        Ok(())
    }

    fn is_frozen(&self, c: &Container) -> bool {
        self.st()
            .guests
            .get(&c.record.runtime_dir)
            .is_some_and(|g| g.frozen)
    }

    fn stats(&self, _c: &Container) -> Stats {
        Stats {
            memory_usage: FAKE_MEMORY_USAGE,
            memory_peak: FAKE_MEMORY_USAGE * 2,
            swap_usage: 0,
            cpu_ns: 1_000_000_000,
            processes: 1,
        }
    }

    fn exec(&self, c: &Container, spec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
        let name = self.guest_name(c);
        self.record(format!("exec {name} {}", spec.argv.join(" ")));
        let rootfs = {
            let st = self.st();
            st.guests
                .get(&c.record.runtime_dir)
                .map(|g| g.spec.rootfs.clone())
                .ok_or_else(|| RuntimeError::Start("the instance is not running".into()))?
        };
        spawn_in_rootfs(&rootfs, spec)
    }

    fn console(&self, c: &Container) -> Result<ConsoleSession, RuntimeError> {
        let name = self.guest_name(c);
        self.record(format!("console {name}"));
        let (master, slave) = PtyMaster::open_host_pair(80, 25)?;
        let (output, guest_out) = std::os::unix::net::UnixStream::pair()?;
        std::thread::spawn(move || console_guest(slave, guest_out));
        Ok(ConsoleSession { output, master })
    }

    fn cleanup(&self, c: Container) -> Result<Option<InitExit>, RuntimeError> {
        let mut st = self.st();
        let exit = match st.guests.remove(&c.record.runtime_dir) {
            Some(g) => {
                st.calls.push(format!("cleanup {}", g.name));
                g.exit
            }
            None => None,
        };
        drop(st);
        let _ = std::fs::remove_dir_all(self.cgroup_dir(&c.record.cgroup));
        Ok(exit)
    }

    fn cgroup_at(&self, rel: &str) -> Cgroup {
        Cgroup::new(self.layout.clone(), rel)
    }

    fn file_server(&self, c: &Container) -> io::Result<Box<dyn FileSession>> {
        let name = self.guest_name(c);
        self.record(format!("file_server {name}"));
        let rootfs = self
            .st()
            .guests
            .get(&c.record.runtime_dir)
            .map(|g| g.spec.rootfs.clone())
            .ok_or_else(|| io::Error::from(Errno::NoProcess))?;
        let root = RootDir::open(&rootfs)?;
        Ok(Box::new(RootfsFiles {
            root,
            map: c.record.idmap,
        }))
    }

    fn mount_into(&self, c: &Container, m: &BindMount) -> io::Result<()> {
        let mut st = self.st();
        let g = st
            .guests
            .get_mut(&c.record.runtime_dir)
            .ok_or_else(|| io::Error::from(Errno::NoProcess))?;
        let name = g.name.clone();
        if !m.source.exists() {
            return Err(io::Error::from(Errno::NoEntry));
        }
        g.mounts.push(m.target.clone());
        st.calls
            .push(format!("mount {name} {} {}", m.target, m.source.display()));
        Ok(())
    }

    fn unmount_from(&self, c: &Container, target: &str) -> io::Result<()> {
        let mut st = self.st();
        let g = st
            .guests
            .get_mut(&c.record.runtime_dir)
            .ok_or_else(|| io::Error::from(Errno::NoProcess))?;
        g.mounts.retain(|t| t != target);
        let call = format!("unmount {} {target}", g.name);
        st.calls.push(call);
        Ok(())
    }
}

/// A running guest's files: its rootfs, its root's ids shifted by its map.
/// Without root only the test's own ids can be given to a file, so every
/// owner becomes those (the guest's root, in a test host's id range).
struct RootfsFiles {
    root: RootDir,
    map: Option<IdMap>,
}

impl RootfsFiles {
    fn shift(&self, (uid, gid): (u32, u32)) -> (u32, u32) {
        let own = kante_runtime::host::effective_ids();
        match self.map {
            _ if own.0 != 0 => own,
            Some(m) => (uid + m.host_uid, gid + m.host_gid),
            None => (uid, gid),
        }
    }
}

impl FileSession for RootfsFiles {
    fn call(&self, op: &FileOp, _timeout: Duration) -> io::Result<Reply> {
        let op = match *op {
            FileOp::Write {
                path,
                parent,
                name,
                mode,
                owner,
                append,
            } => FileOp::Write {
                path,
                parent,
                name,
                mode,
                owner: self.shift(owner),
                append,
            },
            FileOp::Mkdir {
                parent,
                name,
                mode,
                owner,
            } => FileOp::Mkdir {
                parent,
                name,
                mode,
                owner: self.shift(owner),
            },
            FileOp::Symlink {
                parent,
                name,
                target,
                owner,
            } => FileOp::Symlink {
                parent,
                name,
                target,
                owner: self.shift(owner),
            },
            other => other,
        };
        Ok(fileio::perform(self.root.as_raw_fd(), &op))
    }
}

/// Runs `spec` as a child of this process in `rootfs` (see the module docs).
fn spawn_in_rootfs(rootfs: &Path, spec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
    let argv0 = spec
        .argv
        .first()
        .ok_or_else(|| ExecError::Invalid("empty command".into()))?;
    if argv0.contains('\0') {
        return Err(ExecError::Invalid(format!("{argv0:?} contains a NUL byte")).into());
    }
    let env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let guest_path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let inside = |p: &str| rootfs.join(p.trim_start_matches('/'));
    let path: Vec<String> = guest_path
        .split(':')
        .map(|d| inside(d).display().to_string())
        .chain(["/usr/local/bin", "/usr/bin", "/bin"].map(String::from))
        .collect();
    let program = match argv0.starts_with('/') && inside(argv0).exists() {
        true => inside(argv0),
        false => PathBuf::from(argv0),
    };
    let cwd = inside(&spec.cwd);
    let mut cmd = Command::new(&program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(env)
        .env("PATH", path.join(":"))
        .env("FAKE_ROOTFS", rootfs)
        .current_dir(if cwd.is_dir() { cwd.as_path() } else { rootfs });
    let stdio = match spec.pty {
        None => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            None
        }
        Some((w, h)) => {
            let (master, slave) = PtyMaster::open_host_pair(w, h)?;
            cmd.stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            Some(master)
        }
    };
    let mut child = cmd.spawn().map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => "No such file or directory",
            io::ErrorKind::PermissionDenied => "Permission denied",
            _ => "failed",
        };
        ExecError::Setup(format!("{argv0}: {why} ({e})"))
    })?;
    // The slave's copies in `cmd` close with it: the master then reads EIO
    // once the command and its children are gone.
    drop(cmd);
    let stdio = match stdio {
        Some(master) => ExecStdio::Pty { master },
        None => ExecStdio::Pipes {
            stdin: child.stdin.take().map(OwnedFd::from).ok_or_else(no_pipe)?,
            stdout: child.stdout.take().map(OwnedFd::from).ok_or_else(no_pipe)?,
            stderr: child.stderr.take().map(OwnedFd::from).ok_or_else(no_pipe)?,
        },
    };
    // The engine reaps the command through its pidfd; `child` is not waited for.
    Ok(ExecProcess {
        helper: None,
        process: ChildProcess::from_child(child.id() as i32).map_err(ExecError::from)?,
        stdio,
    })
}

fn no_pipe() -> io::Error {
    io::Error::other("a piped stdio stream is missing")
}
