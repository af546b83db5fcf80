//! Migration with a real LXD (5.0) on the other end, which speaks no
//! Kante stream: the tree travels as LXD's rsync transfer (`rsync.rs`),
//! one session per snapshot (oldest first) then one for the volume. A peer
//! is LXD when its header lacks Kante's field 1000.
//!
//! Kante answers and offers index header version 0 (no JSON index frame on
//! `fs`), the rsync features both sides have (never compression unless LXD
//! is older than the negotiation), and no CRIU type for a stopped instance,
//! so LXD expects no final sync. LXD sends its tree shifted by its disk id
//! map (in the header); Kante's storage is unshifted, so each received tree
//! is shifted back (owners, set-id bits and file capabilities kept). A tree
//! Kante sends is unshifted and goes with an empty map, which LXD shifts at
//! the instance's first start.

use kante_storage::shift::{unshift_tree, IdShift};
use kante_storage::{Pool, VolumeKind};

use super::link::peer_failed;
use super::link::{self, Control, Link, Progress};
use super::proto::{self, IdMapType, MigrationHeader, RsyncFeatures};
use super::rsync;
use super::send::What;
use crate::error::{EngineError, Result};
use crate::operations::Op;
use crate::Engine;

/// The rsync features a header settles on (LXD 3.7 and older, without the
/// negotiation, always used these three).
fn features_of(h: &MigrationHeader) -> Vec<&'static str> {
    match &h.rsync_features {
        Some(f) if f.bidirectional == Some(true) => f.names(),
        _ => vec!["xattrs", "delete", "compress"],
    }
}

impl Engine {
    /// The source's side once the target chose rsync (LXD, or a Kante
    /// target refreshing its copy): the trees it asked for, then its verdict.
    pub(super) async fn send_rsync(
        &self,
        op: &Op,
        name: &str,
        what: &What,
        offered: &[String],
        answer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        if answer.fs != proto::FS_RSYNC {
            return Err(EngineError::bad(format!(
                "The LXD migration target chose transfer type {}; Kante sends to LXD with rsync only",
                answer.fs
            )));
        }
        if answer.index_header_version.unwrap_or(0) != 0 {
            return Err(EngineError::bad(
                "The LXD migration target asked for an index header, which was not offered",
            ));
        }
        let features = features_of(answer);
        if !(answer.kante_types.is_empty() || answer.kante_types == [RSYNC]) {
            return Err(EngineError::bad(
                "The migration target chose another transfer",
            ));
        }
        let row = self.instance_row(name).await?;
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let mut progress = Progress::new(op, name);
        match what {
            What::Snapshot(s) => {
                let dir = pool.snapshot_path(VolumeKind::Container, name, s)?;
                rsync::send(link, op, &mut progress, &dir, &features).await?;
            }
            What::Instance { .. } => {
                // A refreshing target names the snapshots it lacks.
                let snaps: Vec<String> = if answer.refresh == Some(true) {
                    answer.snapshot_names.clone()
                } else {
                    offered.to_vec()
                };
                for s in &snaps {
                    if !offered.contains(s) {
                        return Err(EngineError::bad(format!(
                            "The LXD migration target asked for snapshot {s:?}, which was not offered"
                        )));
                    }
                    let dir = pool.snapshot_path(VolumeKind::Container, name, s)?;
                    rsync::send(link, op, &mut progress, &dir, &features).await?;
                }
                let dir = pool.volume_path(VolumeKind::Container, name);
                rsync::send(link, op, &mut progress, &dir, &features).await?;
            }
        }
        progress.finish();
        match link::recv_control(&mut link.control, op).await? {
            Control::Done(c) if c.success => Ok(()),
            Control::Done(c) => Err(peer_failed(&c)),
            Control::Header(_) => Err(EngineError::bad(
                "The migration target sent a header instead of its verdict",
            )),
        }
    }

