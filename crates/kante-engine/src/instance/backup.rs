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

impl Engine {
    /// Re-creates database records for instance volumes that have a
    /// backup.yaml but no record (the database was lost or replaced), and
    /// finishes renames a crash interrupted. Returns the names recovered.
    pub(crate) async fn recover_from_disk(&self) -> Vec<String> {
        let mut recovered = Vec::new();
        let pools: Vec<kante_storage::Pool> = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for pool in pools {
            for name in pool.list_volumes(kante_storage::VolumeKind::Container) {
                if self.node.instance_get(&name).await.ok().flatten().is_some() {
                    continue;
                }
                let path = pool
                    .volume_path(kante_storage::VolumeKind::Container, &name)
                    .join("backup.yaml");
                let Some(b) = read_backup_file(&path) else {
                    continue;
                };
                let i = b.container;
                if i.name != name {
                    if self.finish_rename(&pool, &i.name, &name).await {
                        recovered.push(name);
                    } else {
                        tracing::warn!(volume = %name, "backup.yaml names {:?}; not recovering it", i.name);
                    }
                    continue;
                }
                for p in &i.profiles {
                    if self.shared.profile_get(p).await.ok().flatten().is_none() {
                        // Keep the instance usable: its profile's effect is in expanded_devices.
                        let _ = self
                            .shared
                            .profile_create(&kante_store::ProfileRow {
                                name: p.clone(),
                                description: "Recovered from an instance's backup.yaml".into(),
                                config: Default::default(),
                                devices: Default::default(),
                            })
                            .await;
                    }
                }
                let row = InstanceRow {
                    name: i.name.clone(),
                    project: kante_store::PROJECT.into(),
                    kind: i.kind.clone(),
                    architecture: i.architecture.clone(),
                    ephemeral: i.ephemeral,
                    stateful: i.stateful,
                    description: i.description.clone(),
                    created_at: crate::util::fmt_time(i.created_at),
                    last_used_at: crate::util::fmt_time(i.last_used_at),
                    config: i.config.clone(),
                    // The local devices plus what the profiles gave, so a lost profile loses nothing.
                    devices: if i.profiles.is_empty() {
                        i.devices.clone()
                    } else {
                        i.expanded_devices.clone()
                    },
                    profiles: i.profiles.clone(),
                };
                match self.record_instance(&row).await {
                    Ok(()) => {
                        tracing::info!(instance = %name, pool = %pool.name, "recovered instance record from backup.yaml");
                        recovered.push(name);
                    }
                    Err(e) => tracing::warn!(instance = %name, "recovering from backup.yaml: {e}"),
                }
            }
        }
        recovered
    }
}

impl Engine {
    /// Finishes renaming instance `old` to `new` when a crash came after its
    /// volume moved (the first step) and before its record followed: the
    /// volume `new` has no record and its backup.yaml names `old`, whose
    /// record has no volume of its own. Its snapshots directory, record,
    /// logs and backups follow, as in a rename.
    async fn finish_rename(&self, pool: &kante_storage::Pool, old: &str, new: &str) -> bool {
        use kante_storage::VolumeKind::Container;
        let Ok(Some(row)) = self.node.instance_get(old).await else {
            return false;
        };
        if self.instance_pool_name(&row).await != pool.name || pool.has_volume(Container, old) {
            return false;
        }
        if let (Some(a), Some(b)) = (
            pool.snapshots_dir(Container, old),
            pool.snapshots_dir(Container, new),
        ) {
            if a.exists() && !b.exists() {
                if let Err(e) = std::fs::rename(&a, &b) {
                    tracing::error!(instance = old, "moving its snapshots to {new}: {e}");
                    return false;
                }
            }
        }
        if let Err(e) = self.rename_record(old, new).await {
            tracing::error!(instance = old, "renaming its record to {new}: {e}");
            return false;
        }
        tracing::warn!(
            instance = old,
            "its rename to {new} was interrupted; finished it"
        );
        self.renamed_files(old, new).await;
        true
    }
}
