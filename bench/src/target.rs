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
    pub async fn kante(dir: &Path) -> Result<Target> {
        let exe = std::env::current_exe()?;
        let kanted = exe.parent().context("binary dir")?.join("kanted");
        if !kanted.exists() {
            bail!(
                "{} not found: cargo build --release -p kanted",
                kanted.display()
            );
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.with_extension("log"))?;
        let child = Command::new(&kanted)
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
            name: "kante".into(),
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
        self.client.create_instance(&self.root_only(name)).await?;
        Ok(())
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

/// Installs Debian's LXD, starts it (no systemd needed) and gives it a `dir`
/// pool and a default profile with only a root disk: the same set-up Kante has.
pub async fn install_lxd() -> Result<()> {
    let run = |cmd: &str| -> Result<()> {
        let st = Command::new("sh").arg("-c").arg(cmd).status()?;
        anyhow::ensure!(st.success(), "`{cmd}` failed");
        Ok(())
    };
    if !Path::new("/usr/bin/lxd").exists() {
        run("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q lxd lxd-client")?;
    }
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
