//! Storage pools and their drivers.
//!
//! A pool is a directory tree laid out like LXD's: `images/<fingerprint>`
//! (each image unpacked once), `containers/<name>` (an instance volume: its
//! `rootfs/`, `metadata.yaml`, `templates/` and `backup.yaml`),
//! `custom/<name>`, and the read-only snapshots of instance and custom
//! volumes in `containers-snapshots/<name>/<snap>` and
//! `custom-snapshots/<name>/<snap>`. Drivers decide how a volume is made from
//! another (copy, reflink, subvolume snapshot); the registry maps a driver
//! name to one.
//!
//! Everything that creates a volume builds it under a `.staging-<name>`
//! sibling and renames it into place only when complete, and everything
//! that deletes one first renames it aside to `.deleting-<name>` (see
//! [`Pool::set_aside`]), so a failure (or a crash: see
//! [`Pool::remove_staging_leftovers`]) never leaves half a volume under a
//! volume's name.

mod adopt;
mod aside;
pub mod background;
pub(crate) mod btrfs;
mod btrfs_ioctl;
mod child;
pub mod copytree;
pub mod delta;
mod dir;
mod fileops;
mod loopdev;
#[cfg(any(test, feature = "testing"))]
pub mod mock;
mod mounts;
mod registry;
mod revert;
pub mod rsync;
pub mod shift;
mod snapshots;
pub mod stream;
mod volumes;
mod writers;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kante_api::ConfigMap;
use thiserror::Error;

pub use aside::Aside;
pub use btrfs::BtrfsDriver;
pub use child::dies_with_daemon;
pub use dir::DirDriver;
pub use kante_images::Limits;
pub use kante_syntax::{format_size, parse_size};
pub use registry::Registry;
pub use revert::Revert;
pub use snapshots::StagedSnapshot;
pub use stream::{
    negotiate, MigrationType, ReceiveOptions, SectionTarget, StreamHeader, TreeIdentity,
};
pub use volumes::VolumeMeta;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("unknown storage driver {0:?} (supported: {1})")]
    UnknownDriver(String, String),
    #[error("invalid storage pool config: {0}")]
    InvalidConfig(String),
    /// A volume or snapshot name that cannot be used (HTTP 400).
    #[error("{0}")]
    InvalidName(String),
    /// The pool (or volume) still has users: volumes, snapshots (HTTP 400).
    #[error("{0}")]
    InUse(String),
    /// The driver cannot do this (e.g. size limits on `dir`) (HTTP 400).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The pool's filesystem (or a quota) ran out of room part way (HTTP 507).
    #[error("not enough space on storage pool {pool:?} for {what}")]
    NoSpace { pool: String, what: String },
    /// The caller's fill of a new image volume failed; its error is the source.
    #[error("filling volume {volume}: {source}")]
    Fill {
        volume: String,
        #[source]
        source: FillError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Command(String),
    /// A volume stream that is cut, corrupt, aborted by its sender or
    /// refused (an escaping name, an unexpected entry, past a cap).
    #[error("volume stream: {0}")]
    Stream(String),
}

/// What a fill callback (see [`Pool::create_image_volume`]) fails with.
pub type FillError = Box<dyn std::error::Error + Send + Sync>;

impl StorageError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let what = what.into();
        move |source| StorageError::Io { what, source }
    }
}

/// Whether a failure's text is the kernel's ENOSPC or EDQUOT, as an I/O
/// error or a tool (cp, tar, btrfs) words it; GNU tar says "Wrote only N
/// of M bytes" when a write came up short, which a full disk makes it do.
pub fn is_out_of_space(text: &str) -> bool {
    [
        "No space left on device",
        "Disk quota exceeded",
        "Wrote only ",
    ]
    .iter()
    .any(|s| text.contains(s))
}

