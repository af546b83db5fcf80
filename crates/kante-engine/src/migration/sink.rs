//! The receiving side: `POST /1.0/instances` with `source.type:
//! "migration"`. In `pull` mode it dials the source's operation; in `push`
//! mode (also lxc's relay) its operation listens. Everything is checked
//! before the operation starts (name free, profiles, config, devices, the
//! root pool); once the peer is connected the instance is recorded
//! *pending* (as every creation
//! is: a crash leaves a record the next start removes with what was made,
//! `instance/reconcile.rs`), the volume is received at the pool's staging
//! paths and renamed into place only once the stream's trailer and
//! checksums are in, then the snapshot records are written and the
//! instance is marked complete. Any failure removes all of it, so a retry
//! under the same name needs no manual step.

use std::sync::Arc;

use kante_api::instance::InstancesPost;
use kante_storage::{negotiate, MigrationType, ReceiveOptions, VolumeKind};
use kante_store::InstanceRow;
use serde_json::json;

use super::link::peer_failed;
use super::link::{self, Connect, Control, Link, Peer};
use super::proto::{self, MigrationControl, MigrationHeader};
use super::pump::stream_in;
use super::records::{snapshot_row, travels};
use crate::error::{EngineError, Result};
use crate::instance::create::NewInstance;
use crate::instance::idmaps::idmap_json;
use crate::instance::{config, files};
use crate::operations::Op;
use crate::util::fmt_time;
use crate::Engine;

impl Engine {
    /// Starts the receiving side of a migration, every check done first.
    pub(crate) async fn migration_create(&self, req: InstancesPost) -> Result<Arc<Op>> {
        let name = req.name.clone();
        if name.is_empty() {
            return Err(EngineError::bad("A migrated instance needs a name"));
        }
        kante_api::names::validate_instance_name(&name)?;
        match req.kind.as_str() {
            "" | "container" => {}
            other => {
                return Err(EngineError::bad(format!(
                    "Only containers can be migrated, not {other:?}"
                )))
            }
        }
        let src = &req.source;
        if src.live {
            return Err(EngineError::bad(
                "Live migration is not supported: stop the instance first, or use --stateless (it is then frozen while it is copied)",
            ));
        }
        let connect = match src.mode.as_str() {
            "" | "pull" => Some(Peer::parse(
                &src.operation,
                &src.certificate,
                &src.secrets.clone().into_iter().collect(),
            )?),
            "push" => None,
            other => {
                return Err(EngineError::bad(format!(
                    "Unknown migration mode {other:?} (pull or push)"
                )))
            }
        };
        if self.node.instance_get(&name).await?.is_some() {
            if req.source.refresh {
                return self.migration_refresh(&req, connect).await;
            }
            return Err(EngineError::Conflict(format!(
                "Instance {name:?} already exists"
            )));
        }
        let profiles = req
            .put
            .profiles
            .clone()
            .unwrap_or_else(|| vec!["default".into()]);
        let mut local = req.put.config.clone();
        local.retain(|k, v| !v.is_empty() && travels(k));
        let checked = self
            .check_new_instance(&name, &req.put.devices, profiles, local)
            .await?;

        let (op, connect) = link::target_operation(&self.ops, &name, "Creating instance", connect);
        let row = new_row(self, &name, &req, checked);
        let (engine, op2) = (self.arc(), op.clone());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&row.name);
            let _g = lock.lock().await;
            engine.migration_receive(&op2, row, connect).await
        });
        Ok(op)
    }

    async fn migration_receive(&self, op: &Op, row: InstanceRow, connect: Connect) -> Result<()> {
        let name = row.name.clone();
        let pool_name = self.instance_pool_name(&row).await;
        // Nothing is made (not even the record) until the peer is there.
        let mut link = connect.link(op).await?;
        // Pending until the end: a crash on the way leaves a record the
        // next start removes, with whatever was received.
        if let Err(e) = self.record_pending(&row).await {
            let _ = link::send_msg(&link.control, &MigrationControl::failed(&e.to_string())).await;
            return Err(e);
        }
        let r = self.receive_into(op, &row, &pool_name, &mut link).await;
        if let Err(e) = &r {
            let _ = link::send_msg(&link.control, &MigrationControl::failed(&e.to_string())).await;
            if let Ok(pool) = self.pool(&pool_name) {
                let n = name.clone();
                let gone = tokio::task::spawn_blocking(move || {
                    pool.delete_volume(VolumeKind::Container, &n)
                })
                .await;
                if !matches!(gone, Ok(Ok(()))) {
                    tracing::error!(instance = %name, "removing a failed migration's volume: {gone:?}");
                }
            }
            if let Err(undo) = self.drop_received_record(&name).await {
                tracing::error!(instance = %name, "dropping the record of a failed migration: {undo}");
            }
            return r;
        }
        let _ = link::send_msg(&link.control, &MigrationControl::ok()).await;
        self.events.lifecycle(
            "instance-created",
            &format!("/1.0/instances/{name}"),
            json!({}),
        );
        Ok(())
    }

    /// The exchange once connected: offer, answer, stream, records.
    async fn receive_into(
        &self,
        op: &Op,
        row: &InstanceRow,
        pool_name: &str,
        link: &mut Link,
    ) -> Result<()> {
        let name = row.name.as_str();
        let offer = match link::recv_control(&mut link.control, op).await? {
            Control::Header(h) => h,
            Control::Done(c) => return Err(peer_failed(&c)),
        };
        if offer.snapshots.len() != offer.snapshot_names.len()
            || offer
                .snapshots
                .iter()
                .zip(&offer.snapshot_names)
                .any(|(s, n)| &s.name != n)
        {
            return Err(EngineError::bad(
                "The migration source's snapshot list and records disagree",
            ));
        }
        let pool = self.pool(pool_name)?;
        if offer.kante_types.is_empty() {
            self.receive_from_lxd(op, name, &pool, &offer, link).await?;
        } else {
            self.receive_native(op, row, &pool, &offer, link).await?;
        }
        for s in &offer.snapshots {
            self.node
                .snapshot_create(&snapshot_row(name, row, s))
                .await?;
        }
        let rootfs = pool.volume_path(VolumeKind::Container, name).join("rootfs");
        files::write_hostname(&rootfs, name)?;
        self.write_backup_file(row).await;
        self.record_complete(row).await?;
        Ok(())
    }

    /// Kante's own stream: the type negotiated in field 1000, the volume
    /// received at staging paths and checked.
    async fn receive_native(
        &self,
        op: &Op,
        row: &InstanceRow,
        pool: &kante_storage::Pool,
        offer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        let name = row.name.as_str();
        let offered: Vec<MigrationType> = offer
            .kante_types
            .iter()
            .filter_map(|t| MigrationType::parse(t))
            .collect();
        let ty = negotiate(&offered, &pool.receive_types())?;
        let answer = MigrationHeader {
            fs: proto::FS_RSYNC,
            criu: Some(proto::CRIU_NONE),
            snapshot_names: offer.snapshot_names.clone(),
            kante_types: vec![ty.name().to_string()],
            ..Default::default()
        };
        link::send_msg(&link.control, &answer).await?;

        let (_, edevices) = self.expanded(row).await?;
        let size = match config::root_disk(&edevices).and_then(|(_, d)| d.get("size")) {
            Some(s) => Some(crate::units::parse_size(s).map_err(EngineError::bad)?),
            None => None,
        };
        let opts = ReceiveOptions {
            name: Some(name.to_string()),
            accept: vec![ty],
            size: Some(size),
            limits: None,
        };
        let p = pool.clone();
        let received = stream_in(op, name, link, move |r| p.receive_volume(r, &opts)).await?;
        if received.snapshots != offer.snapshot_names {
            return Err(EngineError::bad(
                "The migration stream's snapshots are not those offered",
            ));
        }
        tracing::info!(
            instance = name,
            bytes = received.bytes,
            "instance received by migration ({})",
            received.migration_type
        );
        Ok(())
    }
}

