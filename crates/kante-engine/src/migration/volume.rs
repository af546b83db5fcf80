//! Custom volumes between servers (LXD's `storage_api_remote_volume_handling`,
//! as `lxc storage volume copy|move a:pool/v b:pool/v2` drives it): the
//! same choreography as an instance's (`send.rs`, `sink.rs`), on the same
//! `control` and `fs` websockets, listened for or dialed (`link.rs`).
//!
//! The source is `POST /1.0/storage-pools/{pool}/volumes/custom/{name}`
//! with `migration: true` ([`Engine::volume_migration_source`]): an
//! operation whose metadata holds the secrets (pull, relay), or that dials
//! the target's operation (push, `target`). The target is `POST
//! /1.0/storage-pools/{pool}/volumes/custom` with `source.type:
//! "migration"` ([`Engine::volume_migration_create`]). On `control` the
//! source offers the snapshots (oldest first, none with `volume_only`)
//! and in field 1000 the stream types its pool can send; the target
//! answers the one it chose (`btrfs` between btrfs pools, `tar`
//! otherwise); on `fs` travels the volume stream of
//! `kante-storage/src/stream/` (kind `custom`, its description and config
//! in the header), and the target's verdict ends it on `control`.
//!
//! Everything that can be refused is refused before an operation exists
//! (no such pool, a name taken, config the pool cannot take, a bad peer).
//! The target takes the name by a pending record only once the peer is
//! connected, receives at the pool's staging paths (all or nothing), and
//! completes the record last; any failure removes the record and whatever
//! was received, so a retry needs no manual step (a crash leaves a
//! pending record that the next start removes with its volume). LXD
//! peers (no field 1000) are refused: volumes travel between Kante
//! servers only.

use std::path::Path;
use std::sync::Arc;

use kante_api::operation::OperationClass;
use kante_api::storage::{StorageVolumePost, StorageVolumesPost};
use kante_api::ConfigMap;
use kante_storage::{negotiate, MigrationType, Pool, ReceiveOptions, VolumeKind, VolumeMeta};
use kante_store::VolumeRow;
use serde_json::json;

use super::link::{self, peer_failed, Connect, Control, Link, Peer};
use super::proto::{self, MigrationControl, MigrationHeader};
use super::pump::{stream_in, stream_out};
use crate::error::{EngineError, Result};
use crate::operations::Op;
use crate::util::fmt_time;
use crate::volumes::{exists, volume_lock_key, volume_resources};
use crate::Engine;

/// What LXD gets when it offers or asks for a volume.
const LXD_PEER: &str =
    "Custom volumes are migrated between Kante servers only (the peer speaks no Kante volume stream)";

impl Engine {
    /// The source side: `POST …/volumes/custom/{name}` with `migration`.
    /// The volume must exist (404); a push target must be usable (400).
    /// `name` may be `VOLUME/SNAPSHOT`: the snapshot's content then goes
    /// as a volume without snapshots (`lxc storage volume copy
    /// p/v/snap remote:p/v2`).
    pub(crate) async fn volume_migration_source(
        &self,
        pool: &str,
        name: &str,
        req: StorageVolumePost,
    ) -> Result<Arc<Op>> {
        let p = self.pool(pool)?;
        let (name, snap) = match name.split_once('/') {
            Some((v, s)) => (v, Some(s.to_string())),
            None => (name, None),
        };
        let mut record = self.custom_record(&p, name).await?;
        if let Some(s) = &snap {
            // Its own time; the volume's config (a snapshot has no other).
            record.created_at = fmt_time(self.volume_snapshot_get(pool, name, s).await?.created_at);
        }
        let dial = match &req.target {
            Some(t) if !t.operation.is_empty() => Some(Peer::parse(
                &t.operation,
                &t.certificate,
                &t.secrets.clone().into_iter().collect(),
            )?),
            _ => None,
        };
        let (op, connect) = volume_operation(self, pool, name, "Migrating storage volume", dial);
        let meta = VolumeMeta {
            description: record.description,
            config: record.config,
            created_at: record.created_at,
        };
        let (engine, name, op2, volume_only) =
            (self.arc(), name.to_string(), op.clone(), req.volume_only);
        let pool = pool.to_string();
        self.ops.run(op.clone(), async move {
            let mut link = connect.link(&op2).await?;
            // Once the peer is there (an operation no peer comes for
            // holds nothing), no snapshot, rename or delete of the volume
            // until the verdict: a move's delete waits for the copy.
            let lock = engine.object_lock(&volume_lock_key(&pool, &name));
            let _g = lock.lock().await;
            let r = volume_send(&op2, &p, &name, snap, &meta, volume_only, &mut link).await;
            if let Err(e) = &r {
                let _ =
                    link::send_msg(&link.control, &MigrationControl::failed(&e.to_string())).await;
            }
            r
        });
        Ok(op)
    }

