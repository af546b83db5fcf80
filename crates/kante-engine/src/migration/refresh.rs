//! `--refresh` between servers (`source.refresh: true` on an instance the
//! target already has, as lxc 5.0.2 sends it): the target compares the
//! source's snapshots with its own (name and creation time), deletes its
//! stale ones and asks for the missing ones. Between two btrfs pools whose
//! copy of a common snapshot was received from the source's (the tree
//! identities of field 1001 match), the target names that snapshot as the
//! base and the rest travels as `btrfs send -p` differences from it
//! (`Pool::receive_refresh`: the new volume swapped in atomically), so only
//! the changed blocks cross the link. Otherwise the trees travel as rsync
//! sessions into the existing volume (`lxd.rs`): rsync's file list and the
//! changed files' deltas. The rsync answer serves an LXD source and a Kante
//! one (which offers `rsync` in field 1000). The instance must be stopped;
//! its record stays, its snapshot records follow the source's.

use std::sync::Arc;

use kante_api::instance::{InstanceStatus, InstancesPost};
use kante_storage::{MigrationType, ReceiveOptions, VolumeKind};
use kante_store::SnapshotRow;
use serde_json::json;

use super::link::peer_failed;
use super::link::{self, Control, Link, Peer};
use super::lxd::{rsync_answer, RSYNC};
use super::proto::{self, MigrationControl, MigrationHeader};
use super::pump::stream_in;
use super::records::snapshot_row;
use crate::error::{EngineError, Result};
use crate::instance::files;
use crate::operations::Op;
use crate::Engine;

/// A snapshot record's creation time as the source's message carries it.
fn created_secs(row: &SnapshotRow) -> Option<i64> {
    let t = crate::util::parse_time(&row.created_at).timestamp();
    (t > 0).then_some(t)
}

impl Engine {
    /// Starts the target's side of a refresh of the existing `req.name`,
    /// dialing `dial` (pull) or listening (push, relay).
    pub(super) async fn migration_refresh(
        &self,
        req: &InstancesPost,
        dial: Option<Peer>,
    ) -> Result<Arc<Op>> {
        let name = req.name.clone();
        self.require_stopped_for_refresh(&name)?;
        let (op, connect) = link::target_operation(&self.ops, &name, "Refreshing instance", dial);
        let (engine, op2) = (self.arc(), op.clone());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&name);
            let _g = lock.lock().await;
            let mut link = connect.link(&op2).await?;
            let r = engine.refresh_from(&op2, &name, &mut link).await;
            let verdict = match &r {
                Ok(()) => MigrationControl::ok(),
                Err(e) => MigrationControl::failed(&e.to_string()),
            };
            let _ = link::send_msg(&link.control, &verdict).await;
            r
        });
        Ok(op)
    }

    fn require_stopped_for_refresh(&self, name: &str) -> Result<()> {
        if self.instance_status(name) != InstanceStatus::Stopped {
            return Err(EngineError::bad(format!(
                "Instance {name:?} is not stopped: stop it before refreshing it"
            )));
        }
        Ok(())
    }

    async fn refresh_from(&self, op: &Op, name: &str, link: &mut Link) -> Result<()> {
        let offer = match link::recv_control(&mut link.control, op).await? {
            Control::Header(h) => h,
            Control::Done(c) => return Err(peer_failed(&c)),
        };
        self.require_stopped_for_refresh(name)?;
        let row = self.instance_row(name).await?;
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let have = self.node.snapshot_list(name).await?;
        let same = |t: &SnapshotRow, s: &proto::Snapshot| {
            t.name == s.name && created_secs(t) == s.creation_date
        };
        let stale: Vec<String> = have
            .iter()
            .filter(|t| !offer.snapshots.iter().any(|s| same(t, s)))
            .map(|t| t.name.clone())
            .collect();
        let wanted: Vec<proto::Snapshot> = offer
            .snapshots
            .iter()
            .filter(|s| !have.iter().any(|t| same(t, s)))
            .cloned()
            .collect();
        let base = self.btrfs_base(&pool, name, &offer, &wanted).await?;
        if base.is_none()
            && !offer.kante_types.is_empty()
            && !offer.kante_types.iter().any(|t| t == RSYNC)
        {
            return Err(EngineError::NotImplemented(
                "The migration source cannot refresh a copy (it offers no rsync transfer)".into(),
            ));
        }
        let answer = match &base {
            Some(b) => MigrationHeader {
                fs: proto::FS_RSYNC,
                criu: Some(proto::CRIU_NONE),
                snapshot_names: wanted.iter().map(|s| s.name.clone()).collect(),
                snapshots: wanted.clone(),
                refresh: Some(true),
                kante_types: vec![MigrationType::BtrfsSend.name().to_string()],
                kante_base: Some(b.clone()),
                ..Default::default()
            },
            None => rsync_answer(&offer, wanted.clone(), true),
        };
        link::send_msg(&link.control, &answer).await?;
        for s in &stale {
            self.remove_snapshot(name, s).await?;
        }
        // A wanted snapshot on disk without its record is what a crashed
        // refresh left: it goes before it is received again.
        unrecorded_gone(&pool, name, &answer.snapshot_names).await?;
        if base.is_some() {
            let opts = ReceiveOptions {
                name: Some(name.to_string()),
                accept: vec![MigrationType::BtrfsSend],
                size: None,
                limits: None,
            };
            let p = pool.clone();
            let got = stream_in(op, name, link, move |r| {
                p.receive_refresh(r, VolumeKind::Container, &opts)
            })
            .await?;
            if got.snapshots != answer.snapshot_names {
                return Err(EngineError::bad(
                    "The refresh stream's snapshots are not those asked for",
                ));
            }
            tracing::info!(
                instance = name,
                bytes = got.bytes,
                "instance refreshed as btrfs differences"
            );
        } else if let Err(e) = self
            .receive_trees(op, name, &pool, &offer, &answer, link)
            .await
        {
            // Snapshots made on disk for this refresh have no record yet.
            if let Err(left) = unrecorded_gone(&pool, name, &answer.snapshot_names).await {
                tracing::warn!(
                    instance = name,
                    "removing a failed refresh's snapshots: {left}"
                );
            }
            return Err(e);
        }
        for s in &wanted {
            self.node
                .snapshot_create(&snapshot_row(name, &row, s))
                .await?;
        }
        let rootfs = pool.volume_path(VolumeKind::Container, name).join("rootfs");
        files::write_hostname(&rootfs, name)?;
        self.write_backup_file(&row).await;
        self.events.lifecycle(
            "instance-updated",
            &format!("/1.0/instances/{name}"),
            json!({}),
        );
        Ok(())
    }

    /// The snapshot this copy can be refreshed from as `btrfs` differences
    /// (see [`btrfs_base`]), if both sides' pools send them.
    async fn btrfs_base(
        &self,
        pool: &kante_storage::Pool,
        name: &str,
        offer: &MigrationHeader,
        wanted: &[proto::Snapshot],
    ) -> Result<Option<String>> {
        let ty = MigrationType::BtrfsSend;
        if !offer.kante_types.iter().any(|t| t == ty.name()) {
            return Ok(None);
        }
        let (p, n, offer, wanted) = (
            pool.clone(),
            name.to_string(),
            offer.snapshots.clone(),
            wanted.to_vec(),
        );
        Ok(tokio::task::spawn_blocking(move || {
            if !p.receive_types().contains(&ty)
                || !p
                    .send_types(VolumeKind::Container, &n, &[])
                    .is_ok_and(|t| t.contains(&ty))
            {
                return None;
            }
            btrfs_base(&offer, &wanted, &|s| {
                p.snapshot_identity(VolumeKind::Container, &n, s)
                    .and_then(|i| i.received_as)
            })
        })
        .await?)
    }
}

