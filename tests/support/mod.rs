//! Shared harness of the integration tests: a real `kanted` per test in its
//! own `KANTE_DIR`, the test images, and the leak check every test ends with.
//!
//! These tests need root and run one at a time (`serial()`); they talk only
//! to the daemon's unix socket.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use kante_api::instance::{InstanceSource, InstancesPost};
pub use kante_client::Client;

mod cgroups;
pub mod cluster;
pub mod lab;
mod leaks;
pub mod load;
pub mod lxc;
pub mod lxd;
pub mod net;
pub mod overlay;
pub mod pty;
pub mod soak;
pub mod two;
pub use cgroups::{pids_in_tree, HostCgroups};
use leaks::cgroup_dirs;
pub use leaks::{
    fd_count, kante_links, leaks_of, loop_devices_under, mounts_under, nft_tables_of,
    proc_status_number, processes_mentioning, settled_usage, usage, Allowance, Usage,
    CYCLE_ALLOWANCE,
};

/// One root test at a time: they share cgroups, ids and the machine. The
/// in-process mutex orders this binary's tests; a host-wide `flock` on
/// `/run/kante-tests.lock` (held for the life of the process once taken)
/// keeps two test binaries, or two checkouts, from running at once.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    init_reaper();
    let g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    host_lock();
    g
}

fn host_lock() {
    static HELD: OnceLock<std::fs::File> = OnceLock::new();
    HELD.get_or_init(|| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/kante-tests.lock")
            .expect("open /run/kante-tests.lock");
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an fd we own; blocks until the other run ends.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock /run/kante-tests.lock");
        f
    });
}

/// Pids of daemons we own (reaped through their `Child`, not by the reaper).
fn owned() -> &'static Mutex<HashSet<i32>> {
    static OWNED: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    OWNED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// When a test kills a daemon, its container monitors are re-parented to
/// the nearest subreaper: this test process. Reap them as they exit so the
/// process table stays clean (on a systemd host, PID 1 would do this).
fn init_reaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        std::thread::spawn(|| loop {
            reap_zombie_children();
            std::thread::sleep(Duration::from_millis(100));
        });
    });
}

fn reap_zombie_children() {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // Only orphaned monitors (`kanted __monitor`): every other child of
        // this process is waited for by whoever spawned it.
        if comm == "kanted"
            && f.len() > 1
            && f[0] == "Z"
            && f[1].parse::<i32>().ok() == Some(me)
            && !owned().lock().unwrap().contains(&pid)
        {
            let mut status = 0;
            // SAFETY: reaping our own zombie child.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        }
    }
}

/// A built binary of this workspace (`target/<profile>/<name>`).
///
/// `KANTE_TEST_BIN_DIR` points the tests at other binaries (say, an older
/// commit's build, to show that an attack test fails there).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = match std::env::var_os("KANTE_TEST_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf(),
    };
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// The cached test images (built by `scripts/images.sh`).
#[derive(Debug, Clone, Copy)]
pub enum TestImage {
    Busybox,
    Debian,
    /// Debian with Debian's docker.io (`kante image build debian-docker/12`).
    DebianDocker,
}

impl TestImage {
    pub fn path(self) -> PathBuf {
        let dir =
            std::env::var("KANTE_IMAGE_CACHE").unwrap_or_else(|_| "/var/cache/kante/images".into());
        let file = match self {
            TestImage::Busybox => "busybox-amd64.tar.zst",
            TestImage::Debian => "debian-bookworm-amd64.tar.zst",
            TestImage::DebianDocker => "debian-docker-bookworm-amd64.tar.zst",
        };
        let p = Path::new(&dir).join(file);
        assert!(
            p.exists(),
            "test image {} is missing: run scripts/images.sh",
            p.display()
        );
        p
    }
}

pub struct Daemon {
    pub dir: PathBuf,
    pub client: Client,
    child: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
    /// Host interfaces named `kt*` before the daemon started (see `leaks_of`).
    links_before: HashSet<String>,
    /// Run in the daemon's process between fork and exec (see `start_with_pre_exec`).
    pre_exec: Option<PreExec>,
}