    /// The target side: `POST …/volumes/custom` with `source.type:
    /// "migration"`, every check done before the operation exists.
    pub(crate) async fn volume_migration_create(
        &self,
        pool: &str,
        req: StorageVolumesPost,
    ) -> Result<Arc<Op>> {
        let src = &req.source;
        if src.refresh {
            return Err(EngineError::NotImplemented(
                "Refreshing a custom volume copy is not supported".into(),
            ));
        }
        match req.content_type.as_str() {
            "" | "filesystem" => {}
            other => {
                return Err(EngineError::bad(format!(
                    "Custom volumes of content type {other:?} are not supported"
                )))
            }
        }
        kante_storage::validate_volume_name(&req.name)?;
        let p = self.pool(pool)?;
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
        let config = target_config(&p, req.config.clone())?;
        let size = p.validate_custom_config(&config)?;
        if p.has_volume(VolumeKind::Custom, &req.name) {
            return Err(exists(&req.name));
        }
        let row = VolumeRow {
            pool: pool.into(),
            name: req.name.clone(),
            description: req.description.clone(),
            config,
            created_at: fmt_time(kante_api::now()),
        };
        let (op, connect) =
            volume_operation(self, pool, &req.name, "Creating storage volume", connect);
        let (engine, op2) = (self.arc(), op.clone());
        let from_request = !req.config.is_empty();
        self.ops.run(op.clone(), async move {
            engine
                .volume_receive(&op2, p, row, size, from_request, connect)
                .await
        });
        Ok(op)
    }

    /// Connects, takes the name, receives; undoes everything on failure.
    async fn volume_receive(
        &self,
        op: &Op,
        p: Pool,
        mut row: VolumeRow,
        size: Option<u64>,
        config_from_request: bool,
        connect: Connect,
    ) -> Result<()> {
        // Nothing is made, not even the record, until the peer is there.
        let mut link = connect.link(op).await?;
        let lock = self.object_lock(&volume_lock_key(&row.pool, &row.name));
        let _g = lock.lock().await;
        if let Err(e) = self.take_volume_name(&p, &row).await {
            let _ = link::send_msg(&link.control, &MigrationControl::failed(&e.to_string())).await;
            return Err(e);
        }
        let r = self
            .volume_receive_into(op, &p, &mut row, size, config_from_request, &mut link)
            .await;
        if let Err(e) = &r {
            let _ = link::send_msg(&link.control, &MigrationControl::failed(&e.to_string())).await;
            if let Err(undo) = self.node.volume_delete(&row.pool, &row.name).await {
                tracing::error!(volume = %row.name, "dropping the record of a failed migration: {undo}");
            }
            return r;
        }
        let _ = link::send_msg(&link.control, &MigrationControl::ok()).await;
        self.events.lifecycle(
            "storage-volume-created",
            &format!(
                "/1.0/storage-pools/{}/volumes/custom/{}",
                row.pool, row.name
            ),
            json!({}),
        );
        Ok(())
    }

    /// The exchange: the offer, the answer, the stream, the record. A
    /// failure after the volume was received deletes it.
    async fn volume_receive_into(
        &self,
        op: &Op,
        p: &Pool,
        row: &mut VolumeRow,
        size: Option<u64>,
        config_from_request: bool,
        link: &mut Link,
    ) -> Result<()> {
        let offer = match link::recv_control(&mut link.control, op).await? {
            Control::Header(h) => h,
            Control::Done(c) => return Err(peer_failed(&c)),
        };
        if offer.kante_types.is_empty() {
            return Err(EngineError::bad(LXD_PEER));
        }
        let offered: Vec<MigrationType> = offer
            .kante_types
            .iter()
            .filter_map(|t| MigrationType::parse(t))
            .collect();
        let ty = negotiate(&offered, &p.receive_types())?;
        let answer = MigrationHeader {
            fs: proto::FS_RSYNC,
            criu: Some(proto::CRIU_NONE),
            snapshot_names: offer.snapshot_names.clone(),
            kante_types: vec![ty.name().to_string()],
            ..Default::default()
        };
        link::send_msg(&link.control, &answer).await?;
        let opts = ReceiveOptions {
            name: Some(row.name.clone()),
            accept: vec![ty],
            size: Some(size),
            limits: None,
        };
        let p2 = p.clone();
        let received = stream_in(op, &row.name, link, move |r| p2.receive_volume(r, &opts)).await?;
        let kept = async {
            if received.kind != VolumeKind::Custom {
                return Err(EngineError::bad(
                    "The migration stream carried an instance volume, not a custom volume",
                ));
            }
            if received.snapshots != offer.snapshot_names {
                return Err(EngineError::bad(
                    "The migration stream's snapshots are not those offered",
                ));
            }
            // The request's config (lxc sends the source's); else what
            // the stream carried.
            if let Some(meta) = &received.meta {
                if !config_from_request {
                    row.config = meta.config.clone();
                }
                if row.description.is_empty() {
                    row.description = meta.description.clone();
                }
            }
            self.node.volume_put(row).await?;
            self.node.volume_created(&row.pool, &row.name).await?;
            Ok(())
        }
        .await;
        if let Err(e) = kept {
            let (p, kind, n) = (p.clone(), received.kind, row.name.clone());
            let gone = tokio::task::spawn_blocking(move || p.delete_volume(kind, &n)).await;
            if !matches!(gone, Ok(Ok(()))) {
                tracing::error!(volume = %row.name, "removing a failed migration's volume: {gone:?}");
            }
            return Err(e);
        }
        tracing::info!(
            volume = %row.name,
            bytes = received.bytes,
            "custom volume received by migration ({})",
            received.migration_type
        );
        Ok(())
    }
}

