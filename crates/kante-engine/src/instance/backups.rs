//! Instance backups kept by the server (`/1.0/instances/{name}/backups`):
//! tarballs laid out like LXD's non-optimized ones (`backup/index.yaml`,
//! `backup/container/`, `backup/snapshots/<snap>/`) at
//! `$KANTE_DIR/backups/instances/<instance>/<backup>` (0600), each with a
//! record in this member's state (`NodeState::backup_*`): the record is
//! made pending first, then the tarball, then the record is completed, so
//! a crash leaves nothing visible and nothing blocking (`records.rs` puts
//! state and files back in step at start, and imports the `.<backup>.json`
//! sidecars older versions kept). They go with their instance, and
//! expired ones are removed at start and then every minute.
//! Sparse files stay sparse in them, and a backup is capped in size
//! (`KANTE_MAX_BACKUP_BYTES`, else the free space of the backups directory's
//! filesystem minus a reserve) and time (`KANTE_MAX_BACKUP_SECONDS`, else
//! six hours): past either, it fails and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kante_api::backup::{InstanceBackup, InstanceBackupsPost};
use kante_api::operation::OperationClass;
use kante_images::archive::{pack_sections, ArchiveCompression, PackOptions, Section};
use kante_images::{ImageError, Limits};
use kante_storage::VolumeKind;
use kante_store::BackupRow;
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::instance::backup_index::{next_backup_name, validate_backup_name, ConfigOut, IndexOut};
use crate::operations::{instance_resources, Op};
use crate::util::{fmt_time, parse_time, remove_file_if_present};
use crate::Engine;

mod records;

/// A backup as the API shows it.
fn render(row: &BackupRow) -> InstanceBackup {
    InstanceBackup {
        name: row.name.clone(),
        created_at: parse_time(&row.created_at),
        expires_at: parse_time(&row.expires_at),
        instance_only: row.instance_only,
        container_only: row.instance_only,
        optimized_storage: row.optimized_storage,
    }
}

