//! A real LXD 5.0.2 daemon (Debian's `/usr/bin/lxd`) of a test's own: its
//! own `LXD_DIR` under /tmp, HTTPS on a loopback port with a trust
//! password (or, for the bench, on a lab host's address inside that host's
//! network namespace), a `dir` pool and a default profile with only a root disk (no
//! network: nothing leaves loopback). Dropping it stops it and removes
//! every trace: its processes (the daemon, `[lxc monitor]`s, `forkfile`s),
//! the mounts LXD leaves under its dir (`shmounts`, `devlxd`, the
//! containers', a btrfs pool's), loop devices over its files, the dir
//! itself.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::leaks::{loop_devices_under, mounts_under};
use crate::{free_port, processes_mentioning};

pub struct Lxd {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Lxd {
    /// Whether LXD is installed here.
    pub fn available() -> bool {
        std::path::Path::new("/usr/bin/lxd").exists()
    }

    /// Starts it and waits until it answers, configured.
    pub fn start() -> Lxd {
        let dir = PathBuf::from(format!("/tmp/kante-lxd-{}", std::process::id()));
        Lxd::try_start_in(None, "127.0.0.1", free_port(), dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one in `dir` (emptied first) and waits until it answers,
    /// configured as [`Lxd::start`] does but with HTTPS on
    /// `address:port`; inside the network namespace `netns` (a name under
    /// /run/netns, entered for the network only: its mounts stay visible
    /// here, so [`Lxd::stop`] finds them) if given. On failure it is
    /// stopped and cleaned again, and the error carries its log.
    pub fn try_start_in(
        netns: Option<&str>,
        address: &str,
        port: u16,
        dir: PathBuf,
    ) -> Result<Lxd, String> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.with_extension("log")).map_err(|e| e.to_string())?;
        let ns = match netns {
            Some(n) => Some(
                std::fs::File::open(format!("/run/netns/{n}"))
                    .map_err(|e| format!("network namespace {n}: {e}"))?,
            ),
            None => None,
        };
        let mut cmd = Command::new("lxd");
        cmd.args(["--group", "root", "--logfile"])
            .arg(dir.join("lxd.log"))
            .env("LXD_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let ns_fd = ns.as_ref().map(|f| f.as_raw_fd());
        // Nothing beyond stdio is inherited: not the namespace's descriptor
        // and not, say, the test lock a caller holds (the daemon and its
        // monitors would hold it for as long as they live).
        // SAFETY: only async-signal-safe calls (setns, setsid, close_range)
        // between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = ns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                libc::setsid();
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("run lxd: {e}"))?;
        drop(ns);
        // From here on, dropping it on an error stops and cleans it.
        let lxd = Lxd {
            dir,
            port,
            child: Some(child),
        };
        let ready = lxd
            .cmd("lxd", &["waitready", "--timeout", "60"])
            .status()
            .map_err(|e| e.to_string())?;
        if !ready.success() {
            return Err(format!(
                "lxd did not start:\n{}{}",
                lxd.log(),
                std::fs::read_to_string(lxd.dir.with_extension("log")).unwrap_or_default()
            ));
        }
        let preseed = format!(
            "config:\n  core.https_address: {address}:{port}\n  core.trust_password: sesame\n\
             storage_pools:\n- name: default\n  driver: dir\n\
             profiles:\n- name: default\n  devices:\n    root: {{path: /, pool: default, type: disk}}\n",
        );
        let o = crate::output_with_stdin(
            lxd.cmd("lxd", &["init", "--preseed"]),
            Some(preseed.as_bytes()),
        );
        if !o.status.success() {
            return Err(format!(
                "lxd init: {}{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                lxd.log()
            ));
        }
        Ok(lxd)
    }

    /// A command with this daemon's `LXD_DIR`.
    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args).env("LXD_DIR", &self.dir).stdin(Stdio::null());
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("lxd.log")).unwrap_or_default()
    }

    /// What is left of it on the host: processes naming its dir, mounts
    /// under it.
    pub fn leftovers(&self) -> Vec<String> {
        let d = self.dir.to_string_lossy().to_string();
        let mut out = processes_mentioning(&d);
        out.extend(
            mounts_under(&self.dir)
                .into_iter()
                .map(|m| format!("mount: {}", m.display())),
        );
        out.extend(
            loop_devices_under(&self.dir)
                .into_iter()
                .map(|(dev, file)| format!("loop device: {dev} over {file}")),
        );
        out
    }

    /// Stops it (its own shutdown first, which stops its instances), then
    /// kills what remains (`[lxc monitor]`s, `forkfile`s), unmounts what
    /// it left and removes its dir.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let _ = self
            .cmd("lxd", &["shutdown", "--timeout", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let d = self.dir.to_string_lossy().to_string();
        for _ in 0..3 {
            for p in processes_mentioning(&d) {
                if let Some(pid) = p.split(' ').next().and_then(|s| s.parse::<i32>().ok()) {
                    // SAFETY: a signal to a process of this LXD (named by its dir).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for m in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        // Loop devices over its files (a btrfs pool's image) that a lazy
        // unmount left attached.
        for (dev, _) in loop_devices_under(&self.dir) {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("log"));
    }
}

impl Drop for Lxd {
    fn drop(&mut self) {
        self.stop();
    }
}
