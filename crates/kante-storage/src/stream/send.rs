//! Sending a volume with its snapshots (see the module above): the header,
//! one section per snapshot in the caller's order (each the difference
//! from the one before, for `btrfs`), the volume's section from a
//! read-only copy where the driver makes one cheaply, then the trailer. A
//! section that fails ends the stream with an abort frame carrying the
//! error, so the receiver says why.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::codec::{write_header, write_trailer, SectionWriter};
use super::{MigrationType, StreamHeader, STREAM_VERSION};
use crate::{
    validate_snapshot_name, Pool, Result, StorageDriver, StorageError, VolumeKind, VolumeMeta,
};

/// Prefix of the read-only copies a send takes of a live volume, beside
/// the volumes (a crash leftover, removed at the next start).
pub(crate) const SEND_PREFIX: &str = ".sending-";

/// What a send wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub migration_type: MigrationType,
    /// Sections sent: the snapshots, then the volume.
    pub sections: usize,
    /// Bytes of section data (the framing aside).
    pub bytes: u64,
}

/// Deletes the read-only copy of a live volume, however the send ends.
struct Frozen {
    driver: Arc<dyn StorageDriver>,
    path: PathBuf,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = self.driver.delete_volume(&self.path) {
            tracing::warn!(path = %self.path.display(), "removing a send's copy: {e}");
        }
    }
}

