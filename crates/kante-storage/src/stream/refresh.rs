//! Receiving a refresh ([`Pool::send_refresh`] on the other side): an
//! existing volume brought up to date from a snapshot both sides have (the
//! header's `base`), as differences (`btrfs send -p`), so only what changed
//! since that snapshot travels. The new snapshots are received where they
//! stay (the volume's snapshots directory: a read-only subvolume is only
//! renamed within its directory), the volume is received there too and
//! snapshotted writable to its staging path, then swapped in for the old
//! one with one atomic rename; its size limit is kept. Any failure before
//! the swap removes the new snapshots and the staging volume and leaves
//! the volume as it was; a crash leaves only `.staging-`/`.sending-`
//! leftovers, which the next start removes.

use std::io::Read;
use std::time::Instant;

use super::codec::{read_header, read_trailer};
use super::{MigrationType, ReceiveOptions, Received, TreeIdentity};
use crate::{validate_snapshot_name, Pool, Result, StorageError, VolumeKind};

impl Pool {
    /// How snapshot `snap` of `volume` is known to a peer's driver as the
    /// parent of a difference (`None`: this pool does not send or receive
    /// differences, or the snapshot is not a tree it can use).
    pub fn snapshot_identity(
        &self,
        kind: VolumeKind,
        volume: &str,
        snap: &str,
    ) -> Option<TreeIdentity> {
        validate_snapshot_name(snap).ok()?;
        let p = self.snapshot_path(kind, volume, snap).ok()?;
        self.driver.tree_identity(&p)
    }

    /// Receives a refresh stream from `input` into the existing volume
    /// `opts.name` (else the sender's name) of `kind`: all of it, or
    /// nothing changed. The header's base snapshot must exist here and
    /// none of its new snapshots; the caller removed the snapshots the
    /// sender no longer has before.
    pub fn receive_refresh(
        &self,
        input: &mut dyn Read,
        kind: VolumeKind,
        opts: &ReceiveOptions,
    ) -> Result<Received> {
        let header = read_header(input)?;
        if header.kind != kind {
            return Err(StorageError::Stream(format!(
                "a {} volume, where a {} volume is refreshed",
                header.kind.api_name(),
                kind.api_name()
            )));
        }
        if header.migration_type != MigrationType::BtrfsSend {
            return Err(StorageError::Stream(format!(
                "a refresh as {}, which sends no differences",
                header.migration_type
            )));
        }
        let plan = self.plan_receive(&header, opts, true)?;
        let name = plan.name.clone();
        let vol = self.existing_volume(kind, &name)?;
        let dir = self
            .snapshots_dir(kind, &name)
            .ok_or_else(|| StorageError::Unsupported("image volumes have no snapshots".into()))?;
        let staging = self.staging_path(kind, &name);
        let mut revert = self.start_staging(&staging)?;
        let limit = self.driver.volume_size(&vol)?;

        let deadline = plan.limits.timeout.map(|t| Instant::now() + t);
        let mut bytes = 0;
        for snap in &header.snapshots {
            let dst = dir.join(snap);
            {
                let (d, p) = (self.driver.clone(), dst.clone());
                revert.add(move || {
                    if p.symlink_metadata().is_ok() {
                        if let Err(e) = d.delete_volume(&p) {
                            tracing::warn!(path = %p.display(), "removing a refresh's snapshot: {e}");
                        }
                    }
                });
            }
            let what = format!("snapshot {snap}");
            let target = (dir.as_path(), dst.as_path(), true);
            bytes += self.receive_one(&plan, input, target, bytes, deadline, &what)?;
        }
        let target = (dir.as_path(), staging.as_path(), false);
        bytes += self.receive_one(&plan, input, target, bytes, deadline, "the volume")?;
        read_trailer(input)?;

        let missing: Vec<&String> = header
            .snapshots
            .iter()
            .filter(|s| dir.join(s).symlink_metadata().is_err())
            .collect();
        if !missing.is_empty() || staging.symlink_metadata().is_err() {
            return Err(StorageError::Stream(format!(
                "the refresh stream did not make {}",
                if missing.is_empty() {
                    "the volume".to_string()
                } else {
                    format!("the snapshots {missing:?}")
                }
            )));
        }
        if limit.is_some() {
            self.driver.set_volume_size(&staging, limit)?;
        }
        // From the swap on, the new snapshots stay (`revert` is spent).
        self.swap_in(&staging, &vol, revert)?;
        Ok(Received {
            kind,
            name,
            snapshots: header.snapshots,
            migration_type: MigrationType::BtrfsSend,
            size: limit,
            bytes,
            meta: None,
        })
    }
}
