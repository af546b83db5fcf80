//! Keeps the host's lxcfs serving while instances run: checked before each
//! start and on a tick; when it had to be restarted, every running
//! instance gets the new files (the old ones answer ENOTCONN).

use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

use kante_runtime::lxcfs::{self, Health};

use crate::Engine;

/// Seconds between health checks (`KANTE_LXCFS_CHECK_SECS`, default 10).
const CHECK_ENV: &str = "KANTE_LXCFS_CHECK_SECS";

impl Engine {
    /// The lxcfs directory for a container about to start, restarting
    /// lxcfs (and refreshing running guests) if it had died.
    pub(crate) async fn lxcfs_for_start(&self) -> Option<PathBuf> {
        let health = self.check_lxcfs().await;
        health.dir().map(|d| d.to_path_buf())
    }

    async fn check_lxcfs(&self) -> Health {
        let l = self.lxcfs.clone();
        let health = tokio::task::spawn_blocking(move || l.ensure())
            .await
            .unwrap_or_else(|e| Health::Unavailable(e.to_string()));
        if let Health::Restarted(dir) = &health {
            self.rebind_lxcfs(dir.clone()).await;
        }
        health
    }

    /// Gives every running instance the files of a restarted lxcfs.
    async fn rebind_lxcfs(&self, dir: PathBuf) {
        let running: Vec<(String, i32)> = crate::lock(&self.running)
            .iter()
            .map(|(n, r)| (n.clone(), r.pid))
            .collect();
        for (name, pid) in running {
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || lxcfs::rebind(pid, &d)).await {
                Ok(Ok(())) => tracing::info!(instance = %name, "lxcfs files re-attached"),
                Ok(Err(e)) => tracing::warn!(instance = %name, "re-attaching lxcfs files: {e}"),
                Err(e) => tracing::warn!(instance = %name, "re-attaching lxcfs files: {e}"),
            }
        }
    }

    /// While instances run, restarts a dead lxcfs within a tick.
    pub(crate) fn start_lxcfs_supervision(&self) {
        let me: Weak<Engine> = self.me.clone();
        let every = crate::util::env_secs(CHECK_ENV, 10);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(every)).await;
                let Some(engine) = me.upgrade() else { return };
                if crate::lock(&engine.running).is_empty() {
                    continue;
                }
                engine.check_lxcfs().await;
            }
        });
    }
}