/// A name no other send of this process uses at the same time.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Pool {
    /// The stream types this pool can send volume `name` of `kind` with
    /// `snapshots` as, best first: its driver's types, less those that one
    /// of the trees does not allow (`btrfs` needs every tree to be a
    /// subvolume).
    pub fn send_types(
        &self,
        kind: VolumeKind,
        name: &str,
        snapshots: &[String],
    ) -> Result<Vec<MigrationType>> {
        let trees = self.send_trees(kind, name, snapshots)?;
        Ok(self
            .driver
            .migration_types()
            .into_iter()
            .filter(|t| trees.iter().all(|p| self.driver.can_send(*t, p)))
            .collect())
    }

    /// The stream types this pool receives, best first.
    pub fn receive_types(&self) -> Vec<MigrationType> {
        self.driver.migration_types()
    }

    /// The snapshots' paths, in order, then the volume's; all must exist.
    fn send_trees(
        &self,
        kind: VolumeKind,
        name: &str,
        snapshots: &[String],
    ) -> Result<Vec<PathBuf>> {
        if kind == VolumeKind::Image {
            return Err(StorageError::Unsupported(
                "image volumes are not streamed (images travel as images)".into(),
            ));
        }
        let vol = self.existing_volume(kind, name)?;
        let mut trees = Vec::with_capacity(snapshots.len() + 1);
        for (i, s) in snapshots.iter().enumerate() {
            validate_snapshot_name(s)?;
            if snapshots[..i].contains(s) {
                return Err(StorageError::InvalidName(format!(
                    "snapshot {s:?} is listed twice"
                )));
            }
            let p = self.snapshot_path(kind, name, s)?;
            if p.symlink_metadata().is_err() {
                return Err(StorageError::NotFound(format!("snapshot {name}/{s}")));
            }
            trees.push(p);
        }
        trees.push(vol);
        Ok(trees)
    }

    /// Writes volume `name` of `kind` and its `snapshots` (oldest first:
    /// the order they are received in and, for `btrfs`, the chain of
    /// differences) to `out` as a stream of type `ty` (one that
    /// [`Pool::send_types`] offers and the receiver chose, see
    /// [`negotiate`](super::negotiate)). The header carries the volume's
    /// size limit and, for a custom volume, its description and config as
    /// the caller's state records them (`meta`; the pool keeps no records).
    pub fn send_volume(
        &self,
        kind: VolumeKind,
        name: &str,
        snapshots: &[String],
        ty: MigrationType,
        meta: Option<&VolumeMeta>,
        out: &mut dyn Write,
    ) -> Result<SendReport> {
        self.send_chain(kind, name, None, snapshots, ty, meta, out)
    }

    /// Writes what a receiver holding snapshot `base` of volume `name` (a
    /// copy received from this one, see [`Pool::snapshot_identity`]) lacks:
    /// `snapshots` (oldest first, all newer than `base`), then the volume,
    /// each the difference from the tree before it, starting from `base`.
    /// The receiver updates its copy with [`Pool::receive_refresh`]. Only
    /// for types that send differences (`btrfs`).
    pub fn send_refresh(
        &self,
        kind: VolumeKind,
        name: &str,
        base: &str,
        snapshots: &[String],
        ty: MigrationType,
        out: &mut dyn Write,
    ) -> Result<SendReport> {
        if ty != MigrationType::BtrfsSend {
            return Err(StorageError::Unsupported(format!(
                "a refresh is sent as differences, which {ty} does not make"
            )));
        }
        if snapshots.iter().any(|s| s == base) {
            return Err(StorageError::InvalidName(format!(
                "the base snapshot {base:?} is also listed to send"
            )));
        }
        self.send_chain(kind, name, Some(base), snapshots, ty, None, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_chain(
        &self,
        kind: VolumeKind,
        name: &str,
        base: Option<&str>,
        snapshots: &[String],
        ty: MigrationType,
        meta: Option<&VolumeMeta>,
        out: &mut dyn Write,
    ) -> Result<SendReport> {
        let trees = self.send_trees(kind, name, snapshots)?;
        let base_path = match base {
            Some(b) => Some(self.send_trees(kind, name, &[b.to_string()])?.remove(0)),
            None => None,
        };
        if !self.driver.migration_types().contains(&ty)
            || !trees
                .iter()
                .chain(base_path.iter())
                .all(|p| self.driver.can_send(ty, p))
        {
            return Err(StorageError::Unsupported(format!(
                "volume {name} of pool {} cannot be sent as {ty}",
                self.name
            )));
        }
        let (snaps, vol) = trees.split_at(snapshots.len());
        let vol = &vol[0];
        let header = StreamHeader {
            version: STREAM_VERSION,
            migration_type: ty,
            kind,
            name: name.to_string(),
            snapshots: snapshots.to_vec(),
            size: self.driver.volume_size(vol)?.filter(|n| *n > 0),
            meta: match kind {
                VolumeKind::Custom => meta.cloned(),
                _ => None,
            },
            base: base.map(str::to_string),
        };
        write_header(out, &header)?;
        let mut bytes = 0;
        let mut parent: Option<&Path> = base_path.as_deref();
        for (snap, path) in snapshots.iter().zip(snaps) {
            bytes += self.send_one(ty, path, parent, out, &format!("snapshot {snap}"))?;
            parent = Some(path);
        }
        // The live volume: from a read-only copy of one point in time,
        // where the driver makes one in constant time.
        let copy = self
            .base
            .join(kind.dir_name())
            .join(format!("{SEND_PREFIX}{name}.{}", unique()));
        let frozen = match self.driver.freeze_for_send(vol, &copy)? {
            true => Some(Frozen {
                driver: self.driver.clone(),
                path: copy,
            }),
            false => None,
        };
        let src = frozen.as_ref().map(|f| f.path.as_path()).unwrap_or(vol);
        bytes += self.send_one(ty, src, parent, out, "the volume")?;
        drop(frozen);
        write_trailer(out)?;
        Ok(SendReport {
            migration_type: ty,
            sections: trees.len(),
            bytes,
        })
    }

    /// Writes snapshot `snap` of volume `name` to `out` as the stream of a
    /// volume without snapshots (a new volume made from one snapshot, as
    /// `lxc copy c1/snap0 remote:c2` asks, or `lxc storage volume copy
    /// p/v/snap0 remote:p/v2` with the custom volume's `meta`): a snapshot
    /// never changes, so no copy of it is frozen first.
    pub fn send_snapshot_as_volume(
        &self,
        kind: VolumeKind,
        name: &str,
        snap: &str,
        ty: MigrationType,
        meta: Option<&VolumeMeta>,
        out: &mut dyn Write,
    ) -> Result<SendReport> {
        let trees = self.send_trees(kind, name, &[snap.to_string()])?;
        let path = &trees[0];
        if !self.driver.migration_types().contains(&ty) || !self.driver.can_send(ty, path) {
            return Err(StorageError::Unsupported(format!(
                "snapshot {name}/{snap} of pool {} cannot be sent as {ty}",
                self.name
            )));
        }
        let header = StreamHeader {
            version: STREAM_VERSION,
            migration_type: ty,
            kind,
            name: name.to_string(),
            snapshots: Vec::new(),
            size: self.driver.volume_size(path)?.filter(|n| *n > 0),
            meta: meta.cloned(),
            base: None,
        };
        write_header(out, &header)?;
        let bytes = self.send_one(ty, path, None, out, &format!("snapshot {snap}"))?;
        write_trailer(out)?;
        Ok(SendReport {
            migration_type: ty,
            sections: 1,
            bytes,
        })
    }

    /// Sends one tree as a section; a failure ends the stream with an
    /// abort frame.
    fn send_one(
        &self,
        ty: MigrationType,
        src: &Path,
        parent: Option<&Path>,
        out: &mut dyn Write,
        what: &str,
    ) -> Result<u64> {
        let mut w = SectionWriter::new(out);
        match self.driver.send_section(ty, src, parent, &mut w) {
            Ok(()) => w
                .finish()
                .map_err(StorageError::io("writing the volume stream")),
            Err(e) => {
                w.abort(&format!("{what}: {e}"));
                Err(e)
            }
        }
    }
}
