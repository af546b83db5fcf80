//! Snapshots of instance and custom volumes: read-only point-in-time
//! copies at `<kind>-snapshots/<volume>/<snap>` (btrfs: subvolume snapshots,
//! made in constant time), restore, rename and copies made from them.

use std::path::{Path, PathBuf};

use crate::{
    rename_noreplace, validate_snapshot_name, validate_volume_name, Pool, Result, Revert,
    StorageError, VolumeKind,
};

impl Pool {
    /// `<kind>-snapshots/<volume>` (`None` for images, which have no snapshots).
    pub fn snapshots_dir(&self, kind: VolumeKind, volume: &str) -> Option<PathBuf> {
        kind.snapshots_dir_name()
            .map(|d| self.base.join(d).join(volume))
    }

    /// `<kind>-snapshots/<volume>/<snap>`.
    pub fn snapshot_path(&self, kind: VolumeKind, volume: &str, snap: &str) -> Result<PathBuf> {
        self.snapshots_dir(kind, volume)
            .map(|d| d.join(snap))
            .ok_or_else(|| StorageError::Unsupported("image volumes have no snapshots".into()))
    }

    pub fn has_snapshot(&self, kind: VolumeKind, volume: &str, snap: &str) -> bool {
        self.snapshot_path(kind, volume, snap)
            .map(|p| p.exists())
            .unwrap_or(false)
    }

    /// Takes a read-only snapshot of a volume at `<kind>-snapshots/<volume>/<snap>`.
    pub fn snapshot(&self, kind: VolumeKind, volume: &str, snap: &str) -> Result<PathBuf> {
        let src = self.existing_volume(kind, volume)?;
        self.snapshot_from(&src, kind, volume, snap)
    }

    /// Makes `src` (any volume-shaped directory, e.g. another volume's
    /// snapshot being copied along) the snapshot `snap` of `volume`.
    pub fn snapshot_from(
        &self,
        src: &Path,
        kind: VolumeKind,
        volume: &str,
        snap: &str,
    ) -> Result<PathBuf> {
        self.place_snapshot(kind, volume, snap, |staging| {
            self.driver.snapshot_volume(src, staging)
        })
    }

    /// Makes snapshot `snap` of `volume` from what `fill` puts at a staging
    /// path next to it, renamed into place only when complete.
    pub(crate) fn place_snapshot(
        &self,
        kind: VolumeKind,
        volume: &str,
        snap: &str,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        self.stage_snapshot(kind, volume, snap, fill)?.commit()
    }

    /// Takes snapshot `snap` of `volume` up to its last step: it is made at
    /// its staging path, and [`StagedSnapshot::commit`] renames it into
    /// place. In between the caller records it, so that a crash leaves
    /// either nothing, or a record whose snapshot is still at its staging
    /// path (see [`Pool::interrupted_snapshot`]), never a snapshot with no
    /// record.
    pub fn stage_snapshot_of(
        &self,
        kind: VolumeKind,
        volume: &str,
        snap: &str,
    ) -> Result<StagedSnapshot> {
        let src = self.existing_volume(kind, volume)?;
        self.stage_snapshot(kind, volume, snap, |staging| {
            self.driver.snapshot_volume(&src, staging)
        })
    }

