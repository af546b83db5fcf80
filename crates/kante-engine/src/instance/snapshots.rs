//! Instance snapshots: the rootfs captured by the pool driver (a read-only
//! btrfs snapshot, or a copy on `dir`) plus the instance's config at that
//! moment; restore puts both back.

use std::collections::HashMap;
use std::sync::Arc;

use kante_api::instance::InstanceSnapshot;
use kante_api::operation::OperationClass;
use kante_api::{ConfigMap, DevicesMap};
use kante_storage::VolumeKind;
use kante_store::SnapshotRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::instance::config;
use crate::operations::{instance_resources, Op};
use crate::units::parse_expiry;
use crate::util::{fmt_time, parse_time};
use crate::Engine;

/// `POST /1.0/instances/{name}/snapshots`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotsPost {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "kante_api::serde_util::lenient_bool")]
    pub stateful: bool,
    #[serde(default)]
    pub expires_at: Option<kante_api::Timestamp>,
}

impl Engine {
    async fn render_snapshot(&self, row: &SnapshotRow) -> Result<InstanceSnapshot> {
        let layers = self.profile_layers(&row.profiles).await.unwrap_or_default();
        Ok(render_snapshot_over(row, &layers))
    }

    /// A snapshot as the API shows it, its profiles taken from `table`
    /// (read once for a whole listing); as [`Engine::render_snapshot`], a
    /// missing profile leaves it unexpanded.
    pub(crate) fn render_snapshot_from(
        &self,
        row: &SnapshotRow,
        table: &HashMap<String, (ConfigMap, DevicesMap)>,
    ) -> InstanceSnapshot {
        let layers: Option<Vec<_>> = row.profiles.iter().map(|p| table.get(p).cloned()).collect();
        render_snapshot_over(row, &layers.unwrap_or_default())
    }

    pub(crate) async fn snapshot_list(&self, instance: &str) -> Result<Vec<InstanceSnapshot>> {
        self.instance_row(instance).await?;
        let mut out = Vec::new();
        for r in self.node.snapshot_list(instance).await? {
            out.push(self.render_snapshot(&r).await?);
        }
        Ok(out)
    }

    pub(crate) async fn snapshot_get(
        &self,
        instance: &str,
        snap: &str,
    ) -> Result<InstanceSnapshot> {
        self.instance_row(instance).await?;
        let row = self
            .node
            .snapshot_get(instance, snap)
            .await?
            .ok_or_else(|| EngineError::NotFound("Snapshot not found".into()))?;
        self.render_snapshot(&row).await
    }

    /// The next free `snap%d` name.
    async fn next_snapshot_name(&self, instance: &str) -> Result<String> {
        let existing: Vec<String> = self
            .node
            .snapshot_list(instance)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        Ok((0..)
            .map(|i| format!("snap{i}"))
            .find(|n| !existing.contains(n))
            .expect("an unbounded range has a free name"))
    }

