//! Storage volumes as the API shows them (`/1.0/storage-pools/{pool}/volumes`):
//! custom volumes are made, changed, snapshotted and deleted here; instance
//! and image volumes are only listed. A custom volume reaches an instance
//! through a disk device `{type: disk, pool: P, source: V, path: …}`.

use std::path::PathBuf;
use std::sync::Arc;

use kante_api::operation::OperationClass;
use kante_api::ConfigMap;
use kante_storage::{Pool, VolumeKind};
use kante_store::VolumeRow;
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::operations::Op;
use crate::util::fmt_time;
use crate::Engine;

/// The key of a custom volume's local lock (`Engine::object_lock`), which
/// serialises the work on one volume (config, rename, delete, snapshots):
/// its checks (not in use) and its work must not interleave. Names are
/// kept unique by the state, not by this lock: a create takes its name by
/// recording it (`NodeState::volume_create_pending`).
pub(crate) fn volume_lock_key(pool: &str, name: &str) -> String {
    format!("volume/{pool}/{name}")
}

pub use kante_api::storage::{
    StorageVolume, StorageVolumePut, StorageVolumeSnapshot, StorageVolumesPost,
    VolumeSnapshotsPost, VolumeSource,
};

/// Only custom volumes are made or changed through this API.
fn check_custom(kind: &str) -> Result<()> {
    match kind {
        "custom" | "" => Ok(()),
        "container" | "image" | "virtual-machine" => Err(EngineError::bad(format!(
            "Storage volumes of type {kind:?} are managed with their instance or image"
        ))),
        other => Err(EngineError::bad(format!(
            "Invalid storage volume type {other:?}"
        ))),
    }
}

/// The kinds listed under a pool, as the API names them.
fn list_kind(kind: &str) -> Result<Option<VolumeKind>> {
    Ok(Some(match kind {
        "" => return Ok(None),
        "custom" => VolumeKind::Custom,
        "container" => VolumeKind::Container,
        "image" => VolumeKind::Image,
        other => {
            return Err(EngineError::bad(format!(
                "Invalid storage volume type {other:?}"
            )))
        }
    }))
}

/// Creation time of a volume or snapshot directory (btrfs: the subvolume's).
fn created_of(path: &std::path::Path) -> kante_api::Timestamp {
    std::fs::metadata(path)
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .map(kante_api::Timestamp::from)
        .unwrap_or_else(|_| kante_api::zero_time())
}

