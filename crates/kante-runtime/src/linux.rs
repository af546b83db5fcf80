//! The daemon's side of the runtime: spawning monitors, finding running
//! containers again after a restart, signals, freezing, statistics, exec.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::{Cgroup, CgroupLayout};
use crate::console::ConsoleSession;
use crate::exec::{self, ExecProcess, ExecSpec, ExecTarget};
use crate::fileserver::{FileServer, FileSession};
use crate::monitor::{read_exit, read_report, InitExit, StartReport, CONTROL_FD, STATUS_FD};
use crate::seccomp::Program;
use crate::spec::{BindMount, ContainerSpec, IdMap, Intercept};
use crate::sys;
use crate::{PrepareError, RuntimeError};

/// What identifies a running container across daemon restarts; persisted
/// as `runtime.json` in the instance's runtime directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub init_pid: i32,
    pub init_start: u64,
    pub monitor_pid: i32,
    pub cgroup: String,
    pub idmap: Option<IdMap>,
    pub cap_drop: Vec<u32>,
    pub runtime_dir: PathBuf,
    /// Exec'd commands get the same intercepting filter as init.
    #[serde(default)]
    pub intercept: Intercept,
}

impl ContainerRecord {
    pub fn path(runtime_dir: &Path) -> PathBuf {
        runtime_dir.join("runtime.json")
    }

