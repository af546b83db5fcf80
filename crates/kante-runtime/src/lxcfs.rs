//! lxcfs: the FUSE filesystem that gives a container `/proc/meminfo`,
//! `/proc/cpuinfo`, `/proc/uptime` … computed from its own cgroup, so `free`,
//! `nproc --all` and `uptime` inside show the instance's limits.
//!
//! One lxcfs serves every container on the host, at Debian's path
//! `/var/lib/lxcfs` (the one LXD uses too). Where the host already runs it
//! (the package's systemd unit), kanted uses that one; otherwise kanted starts
//! it as a detached daemon, so it outlives kanted like the containers do, and
//! restarts it when it finds it dead. Containers started while lxcfs was dead
//! keep stale files until [`rebind`] gives them the new ones.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::hotplug;
use crate::spec::BindMount;

/// Files lxcfs virtualises under its `proc/`, bound over the guest's.
pub const PROC_FILES: &[&str] = &[
    "cpuinfo",
    "diskstats",
    "loadavg",
    "meminfo",
    "stat",
    "swaps",
    "uptime",
    "slabinfo",
];

/// Why starting lxcfs failed.
#[derive(Debug, thiserror::Error)]
pub enum LxcfsError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// lxcfs ran but did not come up; `stderr` is what it said.
    #[error("{why}: {stderr}")]
    Failed { why: String, stderr: String },
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> LxcfsError {
    move |source| LxcfsError::Io { what, source }
}

/// The CPU directory lxcfs virtualises (`online`, per-CPU entries).
pub const SYS_CPU: &str = "sys/devices/system/cpu";

pub const DEFAULT_DIR: &str = "/var/lib/lxcfs";
/// Debian's unit uses the same pidfile, so at most one of us runs.
const DEFAULT_PIDFILE: &str = "/run/lxcfs.pid";

/// The bind mounts (lxcfs file → path in the guest) for an lxcfs at `dir`:
/// only those lxcfs serves, so an older lxcfs without some file still works.
pub fn binds(dir: &Path) -> Vec<BindMount> {
    let mut out: Vec<BindMount> = PROC_FILES
        .iter()
        .map(|f| (dir.join("proc").join(f), format!("/proc/{f}")))
        .chain(std::iter::once((dir.join(SYS_CPU), format!("/{SYS_CPU}"))))
        .filter(|(src, _)| src.exists())
        .map(|(source, target)| BindMount {
            source,
            target,
            readonly: false,
            idmapped: false,
        })
        .collect();
    out.sort_by(|a, b| a.target.cmp(&b.target));
    out
}

/// Whether `dir` holds a live FUSE mount (a dead one fails with ENOTCONN).
pub fn is_serving(dir: &Path) -> bool {
    match nix::sys::statfs::statfs(dir) {
        Ok(st) => {
            st.filesystem_type() == nix::sys::statfs::FUSE_SUPER_MAGIC
                && std::fs::metadata(dir.join("proc/meminfo")).is_ok()
        }
        Err(_) => false,
    }
}

/// Re-attaches the lxcfs files inside the running container whose init is
/// `pid` (after lxcfs was restarted, its old files answer ENOTCONN).
pub fn rebind(pid: i32, dir: &Path) -> std::io::Result<()> {
    for m in binds(dir) {
        // Lazily: a guest process holding the old file open keeps it.
        let _ = hotplug::detach(pid, &m.target);
        hotplug::attach(pid, &m, None)?;
    }
    Ok(())
}

/// kanted's handle on the host's lxcfs.
pub struct Lxcfs {
    dir: PathBuf,
    pidfile: PathBuf,
    program: Option<PathBuf>,
    /// Serialises health checks and restarts; holds whether a missing
    /// program was already reported (so the log says it once).
    state: Mutex<bool>,
}

/// What [`Lxcfs::ensure`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving at the path; nothing was done.
    Serving(PathBuf),
    /// Was not serving and has been (re)started.
    Restarted(PathBuf),
    /// No lxcfs: guests see the host's /proc files.
    Unavailable(String),
}

impl Health {
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Health::Serving(d) | Health::Restarted(d) => Some(d),
            Health::Unavailable(_) => None,
        }
    }
}