    /// The target's side of LXD's offer: the answer, then each snapshot
    /// received into the new volume and snapshotted, then the volume (and
    /// a final pass when LXD sends a running instance's last changes).
    pub(super) async fn receive_from_lxd(
        &self,
        op: &Op,
        name: &str,
        pool: &Pool,
        offer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        let answer = rsync_answer(offer, offer.snapshots.clone(), false);
        link::send_msg(&link.control, &answer).await?;
        {
            let (p, n) = (pool.clone(), name.to_string());
            blocking(move || Ok(p.create_instance_empty(&n)?)).await?;
        }
        self.receive_trees(op, name, pool, offer, &answer, link)
            .await
    }

    /// The trees the answer asked for, over rsync, into the volume `name`
    /// (which exists): each snapshot received into it then snapshotted,
    /// then the volume itself; each shifted back by the offer's id map.
    pub(super) async fn receive_trees(
        &self,
        op: &Op,
        name: &str,
        pool: &Pool,
        offer: &MigrationHeader,
        answer: &MigrationHeader,
        link: &mut Link,
    ) -> Result<()> {
        let features = features_of(answer);
        let final_sync = answer.criu == Some(proto::CRIU_NONE);
        let idmap = shifts(&offer.idmap);
        let dir = pool.volume_path(VolumeKind::Container, name);
        let mut progress = Progress::new(op, name);
        for s in &answer.snapshot_names {
            rsync::receive(link, op, &mut progress, &dir, &features).await?;
            let (p, n, s, d, m) = (
                pool.clone(),
                name.to_string(),
                s.clone(),
                dir.clone(),
                idmap.clone(),
            );
            blocking(move || {
                unshift_tree(&d, &m)?;
                p.snapshot(VolumeKind::Container, &n, &s)?;
                Ok(())
            })
            .await?;
        }
        rsync::receive(link, op, &mut progress, &dir, &features).await?;
        if final_sync {
            rsync::receive(link, op, &mut progress, &dir, &features).await?;
        }
        progress.finish();
        blocking(move || Ok(unshift_tree(&dir, &idmap)?)).await?;
        Ok(())
    }
}

/// A target's answer to an rsync transfer: LXD's terms (features both
/// have, no index frame, a final sync only for a running source), the
/// snapshots it wants; `refresh` tells the source to send only those. A
/// Kante source (its offer has field 1000) is told `rsync` there.
pub(super) fn rsync_answer(
    offer: &MigrationHeader,
    snapshots: Vec<proto::Snapshot>,
    refresh: bool,
) -> MigrationHeader {
    let final_sync = offer.criu == Some(proto::CRIU_NONE);
    MigrationHeader {
        fs: proto::FS_RSYNC,
        criu: final_sync.then_some(proto::CRIU_NONE),
        snapshot_names: snapshots.iter().map(|s| s.name.clone()).collect(),
        snapshots,
        predump: Some(false),
        rsync_features: Some(RsyncFeatures::common(offer.rsync_features.as_ref())),
        refresh: Some(refresh),
        index_header_version: Some(0),
        kante_types: if offer.kante_types.is_empty() {
            Vec::new()
        } else {
            vec![RSYNC.to_string()]
        },
        ..Default::default()
    }
}

/// Kante's name for the rsync transfer in field 1000 (offered last by a
/// Kante source; chosen by a target only to refresh).
pub(super) const RSYNC: &str = "rsync";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// LXD's disk id map as kante-storage shifts trees by it.
fn shifts(map: &[IdMapType]) -> Vec<IdShift> {
    map.iter()
        .map(|m| IdShift {
            uid: m.isuid,
            gid: m.isgid,
            host: m.hostid as u32,
            ns: m.nsid as u32,
            range: m.maprange as u32,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_lxd_without_negotiation_means_compression() {
        let h = MigrationHeader::default();
        assert_eq!(features_of(&h), vec!["xattrs", "delete", "compress"]);
        let h = MigrationHeader {
            rsync_features: Some(RsyncFeatures::common(Some(&RsyncFeatures {
                xattrs: Some(true),
                delete: Some(true),
                compress: Some(true),
                bidirectional: Some(true),
            }))),
            ..Default::default()
        };
        // Kante never asks for compression.
        assert_eq!(features_of(&h), vec!["xattrs", "delete", "bidirectional"]);
    }
}
