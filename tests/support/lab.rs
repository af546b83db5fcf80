//! A lab of hosts for root tests (`kante lab up`, see `crates/kante/src/lab/`):
//! `Lab::up(n)` makes one with a unique name and subnet, its directory and
//! the caller's client configuration in a temporary directory, and takes
//! it down again on drop. Helpers run `kante` against a host (over HTTPS
//! through the caller's remotes, or from inside a host's namespace), reach
//! a host's daemon through its unix socket, and import a test image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use kante_client::Client;

use crate::{bin, TestImage};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    /// The lab's `--name` (remotes in the caller's configuration are `<name>-h<i>`).
    pub name: String,
    pub hosts: u32,
    /// The uplink subnet, `10.248.X.0/24`.
    pub subnet: String,
    /// The lab's directory (`--dir`), removed by `down`.
    pub dir: PathBuf,
    /// The caller's client configuration (`KANTE_CONF`).
    pub conf: PathBuf,
    /// Holds `dir` and `conf`.
    _tmp: tempfile::TempDir,
    down: bool,
}

/// A name, uplink subnet and bridge range no other lab of this process
/// uses (the host-wide test lock keeps other processes out). Names start
/// with `l`, so the lab's links never look like a daemon's `kt…` veths.
pub fn unique() -> (String, String, String) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    let x = (pid + n * 7) % 200 + 20;
    (
        format!("l{}{n}", pid % 100_000),
        format!("10.248.{x}.0/24"),
        format!("10.{}.0.0/16", 150 + x % 50),
    )
}