impl Engine {
    /// `GET /1.0/storage-pools/{pool}/volumes[/{type}]`.
    pub(crate) async fn volume_list(&self, pool: &str, kind: &str) -> Result<Vec<StorageVolume>> {
        let p = self.pool(pool)?;
        let only = list_kind(kind)?;
        let mut out = Vec::new();
        for k in [VolumeKind::Container, VolumeKind::Image, VolumeKind::Custom] {
            if only.is_some_and(|o| o != k) {
                continue;
            }
            for name in p.list_volumes(k) {
                match self.volume_get(pool, k.api_name(), &name).await {
                    Ok(v) => out.push(v),
                    // Gone since it was listed.
                    Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// `GET /1.0/storage-pools/{pool}/volumes/{type}/{name}`.
    pub(crate) async fn volume_get(
        &self,
        pool: &str,
        kind: &str,
        name: &str,
    ) -> Result<StorageVolume> {
        let p = self.pool(pool)?;
        let k = list_kind(kind)?.ok_or_else(|| EngineError::bad("Missing volume type"))?;
        if !p.has_volume(k, name) {
            return Err(EngineError::NotFound("Storage volume not found".into()));
        }
        let path = p.volume_path(k, name);
        let (description, config, created_at, used_by) = match k {
            VolumeKind::Custom => {
                let meta = self.custom_record(&p, name).await?;
                let created = crate::util::parse_time(&meta.created_at);
                let created = if created == kante_api::zero_time() {
                    created_of(&path)
                } else {
                    created
                };
                let used = self.volume_used_by(pool, name).await?;
                (meta.description, meta.config, created, used)
            }
            VolumeKind::Container => (
                String::new(),
                ConfigMap::new(),
                created_of(&path),
                vec![format!("/1.0/instances/{name}")],
            ),
            VolumeKind::Image => (
                String::new(),
                ConfigMap::new(),
                created_of(&path),
                vec![format!("/1.0/images/{name}")],
            ),
        };
        Ok(StorageVolume {
            name: name.into(),
            kind: k.api_name().into(),
            description,
            config,
            used_by,
            location: self.location.get(),
            content_type: "filesystem".into(),
            project: kante_store::PROJECT.into(),
            created_at,
        })
    }

    /// Instances and profiles whose disk devices use custom volume `vol`.
    pub(crate) async fn volume_used_by(&self, pool: &str, vol: &str) -> Result<Vec<String>> {
        let mut used: Vec<String> = self
            .shared
            .profile_list()
            .await?
            .iter()
            .filter(|p| crate::devices::uses_volume(&p.devices, pool, vol))
            .map(|p| format!("/1.0/profiles/{}", p.name))
            .collect();
        for (row, expanded) in self.instances_expanded().await? {
            let (_, devices) = expanded.unwrap_or_default();
            if crate::devices::uses_volume(&devices, pool, vol) {
                used.push(format!("/1.0/instances/{}", row.name));
            }
        }
        Ok(used)
    }

    /// `POST /1.0/storage-pools/{pool}/volumes[/custom]`: an empty custom
    /// volume, or a copy of another (or of a snapshot of one).
    pub(crate) async fn volume_create(&self, pool: &str, req: StorageVolumesPost) -> Result<()> {
        check_custom(&req.kind)?;
        match req.content_type.as_str() {
            "" | "filesystem" => {}
            "block" | "iso" => {
                return Err(EngineError::bad(format!(
                    "Custom volumes of content type {:?} are not supported",
                    req.content_type
                )))
            }
            other => return Err(EngineError::bad(format!("Invalid content type {other:?}"))),
        }
        kante_storage::validate_volume_name(&req.name)?;
        let p = self.pool(pool)?;
        p.validate_custom_config(&req.config)?;
        if p.has_volume(VolumeKind::Custom, &req.name) {
            return Err(exists(&req.name));
        }
        let mut row = VolumeRow {
            pool: pool.into(),
            name: req.name.clone(),
            description: req.description,
            config: req.config,
            created_at: fmt_time(kante_api::now()),
        };
        let name = req.name.clone();
        let source = match req.source.kind.as_str() {
            "" | "none" => None,
            "copy" => {
                let src = self.copy_source(pool, &req.source)?;
                row.config = self
                    .copied_config(pool, &req.source, &p, row.config)
                    .await?;
                Some(src)
            }
            other => {
                return Err(EngineError::bad(format!(
                    "Invalid volume source type {other:?}"
                )))
            }
        };
        let size = p.validate_custom_config(&row.config)?;
        // The record first, pending (the name is taken: of concurrent
        // creates, one wins here), then the volume, then the record is
        // complete. A crash in between leaves a pending record, which the
        // next start removes with whatever was made.
        self.take_volume_name(&p, &row).await?;
        let p2 = p.clone();
        let made = match source {
            None => tokio::task::spawn_blocking(move || p2.create_custom_volume(&name, size))
                .await?
                .map(|_| ())
                .map_err(EngineError::from),
            Some(src) => {
                let config = row.config.clone();
                tokio::task::spawn_blocking(move || copy_custom(&p2, &src, &name, &config)).await?
            }
        };
        let completed = match made {
            Ok(()) => self
                .node
                .volume_created(pool, &req.name)
                .await
                .map_err(EngineError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = completed {
            let _ = self.node.volume_delete(pool, &req.name).await;
            return Err(e);
        }
        self.events.lifecycle(
            "storage-volume-created",
            &format!("/1.0/storage-pools/{pool}/volumes/custom/{}", req.name),
            json!({}),
        );
        Ok(())
    }

    /// A copy's config, as LXD makes it: the source volume's (for a
    /// snapshot, its volume's), then the request's keys over it. A key the
    /// target pool cannot take (say a size on a `dir` pool) is left out
    /// when it only came from the source.
    async fn copied_config(
        &self,
        pool: &str,
        src: &VolumeSource,
        target: &Pool,
        requested: ConfigMap,
    ) -> Result<ConfigMap> {
        let sp = self.pool(if src.pool.is_empty() { pool } else { &src.pool })?;
        let vol = src
            .name
            .split_once('/')
            .map_or(src.name.as_str(), |(v, _)| v);
        let mut config = self.custom_record(&sp, vol).await?.config;
        config.extend(requested.clone());
        if target.validate_custom_config(&config).is_err() {
            config.retain(|k, _| requested.contains_key(k) || !k.starts_with("size"));
        }
        target.validate_custom_config(&config)?;
        Ok(config)
    }

    /// The path of the custom volume (or snapshot) a copy starts from.
    fn copy_source(&self, pool: &str, src: &VolumeSource) -> Result<PathBuf> {
        let sp = self.pool(if src.pool.is_empty() { pool } else { &src.pool })?;
        let missing = || EngineError::NotFound(format!("Source volume {:?} not found", src.name));
        let path = match src.name.split_once('/') {
            Some((vol, snap)) => {
                kante_storage::validate_snapshot_name(snap)?;
                if !sp.has_snapshot(VolumeKind::Custom, vol, snap) {
                    return Err(missing());
                }
                sp.snapshot_path(VolumeKind::Custom, vol, snap)?
            }
            None => {
                kante_storage::validate_volume_name(&src.name)?;
                if !sp.has_volume(VolumeKind::Custom, &src.name) {
                    return Err(missing());
                }
                sp.volume_path(VolumeKind::Custom, &src.name)
            }
        };
        Ok(path)
    }

    /// `PUT` (`merge` false: description and config replaced) or `PATCH`
    /// (merged; an empty value removes a key); `restore` restores a snapshot.
    pub(crate) async fn volume_update(
        &self,
        pool: &str,
        name: &str,
        req: StorageVolumePut,
        merge: bool,
    ) -> Result<()> {
        let p = self.pool(pool)?;
        let lock = self.object_lock(&volume_lock_key(pool, name));
        let _g = lock.lock().await;
        let cur = self.custom_record(&p, name).await?;
        if !req.restore.is_empty() {
            return self.volume_restore(&p, name, &req.restore).await;
        }
        let mut meta = cur.clone();
        if merge {
            meta.config.extend(req.config);
            if !req.description.is_empty() {
                meta.description = req.description;
            }
        } else {
            meta.config = req.config;
            meta.description = req.description;
        }
        meta.config.retain(|_, v| !v.is_empty());
        let (p2, n, old, new) = (
            p.clone(),
            name.to_string(),
            cur.config.clone(),
            meta.config.clone(),
        );
        tokio::task::spawn_blocking(move || p2.resize_custom(&n, &old, &new)).await??;
        if let Err(e) = self.node.volume_put(&meta).await {
            let (n, old, new) = (name.to_string(), cur.config, meta.config);
            let _ = tokio::task::spawn_blocking(move || p.resize_custom(&n, &new, &old)).await;
            return Err(e.into());
        }
        self.events.lifecycle(
            "storage-volume-updated",
            &format!("/1.0/storage-pools/{pool}/volumes/custom/{name}"),
            json!({}),
        );
        Ok(())
    }

    /// Restores a custom volume from its snapshot; refused while a running
    /// instance has it mounted (it would keep seeing the old content).
    async fn volume_restore(&self, p: &Pool, name: &str, snap: &str) -> Result<()> {
        kante_storage::validate_snapshot_name(snap)?;
        if !p.has_snapshot(VolumeKind::Custom, name, snap) {
            return Err(EngineError::NotFound(format!(
                "Snapshot {name}/{snap} not found"
            )));
        }
        let running: Vec<String> = self
            .volume_used_by(&p.name, name)
            .await?
            .into_iter()
            .filter(|u| {
                u.strip_prefix("/1.0/instances/")
                    .is_some_and(|i| self.running(i).is_some())
            })
            .collect();
        if !running.is_empty() {
            return Err(EngineError::bad(format!(
                "Cannot restore a volume in use by running instances: {}",
                running.join(", ")
            )));
        }
        let (p2, n, s) = (p.clone(), name.to_string(), snap.to_string());
        tokio::task::spawn_blocking(move || p2.restore(VolumeKind::Custom, &n, &s)).await??;
        Ok(())
    }

    /// `POST .../volumes/custom/{name}` `{name}`: renames an unused volume.
    pub(crate) async fn volume_rename(&self, pool: &str, name: &str, new: &str) -> Result<()> {
        let p = self.pool(pool)?;
        kante_storage::validate_volume_name(new)?;
        // Both names' locks, in one order (no two renames wait on each other).
        let mut keys = [volume_lock_key(pool, name), volume_lock_key(pool, new)];
        keys.sort();
        let (first, second) = (self.object_lock(&keys[0]), self.object_lock(&keys[1]));
        let _g1 = first.lock().await;
        let _g2 = if keys[0] != keys[1] {
            Some(second.lock().await)
        } else {
            None
        };
        let cur = self.custom_record(&p, name).await?;
        self.refuse_if_used(pool, name).await?;
        if p.has_volume(VolumeKind::Custom, new) {
            return Err(exists(new));
        }
        // The record moves first, so the state decides whether `new` is
        // free (a record a crash left without its volume is replaced). A
        // volume that had no record gets one to carry.
        if self.node.volume_get(pool, name).await?.is_none() {
            self.node.volume_put(&cur).await?;
        }
        let mut moved = self.node.volume_rename(pool, name, new).await;
        if matches!(moved, Err(kante_store::StoreError::Conflict(_)))
            && self.node.volume_get(pool, new).await?.is_some()
            && !p.has_volume(VolumeKind::Custom, new)
            && self.node.volume_delete_stale(pool, new).await?
        {
            moved = self.node.volume_rename(pool, name, new).await;
        }
        moved?;
        if let Err(e) = p.rename_custom_volume(name, new) {
            let _ = self.node.volume_rename(pool, new, name).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// `DELETE .../volumes/custom/{name}`: refused while anything uses it.
    pub(crate) async fn volume_delete(&self, pool: &str, name: &str) -> Result<()> {
        let p = self.pool(pool)?;
        let lock = self.object_lock(&volume_lock_key(pool, name));
        let _g = lock.lock().await;
        p.existing_custom(name).map_err(not_found)?;
        self.refuse_if_used(pool, name).await?;
        // The record is marked first: a crash then leaves a pending record,
        // and the next start finishes the delete.
        let marked = self.node.volume_deleting(pool, name).await?;
        let n = name.to_string();
        let deleted = tokio::task::spawn_blocking(move || p.delete_custom_volume(&n)).await?;
        if let Err(e) = deleted {
            if marked {
                let _ = self.node.volume_created(pool, name).await;
            }
            return Err(e.into());
        }
        self.node.volume_delete(pool, name).await?;
        self.events.lifecycle(
            "storage-volume-deleted",
            &format!("/1.0/storage-pools/{pool}/volumes/custom/{name}"),
            json!({}),
        );
        Ok(())
    }

    /// The record of custom volume `name` of `p` (an empty one for a volume
    /// that has none); a missing volume is a 404.
    pub(crate) async fn custom_record(&self, p: &Pool, name: &str) -> Result<VolumeRow> {
        p.existing_custom(name).map_err(not_found)?;
        Ok(self
            .node
            .volume_get(&p.name, name)
            .await?
            .unwrap_or_else(|| VolumeRow {
                pool: p.name.clone(),
                name: name.into(),
                ..Default::default()
            }))
    }

    /// Moves custom volumes' records that older versions kept in the pools'
    /// sidecars (`custom-meta/<vol>.json`) into this member's state, once:
    /// each sidecar goes when its record is made.
    /// Then finishes what a crash interrupted: a pending record (a volume
    /// being made or deleted) goes with its volume.
    pub(crate) async fn import_volume_sidecars(&self) {
        self.finish_pending_volumes().await;
        for p in self.loaded_pools() {
            for (name, meta) in p.legacy_custom_meta() {
                let row = VolumeRow {
                    pool: p.name.clone(),
                    name: name.clone(),
                    description: meta.description,
                    config: meta.config,
                    created_at: meta.created_at,
                };
                let moved = match self.node.volume_put(&row).await {
                    Ok(()) => p.drop_legacy_custom_meta(&name).map_err(EngineError::from),
                    Err(e) => Err(e.into()),
                };
                match moved {
                    Ok(()) => {
                        tracing::info!(pool = %p.name, volume = %name, "volume record moved into the state")
                    }
                    Err(e) => {
                        tracing::error!(pool = %p.name, volume = %name, "moving its record into the state: {e}")
                    }
                }
            }
        }
    }

    async fn finish_pending_volumes(&self) {
        let pending = match self.node.volumes_pending().await {
            Ok(p) => p,
            Err(e) => return tracing::error!("listing pending volume records: {e}"),
        };
        for (pool, name) in pending {
            if let Ok(p) = self.pool(&pool) {
                if p.has_volume(VolumeKind::Custom, &name) {
                    let n = name.clone();
                    let removed =
                        tokio::task::spawn_blocking(move || p.delete_custom_volume(&n)).await;
                    if !matches!(removed, Ok(Ok(_))) {
                        tracing::error!(pool = %pool, volume = %name, "removing a volume whose making or deletion was cut short");
                        continue;
                    }
                }
            }
            tracing::warn!(pool = %pool, volume = %name, "removed a volume whose making or deletion was cut short");
            let _ = self.node.volume_delete(&pool, &name).await;
        }
    }

    /// Takes `row`'s name by recording it, pending. A complete record
    /// whose volume is missing is a crash's leftover: it is replaced.
    pub(crate) async fn take_volume_name(&self, p: &Pool, row: &VolumeRow) -> Result<()> {
        match self.node.volume_create_pending(row).await {
            Err(kante_store::StoreError::Conflict(_))
                if !p.has_volume(VolumeKind::Custom, &row.name)
                    && self.node.volume_delete_stale(&row.pool, &row.name).await? =>
            {
                tracing::warn!(pool = %row.pool, volume = %row.name, "replacing a record left without its volume");
                Ok(self.node.volume_create_pending(row).await?)
            }
            Err(kante_store::StoreError::Conflict(_)) => Err(exists(&row.name)),
            other => Ok(other?),
        }
    }

    async fn refuse_if_used(&self, pool: &str, name: &str) -> Result<()> {
        let used = self.volume_used_by(pool, name).await?;
        if used.is_empty() {
            return Ok(());
        }
        Err(EngineError::bad(format!(
            "The storage volume is still in use by {}",
            used.join(", ")
        )))
    }

    /// Where a disk device's custom volume is on the host (for the mount).
    pub(crate) fn custom_volume_path(&self, pool: &str, name: &str) -> Result<PathBuf> {
        let p = self.pool(pool)?;
        kante_storage::validate_volume_name(name)?;
        if !p.has_volume(VolumeKind::Custom, name) {
            return Err(EngineError::NotFound(format!(
                "Storage volume {name:?} not found in pool {pool:?}"
            )));
        }
        Ok(p.volume_path(VolumeKind::Custom, name))
    }

    // ----- snapshots of custom volumes -------------------------------------

    pub(crate) async fn volume_snapshot_list(
        &self,
        pool: &str,
        name: &str,
    ) -> Result<Vec<StorageVolumeSnapshot>> {
        let p = self.pool(pool)?;
        let meta = self.custom_record(&p, name).await?;
        p.list_snapshots(VolumeKind::Custom, name)
            .into_iter()
            .map(|s| {
                let path = p.snapshot_path(VolumeKind::Custom, name, &s)?;
                Ok(StorageVolumeSnapshot {
                    name: s,
                    description: String::new(),
                    config: meta.config.clone(),
                    content_type: "filesystem".into(),
                    created_at: created_of(&path),
                })
            })
            .collect()
    }

    pub(crate) async fn volume_snapshot_get(
        &self,
        pool: &str,
        name: &str,
        snap: &str,
    ) -> Result<StorageVolumeSnapshot> {
        self.volume_snapshot_list(pool, name)
            .await?
            .into_iter()
            .find(|s| s.name == snap)
            .ok_or_else(|| EngineError::NotFound("Storage volume snapshot not found".into()))
    }

    /// `POST .../volumes/custom/{name}/snapshots` (an operation, as in LXD).
    pub(crate) fn volume_snapshot_create(
        &self,
        pool: &str,
        name: &str,
        req: VolumeSnapshotsPost,
    ) -> Result<Arc<Op>> {
        let p = self.pool(pool)?;
        p.existing_custom(name).map_err(not_found)?;
        let snap = if req.name.is_empty() {
            let existing = p.list_snapshots(VolumeKind::Custom, name);
            (0..)
                .map(|i| format!("snap{i}"))
                .find(|n| !existing.contains(n))
                .expect("an unbounded range has a free name")
        } else {
            req.name
        };
        kante_api::names::validate_snapshot_name(&snap)?;
        kante_storage::validate_snapshot_name(&snap)?;
        if p.has_snapshot(VolumeKind::Custom, name, &snap) {
            return Err(EngineError::Conflict(format!(
                "Snapshot {snap:?} already exists"
            )));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Snapshotting storage volume",
            volume_resources(pool, name),
        );
        let (engine, pool, name) = (self.arc(), pool.to_string(), name.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.object_lock(&volume_lock_key(&pool, &name));
            let _g = lock.lock().await;
            let (p2, n, s) = (p.clone(), name.clone(), snap.clone());
            tokio::task::spawn_blocking(move || p2.snapshot(VolumeKind::Custom, &n, &s)).await??;
            engine.events.lifecycle(
                "storage-volume-snapshot-created",
                &format!("/1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots/{snap}"),
                json!({}),
            );
            Ok(())
        });
        Ok(op)
    }

    /// `DELETE .../volumes/custom/{name}/snapshots/{snap}` (an operation).
    pub(crate) async fn volume_snapshot_delete(
        &self,
        pool: &str,
        name: &str,
        snap: &str,
    ) -> Result<Arc<Op>> {
        self.volume_snapshot_get(pool, name, snap).await?;
        let p = self.pool(pool)?;
        let op = self.ops.create(
            OperationClass::Task,
            "Deleting storage volume snapshot",
            volume_resources(pool, name),
        );
        let (engine, key) = (self.arc(), volume_lock_key(pool, name));
        let (name, snap) = (name.to_string(), snap.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.object_lock(&key);
            let _g = lock.lock().await;
            tokio::task::spawn_blocking(move || {
                p.delete_snapshot(VolumeKind::Custom, &name, &snap)
            })
            .await??;
            Ok(())
        });
        Ok(op)
    }
}

/// Copies `src` (a custom volume or snapshot) into a new custom volume,
/// then gives it the size limit of `config`.
fn copy_custom(p: &Pool, src: &std::path::Path, name: &str, config: &ConfigMap) -> Result<()> {
    p.copy_into(src, VolumeKind::Custom, name)?;
    // A snapshot source is read-only on btrfs; the copy is a fresh writable one.
    let result = p.resize_custom(name, &ConfigMap::new(), config);
    if result.is_err() {
        let _ = p.delete_custom_volume(name);
    }
    Ok(result?)
}

/// A name taken by a custom volume: a 409.
pub(crate) fn exists(name: &str) -> EngineError {
    EngineError::Conflict(format!("Storage volume {name:?} already exists"))
}

/// A missing custom volume is a 404 whatever the storage layer called it.
fn not_found(e: kante_storage::StorageError) -> EngineError {
    match e {
        kante_storage::StorageError::NotFound(_) => {
            EngineError::NotFound("Storage volume not found".into())
        }
        e => e.into(),
    }
}

pub(crate) fn volume_resources(
    pool: &str,
    name: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut r = std::collections::BTreeMap::new();
    r.insert(
        "storage_volumes".into(),
        vec![format!("/1.0/storage-pools/{pool}/volumes/custom/{name}")],
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::config::validate_devices;

    fn disk(pairs: &[(&str, &str)]) -> kante_api::DevicesMap {
        let mut d = kante_api::DevicesMap::new();
        let mut dev: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        dev.insert("type".into(), "disk".into());
        d.insert("data".into(), dev);
        d
    }

    #[test]
    fn volume_disks_are_checked() {
        let ok = disk(&[("pool", "p"), ("source", "v"), ("path", "/var/lib/docker")]);
        assert!(validate_devices(&ok).is_ok());
        for bad in [
            disk(&[("pool", "p"), ("source", "a/b"), ("path", "/d")]),
            disk(&[("pool", "p"), ("source", ".v"), ("path", "/d")]),
            disk(&[("pool", "a/b"), ("source", "v"), ("path", "/d")]),
            disk(&[
                ("pool", "p"),
                ("source", "v"),
                ("path", "/d"),
                ("size", "1GiB"),
            ]),
            disk(&[("source", "/srv"), ("path", "/d"), ("shift", "maybe")]),
            disk(&[("source", "relative"), ("path", "/d")]),
        ] {
            assert!(validate_devices(&bad).is_err(), "{bad:?} accepted");
        }
        use crate::devices::uses_volume;
        assert!(uses_volume(&ok, "p", "v"));
        assert!(!uses_volume(&ok, "p", "w") && !uses_volume(&ok, "q", "v"));
    }

    #[test]
    fn only_custom_volumes_are_made_here() {
        assert!(check_custom("custom").is_ok() && check_custom("").is_ok());
        assert!(check_custom("container").is_err() && check_custom("zz").is_err());
        assert_eq!(list_kind("").unwrap(), None);
        assert_eq!(list_kind("image").unwrap(), Some(VolumeKind::Image));
        assert!(list_kind("vm").is_err());
    }
}