    fn stage_snapshot(
        &self,
        kind: VolumeKind,
        volume: &str,
        snap: &str,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<StagedSnapshot> {
        validate_volume_name(volume)?;
        validate_snapshot_name(snap)?;
        let dst = self.snapshot_path(kind, volume, snap)?;
        if dst.symlink_metadata().is_ok() {
            return Err(StorageError::Exists(format!("snapshot {volume}/{snap}")));
        }
        let dir = dst
            .parent()
            .expect("snapshot path has a parent")
            .to_path_buf();
        let made_dir = !dir.exists();
        std::fs::create_dir_all(&dir)
            .map_err(StorageError::io(format!("creating {}", dir.display())))?;
        let mut revert = Revert::new();
        if made_dir {
            let d = dir.clone();
            revert.add(move || {
                let _ = std::fs::remove_dir(&d);
            });
        }
        let staging = dir.join(format!(".staging-{snap}"));
        revert.merge(self.start_staging(&staging)?);
        self.space_error(fill(&staging), || format!("snapshot {volume}/{snap}"))?;
        Ok(StagedSnapshot {
            staging,
            dst,
            revert,
        })
    }

    /// Makes `volume` equal to its snapshot `snap` again. The restored copy
    /// is built aside and swapped in with one atomic rename, so a failure
    /// leaves the volume as it was; the volume's size limit is kept.
    pub fn restore(&self, kind: VolumeKind, volume: &str, snap: &str) -> Result<()> {
        validate_snapshot_name(snap)?;
        let vol = self.existing_volume(kind, volume)?;
        let src = self.snapshot_path(kind, volume, snap)?;
        if !src.exists() {
            return Err(StorageError::NotFound(format!("snapshot {volume}/{snap}")));
        }
        let staging = self.staging_path(kind, volume);
        let revert = self.start_staging(&staging)?;
        let limit = self.driver.volume_size(&vol)?;
        self.driver.restore_volume(&src, &vol, &staging)?;
        if limit.is_some() {
            self.driver.set_volume_size(&staging, limit)?;
        }
        self.swap_in(&staging, &vol, revert)
    }

    /// Swaps the tree built at `staging` in for `vol` with one atomic
    /// rename (`revert` guards `staging` until then), and removes the old
    /// tree: in the background, or here if it cannot be renamed aside.
    pub(crate) fn swap_in(&self, staging: &Path, vol: &Path, revert: Revert) -> Result<()> {
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            staging,
            nix::fcntl::AT_FDCWD,
            vol,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| StorageError::Io {
            what: format!("swapping {} with {}", staging.display(), vol.display()),
            source: e.into(),
        })?;
        // The staging path now holds the old content: the volume is replaced
        // whether or not deleting it works (a leftover goes at next start).
        // It is renamed aside and removed in the background (see
        // `background`); if the rename fails, it is removed here.
        revert.success();
        let old = crate::aside::replaced_path(staging);
        match rename_noreplace(staging, &old) {
            Ok(()) => crate::background::delete(self.driver.clone(), old),
            Err(_) => {
                if let Err(e) = self.driver.delete_volume(staging) {
                    tracing::warn!(path = %staging.display(), "removing the replaced volume: {e}");
                }
            }
        }
        Ok(())
    }

    /// Deletes a snapshot: set aside first, so it is never half there
    /// under its name.
    pub fn delete_snapshot(&self, kind: VolumeKind, volume: &str, snap: &str) -> Result<()> {
        self.set_aside_snapshot(kind, volume, snap)?.remove()?;
        self.remove_empty_snapshots_dir(kind, volume);
        Ok(())
    }

    /// Removes `volume`'s snapshots directory if no snapshot is left in it.
    pub fn remove_empty_snapshots_dir(&self, kind: VolumeKind, volume: &str) {
        if let Some(dir) = self.snapshots_dir(kind, volume) {
            // Only succeeds once the last snapshot is gone.
            let _ = std::fs::remove_dir(dir);
        }
    }

    pub fn rename_snapshot(
        &self,
        kind: VolumeKind,
        volume: &str,
        old: &str,
        new: &str,
    ) -> Result<()> {
        validate_volume_name(volume)?;
        validate_snapshot_name(old)?;
        validate_snapshot_name(new)?;
        let a = self.snapshot_path(kind, volume, old)?;
        let b = self.snapshot_path(kind, volume, new)?;
        if a.symlink_metadata().is_err() {
            return Err(StorageError::NotFound(format!("snapshot {volume}/{old}")));
        }
        rename_noreplace(&a, &b).map_err(|e| match e {
            StorageError::Exists(_) => StorageError::Exists(format!("snapshot {volume}/{new}")),
            e => e,
        })
    }

    /// Snapshot names of a volume, sorted.
    pub fn list_snapshots(&self, kind: VolumeKind, volume: &str) -> Vec<String> {
        match self.snapshots_dir(kind, volume) {
            Some(d) => self.list_entries(&d, false),
            None => Vec::new(),
        }
    }

    /// A new writable volume `new_name` of `kind` from snapshot `snap` of `volume`.
    pub fn copy_from_snapshot(
        &self,
        kind: VolumeKind,
        volume: &str,
        snap: &str,
        new_name: &str,
    ) -> Result<PathBuf> {
        validate_snapshot_name(snap)?;
        let src = self.snapshot_path(kind, volume, snap)?;
        if !src.exists() {
            return Err(StorageError::NotFound(format!("snapshot {volume}/{snap}")));
        }
        self.copy_into(&src, kind, new_name)
    }
}

/// A snapshot made at its staging path (see [`Pool::stage_snapshot_of`]);
/// dropped without [`StagedSnapshot::commit`], it is deleted again.
#[must_use = "a staged snapshot is deleted unless committed"]
pub struct StagedSnapshot {
    staging: PathBuf,
    dst: PathBuf,
    revert: Revert,
}

impl StagedSnapshot {
    /// Renames the snapshot into place.
    pub fn commit(self) -> Result<PathBuf> {
        rename_noreplace(&self.staging, &self.dst)?;
        self.revert.success();
        Ok(self.dst)
    }
}
