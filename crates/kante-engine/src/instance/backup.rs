//! `backup.yaml` beside each instance's rootfs: enough to rebuild the
//! instance's record from disk if the database is lost (as LXD keeps one).

use serde::{Deserialize, Serialize};

use kante_api::instance::Instance;
use kante_store::InstanceRow;

use crate::pools::StoragePool;
use crate::Engine;

#[derive(Debug, Serialize, Deserialize)]
pub struct BackupFile {
    pub container: Instance,
    pub snapshots: Vec<serde_json::Value>,
    pub pool: Option<StoragePool>,
}

impl Engine {
    /// Rewrites the instance's backup.yaml; failures are logged, not fatal:
    /// the database stays the source of truth.
    pub(crate) async fn write_backup_file(&self, row: &InstanceRow) {
        let result = async {
            let instance = self.render(row).await?;
            let pool = self
                .pool_get(&self.instance_pool_name(row).await)
                .await
                .ok();
            let file = BackupFile {
                container: instance,
                snapshots: Vec::new(),
                pool,
            };
            let dir = self.instance_volume(row).await?;
            let text = serde_yaml::to_string(&file).map_err(crate::EngineError::internal)?;
            let tmp = dir.join("backup.yaml.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, dir.join("backup.yaml"))?;
            Ok::<_, crate::EngineError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(instance = %row.name, "writing backup.yaml: {e}");
        }
    }
}

/// Reads a backup.yaml back (recovery and tests).
pub fn read_backup_file(path: &std::path::Path) -> Option<BackupFile> {
    serde_yaml::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
