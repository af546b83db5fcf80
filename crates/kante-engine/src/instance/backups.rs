//! Instance backups kept by the server (`/1.0/instances/{name}/backups`):
//! tarballs laid out like LXD's non-optimized ones (`backup/index.yaml`,
//! `backup/container/`, `backup/snapshots/<snap>/`) at
//! `$KANTE_DIR/backups/instances/<instance>/<backup>` (0600), each with a
//! `.<backup>.json` beside it holding its record. They go with their
//! instance, and expired ones are removed at start and then every minute.
//! Sparse files stay sparse in them, and a backup is capped in size
//! (`KANTE_MAX_BACKUP_BYTES`, else the free space of the backups directory's
//! filesystem minus a reserve) and time (`KANTE_MAX_BACKUP_SECONDS`, else
//! six hours): past either, it fails and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kante_api::backup::{InstanceBackup, InstanceBackupsPost};
use kante_api::operation::OperationClass;
use kante_api::Timestamp;
use kante_images::archive::{pack_sections, ArchiveCompression, PackOptions, Section};
use kante_images::{ImageError, Limits};
use kante_storage::VolumeKind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::instance::backup_index::{next_backup_name, validate_backup_name, ConfigOut, IndexOut};
use crate::operations::{instance_resources, Op};
use crate::Engine;

/// The record kept beside a backup's tarball.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupMeta {
    created_at: Timestamp,
    expires_at: Timestamp,
    instance_only: bool,
    optimized_storage: bool,
    compression: String,
}

impl BackupMeta {
    fn render(&self, name: &str) -> InstanceBackup {
        InstanceBackup {
            name: name.into(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            instance_only: self.instance_only,
            container_only: self.instance_only,
            optimized_storage: self.optimized_storage,
        }
    }

    fn expired(&self, now: Timestamp) -> bool {
        self.expires_at > kante_api::zero_time() && self.expires_at <= now
    }
}

fn meta_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.json"))
}