/// The instance's record: the request's config (the volatile keys that
/// travel), this server's id map and fresh identities where none came.
fn new_row(engine: &Engine, name: &str, req: &InstancesPost, checked: NewInstance) -> InstanceRow {
    let NewInstance {
        profiles,
        mut local,
        ..
    } = checked;
    local
        .entry("volatile.uuid".into())
        .or_insert_with(|| uuid::Uuid::new_v4().to_string());
    if !req.source.base_image.is_empty() {
        local
            .entry("volatile.base_image".into())
            .or_insert_with(|| req.source.base_image.clone());
    }
    local.insert(
        "volatile.cloud-init.instance-id".into(),
        uuid::Uuid::new_v4().to_string(),
    );
    local.insert(
        "volatile.idmap.base".into(),
        engine.idmap.host_uid.to_string(),
    );
    local.insert("volatile.idmap.next".into(), idmap_json(&engine.idmap));
    local.insert("volatile.last_state.idmap".into(), "[]".into());
    let architecture = if req.put.architecture.is_empty() {
        std::env::consts::ARCH.to_string()
    } else {
        req.put.architecture.clone()
    };
    InstanceRow {
        name: name.into(),
        project: kante_store::PROJECT.into(),
        kind: "container".into(),
        architecture,
        ephemeral: req.put.ephemeral,
        stateful: false,
        description: req.put.description.clone(),
        created_at: fmt_time(kante_api::now()),
        last_used_at: fmt_time(kante_api::zero_time()),
        config: local,
        devices: req.put.devices.clone(),
        profiles,
    }
}
