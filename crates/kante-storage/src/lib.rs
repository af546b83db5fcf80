//! Storage pools and their drivers.
//!
//! A pool is a directory tree laid out like LXD's: `images/<fingerprint>`
//! (each image unpacked once), `containers/<name>` (an instance volume: its
//! `rootfs/`, `metadata.yaml`, `templates/` and `backup.yaml`) and
//! `custom/<name>`. Drivers decide how a volume is made from another (copy,
//! reflink, subvolume snapshot); the registry maps a driver name to one.

mod dir;
mod revert;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kante_api::ConfigMap;
use thiserror::Error;

pub use dir::DirDriver;
pub use revert::Revert;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("unknown storage driver {0:?} (supported: {1})")]
    UnknownDriver(String, String),
    #[error("invalid storage pool config: {0}")]
    InvalidConfig(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("filling volume {volume}: {message}")]
    Fill { volume: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Command(String),
}

impl StorageError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let what = what.into();
        move |source| StorageError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Kinds of volume, each with its own directory in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Image,
    Container,
    Custom,
}

impl VolumeKind {
    pub fn dir_name(self) -> &'static str {
        match self {
            VolumeKind::Image => "images",
            VolumeKind::Container => "containers",
            VolumeKind::Custom => "custom",
        }
    }

    /// The name the API uses (`/1.0/storage-pools/p/volumes/<type>/<name>`).
    pub fn api_name(self) -> &'static str {
        match self {
            VolumeKind::Image => "image",
            VolumeKind::Container => "container",
            VolumeKind::Custom => "custom",
        }
    }
}

/// What a driver reports about itself (`storage_supported_drivers`).
#[derive(Debug, Clone)]
pub struct DriverInfo {
    pub name: &'static str,
    pub version: String,
    pub remote: bool,
}

/// How one kind of pool stores its volumes.
pub trait StorageDriver: Send + Sync {
    fn info(&self) -> DriverInfo;
    /// Checks pool config keys this driver understands; others are refused.
    fn validate_config(&self, config: &ConfigMap) -> Result<()>;
    /// Creates the pool at `base` (fills in defaults in `config`).
    fn create_pool(&self, base: &Path, config: &mut ConfigMap) -> Result<()>;
    /// Makes an existing pool usable (at daemon start).
    fn mount_pool(&self, base: &Path, config: &ConfigMap) -> Result<()>;
    fn delete_pool(&self, base: &Path, config: &ConfigMap) -> Result<()>;
    /// Creates an empty volume directory at `path`.
    fn create_volume(&self, path: &Path) -> Result<()>;
    /// Makes `dst` a writable copy of `src` (image → instance, copies).
    fn copy_volume(&self, src: &Path, dst: &Path) -> Result<()>;
    /// Marks a finished image volume read-only (where the driver can).
    fn seal_volume(&self, path: &Path) -> Result<()>;
    fn delete_volume(&self, path: &Path) -> Result<()>;
}

/// The registry of storage drivers by name.
pub fn driver(name: &str) -> Result<Arc<dyn StorageDriver>> {
    match name {
        "dir" => Ok(Arc::new(DirDriver)),
        other => Err(StorageError::UnknownDriver(
            other.into(),
            supported().join(", "),
        )),
    }
}

pub fn supported() -> Vec<&'static str> {
    vec!["dir"]
}

/// A pool the daemon uses: its name, where it lives and its driver.
#[derive(Clone)]
pub struct Pool {
    pub name: String,
    pub base: PathBuf,
    pub config: ConfigMap,
    pub driver: Arc<dyn StorageDriver>,
}

impl Pool {
    pub fn volume_path(&self, kind: VolumeKind, name: &str) -> PathBuf {
        self.base.join(kind.dir_name()).join(name)
    }

    pub fn has_volume(&self, kind: VolumeKind, name: &str) -> bool {
        self.volume_path(kind, name).exists()
    }

