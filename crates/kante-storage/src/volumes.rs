//! Custom volumes (`custom/<name>`: storage that instances attach as disk
//! devices and that outlives them) and size limits of any volume.
//!
//! A custom volume's description and config are records of the daemon's
//! state, not the pool's; older versions kept them in
//! `custom-meta/<name>.json` beside the volume, which the daemon imports
//! once ([`Pool::legacy_custom_meta`]).

use std::path::PathBuf;

use kante_api::ConfigMap;
use serde::{Deserialize, Serialize};

use crate::{
    format_size, parse_size, rename_noreplace, validate_volume_name, Pool, Result, StorageError,
    VolumeKind,
};

/// Where older versions kept custom volumes' metadata in a pool.
pub(crate) const META_DIR: &str = "custom-meta";

/// What an older version's sidecar says of a custom volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeMeta {
    #[serde(default)]
    pub description: String,
    /// `size` and `user.*` keys.
    #[serde(default)]
    pub config: ConfigMap,
    /// RFC 3339, set by the caller (empty when unknown).
    #[serde(default)]
    pub created_at: String,
}

impl Pool {
    /// Limits a volume's size (btrfs: a qgroup limit on referenced bytes,
    /// quotas being enabled on the pool the first time). `None` (or `Some(0)`)
    /// removes it.
    pub fn set_volume_size(&self, kind: VolumeKind, name: &str, size: Option<u64>) -> Result<()> {
        let p = self.existing_volume(kind, name)?;
        self.driver.set_volume_size(&p, size)
    }

    /// The volume's size limit, if any.
    pub fn volume_size(&self, kind: VolumeKind, name: &str) -> Result<Option<u64>> {
        let p = self.existing_volume(kind, name)?;
        self.driver.volume_size(&p)
    }

    /// Bytes the volume uses, where the driver knows it cheaply (btrfs with quotas).
    pub fn volume_usage(&self, kind: VolumeKind, name: &str) -> Result<Option<u64>> {
        let p = self.existing_volume(kind, name)?;
        self.driver.volume_usage(&p)
    }

    /// Checks a custom volume's config: `size` (a limit the driver must be
    /// able to enforce) and `user.*`; anything else is refused.
    pub fn validate_custom_config(&self, config: &ConfigMap) -> Result<Option<u64>> {
        let mut size = None;
        for (k, v) in config {
            match k.as_str() {
                "size" if v.is_empty() => {}
                "size" => {
                    let n = parse_size(v)?;
                    if n > 0 && self.driver.info().name != "btrfs" {
                        return Err(StorageError::Unsupported(format!(
                            "volume size limits need the btrfs driver (pool {} uses {})",
                            self.name,
                            self.driver.info().name
                        )));
                    }
                    size = Some(n);
                }
                k if k.starts_with("user.") => {}
                k => {
                    return Err(StorageError::InvalidConfig(format!(
                        "unknown custom volume key {k:?} (known: size, user.*)"
                    )))
                }
            }
        }
        Ok(size)
    }

    /// A new, empty custom volume `custom/<name>`, with an optional size limit.
    pub fn create_custom_volume(&self, name: &str, size: Option<u64>) -> Result<PathBuf> {
        validate_volume_name(name)?;
        if let Some(n) = size {
            let mut config = ConfigMap::new();
            config.insert("size".into(), format_size(n));
            self.validate_custom_config(&config)?;
        }
        let dst = self.volume_path(VolumeKind::Custom, name);
        if dst.exists() {
            return Err(StorageError::Exists(format!("volume {name}")));
        }
        let staging = self.staging_path(VolumeKind::Custom, name);
        let revert = self.start_staging(&staging)?;
        self.driver.create_volume(&staging)?;
        if size.is_some_and(|n| n > 0) {
            self.driver.set_volume_size(&staging, size)?;
        }
        rename_noreplace(&staging, &dst)?;
        revert.success();
        Ok(dst)
    }

    /// The path of custom volume `name`; a missing one is `NotFound`.
    pub fn existing_custom(&self, name: &str) -> Result<PathBuf> {
        self.existing_volume(VolumeKind::Custom, name)
    }

    /// Applies a change of a custom volume's config to its content: a
    /// `size` change (an empty or removed `size` lifts the limit). `config`
    /// is checked first; nothing changes if it is refused.
    pub fn resize_custom(&self, name: &str, old: &ConfigMap, config: &ConfigMap) -> Result<()> {
        self.existing_volume(VolumeKind::Custom, name)?;
        let size = self.validate_custom_config(config)?;
        let old_size = self.validate_custom_config(old).unwrap_or(None);
        if size != old_size {
            self.set_volume_size(VolumeKind::Custom, name, size)?;
        }
        Ok(())
    }

    /// Deletes a custom volume and its snapshots.
    pub fn delete_custom_volume(&self, name: &str) -> Result<()> {
        self.delete_volume(VolumeKind::Custom, name)
    }

    /// Renames a custom volume with its snapshots.
    pub fn rename_custom_volume(&self, old: &str, new: &str) -> Result<()> {
        self.rename_volume(VolumeKind::Custom, old, new)
    }

    /// The metadata sidecars older versions kept beside custom volumes
    /// (`custom-meta/<name>.json`), by volume name, for the daemon to move
    /// into its state; [`Pool::drop_legacy_custom_meta`] removes one once
    /// recorded. Unreadable ones are skipped (and stay).
    pub fn legacy_custom_meta(&self) -> Vec<(String, VolumeMeta)> {
        let Ok(entries) = std::fs::read_dir(self.base.join(META_DIR)) else {
            return Vec::new();
        };
        let mut out: Vec<(String, VolumeMeta)> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name = file.strip_suffix(".json")?;
                if name.starts_with('.') {
                    return None;
                }
                let body = std::fs::read(e.path()).ok()?;
                Some((name.to_string(), serde_json::from_slice(&body).ok()?))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Removes the sidecar of custom volume `name` (see
    /// [`Pool::legacy_custom_meta`]).
    pub fn drop_legacy_custom_meta(&self, name: &str) -> Result<()> {
        let p = self.base.join(META_DIR).join(format!("{name}.json"));
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(format!("removing {}", p.display()))(e)),
        }
    }

    pub fn list_custom_volumes(&self) -> Vec<String> {
        self.list_volumes(VolumeKind::Custom)
    }
}