impl Engine {
    /// Where uploaded backups wait to be imported.
    pub(crate) fn backup_upload_dir(&self) -> Result<PathBuf> {
        let d = self.paths.root.join("backups").join(".uploads");
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// An instance's backups: its complete records whose tarball is there.
    pub(crate) async fn backup_list(&self, instance: &str) -> Result<Vec<InstanceBackup>> {
        self.instance_row(instance).await?;
        let dir = self.paths.instance_backups(instance);
        Ok(self
            .node
            .backup_list(instance)
            .await?
            .iter()
            .filter(|b| dir.join(&b.name).is_file())
            .map(render)
            .collect())
    }

    pub(crate) async fn backup_get(&self, instance: &str, name: &str) -> Result<InstanceBackup> {
        self.instance_row(instance).await?;
        validate_backup_name(name).map_err(|_| not_found())?;
        self.backup_record(instance, name)
            .await?
            .map(|b| render(&b))
            .ok_or_else(not_found)
    }

    /// The complete record of a backup whose tarball is there (a record a
    /// crash left without its tarball is nobody's).
    async fn backup_record(&self, instance: &str, name: &str) -> Result<Option<BackupRow>> {
        let row = self.node.backup_get(instance, name).await?;
        Ok(row.filter(|_| self.paths.instance_backups(instance).join(name).is_file()))
    }

    /// The tarball of a backup, for `GET …/backups/{backup}/export`.
    pub(crate) async fn backup_file(&self, instance: &str, name: &str) -> Result<PathBuf> {
        self.backup_get(instance, name).await?;
        Ok(self.paths.instance_backups(instance).join(name))
    }

    /// `POST /1.0/instances/{name}/backups`: checks the request, then packs
    /// in an operation ("Backing up instance").
    pub(crate) async fn backup_create(
        &self,
        instance: &str,
        req: InstanceBackupsPost,
    ) -> Result<Arc<Op>> {
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
        let name = if req.name.is_empty() {
            let taken: Vec<String> = (self.node.backup_list(instance).await?)
                .into_iter()
                .map(|b| b.name)
                .collect();
            next_backup_name(&taken)
        } else {
            req.name.clone()
        };
        validate_backup_name(&name)?;
        if self.backup_record(instance, &name).await?.is_some() {
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
        let dir = self.paths.instance_backups(instance);
        let instance_only = req.instance_only || req.container_only;
        // The record first (pending: invisible, but the name is taken), then
        // the tarball, then the record is complete.
        let record = BackupRow {
            instance: instance.into(),
            name: name.into(),
            created_at: fmt_time(kante_api::now()),
            expires_at: fmt_time(req.expires_at.unwrap_or_else(kante_api::zero_time)),
            instance_only,
            optimized_storage: false,
            compression_algorithm: compression.name().into(),
        };
        self.take_backup_name(&record).await?;
        let made = self
            .pack_backup(op, &row, name, instance_only, compression)
            .await;
        let completed = match made {
            Ok(()) => self
                .node
                .backup_created(instance, name)
                .await
                .map_err(EngineError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = completed {
            let _ = remove_file_if_present(&dir.join(name));
            let _ = self.node.backup_delete(instance, name).await;
            // An empty directory of this instance's backups goes too.
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        self.events.lifecycle(
            "instance-backup-created",
            &format!("/1.0/instances/{instance}/backups/{name}"),
            json!({}),
        );
        Ok(())
    }

    /// Records a backup as being made. Its name may be held by a record
    /// without a tarball, complete or pending: the caller holds the
    /// instance's lock, under which every backup of it is made, so such a
    /// record is a crash's leftover; it goes, and the name is taken again.
    async fn take_backup_name(&self, record: &BackupRow) -> Result<()> {
        let (instance, name) = (&record.instance, &record.name);
        match self.node.backup_create_pending(record).await {
            Err(kante_store::StoreError::Conflict(_))
                if self.backup_record(instance, name).await?.is_none() =>
            {
                tracing::warn!(instance = %instance, backup = %name, "replacing a record left without its tarball");
                remove_file_if_present(&self.paths.instance_backups(instance).join(name))?;
                self.node.backup_delete(instance, name).await?;
                Ok(self.node.backup_create_pending(record).await?)
            }
            other => Ok(other?),
        }
    }

    /// Packs the tarball of backup `name` of instance `row`.
    async fn pack_backup(
        &self,
        op: &Arc<Op>,
        row: &kante_store::InstanceRow,
        name: &str,
        instance_only: bool,
        compression: ArchiveCompression,
    ) -> Result<()> {
        let instance = row.name.as_str();
        let dir = self.paths.instance_backups(instance);
        let pool_name = self.instance_pool_name(row).await;
        let pool = self.pool(&pool_name)?;
        // The volume's own backup.yaml must be current, too.
        self.write_backup_file(row).await;
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
                container: self.render(row).await?,
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
        packed.map_err(|e| match e {
            ImageError::TooLarge(m) => EngineError::bad(format!("The backup is too large: {m}")),
            e => EngineError::internal(format!("Creating the backup tarball: {e}")),
        })?;
        Ok(())
    }

    pub(crate) async fn backup_delete(&self, instance: &str, name: &str) -> Result<Arc<Op>> {
        self.backup_get(instance, name).await?;
        let op = self.ops.create(
            OperationClass::Task,
            "Deleting backup",
            instance_resources(&[instance], true),
        );
        let dir = self.paths.instance_backups(instance);
        let engine = self.arc();
        let (instance, name) = (instance.to_string(), name.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&instance);
            let _g = lock.lock().await;
            // The tarball first: a crash then leaves a record without its
            // tarball, which nobody sees and the next start removes.
            remove_file_if_present(&dir.join(&name))?;
            engine.node.backup_delete(&instance, &name).await?;
            engine.events.lifecycle(
                "instance-backup-deleted",
                &format!("/1.0/instances/{instance}/backups/{name}"),
                json!({}),
            );
            Ok(())
        });
        Ok(op)
    }

    pub(crate) async fn backup_rename(
        &self,
        instance: &str,
        name: &str,
        new: &str,
    ) -> Result<Arc<Op>> {
        self.backup_get(instance, name).await?;
        // LXD accepts either `new` or `<instance>/new`.
        let new = new
            .strip_prefix(&format!("{instance}/"))
            .unwrap_or(new)
            .to_string();
        validate_backup_name(&new)?;
        if self.backup_record(instance, &new).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Backup {new:?} already exists"
            )));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Renaming backup",
            instance_resources(&[instance], true),
        );
        let engine = self.arc();
        let (instance, name) = (instance.to_string(), name.to_string());
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&instance);
            let _g = lock.lock().await;
            engine.rename_backup(&instance, &name, &new).await
        });
        Ok(op)
    }

    /// Renames a backup's record and tarball. The tarball gets its new
    /// name as a second link first and loses the old one last, so at any
    /// crash the record names a tarball that is there (the other name, if
    /// any, is a file without a record, which the next start removes).
    async fn rename_backup(&self, instance: &str, name: &str, new: &str) -> Result<()> {
        let dir = self.paths.instance_backups(instance);
        if self.backup_record(instance, new).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Backup {new:?} already exists"
            )));
        }
        // Under the instance's lock, what holds `new` is a crash's leftover.
        remove_file_if_present(&dir.join(new))?;
        self.node.backup_delete(instance, new).await?;
        std::fs::hard_link(dir.join(name), dir.join(new))?;
        if let Err(e) = self.node.backup_rename(instance, name, new).await {
            let _ = remove_file_if_present(&dir.join(new));
            return Err(e.into());
        }
        remove_file_if_present(&dir.join(name))?;
        Ok(())
    }

    /// Removes all backups' tarballs of an instance (it is being deleted;
    /// its backups' records went with its own).
    pub(crate) fn backups_remove_all(&self, instance: &str) {
        let dir = self.paths.instance_backups(instance);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(instance, "removing backups: {e}");
            }
        }
    }

    /// Backups' tarballs follow their instance's rename (their records
    /// followed its own).
    pub(crate) fn backups_rename_instance(&self, old: &str, new: &str) {
        let (a, b) = (
            self.paths.instance_backups(old),
            self.paths.instance_backups(new),
        );
        if a.exists() {
            if let Err(e) = std::fs::rename(&a, &b) {
                tracing::warn!(instance = old, "moving backups to {new}: {e}");
            }
        }
    }

    /// Removes backups past their `expires_at`: the tarball, then the record.
    pub(crate) async fn prune_expired_backups(&self) {
        let now = kante_api::now();
        let zero = kante_api::zero_time();
        let records = match self.node.backup_list_all().await {
            Ok(r) => r,
            Err(e) => return tracing::warn!("listing backups: {e}"),
        };
        for b in records {
            let expires = parse_time(&b.expires_at);
            if expires <= zero || expires > now {
                continue;
            }
            let removed = match remove_file_if_present(
                &self.paths.instance_backups(&b.instance).join(&b.name),
            ) {
                Ok(()) => self
                    .node
                    .backup_delete(&b.instance, &b.name)
                    .await
                    .map_err(EngineError::from),
                Err(e) => Err(e.into()),
            };
            match removed {
                Ok(_) => {
                    tracing::info!(backup = %b.name, instance = %b.instance, "removed expired backup")
                }
                Err(e) => tracing::warn!(backup = %b.name, "removing expired backup: {e}"),
            }
        }
    }

    /// At start: crash leftovers go, older versions' records move into the
    /// state, state and tarballs are put back in step (`records.rs`) and
    /// expired backups are removed; the snapshot housekeeping tick prunes
    /// them from then on.
    pub(crate) async fn clean_backups_at_start(&self) {
        remove_leftovers(&self.paths.root.join("backups"));
        self.import_backup_sidecars().await;
        self.reconcile_backups().await;
        self.prune_expired_backups().await;
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
