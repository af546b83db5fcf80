//! Custom volumes (`custom/<name>`: storage that instances attach as disk
//! devices and that outlives them) with their metadata, and size limits of
//! any volume.
//!
//! A custom volume's description and config live beside it in
//! `custom-meta/<name>.json`, not inside it: the volume's content belongs to
//! the instances using it.

use std::io::Write;
use std::path::PathBuf;

use kante_api::ConfigMap;
use serde::{Deserialize, Serialize};

use crate::{
    format_size, parse_size, rename_noreplace, validate_volume_name, Pool, Result, Revert,
    StorageError, VolumeKind,
};

/// Where custom volumes' metadata lives in a pool.
pub(crate) const META_DIR: &str = "custom-meta";

/// What a custom volume carries besides its content.
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
        let mut meta = VolumeMeta::default();
        if let Some(n) = size {
            meta.config.insert("size".into(), format_size(n));
        }
        self.create_custom(name, &meta)
    }

    /// A new, empty custom volume with `meta` (its `size` applied as a limit).
    pub fn create_custom(&self, name: &str, meta: &VolumeMeta) -> Result<PathBuf> {
        validate_volume_name(name)?;
        let size = self.validate_custom_config(&meta.config)?;
        let dst = self.volume_path(VolumeKind::Custom, name);
        if dst.exists() {
            return Err(StorageError::Exists(format!("volume {name}")));
        }
        let staging = self.staging_path(VolumeKind::Custom, name);
        let mut revert = self.start_staging(&staging)?;
        self.driver.create_volume(&staging)?;
        if size.is_some_and(|n| n > 0) {
            self.driver.set_volume_size(&staging, size)?;
        }
        // Metadata first: a volume never exists without it.
        self.write_custom_meta(name, meta)?;
        let m = self.custom_meta_path(name);
        revert.add(move || {
            let _ = std::fs::remove_file(&m);
        });
        rename_noreplace(&staging, &dst)?;
        revert.success();
        Ok(dst)
    }

    /// A custom volume's metadata (defaults for a volume that has none).
    pub fn custom_meta(&self, name: &str) -> Result<VolumeMeta> {
        self.existing_volume(VolumeKind::Custom, name)?;
        let p = self.custom_meta_path(name);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| StorageError::Command(format!("reading {}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VolumeMeta::default()),
            Err(e) => Err(StorageError::io(format!("reading {}", p.display()))(e)),
        }
    }

    /// Replaces a custom volume's description and config, applying a `size`
    /// change (an empty or removed `size` lifts the limit).
    pub fn update_custom(&self, name: &str, meta: &VolumeMeta) -> Result<()> {
        let old = self.custom_meta(name)?;
        let size = self.validate_custom_config(&meta.config)?;
        let old_size = self.validate_custom_config(&old.config).unwrap_or(None);
        if size != old_size {
            self.set_volume_size(VolumeKind::Custom, name, size)?;
        }
        let mut meta = meta.clone();
        meta.config.retain(|_, v| !v.is_empty());
        if meta.created_at.is_empty() {
            meta.created_at = old.created_at;
        }
        if let Err(e) = self.write_custom_meta(name, &meta) {
            if size != old_size {
                let _ = self.set_volume_size(VolumeKind::Custom, name, old_size);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Deletes a custom volume, its snapshots and its metadata.
    pub fn delete_custom_volume(&self, name: &str) -> Result<()> {
        self.delete_volume(VolumeKind::Custom, name)?;
        match std::fs::remove_file(self.custom_meta_path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("removing volume metadata")(e)),
        }
    }

    /// Renames a custom volume with its snapshots and metadata.
    pub fn rename_custom_volume(&self, old: &str, new: &str) -> Result<()> {
        self.rename_volume(VolumeKind::Custom, old, new)?;
        let (a, b) = (self.custom_meta_path(old), self.custom_meta_path(new));
        if a.exists() {
            if let Err(e) = std::fs::rename(&a, &b) {
                let _ = self.rename_volume(VolumeKind::Custom, new, old);
                return Err(StorageError::io("renaming volume metadata")(e));
            }
        }
        Ok(())
    }

    pub fn list_custom_volumes(&self) -> Vec<String> {
        self.list_volumes(VolumeKind::Custom)
    }

    pub(crate) fn custom_meta_path(&self, name: &str) -> PathBuf {
        self.base.join(META_DIR).join(format!("{name}.json"))
    }

    /// Writes the metadata file whole (temporary file, then rename).
    pub(crate) fn write_custom_meta(&self, name: &str, meta: &VolumeMeta) -> Result<()> {
        let p = self.custom_meta_path(name);
        let dir = p.parent().expect("metadata path has a parent");
        std::fs::create_dir_all(dir)
            .map_err(StorageError::io(format!("creating {}", dir.display())))?;
        let tmp = dir.join(format!(".{name}.json.tmp"));
        let mut revert = Revert::new();
        let t = tmp.clone();
        revert.add(move || {
            let _ = std::fs::remove_file(&t);
        });
        let body = serde_json::to_vec_pretty(meta)
            .map_err(|e| StorageError::Command(format!("encoding volume metadata: {e}")))?;
        let mut f = std::fs::File::create(&tmp)
            .map_err(StorageError::io(format!("creating {}", tmp.display())))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(StorageError::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &p).map_err(StorageError::io(format!("writing {}", p.display())))?;
        revert.success();
        Ok(())
    }
}
