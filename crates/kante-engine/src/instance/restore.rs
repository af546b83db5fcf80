//! Restoring a snapshot into its instance: the rootfs and the config come
//! back (the server's volatile keys stay current); a running instance is
//! stopped first and started again afterwards.

use kante_storage::VolumeKind;
use kante_store::SnapshotRow;
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// The snapshot a restore request names (`snap0` or `c1/snap0`), checked
    /// before any work: it must be one of this instance's (HTTP 400 otherwise,
    /// the instance itself being there).
    pub(crate) async fn restore_source(&self, instance: &str, snap: &str) -> Result<SnapshotRow> {
        self.instance_row(instance).await?;
        let snap = match snap.split_once('/') {
            Some((i, s)) if i == instance => s,
            Some((i, _)) => {
                return Err(EngineError::bad(format!(
                    "Cannot restore a snapshot of another instance ({i:?}) into {instance:?}"
                )))
            }
            None => snap,
        };
        kante_api::names::validate_snapshot_name(snap)?;
        self.node
            .snapshot_get(instance, snap)
            .await?
            .ok_or_else(|| {
                EngineError::bad(format!(
                    "Instance {instance:?} has no snapshot {snap:?} to restore"
                ))
            })
    }

    /// Restores `snap` (`snap0` or `c1/snap0`): rootfs and config. A running
    /// instance is stopped first and started again afterwards, as LXD does.
    pub(crate) async fn instance_restore(&self, instance: &str, snap: &str) -> Result<()> {
        let srow = self.restore_source(instance, snap).await?;
        let snap = srow.name.as_str();
        let lock = self.instance_lock(instance);
        let _g = lock.lock().await;
        let was_running = self.running(instance).is_some();
        if was_running {
            self.stop_locked(instance, false, -1).await?;
        }
        let mut row = self.instance_row(instance).await?;
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let (p, i, s) = (pool.clone(), instance.to_string(), snap.to_string());
        tokio::task::spawn_blocking(move || p.restore(VolumeKind::Container, &i, &s)).await??;
        // The config comes back too, but the server's volatile keys stay current.
        let volatile: Vec<(String, String)> = row
            .config
            .iter()
            .filter(|(k, _)| k.starts_with("volatile."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        row.config = srow.config.clone();
        row.config.retain(|k, _| !k.starts_with("volatile."));
        row.config.extend(volatile);
        row.devices = srow.devices.clone();
        row.profiles = srow.profiles.clone();
        row.ephemeral = srow.ephemeral;
        self.node.instance_update(&row).await?;
        self.write_backup_file(&row).await;
        self.events.lifecycle(
            "instance-restored",
            &format!("/1.0/instances/{instance}"),
            json!({"snapshot": snap}),
        );
        if was_running {
            self.start_locked(instance).await?;
        }
        Ok(())
    }
}
