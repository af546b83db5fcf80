//! A host going down with instances running. Containers outlive `kanted`
//! (a restart or a crash of the daemon leaves them alone), but when systemd
//! stops `kanted.service` on its way to a poweroff or reboot, nothing else
//! would stop them: systemd's last SIGTERM leaves a guest's systemd running
//! until the final SIGKILL, 90 s later, with no clean shutdown. So, as LXD
//! does, kanted stops them cleanly then (all at once, each within its
//! `boot.host_shutdown_timeout`) and keeps `volatile.last_state.power` at
//! `RUNNING`, so the `kanted` of the next boot starts them again.

use std::process::Command;
use std::sync::atomic::Ordering;

use crate::Engine;

/// True while the host shuts down: systemd's state is `stopping` (see
/// systemctl's `is-system-running`). False without systemd.
/// `KANTE_HOST_STOPPING=1|0` overrides the answer (for hosts without systemd).
pub fn host_is_stopping() -> bool {
    if let Ok(v) = std::env::var("KANTE_HOST_STOPPING") {
        return v == "1";
    }
    Command::new("systemctl")
        .arg("is-system-running")
        .output()
        .map(|o| is_stopping_state(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or(false)
}

fn is_stopping_state(out: &str) -> bool {
    out.trim() == "stopping"
}

impl Engine {
    /// Stops every running instance for the host's shutdown: cleanly, at
    /// once, each within its grace; their power state stays `RUNNING`.
    pub async fn stop_all_for_host_shutdown(&self) {
        self.host_stopping.store(true, Ordering::SeqCst);
        let names: Vec<String> = crate::lock(&self.running).keys().cloned().collect();
        if names.is_empty() {
            return;
        }
        tracing::info!(
            "the host is shutting down: stopping {} instances",
            names.len()
        );
        let stops = names.into_iter().map(|name| async move {
            let lock = self.instance_lock(&name);
            let _g = lock.lock().await;
            if let Err(e) = self.stop_locked(&name, false, 0).await {
                tracing::warn!(instance = %name, "stopping for the host's shutdown: {e}");
            }
        });
        futures_util::future::join_all(stops).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stopping_state_means_shutdown() {
        assert!(is_stopping_state("stopping\n"));
        for s in ["running\n", "degraded\n", "starting\n", "offline\n", ""] {
            assert!(!is_stopping_state(s), "{s:?}");
        }
    }
}
