//! A real LXD 5.0.2 daemon (Debian's `/usr/bin/lxd`) of a test's own: its
//! own `LXD_DIR` under /tmp, HTTPS on a loopback port with a trust
//! password, a `dir` pool and a default profile with only a root disk (no
//! network: nothing leaves loopback). Dropping it stops it and removes
//! every trace: its processes (the daemon, `[lxc monitor]`s, `forkfile`s),
//! the mounts LXD leaves under its dir (`shmounts`, `devlxd`, the
//! containers'), the dir itself.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let mut cmd = Command::new("lxd");
        cmd.args(["--group", "root", "--logfile"])
            .arg(dir.join("lxd.log"))
            .env("LXD_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().expect("run lxd");
        let lxd = Lxd {
            dir,
            port: free_port(),
            child: Some(child),
        };
        let ready = lxd
            .cmd("lxd", &["waitready", "--timeout", "60"])
            .status()
            .unwrap();
        assert!(ready.success(), "lxd did not start:\n{}", lxd.log());
        let preseed = format!(
            "config:\n  core.https_address: 127.0.0.1:{}\n  core.trust_password: sesame\n\
             storage_pools:\n- name: default\n  driver: dir\n\
             profiles:\n- name: default\n  devices:\n    root: {{path: /, pool: default, type: disk}}\n",
            lxd.port
        );
        let o = crate::output_with_stdin(
            lxd.cmd("lxd", &["init", "--preseed"]),
            Some(preseed.as_bytes()),
        );
        assert!(
            o.status.success(),
            "lxd init: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        lxd
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
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        out.extend(
            mounts
                .lines()
                .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&d)))
                .map(|l| format!("mount: {l}")),
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
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&d))
            .map(str::to_string)
            .collect();
        // Deepest first.
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", &m]).status();
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