    /// Creates an image volume once: `fill` unpacks into a staging directory
    /// which becomes the volume only if it succeeds.
    pub fn create_image_volume(
        &self,
        fingerprint: &str,
        fill: &mut dyn FnMut(&Path) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let dst = self.volume_path(VolumeKind::Image, fingerprint);
        if dst.exists() {
            return Ok(());
        }
        let staging = self
            .base
            .join(VolumeKind::Image.dir_name())
            .join(format!(".staging-{fingerprint}"));
        if staging.exists() {
            self.driver.delete_volume(&staging)?;
        }
        // The image unpacker wants to create its destination itself.
        let mut revert = Revert::new();
        let driver = self.driver.clone();
        let s2 = staging.clone();
        revert.add(move || {
            let _ = driver.delete_volume(&s2);
        });
        fill(&staging).map_err(|message| StorageError::Fill {
            volume: fingerprint.into(),
            message,
        })?;
        self.driver.seal_volume(&staging)?;
        std::fs::rename(&staging, &dst)
            .map_err(StorageError::io(format!("renaming {}", staging.display())))?;
        revert.success();
        Ok(())
    }

    /// A new instance volume from an image volume.
    pub fn create_instance_from_image(&self, fingerprint: &str, instance: &str) -> Result<PathBuf> {
        let src = self.volume_path(VolumeKind::Image, fingerprint);
        if !src.exists() {
            return Err(StorageError::NotFound(format!(
                "image volume {fingerprint}"
            )));
        }
        self.copy_into(&src, VolumeKind::Container, instance)
    }

    /// A new, empty instance volume (`lxc init --empty`).
    pub fn create_instance_empty(&self, instance: &str) -> Result<PathBuf> {
        let dst = self.volume_path(VolumeKind::Container, instance);
        if dst.exists() {
            return Err(StorageError::Exists(format!("volume {instance}")));
        }
        self.driver.create_volume(&dst)?;
        std::fs::create_dir_all(dst.join("rootfs")).map_err(StorageError::io("creating rootfs"))?;
        Ok(dst)
    }

    /// Copies a volume into a new one of `kind` named `name`.
    pub fn copy_into(&self, src: &Path, kind: VolumeKind, name: &str) -> Result<PathBuf> {
        let dst = self.volume_path(kind, name);
        if dst.exists() {
            return Err(StorageError::Exists(format!("volume {name}")));
        }
        let staging = self
            .base
            .join(kind.dir_name())
            .join(format!(".staging-{name}"));
        if staging.exists() {
            self.driver.delete_volume(&staging)?;
        }
        let mut revert = Revert::new();
        let driver = self.driver.clone();
        let s2 = staging.clone();
        revert.add(move || {
            let _ = driver.delete_volume(&s2);
        });
        self.driver.copy_volume(src, &staging)?;
        std::fs::rename(&staging, &dst)
            .map_err(StorageError::io(format!("renaming {}", staging.display())))?;
        revert.success();
        Ok(dst)
    }

    pub fn delete_volume(&self, kind: VolumeKind, name: &str) -> Result<()> {
        let p = self.volume_path(kind, name);
        if !p.exists() {
            return Ok(());
        }
        self.driver.delete_volume(&p)
    }

    pub fn rename_volume(&self, kind: VolumeKind, old: &str, new: &str) -> Result<()> {
        let (a, b) = (self.volume_path(kind, old), self.volume_path(kind, new));
        if b.exists() {
            return Err(StorageError::Exists(format!("volume {new}")));
        }
        std::fs::rename(&a, &b).map_err(StorageError::io(format!("renaming {}", a.display())))
    }

    /// Volume names of one kind (ignoring staging leftovers).
    pub fn list_volumes(&self, kind: VolumeKind) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.base.join(kind.dir_name()))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Removes staging directories left by a crash mid-create.
    pub fn remove_staging_leftovers(&self) {
        for kind in [VolumeKind::Image, VolumeKind::Container, VolumeKind::Custom] {
            if let Ok(rd) = std::fs::read_dir(self.base.join(kind.dir_name())) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(".staging-") {
                        let _ = self.driver.delete_volume(&e.path());
                    }
                }
            }
        }
    }
}

/// Creates the standard sub-directories of a pool.
pub(crate) fn create_layout(base: &Path) -> Result<()> {
    for kind in [VolumeKind::Image, VolumeKind::Container, VolumeKind::Custom] {
        let d = base.join(kind.dir_name());
        std::fs::create_dir_all(&d)
            .map_err(StorageError::io(format!("creating {}", d.display())))?;
    }
    for d in ["containers-snapshots", "custom-snapshots"] {
        let d = base.join(d);
        std::fs::create_dir_all(&d)
            .map_err(StorageError::io(format!("creating {}", d.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
