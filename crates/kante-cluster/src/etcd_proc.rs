//! kanted's own etcd member (Debian's `/usr/bin/etcd` 3.4, `KANTE_ETCD`
//! overrides), supervised as dnsmasq is: started with TLS on its client
//! and peer ports and client-certificate auth on both, restarted 1 s after
//! it dies, killed when the supervisor stops (the daemon's shutdown) or
//! the daemon dies (`PR_SET_PDEATHSIG`); a member a killed daemon left
//! behind anyway (its pid in `etcd.pid`) is killed before a new one
//! starts on the same data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How one etcd member runs.
#[derive(Debug, Clone)]
pub struct EtcdSpec {
    pub name: String,
    /// `$KANTE_DIR/etcd`: `data/`, `etcd.log`, `etcd.pid`.
    pub dir: PathBuf,
    /// The address it listens on (this member's cluster address).
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `name=https://host:peer,…` (ignored once the data dir exists).
    pub initial_cluster: String,
    /// Whether this member starts a new etcd cluster (else joins one).
    pub new_cluster: bool,
}

/// `host` as a URL's host (IPv6 in brackets).
pub fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl EtcdSpec {
    pub fn client_url(&self) -> String {
        format!("https://{}:{}", url_host(&self.host), self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("https://{}:{}", url_host(&self.host), self.peer_port)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("etcd.pid")
    }

    fn command(&self) -> std::io::Result<tokio::process::Command> {
        let bin = std::env::var_os("KANTE_ETCD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let mut cmd = tokio::process::Command::new(bin);
        let (client, peer) = (self.client_url(), self.peer_url());
        cmd.args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args([
                "--initial-cluster-state",
                if self.new_cluster { "new" } else { "existing" },
            ])
            .args(["--initial-cluster-token", "kante"])
            .arg("--cert-file")
            .arg(&self.cert)
            .arg("--key-file")
            .arg(&self.key)
            .arg("--trusted-ca-file")
            .arg(&self.ca)
            .arg("--client-cert-auth")
            .arg("--peer-cert-file")
            .arg(&self.cert)
            .arg("--peer-key-file")
            .arg(&self.key)
            .arg("--peer-trusted-ca-file")
            .arg(&self.ca)
            .arg("--peer-client-cert-auth")
            .args(["--logger", "zap", "--log-level", "warn"])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        // SAFETY: prctl(2) only, between fork and exec: the child is
        // killed when the thread that forked it (a runtime worker, which
        // lives as long as the daemon) ends.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

/// Kills the etcd a dead daemon left on this data dir (`etcd.pid`, if
/// that pid still runs etcd).
fn kill_stale(spec: &EtcdSpec) {
    let Ok(text) = std::fs::read_to_string(spec.pid_file()) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let data = spec.dir.join("data");
    let ours = String::from_utf8_lossy(&cmdline).contains(&*data.to_string_lossy());
    if pid > 1 && ours {
        tracing::info!(pid, "killing the etcd a previous daemon left");
        // SAFETY: kill(2) on a pid whose command line names our data dir.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(spec.pid_file());
}

/// Resolves once a stop is asked (or the supervisor is gone).
async fn stop_asked(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A running supervisor: its etcd is restarted until [`Supervisor::stop`].
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts etcd now and keeps it running.
    pub fn start(spec: EtcdSpec) -> std::io::Result<Supervisor> {
        std::fs::create_dir_all(&spec.dir)?;
        kill_stale(&spec);
        let (stop, mut stopped) = watch::channel(false);
        let mut child = spec.command()?.spawn()?;
        let task = tokio::spawn(async move {
            loop {
                if let Some(pid) = child.id() {
                    let _ = std::fs::write(spec.pid_file(), format!("{pid}\n"));
                }
                tokio::select! {
                    status = child.wait() => {
                        tracing::warn!(?status, "etcd exited; restarting it in 1 s");
                    }
                    _ = stop_asked(&mut stopped) => {
                        let _ = child.kill().await;
                        let _ = std::fs::remove_file(spec.pid_file());
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop_asked(&mut stopped) => return,
                }
                match spec.command().and_then(|mut c| c.spawn()) {
                    Ok(c) => child = c,
                    Err(e) => {
                        tracing::error!("restarting etcd: {e}");
                        return;
                    }
                }
            }
        });
        Ok(Supervisor {
            stop,
            task: Some(task),
        })
    }

    /// Kills etcd and stops supervising it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