fn read_meta(dir: &Path, name: &str) -> Option<BackupMeta> {
    let text = std::fs::read(meta_path(dir, name)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes a backup's tarball and record (missing parts are no error).
fn remove_backup_files(dir: &Path, name: &str) -> std::io::Result<()> {
    for p in [dir.join(name), meta_path(dir, name)] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Names of the finished backups in `dir` (tarball and record both there).
fn backup_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') && meta_path(dir, n).exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Engine {
    /// `$KANTE_DIR/backups/instances/<instance>`.
    pub(crate) fn backups_dir(&self, instance: &str) -> PathBuf {
        self.paths
            .root
            .join("backups")
            .join("instances")
            .join(instance)
    }

    /// Where uploaded backups wait to be imported.
    pub fn backup_upload_dir(&self) -> Result<PathBuf> {
        let d = self.paths.root.join("backups").join(".uploads");
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    pub async fn backup_list(&self, instance: &str) -> Result<Vec<InstanceBackup>> {
        self.instance_row(instance).await?;
        let dir = self.backups_dir(instance);
        Ok(backup_names(&dir)
            .iter()
            .filter_map(|n| read_meta(&dir, n).map(|m| m.render(n)))
            .collect())
    }

    pub async fn backup_get(&self, instance: &str, name: &str) -> Result<InstanceBackup> {
        self.instance_row(instance).await?;
        validate_backup_name(name).map_err(|_| not_found())?;
        let dir = self.backups_dir(instance);
        if !dir.join(name).is_file() {
            return Err(not_found());
        }
        read_meta(&dir, name)
            .map(|m| m.render(name))
            .ok_or_else(not_found)
    }

    /// The tarball of a backup, for `GET …/backups/{backup}/export`.
    pub async fn backup_file(&self, instance: &str, name: &str) -> Result<PathBuf> {
        self.backup_get(instance, name).await?;
        Ok(self.backups_dir(instance).join(name))
    }

    /// `POST /1.0/instances/{name}/backups`: checks the request, then packs
    /// in an operation ("Backing up instance").
    pub async fn backup_create(&self, instance: &str, req: InstanceBackupsPost) -> Result<Arc<Op>> {
        self.instance_row(instance).await?;
        if req.optimized_storage {
            return Err(EngineError::bad(
                "Optimized storage backups are not supported: use optimized_storage=false",
            ));
        }
        let compression = match req.compression_algorithm.as_str() {
            "" => ArchiveCompression::Gzip,
            other => ArchiveCompression::parse(other).ok_or_else(|| {
                EngineError::bad(format!(
                    "Unsupported compression algorithm {other:?} (supported: gzip, zstd, none)"
                ))
            })?,
        };
        let dir = self.backups_dir(instance);
        let name = if req.name.is_empty() {
            next_backup_name(&backup_names(&dir))
        } else {
            req.name.clone()
        };
        validate_backup_name(&name)?;
        if dir.join(&name).exists() {
            return Err(EngineError::Conflict(format!(
                "Backup {name:?} already exists"
            )));
        }
        let mut resources = instance_resources(&[instance], true);
        // LXD 5.0's form: its `lxc export` strips `/1.0/backups/` to get the
        // name, newer clients take the last segment; this suits both.
        resources.insert("backups".into(), vec![format!("/1.0/backups/{name}")]);
        let op = self
            .ops
            .create(OperationClass::Task, "Backing up instance", resources);
        let engine = self.arc();
        let (op2, instance) = (op.clone(), instance.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&instance);
            let _g = lock.lock().await;
            engine
                .make_backup(&op2, &instance, &name, &req, compression)
                .await
        });
        Ok(op)
    }

    async fn make_backup(
        &self,
        op: &Arc<Op>,
        instance: &str,
        name: &str,
        req: &InstanceBackupsPost,
        compression: ArchiveCompression,
    ) -> Result<()> {
        let row = self.instance_row(instance).await?;
        let dir = self.backups_dir(instance);
        if dir.join(name).exists() {
            return Err(EngineError::Conflict(format!(
                "Backup {name:?} already exists"
            )));
        }
        let pool_name = self.instance_pool_name(&row).await;
        let pool = self.pool(&pool_name)?;
        // The volume's own backup.yaml must be current, too.
        self.write_backup_file(&row).await;
        let instance_only = req.instance_only || req.container_only;
        let snapshots = if instance_only {
            Vec::new()
        } else {
            self.snapshot_list(instance).await?
        };
        let index = IndexOut {
            name: instance.into(),
            backend: pool.driver.info().name.into(),
            pool: pool_name.clone(),
            snapshots: snapshots.iter().map(|s| s.name.clone()).collect(),
            optimized: false,
            optimized_header: false,
            kind: "container".into(),
            config: ConfigOut {
                container: self.render(&row).await?,
                snapshots: snapshots.clone(),
                pool: self.pool_get(&pool_name).await.ok(),
            },
        };
        create_private_dir(&dir)?;
        // index.yaml (and the snapshots/ directory) come from a small tree of their own.
        let head = DirGuard(dir.join(format!(".head-{name}")));
        let _ = std::fs::remove_dir_all(head.path());
        create_private_dir(head.path())?;
        let text = serde_yaml::to_string(&index).map_err(EngineError::internal)?;
        std::fs::write(head.path().join("index.yaml"), text)?;
        let mut sections = vec![Section::tree(head.path(), "backup")];
        sections.push(Section::tree(
            pool.volume_path(VolumeKind::Container, instance),
            "backup/container",
        ));
        if !snapshots.is_empty() {
            std::fs::create_dir(head.path().join("snapshots"))?;
        }
        for s in &snapshots {
            sections.push(Section::tree(
                pool.snapshot_path(VolumeKind::Container, instance, &s.name)?,
                format!("backup/snapshots/{}", s.name),
            ));
        }
        let limits = Limits::backup_into(&dir).map_err(EngineError::internal)?;
        let opts = PackOptions {
            compression,
            mode: 0o600,
            allow_changed_files: self.running(instance).is_some(),
            limits,
        };
        let out = dir.join(name);
        let op2 = op.clone();
        let started = std::time::Instant::now();
        let packed = tokio::task::spawn_blocking(move || {
            pack_sections(&sections, &out, &opts, &mut |done, total| {
                report_progress(
                    &op2,
                    "create_backup_progress",
                    "Backup",
                    done,
                    total,
                    started,
                )
            })
        })
        .await?;
        drop(head);
        packed.map_err(|e| {
            // An empty directory of this instance's backups goes too.
            let _ = std::fs::remove_dir(&dir);
            match e {
                ImageError::TooLarge(m) => {
                    EngineError::bad(format!("The backup is too large: {m}"))
                }
                e => EngineError::internal(format!("Creating the backup tarball: {e}")),
            }
        })?;
        let meta = BackupMeta {
            created_at: kante_api::now(),
            expires_at: req.expires_at.unwrap_or_else(kante_api::zero_time),
            instance_only,
            optimized_storage: false,
            compression: compression.name().into(),
        };
        let written = serde_json::to_vec(&meta)
            .map_err(EngineError::internal)
            .and_then(|b| Ok(std::fs::write(meta_path(&dir, name), b)?));
        if let Err(e) = written {
            let _ = remove_backup_files(&dir, name);
            return Err(e);
        }
        self.events.lifecycle(
            "instance-backup-created",
            &format!("/1.0/instances/{instance}/backups/{name}"),
            json!({}),
        );
        Ok(())
    }

    pub async fn backup_delete(&self, instance: &str, name: &str) -> Result<Arc<Op>> {
        self.backup_get(instance, name).await?;
        let op = self.ops.create(
            OperationClass::Task,
            "Deleting backup",
            instance_resources(&[instance], true),
        );
        let dir = self.backups_dir(instance);
        let engine = self.arc();
        let (instance, name) = (instance.to_string(), name.to_string());
        self.ops.run(op.clone(), async move {
            remove_backup_files(&dir, &name)?;
            engine.events.lifecycle(
                "instance-backup-deleted",
                &format!("/1.0/instances/{instance}/backups/{name}"),
                json!({}),
            );
            Ok(())
        });
        Ok(op)
    }

    pub async fn backup_rename(&self, instance: &str, name: &str, new: &str) -> Result<Arc<Op>> {
        self.backup_get(instance, name).await?;
        // LXD accepts either `new` or `<instance>/new`.
        let new = new
            .strip_prefix(&format!("{instance}/"))
            .unwrap_or(new)
            .to_string();
        validate_backup_name(&new)?;
        let dir = self.backups_dir(instance);
        if dir.join(&new).exists() {
            return Err(EngineError::Conflict(format!(
                "Backup {new:?} already exists"
            )));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Renaming backup",
            instance_resources(&[instance], true),
        );
        let name = name.to_string();
        self.ops.run(op.clone(), async move {
            std::fs::rename(meta_path(&dir, &name), meta_path(&dir, &new))?;
            if let Err(e) = std::fs::rename(dir.join(&name), dir.join(&new)) {
                let _ = std::fs::rename(meta_path(&dir, &new), meta_path(&dir, &name));
                return Err(e.into());
            }
            Ok(())
        });
        Ok(op)
    }

    /// Removes all backups of an instance (it is being deleted).
    pub(crate) fn backups_remove_all(&self, instance: &str) {
        let dir = self.backups_dir(instance);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(instance, "removing backups: {e}");
            }
        }
    }

    /// Backups follow their instance's rename.
    pub(crate) fn backups_rename_instance(&self, old: &str, new: &str) {
        let (a, b) = (self.backups_dir(old), self.backups_dir(new));
        if a.exists() {
            if let Err(e) = std::fs::rename(&a, &b) {
                tracing::warn!(instance = old, "moving backups to {new}: {e}");
            }
        }
    }

    /// Removes backups past their `expires_at`, and upload leftovers.
    pub(crate) fn prune_expired_backups(&self) {
        let now = kante_api::now();
        let root = self.paths.root.join("backups").join("instances");
        for inst in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let dir = inst.path();
            for name in backup_names(&dir) {
                if read_meta(&dir, &name).is_some_and(|m| m.expired(now)) {
                    match remove_backup_files(&dir, &name) {
                        Ok(()) => {
                            tracing::info!(backup = %name, instance = ?inst.file_name(), "removed expired backup")
                        }
                        Err(e) => tracing::warn!(backup = %name, "removing expired backup: {e}"),
                    }
                }
            }
        }
    }

    /// At start: crash leftovers go and expired backups are removed; the
    /// snapshot housekeeping tick prunes them from then on.
    pub(crate) fn clean_backups_at_start(&self) {
        remove_leftovers(&self.paths.root.join("backups"));
        self.prune_expired_backups();
    }
}