/// A hook run in the child between fork and exec: async-signal-safe calls only.
pub type PreExec = std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Daemon {
    pub async fn start() -> Daemon {
        Daemon::start_with_env(&[]).await
    }

    /// Starts a daemon with extra environment (say, `KANTE_OVS_DB`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_pre_exec(env, None).await
    }

    /// Starts a daemon whose process runs `hook` before it execs `kanted`
    /// (as its launcher would: an inherited fd, a umask), on every (re)start.
    pub async fn start_with_pre_exec(env: &[(&str, &str)], hook: Option<PreExec>) -> Daemon {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/kante-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Daemon::start_at_with(dir, env, hook).await
    }

    /// Starts a daemon whose `KANTE_DIR` is `dir` (which may not exist yet:
    /// kanted makes it). The directory is removed at shutdown.
    pub async fn start_at(dir: PathBuf, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_at_with(dir, env, None).await
    }

    async fn start_at_with(dir: PathBuf, env: &[(&str, &str)], hook: Option<PreExec>) -> Daemon {
        let log = PathBuf::from(format!("{}.log", dir.display()));
        let mut d = Daemon {
            client: Client::with_socket(dir.join("unix.socket")),
            dir,
            child: None,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            links_before: kante_links(),
            pre_exec: hook,
        };
        d.spawn().await;
        d
    }

    /// `kill -9`s the daemon and starts another without waiting for it to
    /// answer (a test then waits as a script would: `kante wait-ready`).
    pub fn restart_unwaited(&mut self) {
        self.kill9();
        self.spawn_process();
    }

    fn spawn_process(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin("kanted"));
        cmd.env("KANTE_DIR", &self.dir)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // KANTE_TEST_NETNS: the daemon lives in that network namespace (a
        // simulated second host), with the mounts and cgroups of this one.
        if let Some((_, ns)) = self.env.iter().find(|(k, _)| k == "KANTE_TEST_NETNS") {
            let ns = std::fs::File::open(ns).expect("open the test netns");
            use std::os::unix::process::CommandExt;
            // SAFETY: only setns(2) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    use std::os::fd::AsFd;
                    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)
                });
            }
        }
        if let Some(hook) = self.pre_exec.clone() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the hook promises async-signal-safe calls only.
            unsafe {
                cmd.pre_exec(move || hook());
            }
        }
        let child = cmd.spawn().expect("spawn kanted");
        owned().lock().unwrap().insert(child.id() as i32);
        self.child = Some(child);
    }

    async fn spawn(&mut self) {
        self.spawn_process();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // A daemon still opening its state holds requests in its backlog.
            let get = tokio::time::timeout_at(deadline.into(), self.client.get("/1.0"));
            if matches!(get.await, Ok(Ok(_))) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "kanted exited during start-up ({status}); log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kanted did not come up; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// `kill -9` the daemon (containers must survive it).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            owned().lock().unwrap().remove(&(c.id() as i32));
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// Stops the daemon as an init system does (SIGTERM) and waits for it;
    /// `start_again` brings it back on the same directory.
    pub fn stop_term(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a signal to our own, not yet reaped, child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let status = c.wait().expect("wait for kanted");
            owned().lock().unwrap().remove(&(c.id() as i32));
            assert!(status.success(), "kanted's clean stop exited with {status}");
        }
    }

    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "kanted is still running");
        self.spawn().await;
    }

    /// The cgroup prefix this daemon uses (`kante-<hash>` under each hierarchy).
    pub fn cgroup_prefix(&self) -> String {
        cgroup_prefix_of(&self.dir)
    }

    pub async fn import(&self, image: TestImage) -> String {
        self.client
            .upload_image(&image.path(), &Default::default(), |_, _| {})
            .await
            .unwrap_or_else(|e| panic!("importing {image:?}: {e}"))
    }

    /// Creates and starts `name` from image `fp` with extra config.
    pub async fn launch(&self, fp: &str, name: &str, config: &[(&str, &str)]) {
        self.create(fp, name, config).await;
        self.client
            .start_instance(name)
            .await
            .unwrap_or_else(|e| panic!("starting {name}: {e}\n{}", self.log_text()));
    }

    pub async fn create(&self, fp: &str, name: &str, config: &[(&str, &str)]) {
        self.create_with_devices(fp, name, config, Default::default())
            .await
    }

    /// Creates (does not start) `name` from image `fp` with local devices.
    pub async fn create_with_devices(
        &self,
        fp: &str,
        name: &str,
        config: &[(&str, &str)],
        devices: kante_api::DevicesMap,
    ) {
        let post = instance_post(fp, name, config, devices);
        self.client
            .create_instance(&post)
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    }

    /// Runs `sh -c script` in `name`; its exit code and stdout+stderr. An
    /// exec that cannot run at all panics with the instance's monitor log.
    pub async fn sh(&self, name: &str, script: &str) -> (i32, String) {
        let o = self
            .client
            .exec_capture(name, &["sh", "-c", script], &[], None)
            .await
            .unwrap_or_else(|e| {
                let log = self.dir.join("logs").join(name).join("monitor.log");
                panic!(
                    "exec of {script:?} in {name}: {e}\nmonitor.log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        (o.code, format!("{}{}", o.stdout_str(), o.stderr_str()))
    }

    /// Waits (up to 180 s) for cloud-init in `name` to finish; returns
    /// `cloud-init status --long`.
    pub async fn cloud_init_done(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (_, out) = self.sh(name, "cloud-init status --long").await;
            if out.contains("status: done") || out.contains("status: error") {
                return out;
            }
            assert!(Instant::now() < deadline, "cloud-init still busy: {out}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Host pid of an instance's init.
    pub async fn init_pid(&self, name: &str) -> i32 {
        self.client.instance_state(name).await.unwrap().pid as i32
    }

    /// Polls `systemctl is-system-running` until running/degraded; returns the final state.
    pub async fn wait_systemd(&self, name: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(out) = self
                .client
                .exec_capture(name, &["systemctl", "is-system-running"], &[], None)
                .await
            {
                last = out.stdout_str().trim().to_string();
                if last == "running" || last == "degraded" {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    }

    /// Stops and deletes every instance, stops the daemon, and checks that
    /// nothing of this daemon is left on the host; removes its directory.
    pub async fn shutdown(mut self) {
        let leaks = self.teardown().await;
        assert!(
            leaks.is_empty(),
            "leaked after the test:\n{}",
            leaks.join("\n")
        );
    }

    async fn teardown(&mut self) -> Vec<String> {
        if self.child.is_some() {
            if let Ok(names) = self.client.instance_names().await {
                for n in names {
                    let _ = self.client.stop_instance(&n, true, -1).await;
                    if let Err(e) = self.client.delete_instance(&n).await {
                        eprintln!("deleting {n}: {e}");
                    }
                }
            }
            // Then the managed networks the test left (bridges, dnsmasq, nft).
            if let Ok(nets) = self
                .client
                .get_json::<Vec<serde_json::Value>>("/1.0/networks?recursion=1")
                .await
            {
                for n in nets.iter().filter(|n| n["managed"] == true) {
                    let name = n["name"].as_str().unwrap_or_default();
                    if let Err(e) = self.client.delete(&format!("/1.0/networks/{name}")).await {
                        eprintln!("deleting network {name}: {e}");
                    }
                }
            }
            if let Ok(names) = self.client.instance_names().await {
                if !names.is_empty() {
                    return vec![format!("instances still in the database: {names:?}")];
                }
            }
        }
        self.kill9();
        let mut leaks = leaks_of(&self.dir, &self.cgroup_prefix());
        for l in kante_links().difference(&self.links_before) {
            leaks.push(format!("host interface {l}"));
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
        // Whatever happened, leave the host clean for the next test.
        force_clean(&self.dir, &self.cgroup_prefix());
        leaks
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() || self.dir.exists() {
            // A test failed before shutdown(): clean up without asserting.
            self.kill9();
            force_clean(&self.dir, &self.cgroup_prefix());
            for l in kante_links().difference(&self.links_before) {
                let _ = Command::new("ip").args(["link", "del", l]).status();
            }
        }
    }
}

/// The cgroup prefix of a kanted whose `KANTE_DIR` is `dir`.
pub fn cgroup_prefix_of(dir: &Path) -> String {
    kante_engine::Paths::new(dir).cgroup_prefix()
}

/// Kills what is left in the daemon's cgroups, removes them and the directory.
fn force_clean(dir: &Path, prefix: &str) {
    for t in nft_tables_of(prefix) {
        let args: Vec<&str> = t.split_whitespace().collect();
        if args.len() == 3 {
            let _ = Command::new("nft")
                .args(["delete", "table", args[1], args[2]])
                .status();
        }
    }
    for cg in cgroup_dirs(prefix) {
        kill_tree(&cg);
        remove_cgroup_tree(&cg);
    }
    let d = dir.to_string_lossy().to_string();
    for p in processes_mentioning(&d) {
        if let Some(pid) = p
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<i32>().ok())
        {
            // SAFETY: plain kill.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    for cg in cgroup_dirs(prefix) {
        remove_cgroup_tree(&cg);
    }
    // Storage pools: unmount before removing (never recurse into a live
    // filesystem), then let go of their loop devices.
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    for (dev, _) in loop_devices_under(dir) {
        let _ = Command::new("losetup").arg("-d").arg(&dev).status();
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(format!("{}.log", dir.display()));
}

fn kill_tree(cg: &Path) {
    for f in ["cgroup.procs", "tasks"] {
        if let Ok(t) = std::fs::read_to_string(cg.join(f)) {
            for pid in t.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(cg) {
        for e in rd.flatten().filter(|e| e.path().is_dir()) {
            kill_tree(&e.path());
        }
    }
}

fn remove_cgroup_tree(cg: &Path) {
    if let Ok(rd) = std::fs::read_dir(cg) {
        for e in rd.flatten().filter(|e| e.path().is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(cg);
}

/// Runs an async test body on a fresh runtime (tests stay plain `#[test]`).
pub fn run<F: std::future::Future<Output = ()>>(f: F) {
    let _g = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

// ----- the CLI against a test daemon -------------------------------------

/// `kante ARGS` against this daemon, stdin closed.
pub fn kante(d: &Daemon, args: &[&str]) -> Output {
    Command::new(bin("kante"))
        .args(args)
        .env("KANTE_DIR", &d.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run kante")
}

/// `kante ARGS` with its remotes and key pair in `conf` (`KANTE_CONF`),
/// `local` being this daemon, stdin closed.
pub fn kante_with_conf(d: &Daemon, conf: &Path, args: &[&str]) -> Output {
    Command::new(bin("kante"))
        .args(args)
        .env("KANTE_DIR", &d.dir)
        .env("KANTE_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .expect("run kante")
}

/// `kante ARGS` must succeed; its stdout.
pub fn kante_ok(d: &Daemon, args: &[&str]) -> String {
    let o = kante(d, args);
    assert!(
        o.status.success(),
        "kante {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Turns on `d`'s HTTPS listener on a free loopback port (`kante config
/// set core.https_address`); the port.
pub fn listen_https(d: &Daemon) -> u16 {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    kante_ok(d, &["config", "set", "core.https_address", &addr]);
    port
}

/// A failure is one line on stderr, `Error: …`, and a non-zero exit.
pub fn kante_fails(d: &Daemon, args: &[&str]) -> String {
    let o = kante(d, args);
    assert!(!o.status.success(), "kante {args:?} unexpectedly succeeded");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "kante {args:?}: expected one line, got {err:?}"
    );
    assert!(err.starts_with("Error: "), "{err:?}");
    err
}

// ----- attack programs (tests/attacks/*.c) ------------------------------

/// `tests/attacks/<name>.c` compiled with `gcc -static` (so it runs in any
/// guest, busybox included) into the daemon's directory (removed with it).
pub fn attack_program(d: &Daemon, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("attacks")
        .join(format!("{name}.c"));
    let out = d.dir.join(format!("attack-{name}"));
    if !out.exists() {
        let o = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&out)
            .arg(&src)
            .output()
            .expect("run gcc (build-essential)");
        assert!(
            o.status.success(),
            "gcc {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    out
}

/// Pushes a host file into `name` as an executable (mode 0755).
pub async fn push_executable(d: &Daemon, name: &str, local: &Path, path: &str) {
    let opts = kante_client::FilePushOptions {
        mode: Some(0o755),
        ..Default::default()
    };
    d.client
        .file_push_bytes(name, path, std::fs::read(local).unwrap(), &opts)
        .await
        .unwrap_or_else(|e| panic!("pushing {} to {name}{path}: {e}", local.display()));
}

/// Whether a test's prerequisite is there. A missing one is a skip, said on
/// stderr, except under `KANTE_REQUIRE_ALL=1` (set by `scripts/test.sh`,
/// which installs everything the tests need): there it fails the test, so a
/// missing tool or module can never pass for a green test.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("KANTE_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("missing prerequisite: {what} (KANTE_REQUIRE_ALL=1)");
    }
    eprintln!("SKIPPED: {what}");
    false
}

/// The create request for instance `name` from image `fp` with `config`
/// and local `devices`.
/// A create request that copies instance `from` as `name`.
pub fn copy_post(from: &str, name: &str) -> InstancesPost {
    InstancesPost {
        name: name.into(),
        source: InstanceSource {
            kind: "copy".into(),
            source: from.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Names in `dir`, hidden ones included, sorted (none if it is missing).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn instance_post(
    fp: &str,
    name: &str,
    config: &[(&str, &str)],
    devices: kante_api::DevicesMap,
) -> InstancesPost {
    let mut post = InstancesPost {
        name: name.into(),
        ..Default::default()
    };
    post.source = InstanceSource {
        kind: "image".into(),
        fingerprint: fp.into(),
        ..Default::default()
    };
    post.put.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    post.put.devices = devices;
    post
}

/// Runs `cmd` with `stdin` (if any) written to it; its output (stdout and
/// stderr captured).
pub fn output_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(stdin.map_or(Stdio::null(), |_| Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().expect("wait for the command")
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