impl From<kante_syntax::SyntaxError> for StorageError {
    fn from(e: kante_syntax::SyntaxError) -> Self {
        StorageError::InvalidConfig(e.0)
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Kinds of volume, each with its own directory in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

    /// Where this kind's snapshots live (`None`: images have no snapshots).
    pub fn snapshots_dir_name(self) -> Option<&'static str> {
        match self {
            VolumeKind::Image => None,
            VolumeKind::Container => Some("containers-snapshots"),
            VolumeKind::Custom => Some("custom-snapshots"),
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
///
/// Paths given to the volume methods are inside the pool's base directory
/// (mounted by `mount_pool`); a volume is a directory (`dir`) or a subvolume
/// (`btrfs`) holding the volume's files.
pub trait StorageDriver: Send + Sync {
    fn info(&self) -> DriverInfo;
    /// Checks pool config keys this driver understands; others are refused.
    fn validate_config(&self, config: &ConfigMap) -> Result<()>;
    /// Creates the pool at `base` (fills in defaults in `config`, which the
    /// caller stores and hands back to `mount_pool` and `delete_pool`).
    fn create_pool(&self, base: &Path, config: &mut ConfigMap) -> Result<()>;
    /// Makes an existing pool usable (at daemon start). Idempotent.
    fn mount_pool(&self, base: &Path, config: &ConfigMap) -> Result<()>;
    /// Removes the pool: refused ([`StorageError::InUse`]) while instance or
    /// custom volumes (or their snapshots) exist; image volumes, being caches
    /// of the image store, are deleted with the pool.
    fn delete_pool(&self, base: &Path, config: &ConfigMap) -> Result<()>;
    /// Creates an empty volume at `path`.
    fn create_volume(&self, path: &Path) -> Result<()>;
    /// Makes `dst` a writable copy of `src` (image → instance, copies).
    fn copy_volume(&self, src: &Path, dst: &Path) -> Result<()>;
    /// Makes `staging` (not yet there) a writable copy of `snapshot` that
    /// is to replace the volume `current`: a driver may take what is
    /// unchanged from `current` (`dir` hard-links equal files) instead of
    /// copying it. `current` is left as it is. The default copies.
    fn restore_volume(&self, snapshot: &Path, _current: &Path, staging: &Path) -> Result<()> {
        self.copy_volume(snapshot, staging)
    }
    /// Marks a finished image volume read-only (where the driver can).
    fn seal_volume(&self, path: &Path) -> Result<()>;
    fn delete_volume(&self, path: &Path) -> Result<()>;

    /// Makes the plain directory `src` (inside this pool, e.g. unpacked from
    /// a backup) the volume `dst`; `src` may be consumed. The default copies
    /// it into a new volume (btrfs: a subvolume, extents cloned).
    fn adopt_volume(&self, src: &Path, dst: &Path) -> Result<()> {
        self.copy_volume(src, dst)
    }

    /// Makes `dst` a read-only (where the driver can) point-in-time copy of `src`.
    fn snapshot_volume(&self, src: &Path, dst: &Path) -> Result<()> {
        self.copy_volume(src, dst)?;
        self.seal_volume(dst)
    }

    /// Limits the space volume `path` may use (`None` or `Some(0)` removes
    /// the limit).
    fn set_volume_size(&self, _path: &Path, size: Option<u64>) -> Result<()> {
        match size {
            None | Some(0) => Ok(()),
            Some(_) => Err(StorageError::Unsupported(format!(
                "size limits need the btrfs driver (this pool uses {})",
                self.info().name
            ))),
        }
    }

    /// The size limit of volume `path`, if it has one.
    fn volume_size(&self, _path: &Path) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Bytes used by volume `path`, where the driver knows it cheaply.
    fn volume_usage(&self, _path: &Path) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The volume stream types this driver sends and receives, best first
    /// (see [`stream`]). Every driver handles [`MigrationType::Tar`].
    fn migration_types(&self) -> Vec<MigrationType> {
        vec![MigrationType::Tar]
    }

    /// Whether the tree at `path` (a volume or a snapshot) can be sent as `ty`.
    fn can_send(&self, ty: MigrationType, _path: &Path) -> bool {
        ty == MigrationType::Tar
    }

    /// Makes `dst` a read-only point-in-time copy of the live volume `src`
    /// to send from, if the driver makes one in constant time (btrfs);
    /// `false`: none was made, and the live tree is sent.
    fn freeze_for_send(&self, _src: &Path, _dst: &Path) -> Result<bool> {
        Ok(false)
    }

    /// How the tree at `path` is known as the parent of a difference, for
    /// drivers that send differences (btrfs); `None` elsewhere.
    fn tree_identity(&self, _path: &Path) -> Option<stream::TreeIdentity> {
        None
    }

    /// Writes the tree at `src` as one section of type `ty`. `parent` is
    /// the tree sent before it in the same stream (the previous snapshot),
    /// for types that send differences.
    fn send_section(
        &self,
        ty: MigrationType,
        src: &Path,
        _parent: Option<&Path>,
        out: &mut dyn Write,
    ) -> Result<()> {
        match ty {
            MigrationType::Tar => stream::send_tar_section(src, out),
            other => Err(stream::unsupported(self.info().name, other)),
        }
    }

    /// Receives one section of type `ty` from `input` (read to its end)
    /// as the new volume or snapshot `target.dst`.
    fn receive_section(
        &self,
        ty: MigrationType,
        input: &mut dyn Read,
        target: &SectionTarget,
    ) -> Result<()> {
        match ty {
            MigrationType::Tar => stream::receive_tar_section(self, input, target),
            other => Err(stream::unsupported(self.info().name, other)),
        }
    }
}

/// The built-in driver called `name` (see [`Registry::builtin`]).
pub fn driver(name: &str) -> Result<Arc<dyn StorageDriver>> {
    Registry::builtin().get(name)
}

/// The names of the built-in drivers.
pub fn supported() -> Vec<&'static str> {
    Registry::builtin().names()
}

/// Checks a volume name: not empty, at most 255 bytes, no `/`, no
/// whitespace or control characters, and no leading `.` (names starting
/// with a dot are reserved for staging).
pub fn validate_volume_name(name: &str) -> Result<()> {
    check_name("volume", name)?;
    if name.starts_with('.') {
        return Err(StorageError::InvalidName(format!(
            "invalid volume name {name:?}: must not start with '.'"
        )));
    }
    Ok(())
}

/// Checks a snapshot name: not empty, not `.` or `..`, at most 255 bytes, no
/// `/`, no whitespace or control characters, no leading `.`.
pub fn validate_snapshot_name(name: &str) -> Result<()> {
    check_name("snapshot", name)?;
    if name.starts_with('.') {
        return Err(StorageError::InvalidName(format!(
            "invalid snapshot name {name:?}: must not start with '.'"
        )));
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(StorageError::InvalidName(format!(
            "invalid {what} name {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name == "." || name == ".." {
        return bad("must not be '.' or '..'");
    }
    if name.len() > 255 {
        return bad("must be at most 255 bytes");
    }
    if name.contains('/') {
        return bad("must not contain '/'");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    Ok(())
}

/// Where a fill callback writes inside a fresh staging volume (its content
/// is then moved to the volume's top level).
const FILL_DIR: &str = ".kante-fill";

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

    /// `r`, with a failure that came from this pool filling up said so:
    /// [`StorageError::NoSpace`] for `what` (the tool's noise dropped).
    pub fn space_error<T>(&self, r: Result<T>, what: impl FnOnce() -> String) -> Result<T> {
        r.map_err(|e| {
            if is_out_of_space(&e.to_string()) {
                StorageError::NoSpace {
                    pool: self.name.clone(),
                    what: what(),
                }
            } else {
                e
            }
        })
    }

    /// Brings the pool online (the driver's `mount_pool`; idempotent).
    pub fn mount(&self) -> Result<()> {
        self.driver.mount_pool(&self.base, &self.config)
    }

    /// Creates an image volume once: `fill` unpacks into a path that does not
    /// exist yet (inside a fresh staging volume); the result becomes the
    /// volume, sealed read-only, only if it succeeds.
    pub fn create_image_volume(
        &self,
        fingerprint: &str,
        fill: &mut dyn FnMut(&Path) -> std::result::Result<(), FillError>,
    ) -> Result<()> {
        validate_volume_name(fingerprint)?;
        let dst = self.volume_path(VolumeKind::Image, fingerprint);
        if dst.exists() {
            return Ok(());
        }
        let staging = self.staging_path(VolumeKind::Image, fingerprint);
        let revert = self.start_staging(&staging)?;
        let made = (|| {
            self.driver.create_volume(&staging)?;
            // The image unpacker wants to create its destination itself, and the
            // volume (a subvolume on btrfs) must exist first: fill a directory
            // inside it, then move what it made to the volume's top level.
            let target = staging.join(FILL_DIR);
            fill(&target).map_err(|source| StorageError::Fill {
                volume: fingerprint.into(),
                source,
            })?;
            hoist(&target, &staging)?;
            self.driver.seal_volume(&staging)
        })();
        self.space_error(made, || format!("image {fingerprint}"))?;
        rename_noreplace(&staging, &dst)?;
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
        validate_volume_name(instance)?;
        let dst = self.volume_path(VolumeKind::Container, instance);
        if dst.exists() {
            return Err(StorageError::Exists(format!("volume {instance}")));
        }
        let staging = self.staging_path(VolumeKind::Container, instance);
        let revert = self.start_staging(&staging)?;
        self.driver.create_volume(&staging)?;
        std::fs::create_dir_all(staging.join("rootfs"))
            .map_err(StorageError::io("creating rootfs"))?;
        rename_noreplace(&staging, &dst)?;
        revert.success();
        Ok(dst)
    }

    /// Copies a volume (or a snapshot: any volume-shaped directory) into a
    /// new one of `kind` named `name`.
    pub fn copy_into(&self, src: &Path, kind: VolumeKind, name: &str) -> Result<PathBuf> {
        validate_volume_name(name)?;
        let dst = self.volume_path(kind, name);
        if dst.exists() {
            return Err(StorageError::Exists(format!("volume {name}")));
        }
        let staging = self.staging_path(kind, name);
        let revert = self.start_staging(&staging)?;
        let copied = self.driver.copy_volume(src, &staging);
        self.space_error(copied, || format!("volume {name}"))?;
        rename_noreplace(&staging, &dst)?;
        revert.success();
        Ok(dst)
    }

    /// Deletes a volume and its snapshots (a missing volume is no error):
    /// set aside first, so it is never half there under its name.
    pub fn delete_volume(&self, kind: VolumeKind, name: &str) -> Result<()> {
        self.set_aside(kind, name)?.remove()
    }

    /// Renames a volume and its snapshots directory.
    pub fn rename_volume(&self, kind: VolumeKind, old: &str, new: &str) -> Result<()> {
        validate_volume_name(new)?;
        let (a, b) = (self.volume_path(kind, old), self.volume_path(kind, new));
        if b.exists() {
            return Err(StorageError::Exists(format!("volume {new}")));
        }
        if a.symlink_metadata().is_err() {
            return Err(StorageError::NotFound(format!("volume {old}")));
        }
        rename_noreplace(&a, &b)?;
        if let (Some(sa), Some(sb)) = (self.snapshots_dir(kind, old), self.snapshots_dir(kind, new))
        {
            if sa.exists() {
                if let Err(e) = rename_noreplace(&sa, &sb) {
                    let _ = std::fs::rename(&b, &a);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Volume names of one kind (ignoring staging leftovers).
    pub fn list_volumes(&self, kind: VolumeKind) -> Vec<String> {
        self.list_entries(&self.base.join(kind.dir_name()), false)
    }

    /// Stops the processes still working in this pool's leftovers (a dead
    /// daemon's copies) and waits for them to exit; returns the leftovers
    /// that something else still has open. See the `writers` module.
    pub fn stop_staging_writers(&self) -> std::collections::BTreeSet<PathBuf> {
        writers::stop_writers(&self.base)
    }

    // ----- helpers -------------------------------------------------------

    pub(crate) fn existing_volume(&self, kind: VolumeKind, name: &str) -> Result<PathBuf> {
        validate_volume_name(name)?;
        let p = self.volume_path(kind, name);
        if !p.exists() {
            return Err(StorageError::NotFound(format!(
                "{} volume {name}",
                kind.api_name()
            )));
        }
        Ok(p)
    }

    pub(crate) fn staging_path(&self, kind: VolumeKind, name: &str) -> PathBuf {
        self.base
            .join(kind.dir_name())
            .join(format!(".staging-{name}"))
    }

    /// Clears a leftover at `staging` and returns a guard deleting it again.
    pub(crate) fn start_staging(&self, staging: &Path) -> Result<Revert> {
        if staging.symlink_metadata().is_ok() {
            self.driver.delete_volume(staging)?;
        }
        let mut revert = Revert::new();
        let driver = self.driver.clone();
        let s2 = staging.to_path_buf();
        revert.add(move || {
            if let Err(e) = driver.delete_volume(&s2) {
                tracing::warn!(path = %s2.display(), "removing a staging volume: {e}");
            }
        });
        Ok(revert)
    }

    pub(crate) fn list_entries(&self, dir: &Path, with_hidden: bool) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| with_hidden || !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Moves everything in `from` to `to` (same filesystem), then removes `from`.
fn hoist(from: &Path, to: &Path) -> Result<()> {
    let md = match from.symlink_metadata() {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StorageError::Io {
                what: format!("stat {}", from.display()),
                source: e,
            })
        }
    };
    if !md.is_dir() {
        return Err(StorageError::Command(format!(
            "{} is not a directory",
            from.display()
        )));
    }
    let rd =
        std::fs::read_dir(from).map_err(StorageError::io(format!("reading {}", from.display())))?;
    for e in rd {
        let e = e.map_err(StorageError::io(format!("reading {}", from.display())))?;
        rename_noreplace(&e.path(), &to.join(e.file_name()))?;
    }
    std::fs::remove_dir(from).map_err(StorageError::io(format!("removing {}", from.display())))
}

/// rename(2) that refuses to replace anything (an empty directory included).
pub(crate) fn rename_noreplace(a: &Path, b: &Path) -> Result<()> {
    match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        a,
        nix::fcntl::AT_FDCWD,
        b,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => Err(StorageError::Exists(b.display().to_string())),
        // Filesystems without RENAME_NOREPLACE: check, then rename.
        Err(nix::errno::Errno::EINVAL) if b.symlink_metadata().is_err() => {
            std::fs::rename(a, b).map_err(StorageError::io(format!("renaming {}", a.display())))
        }
        Err(e) => Err(StorageError::Io {
            what: format!("renaming {} to {}", a.display(), b.display()),
            source: e.into(),
        }),
    }
}

/// Creates the standard sub-directories of a pool, closed to every host
/// user but root (also when an older daemon made them open): instance,
/// snapshot, image and custom volumes hold the guests' files with the
/// guests' ids, setuid bits included (audit F1). Nothing but root needs to
/// pass through them: the runtime attaches an instance's rootfs and its
/// volumes from the host side.
pub(crate) fn create_layout(base: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for d in LAYOUT {
        let d = base.join(d);
        std::fs::create_dir_all(&d)
            .and_then(|()| std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)))
            .map_err(StorageError::io(format!("creating {}", d.display())))?;
    }
    Ok(())
}

/// The top-level directories of a pool.
pub(crate) const LAYOUT: [&str; 6] = [
    "images",
    "containers",
    "custom",
    "containers-snapshots",
    "custom-snapshots",
    volumes::META_DIR,
];

/// What keeps a pool from being deleted: its instance and custom volumes and
/// snapshots, as `containers/c1`, `custom-snapshots/v/s`, … (leftovers of
/// work in progress and image volumes do not count).
pub(crate) fn volumes_in_use(base: &Path) -> Vec<String> {
    let mut used = Vec::new();
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !aside::is_leftover(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    for d in ["containers", "custom"] {
        for n in names(&base.join(d)) {
            used.push(format!("{d}/{n}"));
        }
    }
    for d in ["containers-snapshots", "custom-snapshots"] {
        for v in names(&base.join(d)) {
            for s in names(&base.join(d).join(&v)) {
                used.push(format!("{d}/{v}/{s}"));
            }
        }
    }
    used.sort();
    used
}

/// Empties a pool that [`volumes_in_use`] found unused: deletes image
/// volumes, staging leftovers and empty snapshot directories with `driver`,
/// then removes the layout directories themselves.
pub(crate) fn clear_unused_pool(driver: &dyn StorageDriver, base: &Path) -> Result<()> {
    let used = volumes_in_use(base);
    if !used.is_empty() {
        return Err(in_use_error(base, &used));
    }
    for name in LAYOUT {
        let d = base.join(name);
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if name.ends_with("-snapshots") {
                    // Only staging leftovers can be in there now.
                    if let Ok(inner) = std::fs::read_dir(&p) {
                        for s in inner.flatten() {
                            driver.delete_volume(&s.path())?;
                        }
                    }
                    std::fs::remove_dir(&p)
                        .map_err(StorageError::io(format!("removing {}", p.display())))?;
                } else {
                    driver.delete_volume(&p)?;
                }
            }
        }
        match std::fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StorageError::Io {
                    what: format!("removing {}", d.display()),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

pub(crate) fn in_use_error(base: &Path, used: &[String]) -> StorageError {
    let shown: Vec<&str> = used.iter().take(5).map(|s| s.as_str()).collect();
    StorageError::InUse(format!(
        "the storage pool at {} is still in use: {} volume(s) or snapshot(s) exist ({}{})",
        base.display(),
        used.len(),
        shown.join(", "),
        if used.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    ))
}

/// Runs a command (killed if the daemon dies meanwhile); a failure becomes
/// [`StorageError::Command`] with `what` and the most telling line of its
/// standard error.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = dies_with_daemon(cmd)
        .output()
        .map_err(StorageError::io(what.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("ERROR"))
            .or_else(|| err.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("failed");
        return Err(StorageError::Command(format!("{what}: {}", line.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests;