impl Lab {
    /// `kante lab up --hosts n` with a unique name and ranges; panics with
    /// its output if it fails.
    pub fn up(n: u32) -> Lab {
        let mut lab = Lab::unmade(n);
        let o = lab.run_up(&[]);
        assert!(
            o.status.success(),
            "kante lab up failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        lab.down = false;
        lab
    }

    /// A lab not made yet: `run_up` makes it.
    pub fn unmade(n: u32) -> Lab {
        let (name, subnet, _) = unique();
        let tmp = tempfile::tempdir().unwrap();
        Lab {
            dir: tmp.path().join(&name),
            conf: tmp.path().join("conf"),
            name,
            hosts: n,
            subnet,
            _tmp: tmp,
            down: true,
        }
    }

    /// `kante lab up` for this lab with `extra` arguments; its output.
    pub fn run_up(&mut self, extra: &[&str]) -> Output {
        self.up_command(extra).output().expect("run kante lab up")
    }

    /// The `kante lab up` command of this lab, not started (the lab counts
    /// as made: it is taken down on drop).
    pub fn up_command(&mut self, extra: &[&str]) -> Command {
        let (_, _, bridges) = unique();
        let hosts = self.hosts.to_string();
        let dir = self.dir.to_string_lossy().to_string();
        let kanted = bin("kanted").to_string_lossy().to_string();
        let mut args = vec![
            "lab",
            "up",
            "--hosts",
            &hosts,
            "--name",
            &self.name,
            "--subnet",
            &self.subnet,
            "--bridge-range",
            &bridges,
            "--dir",
            &dir,
        ];
        if !extra.contains(&"--kanted") {
            args.extend(["--kanted", &kanted]);
        }
        args.extend(extra);
        self.down = false;
        let mut cmd = Command::new(bin("kante"));
        cmd.args(&args)
            .env("KANTE_CONF", &self.conf)
            .stdin(Stdio::null());
        cmd
    }

    /// Pids of the kanteds started so far (their pid files).
    pub fn pids(&self) -> Vec<i32> {
        (1..=self.hosts)
            .filter_map(|i| {
                std::fs::read_to_string(self.dir.join(format!("h{i}")).join("kanted.pid")).ok()
            })
            .filter_map(|t| t.trim().parse().ok())
            .collect()
    }

    /// `kante ARGS` as the caller (its remotes are the lab's hosts).
    pub fn kante(&self, args: &[&str]) -> Output {
        self.kante_cmd(args).output().expect("run kante")
    }

    /// The command of [`Lab::kante`], not run (to spawn it and act meanwhile).
    pub fn kante_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("kante"));
        c.args(args)
            .env("KANTE_CONF", &self.conf)
            .stdin(Stdio::null());
        c
    }

    /// `kante ARGS` must succeed; its stdout.
    pub fn kante_ok(&self, args: &[&str]) -> String {
        ok(self.kante(args), args)
    }

    /// `kante ARGS` against host i's daemon through its unix socket
    /// (`KANTE_DIR`: `local` is host i), from the caller's namespace.
    pub fn host_kante(&self, i: u32, args: &[&str]) -> Output {
        Command::new(bin("kante"))
            .args(args)
            .env("KANTE_DIR", self.state(i))
            .env("KANTE_CONF", &self.conf)
            .stdin(Stdio::null())
            .output()
            .expect("run kante")
    }

    /// `kante lab exec h<i> -- CMD…`: CMD in host i's namespace, as host i.
    pub fn exec(&self, i: u32, cmd: &[&str]) -> Output {
        let dir = self.dir.to_string_lossy().to_string();
        let host = format!("h{i}");
        let mut args = vec![
            "lab", "exec", "--name", &self.name, "--dir", &dir, &host, "--",
        ];
        args.extend(cmd);
        self.kante(&args)
    }

    pub fn exec_ok(&self, i: u32, cmd: &[&str]) -> String {
        ok(self.exec(i, cmd), cmd)
    }

    /// `kante lab status`.
    pub fn status(&self) -> String {
        let dir = self.dir.to_string_lossy().to_string();
        self.kante_ok(&["lab", "status", "--name", &self.name, "--dir", &dir])
    }

    /// `kante lab down`; its output (the lab counts as down afterwards).
    pub fn down(&mut self) -> Output {
        let dir = self.dir.to_string_lossy().to_string();
        self.down = true;
        self.kante(&["lab", "down", "--name", &self.name, "--dir", &dir])
    }

    /// Host i's remote in the caller's configuration.
    pub fn remote(&self, i: u32) -> String {
        format!("{}-h{i}", self.name)
    }

    /// Host i's network namespace.
    pub fn netns(&self, i: u32) -> String {
        format!("{}-h{i}", self.name)
    }

    /// The links the lab makes in the caller's namespace.
    pub fn links(&self) -> Vec<String> {
        let mut l = vec![format!("k{}-up", self.name)];
        l.extend((1..=self.hosts).map(|i| format!("k{}-h{i}", self.name)));
        l
    }

    /// Host i's uplink address.
    pub fn address(&self, i: u32) -> String {
        let base = self.subnet.trim_end_matches(".0/24");
        format!("{base}.{}", 10 + i)
    }

    /// Host i's `KANTE_DIR`.
    pub fn state(&self, i: u32) -> PathBuf {
        self.dir.join(format!("h{i}")).join("state")
    }

    /// Host i's kanted pid, from its pid file.
    pub fn pid(&self, i: u32) -> i32 {
        let p = self.dir.join(format!("h{i}")).join("kanted.pid");
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// Host i's daemon through its unix socket.
    pub fn client(&self, i: u32) -> Client {
        Client::with_socket(self.state(i).join("unix.socket"))
    }

    /// Imports a test image into host i; its fingerprint.
    pub async fn import(&self, i: u32, image: TestImage) -> String {
        self.client(i)
            .upload_image(&image.path(), &Default::default(), |_, _| {})
            .await
            .unwrap_or_else(|e| panic!("importing {image:?} into h{i}: {e}"))
    }

    /// Runs `sh -c script` in instance `name` of host i; code and output.
    pub async fn sh(&self, i: u32, name: &str, script: &str) -> (i32, String) {
        let o = self
            .client(i)
            .exec_capture(name, &["sh", "-c", script], &[], None)
            .await
            .unwrap_or_else(|e| panic!("exec of {script:?} in h{i}:{name}: {e}"));
        (o.code, format!("{}{}", o.stdout_str(), o.stderr_str()))
    }

    /// Host i's daemon log.
    pub fn log(&self, i: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("h{i}")).join("kanted.log"))
            .unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn ok(o: Output, args: &[&str]) -> String {
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down {
            let o = self.down();
            if !o.status.success() {
                eprintln!(
                    "kante lab down on drop: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}

/// The byte count of the latest finished `Migrating instance` operation
/// of the daemon behind `client`
/// (its last `fs_progress`, as `c1: 1.23MB (4.56MB/s)`).
pub async fn migrated_bytes(client: &Client) -> u64 {
    let ops: serde_json::Value = client
        .get_json("/1.0/operations?recursion=1")
        .await
        .unwrap();
    let mut found: Vec<(String, String)> = ops
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|v| v.as_array())
        .flatten()
        .filter(|o| o["description"] == "Migrating instance")
        .filter_map(|o| {
            Some((
                o["created_at"].as_str()?.to_string(),
                o["metadata"]["fs_progress"].as_str()?.to_string(),
            ))
        })
        .collect();
    found.sort();
    let (_, line) = found.pop().expect("a migration operation with progress");
    let amount = line
        .split_once(": ")
        .and_then(|(_, r)| r.split(' ').next())
        .unwrap_or_else(|| panic!("{line}"));
    let digits = amount
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(amount.len());
    let (n, unit) = amount.split_at(digits);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("{line}"));
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => panic!("{line}"),
    };
    (n * scale) as u64
}