/// The source's exchange once connected: the offer, the target's choice,
/// the stream and the target's verdict.
async fn volume_send(
    op: &Op,
    p: &Pool,
    name: &str,
    snap: Option<String>,
    meta: &VolumeMeta,
    volume_only: bool,
    link: &mut Link,
) -> Result<()> {
    let snaps = if volume_only || snap.is_some() {
        Vec::new()
    } else {
        snapshots_oldest_first(p, name)?
    };
    let offered = {
        // A snapshot sent as a volume: the types its tree allows.
        let trees = snap.clone().map_or_else(|| snaps.clone(), |s| vec![s]);
        let (p, n) = (p.clone(), name.to_string());
        tokio::task::spawn_blocking(move || p.send_types(VolumeKind::Custom, &n, &trees)).await??
    };
    let offer = MigrationHeader {
        fs: proto::FS_RSYNC,
        snapshot_names: snaps.clone(),
        rsync_features: Some(proto::RsyncFeatures::kante()),
        kante_types: offered.iter().map(|t| t.name().to_string()).collect(),
        ..Default::default()
    };
    link::send_msg(&link.control, &offer).await?;
    let ty = match link::recv_control(&mut link.control, op).await? {
        Control::Header(h) if h.kante_types.is_empty() => return Err(EngineError::bad(LXD_PEER)),
        Control::Header(h) => MigrationType::parse(&h.kante_types[0])
            .filter(|t| offered.contains(t))
            .ok_or_else(|| {
                EngineError::bad(format!(
                    "The migration target chose stream type {:?}, which was not offered",
                    h.kante_types[0]
                ))
            })?,
        Control::Done(c) => return Err(peer_failed(&c)),
    };
    let (p, n, meta) = (p.clone(), name.to_string(), meta.clone());
    stream_out(op, name, link, move |w| match snap {
        Some(s) => p.send_snapshot_as_volume(VolumeKind::Custom, &n, &s, ty, Some(&meta), w),
        None => p.send_volume(VolumeKind::Custom, &n, &snaps, ty, Some(&meta), w),
    })
    .await
}

/// A volume's snapshots, oldest first (the order of a chain of btrfs
/// differences), by their trees' times, then names.
fn snapshots_oldest_first(p: &Pool, name: &str) -> Result<Vec<String>> {
    let mut snaps = Vec::new();
    for s in p.list_snapshots(VolumeKind::Custom, name) {
        let path = p.snapshot_path(VolumeKind::Custom, name, &s)?;
        snaps.push((tree_time(&path), s));
    }
    snaps.sort();
    Ok(snaps.into_iter().map(|(_, s)| s).collect())
}

fn tree_time(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// The config a received volume gets on pool `p`: the request's; a size
/// the pool cannot enforce (a `dir` pool) is left out, as a local copy
/// leaves it.
fn target_config(p: &Pool, mut config: ConfigMap) -> Result<ConfigMap> {
    config.retain(|_, v| !v.is_empty());
    if p.validate_custom_config(&config).is_err() {
        config.retain(|k, _| !k.starts_with("size"));
    }
    p.validate_custom_config(&config)?;
    Ok(config)
}

/// A volume migration's operation: a task that dials its peer, or a
/// websocket operation whose metadata holds the secrets the peer
/// connects with; cancellable either way.
fn volume_operation(
    engine: &Engine,
    pool: &str,
    name: &str,
    description: &str,
    dial: Option<Peer>,
) -> (Arc<Op>, Connect) {
    let class = match dial {
        Some(_) => OperationClass::Task,
        None => OperationClass::Websocket,
    };
    let op = engine
        .ops
        .create(class, description, volume_resources(pool, name));
    let connect = match dial {
        Some(peer) => Connect::Dial(peer),
        None => {
            let (meta, c) = link::listen(&op);
            op.set_metadata(meta);
            c
        }
    };
    op.set_cancellable();
    (op, connect)
}