/// Deletes from the pool whichever of snapshots `names` of instance `name`
/// are on disk (they have no record: made by this refresh, or left by one
/// that crashed).
async fn unrecorded_gone(pool: &kante_storage::Pool, name: &str, names: &[String]) -> Result<()> {
    let (p, n, names) = (pool.clone(), name.to_string(), names.to_vec());
    tokio::task::spawn_blocking(move || {
        for s in names {
            if p.has_snapshot(VolumeKind::Container, &n, &s) {
                p.delete_snapshot(VolumeKind::Container, &n, &s)?;
            }
        }
        Ok::<_, kante_storage::StorageError>(())
    })
    .await??;
    Ok(())
}

/// The snapshot a refresh can start its `btrfs` differences from: of the
/// snapshots older than the first one the target lacks (`wanted`), the
/// newest whose copy here was received from the source's own (what
/// `received_as` says of it here is what the source says of it).
fn btrfs_base(
    offer: &[proto::Snapshot],
    wanted: &[proto::Snapshot],
    received_as: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let first_wanted = offer
        .iter()
        .position(|s| wanted.iter().any(|w| w.name == s.name))
        .unwrap_or(offer.len());
    offer[..first_wanted]
        .iter()
        .rev()
        .find(|s| s.kante_tree.is_some() && s.kante_tree == received_as(&s.name))
        .map(|s| s.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, tree: Option<&str>) -> proto::Snapshot {
        proto::Snapshot {
            name: name.into(),
            kante_tree: tree.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_base_is_the_newest_received_copy_before_what_is_missing() {
        let offer = [
            snap("s0", Some("a:1")),
            snap("s1", Some("b:2")),
            snap("s2", Some("c:3")),
        ];
        let here = |s: &str| match s {
            "s0" => Some("a:1".to_string()),
            "s1" => Some("b:2".to_string()),
            _ => None,
        };
        // s2 missing: s1 is the base.
        assert_eq!(btrfs_base(&offer, &offer[2..], &here), Some("s1".into()));
        // Nothing missing: the newest received copy, s1 (s2 is not here).
        assert_eq!(btrfs_base(&offer, &[], &here), Some("s1".into()));
        // s1 missing: only s0 can be the base.
        assert_eq!(btrfs_base(&offer, &offer[1..2], &here), Some("s0".into()));
        // A copy received from another tree (identity differs) is no base.
        let other = |s: &str| (s == "s1").then(|| "x:9".to_string());
        assert_eq!(btrfs_base(&offer, &offer[2..], &other), None);
        // A source on another driver names no trees.
        let plain = [snap("s0", None)];
        assert_eq!(btrfs_base(&plain, &[], &|_| None), None);
        // Everything missing: no base.
        assert_eq!(btrfs_base(&offer, &offer, &here), None);
    }
}
