//! A daemon under test: Kante (started here, in its own directory) or an
//! LXD that is already installed and initialised. Both speak the same API,
//! so every scenario drives them with the same client calls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kante_api::instance::{InstanceSource, InstancesPost};
use kante_client::Client;

pub struct Target {
    pub name: String,
    pub client: Client,
    /// Substring of the per-container helper processes' command lines.
    pub monitor_needle: &'static str,
    pub fingerprint: String,
    pub pool: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl Target {
    /// Kante from the `kanted` next to this binary.
    pub async fn kante(dir: &Path) -> Result<Target> {
        let exe = std::env::current_exe()?;
        let kanted = exe.parent().context("binary dir")?.join("kanted");
        if !kanted.exists() {
            bail!(
                "{} not found: cargo build --release -p kanted",
                kanted.display()
            );
        }
        Target::kante_from(&kanted, dir, "kante").await
    }

    /// Kante from the binary `kanted`, named `name` in the results.
    pub async fn kante_from(kanted: &Path, dir: &Path, name: &str) -> Result<Target> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.with_extension("log"))?;
        let child = Command::new(kanted)
            .env("KANTE_DIR", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting kanted")?;
        let client = Client::with_socket(dir.join("unix.socket"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get("/1.0").await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "kanted did not start (log: {})",
                    dir.with_extension("log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Target {
            name: name.into(),
            client,
            monitor_needle: "kanted __monitor",
            fingerprint: String::new(),
            pool: "default".into(),
            child: Some(child),
            dir: Some(dir.to_path_buf()),
        })
    }

    /// The host's LXD, if its socket answers.
    pub async fn lxd() -> Option<Target> {
        let client = Client::with_socket("/var/lib/lxd/unix.socket");
        client.get("/1.0").await.ok()?;
        let pools: Vec<String> = client.get_json("/1.0/storage-pools").await.ok()?;
        let pool = pools.first()?.rsplit('/').next()?.to_string();
        Some(Target {
            name: "lxd".into(),
            client,
            monitor_needle: "[lxc monitor]",
            fingerprint: String::new(),
            pool,
            child: None,
            dir: None,
        })
    }

    /// A daemon someone else runs (a lab host's kanted, a private LXD),
    /// reached with `client`, named `name` in the results, making root
    /// disks on `pool`. [`Target::shutdown`] leaves the daemon running.
    pub fn attached(
        name: &str,
        client: Client,
        pool: &str,
        monitor_needle: &'static str,
    ) -> Target {
        Target {
            name: name.into(),
            client,
            monitor_needle,
            fingerprint: String::new(),
            pool: pool.into(),
            child: None,
            dir: None,
        }
    }

    /// The daemon's pid, as it reports it.
    pub async fn daemon_pid(&self) -> i32 {
        match &self.child {
            Some(c) => c.id() as i32,
            None => {
                let v: serde_json::Value = self.client.get_json("/1.0").await.unwrap_or_default();
                v["environment"]["server_pid"].as_i64().unwrap_or(0) as i32
            }
        }
    }

    /// Imports the image tarball (or finds it already there).
    pub async fn import(&mut self, image: &Path) -> Result<()> {
        let bytes = std::fs::read(image)?;
        use sha2::Digest;
        let fp = hex::encode(sha2::Sha256::digest(&bytes));
        if self.client.image(&fp).await.is_err() {
            self.client
                .upload_image(image, &Default::default(), |_, _| {})
                .await
                .with_context(|| format!("importing into {}", self.name))?;
        }
        self.fingerprint = fp;
        Ok(())
    }

    /// Creates an instance with only a root disk (no profiles, no NIC) so
    /// both daemons boot exactly the same thing.
    pub async fn create(&self, name: &str) -> Result<()> {
        self.create_with(name, Default::default()).await
    }

    /// [`Target::create`] with extra devices (say, a NIC).
    pub async fn create_with(&self, name: &str, extra: kante_api::DevicesMap) -> Result<()> {
        let mut post = self.root_only(name);
        post.put.devices.extend(extra);
        self.client.create_instance(&post).await?;
        // Boot the same thing on both: LXD seeds cloud-init (templates, devlxd)
        // and its boot then waits 15 s for a network that no instance here has;
        // Kante does not seed it yet. Switch cloud-init off in both.
        self.client
            .file_push_bytes(
                name,
                "/etc/cloud/cloud-init.disabled",
                b"kante-bench\n".to_vec(),
                &Default::default(),
            )
            .await?;
        Ok(())
    }

    /// Creates an instance with only a root disk and nothing pushed into it.
    pub async fn create_bare(&self, name: &str) -> Result<()> {
        self.create_bare_with(name, Default::default()).await
    }

    /// [`Target::create_bare`] with extra devices.
    pub async fn create_bare_with(&self, name: &str, extra: kante_api::DevicesMap) -> Result<()> {
        let mut post = self.root_only(name);
        post.put.devices.extend(extra);
        self.client.create_instance(&post).await?;
        Ok(())
    }

    /// The state directory of a Kante the bench started (None for LXD).
    pub fn state_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The create request both daemons get: the image, no profiles, a root disk.
    fn root_only(&self, name: &str) -> InstancesPost {
        let mut post = InstancesPost {
            name: name.into(),
            ..Default::default()
        };
        post.source = InstanceSource {
            kind: "image".into(),
            fingerprint: self.fingerprint.clone(),
            ..Default::default()
        };
        post.put.profiles = Some(vec![]);
        post.put.devices.insert(
            "root".into(),
            [
                ("type", "disk"),
                ("path", "/"),
                ("pool", self.pool.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        post
    }

    /// Polls the guest's init from outside until it reports running/degraded.
    pub async fn wait_ready(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(o) = self
                .client
                .exec_capture(name, &["systemctl", "is-system-running"], &[], None)
                .await
            {
                match o.stdout_str().trim() {
                    "running" | "degraded" => return Ok(()),
                    "maintenance" | "stopping" => bail!(
                        "{name} on {}: init reports {}",
                        self.name,
                        o.stdout_str().trim()
                    ),
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                bail!("{name} on {} not ready within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The guest's own boot time in seconds, from `systemd-analyze time`
    /// (`Startup finished in 1.234s (userspace) = 1.234s`): the part of a
    /// launch no daemon can shorten.
    pub async fn guest_boot_time(&self, name: &str) -> Option<f64> {
        let o = self
            .client
            .exec_capture(name, &["systemd-analyze", "time"], &[], None)
            .await
            .ok()?;
        startup_total(&o.stdout_str())
    }

    /// Deletes every instance named with `prefix`.
    pub async fn clean(&self, prefix: &str) {
        for n in self.client.instance_names().await.unwrap_or_default() {
            if n.starts_with(prefix) {
                let _ = self.client.stop_instance(&n, true, -1).await;
                let _ = self.client.delete_instance(&n).await;
            }
        }
    }

    pub async fn shutdown(mut self, prefix: &str) {
        self.clean(prefix).await;
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: kanted then tidies its (now empty) cgroups.
            // SAFETY: a signal to our own, not yet reaped, child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

/// Starts `lxd` detached, in its own session, with no inherited descriptor
/// beyond stdio: it outlives the bench, and must not keep open, say, the lock
/// file a caller ran the bench under.
fn start_lxd() -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all("/var/log/lxd")?;
    let mut cmd = Command::new("lxd");
    cmd.args(["--group", "root", "--logfile", "/var/log/lxd/lxd.log"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    // Not waited for: lxd keeps running; the kernel reaps it when the bench
    // exits (it is re-parented to init).
    cmd.spawn()?;
    Ok(())
}

/// Installs Debian's `lxd` and `lxd-client` packages if `lxd` is missing.
pub fn install_lxd_package() -> Result<()> {
    if !Path::new("/usr/bin/lxd").exists() {
        let st = Command::new("sh")
            .arg("-c")
            .arg("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q lxd lxd-client")
            .status()?;
        anyhow::ensure!(st.success(), "installing lxd failed");
    }
    Ok(())
}

/// Installs Debian's LXD, starts it (no systemd needed) and gives it a `dir`
/// pool and a default profile with only a root disk: the same set-up Kante has.
pub async fn install_lxd() -> Result<()> {
    let run = |cmd: &str| -> Result<()> {
        let st = Command::new("sh").arg("-c").arg(cmd).status()?;
        anyhow::ensure!(st.success(), "`{cmd}` failed");
        Ok(())
    };
    install_lxd_package()?;
    if Target::lxd().await.is_none() {
        if Client::with_socket("/var/lib/lxd/unix.socket")
            .get("/1.0")
            .await
            .is_err()
        {
            start_lxd()?;
            run("lxd waitready --timeout 60")?;
        }
        run("printf 'storage_pools:\\n- name: default\\n  driver: dir\\nprofiles:\\n- name: default\\n  devices:\\n    root: {path: /, pool: default, type: disk}\\n' | lxd init --preseed")?;
    }
    Ok(())
}

/// The total of `systemd-analyze time`: after `=` when it lists several
/// phases, else (a container: userspace only) the one span given.
fn startup_total(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with("Startup finished in"))?;
    let span = match line.split_once('=') {
        Some((_, total)) => total,
        None => line["Startup finished in".len()..].split('(').next()?,
    };
    parse_systemd_span(span)
}

/// A systemd time span such as `1.234s`, `850ms` or `1min 2.5s`, in seconds.
fn parse_systemd_span(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for part in text.split_whitespace() {
        let digits = part
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(part.len());
        let (n, unit) = part.split_at(digits);
        let n: f64 = n.parse().ok()?;
        total += n * match unit {
            "min" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            _ => return None,
        };
        any = true;
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::{parse_systemd_span, startup_total};

    #[test]
    fn systemd_spans() {
        assert_eq!(parse_systemd_span(" 1.234s\n"), Some(1.234));
        assert_eq!(parse_systemd_span("850ms"), Some(0.85));
        assert_eq!(parse_systemd_span("1min 2.5s"), Some(62.5));
        assert_eq!(parse_systemd_span("soon"), None);
        assert_eq!(parse_systemd_span(""), None);
    }

    #[test]
    fn startup_totals() {
        let container = "Startup finished in 16.882s (userspace) \ngraphical.target reached after 16.253s in userspace.\n";
        assert_eq!(startup_total(container), Some(16.882));
        let machine = "Startup finished in 1.2s (kernel) + 3.5s (userspace) = 4.700s\n";
        assert_eq!(startup_total(machine), Some(4.7));
        assert_eq!(startup_total("Bootup is not yet finished"), None);
    }
}
