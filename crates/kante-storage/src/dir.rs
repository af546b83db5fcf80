//! The `dir` driver: volumes are plain directories; copies are made in
//! process by a parallel walk (`copytree`), which clones extents where the
//! filesystem can (btrfs, xfs) and copies otherwise, keeping owners, modes,
//! hard links and xattrs such as file capabilities, as `cp -a` does.

use std::path::Path;

use kante_api::ConfigMap;

use crate::{
    create_layout, in_use_error, volumes_in_use, DriverInfo, Result, StorageDriver, StorageError,
};

pub struct DirDriver;

impl StorageDriver for DirDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: "dir",
            version: "1".into(),
            remote: false,
        }
    }

    fn validate_config(&self, config: &ConfigMap) -> Result<()> {
        for key in config.keys() {
            if key != "source" && !key.starts_with("volume.") && !key.starts_with("user.") {
                return Err(StorageError::InvalidConfig(format!(
                    "unknown key {key:?} for the dir driver"
                )));
            }
        }
        Ok(())
    }

    fn create_pool(&self, base: &Path, config: &mut ConfigMap) -> Result<()> {
        if let Some(src) = config.get("source") {
            let src = Path::new(src);
            if src != base {
                return Err(StorageError::InvalidConfig(format!(
                    "the dir driver keeps its volumes at {}; source {:?} must be that path or unset",
                    base.display(),
                    src
                )));
            }
        }
        if base.exists()
            && std::fs::read_dir(base)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        {
            return Err(StorageError::InvalidConfig(format!(
                "source {} is not empty",
                base.display()
            )));
        }
        create_layout(base)?;
        config.insert("source".into(), base.display().to_string());
        Ok(())
    }

    fn mount_pool(&self, base: &Path, _config: &ConfigMap) -> Result<()> {
        create_layout(base)
    }

    fn delete_pool(&self, base: &Path, _config: &ConfigMap) -> Result<()> {
        crate::background::wait_under(base);
        let used = volumes_in_use(base);
        if !used.is_empty() {
            return Err(in_use_error(base, &used));
        }
        if base.exists() {
            std::fs::remove_dir_all(base)
                .map_err(StorageError::io(format!("removing {}", base.display())))?;
        }
        Ok(())
    }

    fn create_volume(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path)
            .map_err(StorageError::io(format!("creating {}", path.display())))
    }

    fn copy_volume(&self, src: &Path, dst: &Path) -> Result<()> {
        let stats = crate::copytree::copy_tree(src, dst).map_err(|e| StorageError::Io {
            what: format!("copying {} to {}", src.display(), dst.display()),
            source: e,
        })?;
        tracing::debug!(?stats, path = %dst.display(), "copied");
        Ok(())
    }

    fn restore_volume(&self, snapshot: &Path, current: &Path, staging: &Path) -> Result<()> {
        let stats =
            crate::delta::build(snapshot, current, staging).map_err(|e| StorageError::Io {
                what: format!(
                    "restoring {} from {}",
                    current.display(),
                    snapshot.display()
                ),
                source: e,
            })?;
        tracing::debug!(?stats, path = %current.display(), "restored by delta");
        Ok(())
    }

    fn adopt_volume(&self, src: &Path, dst: &Path) -> Result<()> {
        // Same filesystem: a volume is just a directory, so move it.
        crate::rename_noreplace(src, dst)
    }

    fn seal_volume(&self, _path: &Path) -> Result<()> {
        // Plain directories have no cheap read-only switch; the daemon never writes image volumes.
        Ok(())
    }

    fn delete_volume(&self, path: &Path) -> Result<()> {
        match std::fs::remove_dir_all(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::Io {
                what: format!("removing {}", path.display()),
                source: e,
            }),
        }
    }
}
