//! Volumes made from directories unpacked inside the pool (backup imports):
//! a staging directory on the pool's filesystem, then each tree in it is
//! adopted as a volume or snapshot (`dir`: renamed; `btrfs`: a subvolume
//! with cloned extents).

use std::path::{Path, PathBuf};

use crate::{rename_noreplace, validate_volume_name, Pool, Result, StorageError, VolumeKind};

/// Prefix of unpack directories; `.staging-` makes them crash leftovers
/// that [`Pool::remove_staging_leftovers`] removes.
const UNPACK_PREFIX: &str = ".staging-unpack.";

impl Pool {
    /// A fresh, empty plain directory (mode 0700) in the pool's `kind`
    /// directory to unpack into; `tag` names it (any leftover of the same
    /// tag is removed first).
    pub fn create_unpack_dir(&self, kind: VolumeKind, tag: &str) -> Result<PathBuf> {
        validate_volume_name(tag)?;
        let dir = self
            .base
            .join(kind.dir_name())
            .join(format!("{UNPACK_PREFIX}{tag}"));
        if dir.symlink_metadata().is_ok() {
            self.driver.delete_volume(&dir)?;
        }
        std::fs::create_dir(&dir)
            .map_err(StorageError::io(format!("creating {}", dir.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(StorageError::io(format!("chmod {}", dir.display())))?;
        Ok(dir)
    }

    /// Removes a directory made by [`Pool::create_unpack_dir`] (and
    /// whatever is left in it).
    pub fn remove_unpack_dir(&self, dir: &Path) -> Result<()> {
        self.driver.delete_volume(dir)
    }

    /// Makes the directory `src` (inside this pool) the new volume `name`;
    /// `src` may be consumed.
    pub fn adopt_volume(&self, src: &Path, kind: VolumeKind, name: &str) -> Result<PathBuf> {
        validate_volume_name(name)?;
        let dst = self.volume_path(kind, name);
        if dst.symlink_metadata().is_ok() {
            return Err(StorageError::Exists(format!("volume {name}")));
        }
        let staging = self.staging_path(kind, name);
        let revert = self.start_staging(&staging)?;
        let adopted = self.driver.adopt_volume(src, &staging);
        self.space_error(adopted, || format!("volume {name}"))?;
        rename_noreplace(&staging, &dst)?;
        revert.success();
        Ok(dst)
    }

    /// Makes the directory `src` (inside this pool) the read-only snapshot
    /// `snap` of `volume`; `src` may be consumed.
    pub fn adopt_snapshot(
        &self,
        src: &Path,
        kind: VolumeKind,
        volume: &str,
        snap: &str,
    ) -> Result<PathBuf> {
        self.place_snapshot(kind, volume, snap, |staging| {
            self.driver.adopt_volume(src, staging)?;
            self.driver.seal_volume(staging)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirDriver;
    use std::sync::Arc;

    #[test]
    fn adopts_volumes_and_snapshots_and_cleans_the_unpack_dir() {
        let base = std::env::temp_dir().join(format!("kstorage-adopt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        crate::create_layout(&base).unwrap();
        let pool = Pool {
            name: "p".into(),
            base: base.clone(),
            config: Default::default(),
            driver: Arc::new(DirDriver),
        };
        let up = pool.create_unpack_dir(VolumeKind::Container, "c1").unwrap();
        assert!(up
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".staging-"));
        std::fs::create_dir_all(up.join("container/rootfs")).unwrap();
        std::fs::write(up.join("container/rootfs/f"), b"x").unwrap();
        std::fs::create_dir_all(up.join("snap0/rootfs")).unwrap();
        pool.adopt_volume(&up.join("container"), VolumeKind::Container, "c1")
            .unwrap();
        pool.adopt_snapshot(&up.join("snap0"), VolumeKind::Container, "c1", "snap0")
            .unwrap();
        assert_eq!(
            std::fs::read(
                pool.volume_path(VolumeKind::Container, "c1")
                    .join("rootfs/f")
            )
            .unwrap(),
            b"x"
        );
        assert!(pool.has_snapshot(VolumeKind::Container, "c1", "snap0"));
        assert!(matches!(
            pool.adopt_volume(&up, VolumeKind::Container, "c1"),
            Err(StorageError::Exists(_))
        ));
        // A crash leftover goes with the other staging leftovers.
        pool.remove_staging_leftovers();
        assert!(!up.exists());
        assert_eq!(pool.list_volumes(VolumeKind::Container), vec!["c1"]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