    pub fn load(runtime_dir: &Path) -> Option<Self> {
        let b = fs::read(Self::path(runtime_dir)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// The record of a container whose init (`init_pid`) runs under the
    /// monitor `monitor_pid`, as `spec` made it.
    pub(crate) fn of_started(
        spec: &ContainerSpec,
        init_pid: i32,
        monitor_pid: i32,
    ) -> io::Result<Self> {
        Ok(ContainerRecord {
            init_pid,
            init_start: sys::process_start_time(init_pid)?,
            monitor_pid,
            cgroup: spec.cgroup.clone(),
            idmap: spec.idmap,
            cap_drop: spec.cap_drop.clone(),
            runtime_dir: spec.runtime_dir.clone(),
            intercept: spec.intercept,
        })
    }

    /// Written by the monitor once init runs (see `monitor.rs`).
    pub(crate) fn save(&self) -> io::Result<()> {
        let tmp = self.runtime_dir.join("runtime.json.tmp");
        fs::write(&tmp, serde_json::to_vec(self)?)?;
        fs::rename(tmp, Self::path(&self.runtime_dir))
    }
}

/// A container the daemon is attached to.
pub struct Container {
    pub record: ContainerRecord,
    /// Becomes readable when init exits.
    pub init_pidfd: OwnedFd,
    /// The monitor, when this daemon started it (it is then ours to reap).
    monitor: Option<Child>,
}

impl Container {
    /// A container another [`Runtime`] started (a fake one in tests):
    /// `init_pidfd` must become readable when its init ends.
    pub fn new(record: ContainerRecord, init_pidfd: OwnedFd) -> Container {
        Container {
            record,
            init_pidfd,
            monitor: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.record.init_pid
    }

    /// Blocks until init has exited (its pidfd turns readable), at most
    /// `timeout`; whether it has.
    pub fn wait_init_exit(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.init_pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll on one valid fd, described by a local pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }
}

/// Resource usage of a running container.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub memory_usage: i64,
    pub memory_peak: i64,
    pub swap_usage: i64,
    pub cpu_ns: i64,
    pub processes: i64,
}

/// The operations the engine needs from a container runtime. The Linux
/// implementation is [`LinuxRuntime`]; engine unit tests use a fake.
pub trait Runtime: Send + Sync {
    /// Creates and starts a container; returns once its init has exec'd.
    /// `prepare` runs with init's host pid after the namespaces exist and
    /// before init runs (network interfaces go in then); an error aborts.
    fn start(
        &self,
        spec: &ContainerSpec,
        prepare: &mut dyn FnMut(i32) -> Result<(), PrepareError>,
    ) -> Result<Container, RuntimeError>;
    /// Finds a container started by an earlier daemon, if it still runs.
    fn attach(&self, runtime_dir: &Path) -> Option<Container>;
    fn signal(&self, c: &Container, sig: i32) -> Result<(), RuntimeError>;
    fn freeze(&self, c: &Container, frozen: bool) -> Result<(), RuntimeError>;
    fn is_frozen(&self, c: &Container) -> bool;
    fn stats(&self, c: &Container) -> Stats;
    fn exec(&self, c: &Container, spec: &ExecSpec) -> Result<ExecProcess, RuntimeError>;
    /// Attaches to the container's console: its output and its pty master
    /// (see [`crate::console`]); several attaches may be live at once.
    fn console(&self, c: &Container) -> Result<ConsoleSession, RuntimeError>;
    /// After init exited: reaps the monitor, removes cgroups, returns how init ended.
    fn cleanup(&self, c: Container) -> Result<Option<InitExit>, RuntimeError>;
    /// The cgroup of a container, for limits.
    fn cgroup(&self, c: &Container) -> Cgroup {
        self.cgroup_at(&c.record.cgroup)
    }
    /// The cgroup at a relative path (`kante-…/<name>`), without holding
    /// the container.
    fn cgroup_at(&self, rel: &str) -> Cgroup;
    /// A file server for the running container: file operations done as
    /// its root, inside its namespaces (see [`crate::fileserver`]).
    fn file_server(&self, c: &Container) -> io::Result<Box<dyn FileSession>>;
    /// Mounts `m` into the running container (disk hot-plug).
    fn mount_into(&self, c: &Container, m: &BindMount) -> io::Result<()>;
    /// Unmounts whatever is mounted at `target` inside the running container.
    fn unmount_from(&self, c: &Container, target: &str) -> io::Result<()>;
}

pub struct LinuxRuntime {
    monitor_exe: PathBuf,
    layout: CgroupLayout,
    /// One compiled policy per combination of intercepted syscalls, made on first use.
    seccomp: std::sync::Mutex<[Option<Program>; 4]>,
}

impl LinuxRuntime {
    /// `monitor_exe` is a binary that runs [`crate::monitor::monitor_main`]
    /// when called as `<exe> __monitor <spec.json>` (kanted itself).
    pub fn new(monitor_exe: PathBuf) -> Result<Self, RuntimeError> {
        let layout = CgroupLayout::detect()?;
        let mut seccomp: [Option<Program>; 4] = Default::default();
        seccomp[0] = Some(Program::default_policy()?);
        Ok(LinuxRuntime {
            monitor_exe,
            layout,
            seccomp: std::sync::Mutex::new(seccomp),
        })
    }

    fn program(&self, intercept: Intercept) -> Result<Program, RuntimeError> {
        let mut cache = self.seccomp.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut cache[intercept.index()];
        if slot.is_none() {
            *slot = Some(Program::policy(intercept)?);
        }
        Ok(slot.clone().expect("just filled"))
    }

    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    fn spawn_monitor(
        &self,
        spec: &ContainerSpec,
        prepare: &mut dyn FnMut(i32) -> Result<(), PrepareError>,
    ) -> Result<(Child, StartReport), RuntimeError> {
        let (status_r, status_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let (control_r, control_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.runtime_dir.join("monitor.log"))?;
        let mut cmd = Command::new(&self.monitor_exe);
        cmd.arg("__monitor")
            .arg(spec.spec_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        let (w, r) = (status_w.as_raw_fd(), control_r.as_raw_fd());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session: no signal from the daemon's terminal or process group.
                libc::setsid();
                // Move both ends out of the way first, then into place (dup2 clears CLOEXEC).
                let (w2, r2) = (
                    libc::fcntl(w, libc::F_DUPFD, 10),
                    libc::fcntl(r, libc::F_DUPFD, 10),
                );
                if w2 < 0
                    || r2 < 0
                    || libc::dup2(w2, STATUS_FD) < 0
                    || libc::dup2(r2, CONTROL_FD) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                libc::close(w2);
                libc::close(r2);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            RuntimeError::Start(format!(
                "spawning monitor {}: {e}",
                self.monitor_exe.display()
            ))
        })?;
        drop(status_w);
        drop(control_r);
        let log_hint = spec.runtime_dir.join("monitor.log");
        let mut status = std::io::BufReader::new(File::from(status_r));
        let mut control = File::from(control_w);
        let read = |status: &mut std::io::BufReader<File>| {
            read_report(status).map_err(|e| {
                RuntimeError::Start(format!("monitor: {e} (see {})", log_hint.display()))
            })
        };
        let mut report = read(&mut status)?;
        if let StartReport::Created { init_pid } = report {
            use std::io::Write;
            match prepare(init_pid) {
                Ok(()) => {
                    let _ = control.write_all(b"go\n");
                    report = read(&mut status)?;
                }
                Err(e) => {
                    let _ = control.write_all(format!("abort: {e}\n").as_bytes());
                    let _ = read(&mut status);
                    drop(control);
                    let _ = child.wait();
                    return Err(RuntimeError::Prepare(e));
                }
            }
        }
        Ok((child, report))
    }
}

impl Runtime for LinuxRuntime {
    fn start(
        &self,
        spec: &ContainerSpec,
        prepare: &mut dyn FnMut(i32) -> Result<(), PrepareError>,
    ) -> Result<Container, RuntimeError> {
        fs::create_dir_all(&spec.runtime_dir)?;
        let _ = fs::remove_file(spec.exit_status_path());
        let _ = fs::remove_file(ContainerRecord::path(&spec.runtime_dir));
        fs::write(
            spec.spec_path(),
            serde_json::to_vec_pretty(spec).map_err(io::Error::from)?,
        )?;
        let (mut child, report) = self.spawn_monitor(spec, prepare)?;
        match report {
            StartReport::Started { init_pid } => {
                let init_pidfd = sys::pidfd_open(init_pid)?;
                // The monitor recorded the container before it reported.
                let record = ContainerRecord::load(&spec.runtime_dir)
                    .filter(|r| r.init_pid == init_pid && r.monitor_pid == child.id() as i32)
                    .ok_or_else(|| {
                        RuntimeError::Start("the monitor did not record the container".into())
                    })?;
                Ok(Container {
                    record,
                    init_pidfd,
                    monitor: Some(child),
                })
            }
            StartReport::Failed { error } => {
                let _ = child.wait();
                Err(RuntimeError::Start(error))
            }
            StartReport::Created { .. } => {
                let _ = child.kill();
                let _ = child.wait();
                Err(RuntimeError::Start(
                    "the monitor reported its start twice".into(),
                ))
            }
        }
    }

    fn attach(&self, runtime_dir: &Path) -> Option<Container> {
        let record = ContainerRecord::load(runtime_dir)?;
        // Same pid and same start time: the very process we started, not a reused pid.
        if sys::process_start_time(record.init_pid).ok()? != record.init_start
            || sys::process_is_dead(record.init_pid)
        {
            return None;
        }
        let init_pidfd = sys::pidfd_open(record.init_pid).ok()?;
        Some(Container {
            record,
            init_pidfd,
            monitor: None,
        })
    }

    fn signal(&self, c: &Container, sig: i32) -> Result<(), RuntimeError> {
        match sys::pidfd_send_signal(c.init_pidfd.as_raw_fd(), sig) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn freeze(&self, c: &Container, frozen: bool) -> Result<(), RuntimeError> {
        Ok(self.cgroup(c).freeze(frozen, Duration::from_secs(10))?)
    }

    fn is_frozen(&self, c: &Container) -> bool {
        self.cgroup(c).is_frozen()
    }

    fn stats(&self, c: &Container) -> Stats {
        let cg = self.cgroup(c);
        let (memory_usage, memory_peak, swap_usage) = cg.memory_usage();
        Stats {
            memory_usage,
            memory_peak,
            swap_usage,
            cpu_ns: cg.cpu_usage_ns(),
            processes: cg.process_count(),
        }
    }

    fn exec(&self, c: &Container, spec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
        let seccomp = self.program(c.record.intercept)?;
        // The command's seccomp listener goes to the monitor, which answers
        // its intercepted syscalls as it does init's.
        let notify = match c.record.intercept.any() {
            true => Some(
                std::os::unix::net::UnixStream::connect(Intercept::socket_path(
                    &c.record.runtime_dir,
                ))
                .map_err(|e| RuntimeError::Start(format!("the monitor's seccomp socket: {e}")))?,
            ),
            false => None,
        };
        let target = ExecTarget {
            init_pid: c.record.init_pid,
            init_pidfd: c.init_pidfd.as_raw_fd(),
            cgroup_procs: self.cgroup(c).procs_files(),
            cgroup_leaf: self.cgroup(c).exec_leaf(),
            idmap: c.record.idmap,
            cap_drop: &c.record.cap_drop,
            seccomp: &seccomp,
            notify: notify.as_ref().map(|s| s.as_raw_fd()),
        };
        Ok(exec::spawn(&target, spec)?)
    }

    fn console(&self, c: &Container) -> Result<ConsoleSession, RuntimeError> {
        Ok(crate::console::attach(&c.record.runtime_dir)?)
    }

    fn cleanup(&self, mut c: Container) -> Result<Option<InitExit>, RuntimeError> {
        // The monitor reaps init, records the exit and leaves; wait for that
        // so nothing pins the cgroup.
        match c.monitor.take() {
            Some(mut child) => {
                let _ = child.wait();
            }
            None => wait_gone(c.record.monitor_pid, Duration::from_secs(10)),
        }
        let exit = read_exit(&c.record.runtime_dir);
        self.cgroup(&c).remove()?;
        let _ = fs::remove_file(ContainerRecord::path(&c.record.runtime_dir));
        Ok(exit)
    }

    fn cgroup_at(&self, rel: &str) -> Cgroup {
        Cgroup::new(self.layout.clone(), rel)
    }

    fn file_server(&self, c: &Container) -> io::Result<Box<dyn FileSession>> {
        let server = FileServer::spawn(c.init_pidfd.as_raw_fd(), c.record.idmap.is_some())?;
        Ok(Box::new(server))
    }

    fn mount_into(&self, c: &Container, m: &BindMount) -> io::Result<()> {
        let pid = c.pid();
        let root_ids = crate::idmap::of_process(pid).map(|m| (m.host_uid, m.host_gid));
        crate::hotplug::attach(pid, m, root_ids)
    }

    fn unmount_from(&self, c: &Container, target: &str) -> io::Result<()> {
        crate::hotplug::detach(c.pid(), target)
    }
}

/// Waits until a process that is not our child has exited (or is a zombie).
fn wait_gone(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !sys::process_is_dead(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}
