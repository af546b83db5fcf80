//! `--refresh` between servers (`source.refresh: true` on an instance the
//! target already has, as lxc 5.0.2 sends it): the target compares the
//! source's snapshots with its own (name and creation time), deletes its
//! stale ones, asks for the missing ones, and the trees travel as rsync
//! sessions into the existing volume (`lxd.rs`), so only what changed
//! crosses the link: rsync's file list and the changed files' deltas. The
//! same answer serves an LXD source and a Kante one (which offers `rsync`
//! in field 1000). The instance must be stopped; its record stays, its
//! snapshot records follow the source's.

use std::sync::Arc;

use kante_api::instance::{InstanceStatus, InstancesPost};
use kante_storage::VolumeKind;
use kante_store::SnapshotRow;
use serde_json::json;

use super::link::peer_failed;
use super::link::{self, Control, Link, Peer};
use super::lxd::{rsync_answer, RSYNC};
use super::proto::{self, MigrationControl};
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
        if !offer.kante_types.is_empty() && !offer.kante_types.iter().any(|t| t == RSYNC) {
            return Err(EngineError::NotImplemented(
                "The migration source cannot refresh a copy (it offers no rsync transfer)".into(),
            ));
        }
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
        let answer = rsync_answer(&offer, wanted.clone(), true);
        link::send_msg(&link.control, &answer).await?;
        for s in &stale {
            self.remove_snapshot(name, s).await?;
        }
        if let Err(e) = self
            .receive_trees(op, name, &pool, &offer, &answer, link)
            .await
        {
            // Snapshots made on disk for this refresh have no record yet.
            let (p, n) = (pool.clone(), name.to_string());
            let made: Vec<String> = wanted.iter().map(|s| s.name.clone()).collect();
            let _ = tokio::task::spawn_blocking(move || {
                for s in made {
                    if p.has_snapshot(VolumeKind::Container, &n, &s) {
                        let _ = p.delete_snapshot(VolumeKind::Container, &n, &s);
                    }
                }
            })
            .await;
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
}