/// Half-written tarballs (`.kante-pack-*`), index trees (`.head-*`) and
/// uploads left by a crash.
fn remove_leftovers(root: &Path) {
    let _ = std::fs::remove_dir_all(root.join(".uploads"));
    let dirs = std::fs::read_dir(root.join("instances"))
        .into_iter()
        .flatten();
    for inst in dirs.flatten() {
        for e in std::fs::read_dir(inst.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".kante-pack-") {
                let _ = std::fs::remove_file(e.path());
            } else if n.starts_with(".head-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A directory removed (with its content) when dropped.
struct DirGuard(PathBuf);

impl DirGuard {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    Ok(())
}

fn not_found() -> EngineError {
    EngineError::NotFound("Backup not found".into())
}

/// Operation metadata for long copies: LXD's `<key>: "<Stage>: 45% (3.2MB/s)"`
/// plus a structured `progress`.
pub(crate) fn report_progress(
    op: &Op,
    key: &str,
    stage: &str,
    done: u64,
    total: u64,
    started: std::time::Instant,
) {
    let percent = (done.saturating_mul(100))
        .checked_div(total)
        .unwrap_or(0)
        .min(100);
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let speed = (done as f64 / secs) as u64;
    op.set_metadata(json!({
        key: format!("{stage}: {percent}% ({}/s)", kante_storage::format_size(speed)),
        "progress": {
            "stage": stage.to_lowercase(),
            "percent": percent.to_string(),
            "processed": done.to_string(),
            "total": total.to_string(),
            "speed": speed.to_string(),
        }
    }));
}
