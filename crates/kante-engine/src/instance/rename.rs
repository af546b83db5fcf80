//! `POST /1.0/instances/{name}` with a new name: a stopped instance's
//! volume, record, logs, backups and hostname follow the new name.

use crate::error::{EngineError, Result};
use crate::instance::files;
use crate::Engine;

impl Engine {
    /// `POST /1.0/instances/{name}` with a new name: only a stopped instance.
    pub(crate) async fn instance_rename(&self, name: &str, new: &str) -> Result<()> {
        kante_api::names::validate_instance_name(new)?;
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let row = self.instance_row(name).await?;
        if self.running(name).is_some() {
            return Err(EngineError::bad("Renaming of running instance not allowed"));
        }
        if self.node.instance_get(new).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Name {new:?} already in use"
            )));
        }
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let old_nics = self.stored_nic_plans(&row).await;
        // The volume moves first: a crash before the record follows leaves a
        // volume whose backup.yaml names a record without a volume, and the
        // next start finishes the rename (`recover_from_disk`).
        pool.rename_volume(kante_storage::VolumeKind::Container, name, new)?;
        if let Err(e) = self.rename_record(name, new).await {
            let _ = pool.rename_volume(kante_storage::VolumeKind::Container, new, name);
            return Err(e);
        }
        // DHCP reservations carry the old name; the next start makes new ones.
        self.remove_nics(name, &old_nics, true).await;
        self.renamed_files(name, new).await;
        self.events.lifecycle(
            "instance-renamed",
            &format!("/1.0/instances/{new}"),
            serde_json::json!({"old_name": name}),
        );
        Ok(())
    }

    /// What follows an instance's record to its new name: its logs, its
    /// backups, its hostname and its backup.yaml.
    pub(crate) async fn renamed_files(&self, old: &str, new: &str) {
        let (old_logs, new_logs) = (self.paths.instance_logs(old), self.paths.instance_logs(new));
        if old_logs.exists() {
            let _ = std::fs::rename(old_logs, new_logs);
        }
        self.backups_rename_instance(old, new);
        if let Ok(renamed) = self.instance_row(new).await {
            // The hostname follows the name, as LXD's templates do on rename.
            if let Ok(rootfs) = self.instance_rootfs(&renamed).await {
                let _ = files::write_hostname(&rootfs, new);
            }
            self.write_backup_file(&renamed).await;
        }
    }
}
