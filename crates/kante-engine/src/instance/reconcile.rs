//! Records and volumes agree after any crash (audit F7).
//!
//! Work on instances is ordered so that a crash at any point leaves a state
//! the next start can recognise and finish or undo:
//!
//! * a **creation** (image, copy, backup import) records the instance as
//!   pending first, builds its volume in a staging directory, and marks the
//!   record complete last; a record still pending at start is removed with
//!   whatever was made for it, so the name is free again for a retry;
//! * a **delete** renames the volume aside (`.deleting-<name>`, atomic),
//!   then drops the record, then removes the files; a record left without
//!   its volume next to such a directory is deleted the rest of the way;
//! * a **snapshot** is recorded between being made at its staging path and
//!   being renamed into place, and deleted as an instance is; a record whose
//!   snapshot is missing next to either leftover is dropped;
//! * a **rename** moves the volume first: a volume whose backup.yaml names a
//!   record that has lost its own volume finishes the rename (see
//!   `recover_from_disk`).
//!
//! Helpers the daemon runs die with it, and the leftovers (`.staging-*`,
//! `.deleting-*`) are removed once no process works in them any more. A
//! record without a volume for any other reason (a volume removed by hand)
//! is kept, and `start` refuses it with a message saying what is missing.

use kante_storage::{Pool, VolumeKind};
use kante_store::InstanceRow;

use crate::error::Result;
use crate::instance::backup::read_backup_file;
use crate::Engine;

impl Engine {
    /// Deletes an instance's volume with its snapshots, then its record,
    /// then its files: the volume is set aside first (one rename: after it
    /// the instance no longer has a volume under its name), then the record
    /// goes, then what was set aside and the logs are removed. A crash
    /// between two steps is finished by [`Engine::reconcile_at_start`].
    pub(crate) async fn remove_instance(&self, row: &InstanceRow) -> Result<()> {
        let pool = self.pool(&self.instance_pool_name(row).await)?;
        let (p, n) = (pool.clone(), row.name.clone());
        let aside =
            tokio::task::spawn_blocking(move || p.set_aside(VolumeKind::Container, &n)).await??;
        if let Err(e) = self.drop_record(&row.name).await {
            let name = row.name.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(back) = aside.put_back() {
                    tracing::error!(instance = %name, "putting the volume back after a failed delete: {back}");
                }
            })
            .await?;
            return Err(e);
        }
        let (name, logs) = (row.name.clone(), self.paths.instance_logs(&row.name));
        tokio::task::spawn_blocking(move || {
            // The instance is gone; what is left of its files goes at the next start.
            if let Err(e) = aside.remove() {
                tracing::warn!(instance = %name, "removing the deleted instance's volume: {e}");
            }
            if let Err(e) = std::fs::remove_dir_all(&logs) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(instance = %name, "removing the deleted instance's logs: {e}");
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Removes an instance with everything that refers to it (files,
    /// record, backups, DHCP reservations), as a delete does.
    async fn remove_instance_fully(&self, row: &InstanceRow) -> Result<()> {
        let nics = self.stored_nic_plans(row).await;
        self.remove_instance(row).await?;
        self.backups_remove_all(&row.name);
        self.remove_nics(&row.name, &nics, true).await;
        Ok(())
    }

    /// Brings records and volumes back into agreement at start, before any
    /// instance is started: see the module comment. Instances in a pool that
    /// could not be brought online are left alone.
    pub(crate) async fn reconcile_at_start(&self) {
        let pools = self.loaded_pools();
        // Nothing of a dead daemon may still write while we look.
        for pool in pools.clone() {
            let _ = tokio::task::spawn_blocking(move || pool.stop_staging_writers()).await;
        }
        let pending = self.node.instances_pending().await.unwrap_or_else(|e| {
            tracing::error!("listing instances being created: {e}");
            Vec::new()
        });
        for row in self.node.instance_list().await.unwrap_or_default() {
            let pool_name = self.instance_pool_name(&row).await;
            let Some(pool) = pools.iter().find(|p| p.name == pool_name) else {
                continue;
            };
            let name = row.name.clone();
            let volume = pool.volume_path(VolumeKind::Container, &name);
            if pending.contains(&name) {
                tracing::warn!(instance = %name, "its creation was interrupted; removing what was made of it");
            } else if volume.symlink_metadata().is_err()
                && pool.interrupted_delete(VolumeKind::Container, &name)
            {
                tracing::warn!(instance = %name, "its delete was interrupted; finishing it");
            } else {
                self.reconcile_snapshots(pool, &name).await;
                continue;
            }
            if let Err(e) = self.remove_instance_fully(&row).await {
                tracing::error!(instance = %name, "removing it: {e}");
            }
        }
        self.release_orphaned_reservations().await;
        self.release_orphaned_claims().await;
        self.recover_from_disk().await;
        for pool in pools.clone() {
            let _ = tokio::task::spawn_blocking(move || pool.remove_staging_leftovers()).await;
        }
        for row in self.node.instance_list().await.unwrap_or_default() {
            let pool_name = self.instance_pool_name(&row).await;
            if let Some(pool) = pools.iter().find(|p| p.name == pool_name) {
                if !pool.has_volume(VolumeKind::Container, &row.name) {
                    tracing::error!(
                        instance = %row.name,
                        pool = %pool.name,
                        "the instance has no storage volume; it cannot start"
                    );
                }
            }
        }
    }

    /// Drops the records of snapshots whose creation or delete a crash
    /// interrupted (the snapshot is missing, a leftover of it is not).
    async fn reconcile_snapshots(&self, pool: &Pool, instance: &str) {
        for s in self.node.snapshot_list(instance).await.unwrap_or_default() {
            if pool.has_snapshot(VolumeKind::Container, instance, &s.name)
                || !pool.interrupted_snapshot(VolumeKind::Container, instance, &s.name)
            {
                continue;
            }
            tracing::warn!(%instance, snapshot = %s.name, "its creation or delete was interrupted; dropping its record");
            if let Err(e) = self.node.snapshot_delete(instance, &s.name).await {
                tracing::error!(%instance, snapshot = %s.name, "dropping its record: {e}");
            }
        }
    }
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