    pub(crate) async fn snapshot_create(
        &self,
        instance: &str,
        req: SnapshotsPost,
    ) -> Result<Arc<Op>> {
        self.instance_row(instance).await?;
        if req.stateful {
            return Err(EngineError::bad(
                "Stateful snapshots need CRIU, which is not supported",
            ));
        }
        let snap = if req.name.is_empty() {
            self.next_snapshot_name(instance).await?
        } else {
            req.name.clone()
        };
        kante_api::names::validate_snapshot_name(&snap)?;
        if self.node.snapshot_get(instance, &snap).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Snapshot {snap:?} already exists"
            )));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Snapshotting instance",
            instance_resources(&[instance], true),
        );
        let engine = self.arc();
        let instance = instance.to_string();
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&instance);
            let _g = lock.lock().await;
            engine.take_snapshot(&instance, &snap, req.expires_at).await
        });
        Ok(op)
    }

    pub(crate) async fn take_snapshot(
        &self,
        instance: &str,
        snap: &str,
        expires_at: Option<kante_api::Timestamp>,
    ) -> Result<()> {
        let row = self.instance_row(instance).await?;
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let (p, i, s) = (pool.clone(), instance.to_string(), snap.to_string());
        // Made at its staging path, recorded, then renamed into place: a
        // crash leaves no snapshot without a record (see reconcile.rs).
        let staged =
            tokio::task::spawn_blocking(move || p.stage_snapshot_of(VolumeKind::Container, &i, &s))
                .await??;
        let expires = match expires_at {
            Some(t) => Some(t),
            None => self.default_expiry(&row).await,
        }
        .unwrap_or_else(kante_api::zero_time);
        let srow = SnapshotRow {
            instance: instance.into(),
            name: snap.into(),
            created_at: fmt_time(kante_api::now()),
            expires_at: fmt_time(expires),
            stateful: false,
            architecture: row.architecture.clone(),
            ephemeral: row.ephemeral,
            description: row.description.clone(),
            config: row.config.clone(),
            devices: row.devices.clone(),
            profiles: row.profiles.clone(),
        };
        if let Err(e) = self.node.snapshot_create(&srow).await {
            // Dropping the staged snapshot deletes it.
            tokio::task::spawn_blocking(move || drop(staged)).await?;
            return Err(e.into());
        }
        if let Err(e) = staged.commit() {
            let _ = self.node.snapshot_delete(instance, snap).await;
            return Err(e.into());
        }
        self.write_backup_file(&row).await;
        self.events.lifecycle(
            "instance-snapshot-created",
            &format!("/1.0/instances/{instance}/snapshots/{snap}"),
            json!({}),
        );
        Ok(())
    }

    /// `snapshots.expiry` (e.g. `2w`, `3d`, `12H`, `30M`) from now.
    async fn default_expiry(&self, row: &kante_store::InstanceRow) -> Option<kante_api::Timestamp> {
        let (econfig, _) = self.expanded(row).await.ok()?;
        let spec = econfig.get("snapshots.expiry")?;
        parse_expiry(spec)
            .ok()
            .flatten()
            .map(|d| kante_api::now() + d)
    }

    pub(crate) async fn snapshot_delete(&self, instance: &str, snap: &str) -> Result<Arc<Op>> {
        self.snapshot_get(instance, snap).await?;
        let op = self.ops.create(
            OperationClass::Task,
            "Deleting snapshot",
            instance_resources(&[instance], true),
        );
        let engine = self.arc();
        let (instance, snap) = (instance.to_string(), snap.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&instance);
            let _g = lock.lock().await;
            engine.remove_snapshot(&instance, &snap).await
        });
        Ok(op)
    }

    pub(crate) async fn remove_snapshot(&self, instance: &str, snap: &str) -> Result<()> {
        let row = self.instance_row(instance).await?;
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let (p, i, s) = (pool.clone(), instance.to_string(), snap.to_string());
        // Set aside, record, files: never a recorded snapshot half deleted.
        let aside = match tokio::task::spawn_blocking(move || {
            p.set_aside_snapshot(VolumeKind::Container, &i, &s)
        })
        .await?
        {
            Ok(a) => Some(a),
            // Nothing on disk (removed by hand): the record can still go.
            Err(kante_storage::StorageError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.node.snapshot_delete(instance, snap).await {
            if let Some(a) = aside {
                tokio::task::spawn_blocking(move || a.put_back()).await??;
            }
            return Err(e.into());
        }
        let (p, i) = (pool.clone(), instance.to_string());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = aside.map_or(Ok(()), |a| a.remove()) {
                tracing::warn!(instance = %i, "removing a deleted snapshot: {e}");
            }
            p.remove_empty_snapshots_dir(VolumeKind::Container, &i);
        })
        .await?;
        self.events.lifecycle(
            "instance-snapshot-deleted",
            &format!("/1.0/instances/{instance}/snapshots/{snap}"),
            json!({}),
        );
        Ok(())
    }

    pub(crate) async fn snapshot_rename(
        &self,
        instance: &str,
        snap: &str,
        new: &str,
    ) -> Result<Arc<Op>> {
        self.snapshot_get(instance, snap).await?;
        kante_api::names::validate_snapshot_name(new)?;
        if self.node.snapshot_get(instance, new).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Snapshot {new:?} already exists"
            )));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Renaming snapshot",
            instance_resources(&[instance], true),
        );
        let engine = self.arc();
        let (instance, snap, new) = (instance.to_string(), snap.to_string(), new.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&instance);
            let _g = lock.lock().await;
            let row = engine.instance_row(&instance).await?;
            let pool = engine.pool(&engine.instance_pool_name(&row).await)?;
            pool.rename_snapshot(VolumeKind::Container, &instance, &snap, &new)?;
            if let Err(e) = engine.node.snapshot_rename(&instance, &snap, &new).await {
                let _ = pool.rename_snapshot(VolumeKind::Container, &instance, &new, &snap);
                return Err(e.into());
            }
            Ok(())
        });
        Ok(op)
    }

    pub(crate) async fn snapshot_set_expiry(
        &self,
        instance: &str,
        snap: &str,
        expires_at: kante_api::Timestamp,
    ) -> Result<()> {
        self.snapshot_get(instance, snap).await?;
        Ok(self
            .node
            .snapshot_set_expiry(instance, snap, &fmt_time(expires_at))
            .await?)
    }
}

/// A snapshot record over its profiles' layers, as the API shows it.
fn render_snapshot_over(row: &SnapshotRow, layers: &[(ConfigMap, DevicesMap)]) -> InstanceSnapshot {
    let (expanded_config, expanded_devices) = config::expand(layers, &row.config, &row.devices);
    InstanceSnapshot {
        architecture: row.architecture.clone(),
        config: row.config.clone(),
        created_at: parse_time(&row.created_at),
        devices: row.devices.clone(),
        ephemeral: row.ephemeral,
        expanded_config,
        expanded_devices,
        last_used_at: kante_api::zero_time(),
        name: row.name.clone(),
        profiles: row.profiles.clone(),
        stateful: row.stateful,
        expires_at: parse_time(&row.expires_at),
        size: -1,
    }
}