impl Lxcfs {
    /// The host's lxcfs at `KANTE_LXCFS_DIR` (default `/var/lib/lxcfs`);
    /// `KANTE_LXCFS=0` turns the feature off.
    pub fn system() -> Lxcfs {
        let off = std::env::var("KANTE_LXCFS").is_ok_and(|v| v == "0");
        let dir = std::env::var_os("KANTE_LXCFS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        let pidfile = if dir == Path::new(DEFAULT_DIR) {
            PathBuf::from(DEFAULT_PIDFILE)
        } else {
            dir.with_extension("pid")
        };
        let program = (!off).then(|| find_program("lxcfs")).flatten();
        Lxcfs {
            dir,
            pidfile,
            program,
            state: Mutex::new(false),
        }
    }

    /// An lxcfs that is never there and never started (`dir` is only
    /// checked): guests see the host's /proc files. For tests, and hosts
    /// that turn the feature off.
    pub fn unavailable(dir: PathBuf) -> Lxcfs {
        Lxcfs {
            pidfile: dir.with_extension("pid"),
            dir,
            program: None,
            state: Mutex::new(false),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes sure lxcfs serves [`Lxcfs::dir`], starting it if needed.
    pub fn ensure(&self) -> Health {
        let mut reported = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if is_serving(&self.dir) {
            return Health::Serving(self.dir.clone());
        }
        let Some(program) = &self.program else {
            let why = "lxcfs is not installed (or KANTE_LXCFS=0): guests see the host's /proc";
            if !*reported {
                tracing::warn!("{why}");
                *reported = true;
            }
            return Health::Unavailable(why.into());
        };
        match self.start(program) {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), "started lxcfs");
                Health::Restarted(self.dir.clone())
            }
            Err(e) => {
                tracing::warn!("lxcfs: {e}; guests see the host's /proc");
                Health::Unavailable(e.to_string())
            }
        }
    }

    fn start(&self, program: &Path) -> Result<(), LxcfsError> {
        // A dead lxcfs leaves its mount behind, answering ENOTCONN.
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        if let Some(pid) = self.pid() {
            // Alive but not serving (hung): replace it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(io_error(format!("creating {}", self.dir.display())))?;
        // lxcfs stays in the foreground; `setsid --fork` detaches it from
        // kanted (own session, re-parented), so it survives kanted's
        // restarts. -l: per-container load average; --enable-cfs: CPU count
        // from a CPU quota (limits.cpu.allowance). Its stderr goes to a file.
        let errlog = self.pidfile.with_extension("stderr");
        let err = std::fs::File::create(&errlog)
            .map_err(io_error(format!("creating {}", errlog.display())))?;
        let mut cmd = Command::new("setsid");
        // SAFETY: close_range is async-signal-safe. Without it lxcfs would
        // keep every fd kanted inherited (a caller's lock file, say) for life.
        unsafe {
            cmd.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let status = cmd
            .arg("--fork")
            .arg(program)
            .arg("-l")
            .arg("--enable-cfs")
            .arg("-p")
            .arg(&self.pidfile)
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .map_err(io_error(format!("running setsid {}", program.display())))?;
        let failed = |why: String| {
            let text = std::fs::read_to_string(&errlog).unwrap_or_default();
            LxcfsError::Failed {
                why,
                stderr: text.trim().to_string(),
            }
        };
        if !status.success() {
            return Err(failed(format!(
                "{} exited with {status}",
                program.display()
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_serving(&self.dir) {
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "lxcfs did not mount {}",
                    self.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The pid of the lxcfs in our pidfile, if it still runs.
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| is_lxcfs(*p))
    }
}

fn is_lxcfs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "lxcfs")
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_only_what_lxcfs_serves() {
        let dir = std::env::temp_dir().join(format!("kante-lxcfs-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::create_dir_all(dir.join(SYS_CPU)).unwrap();
        for f in ["meminfo", "uptime"] {
            std::fs::write(dir.join("proc").join(f), "").unwrap();
        }
        let b = binds(&dir);
        let targets: Vec<&str> = b.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            targets,
            ["/proc/meminfo", "/proc/uptime", "/sys/devices/system/cpu"]
        );
        assert!(b.iter().all(|m| !m.idmapped && !m.readonly));
        assert_eq!(b[0].source, dir.join("proc/meminfo"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_plain_directory_is_not_serving() {
        assert!(!is_serving(&std::env::temp_dir()));
        assert!(!is_serving(Path::new("/nonexistent/kante")));
    }
}
