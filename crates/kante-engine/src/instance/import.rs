//! Importing a backup tarball (`POST /1.0/instances` with an
//! `application/octet-stream` body): the instance and its snapshots come
//! back, records and volumes, in the chosen pool, or nothing does.
//!
//! The body is read once, as it arrives (`front/upload.rs` pumps it here
//! from the request handler). `backup/index.yaml` comes first in the
//! tarball (Kante's exports put it there, as LXD's do, so that an importer
//! can read it before the data), and before the operation starts, while
//! the handler still reads the body, it is read and everything about it
//! is checked: name, pool, profiles, config, devices, of the instance and
//! of every snapshot alike. The operation then unpacks the rest of the
//! stream into a staging directory inside the pool, through the tar
//! scanner (backup layout only, no device nodes, within the import caps:
//! `KANTE_MAX_IMPORT_BYTES`, else the pool's free space minus a reserve,
//! and `KANTE_MAX_IMPORT_SECONDS`), and adopts each tree as a volume; a
//! revert guard undoes records and volumes if any step fails, and the
//! staging directory always goes, as does the operation's work if the
//! body breaks half-way (the client went away).
//!
//! A tarball whose index is not its first file (or one of older LXD whose
//! index lacks the config, which is then read from the volume's
//! `backup.yaml` further on) is spooled to `backups/.uploads` and imported
//! from the file the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kante_api::operation::OperationClass;
use kante_api::{ConfigMap, DevicesMap};
use kante_images::archive::StreamedArchive;
use kante_images::{ImageError, Layout, Limits};
use kante_storage::{Pool, Revert, VolumeKind};
use kante_store::{InstanceRow, SnapshotRow};
use serde_json::json;

use crate::error::{EngineError, ErrorKind, Result};
use crate::front::feed::BodyReader;
use crate::instance::backup_index::{
    fit_config, parse_backup_yaml, parse_index, RecordIn, BACKUP_YAML_PATH, INDEX_PATH,
};
use crate::instance::backups::report_progress;
use crate::instance::idmaps::idmap_json;
use crate::instance::{config, files};
use crate::operations::{instance_resources, Op};
use crate::util::fmt_time;
use crate::Engine;

/// The operation's key for its unpacking progress (as LXD names it).
const PROGRESS_KEY: &str = "create_instance_from_backup_progress";

/// Removes the spooled file however the import ends.
struct Upload(PathBuf);

/// Where the backup's bytes come from.
enum Source {
    /// The body itself, `index.yaml` already read from it.
    Stream(StreamedArchive),
    /// The body spooled to a file.
    File(Upload),
}

/// Whether an index lacks the config (older LXD): the volume's
/// `backup.yaml` has the record then.
fn needs_backup_yaml(index: &[u8]) -> bool {
    !String::from_utf8_lossy(index)
        .lines()
        .any(|l| l.starts_with("config:"))
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Everything decided before the operation starts.
struct Plan {
    row: InstanceRow,
    snapshots: Vec<SnapshotRow>,
    pool: Pool,
    renamed: bool,
}

/// Backup tarball problems are the client's (400); our own I/O is not.
fn archive_error(e: ImageError) -> EngineError {
    match e {
        ImageError::Corrupt(m) => {
            EngineError::bad(format!("The backup tarball is truncated or corrupt: {m}"))
        }
        ImageError::UnsafePath(m) => {
            EngineError::bad(format!("Unsafe path in the backup tarball: {m}"))
        }
        ImageError::InvalidImage(m) => EngineError::bad(format!("Invalid backup tarball: {m}")),
        ImageError::Tool { message, .. } => {
            EngineError::bad(format!("Unpacking the backup failed: {message}"))
        }
        ImageError::TooLarge(m) => {
            EngineError::bad(format!("The backup is too large to import: {m}"))
        }
        other => EngineError::failed(other),
    }
}

impl Engine {
    /// Reads the body `body` as far as its `index.yaml`, checks it and
    /// starts importing the rest as it arrives ("Creating instance from
    /// backup"); a tarball whose index is not first is spooled into
    /// `spool_dir` first.
    pub(crate) async fn instance_import_stream(
        &self,
        body: BodyReader,
        spool_dir: &Path,
        name: Option<String>,
        pool: Option<String>,
    ) -> Result<Arc<Op>> {
        let (index, archive) = tokio::task::spawn_blocking(move || {
            kante_images::archive::open_stream(Box::new(body), Layout::Backup, INDEX_PATH)
        })
        .await?
        .map_err(archive_error)?;
        if let Some(text) = index.filter(|t| !needs_backup_yaml(t)) {
            let source = Source::Stream(archive);
            return self.import_start(text, None, name, pool, source).await;
        }
        let file = spool_dir.join(format!("upload-{}", crate::util::random_hex(16)));
        let upload = Upload(file.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
            archive.spool(&mut f)?;
            std::io::Write::flush(&mut f)
        })
        .await??;
        self.instance_import_file(upload, name, pool).await
    }

    /// Checks a spooled backup and starts importing it.
    async fn instance_import_file(
        &self,
        upload: Upload,
        name: Option<String>,
        pool: Option<String>,
    ) -> Result<Arc<Op>> {
        let file = upload.0.clone();
        let (index_text, fallback) = tokio::task::spawn_blocking(move || {
            let index = kante_images::archive::read_member(&file, INDEX_PATH, Layout::Backup)?;
            let fallback = if index.as_deref().is_some_and(needs_backup_yaml) {
                kante_images::archive::read_member(&file, BACKUP_YAML_PATH, Layout::Backup)?
            } else {
                None
            };
            Ok::<_, ImageError>((index, fallback))
        })
        .await?
        .map_err(archive_error)?;
        let index_text = index_text.ok_or_else(|| {
            EngineError::bad(format!("Invalid backup tarball: it has no {INDEX_PATH}"))
        })?;
        self.import_start(index_text, fallback, name, pool, Source::File(upload))
            .await
    }

    /// Plans the import from the backup's index (and `backup.yaml`), then
    /// starts the operation that unpacks `source`.
    async fn import_start(
        &self,
        index_text: Vec<u8>,
        fallback: Option<Vec<u8>>,
        name: Option<String>,
        pool: Option<String>,
        source: Source,
    ) -> Result<Arc<Op>> {
        let index = parse_index(&index_text)?;
        let cfg = match (index.config, fallback) {
            (Some(c), _) => c,
            (None, Some(text)) => parse_backup_yaml(&text)?,
            (None, None) => Default::default(),
        };
        let record = cfg.record().cloned().unwrap_or_default();
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None if !index.name.is_empty() => index.name.clone(),
            None => record.name.clone(),
        };
        kante_api::names::validate_instance_name(&name)?;
        if self.node.instance_get(&name).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Instance {name:?} already exists"
            )));
        }
        let pool = self.import_pool(pool.as_deref(), &index.pool).await?;
        let snap_records = cfg.snapshots.unwrap_or_default();
        let snap_names: Vec<String> = match index.snapshots {
            Some(s) => s,
            None => snap_records.iter().map(|s| s.name.clone()).collect(),
        };
        let plan = self
            .import_plan(&name, &record, &snap_names, &snap_records, pool)
            .await?;
        let plan = Plan {
            renamed: !record.name.is_empty() && record.name != name,
            ..plan
        };

        let op = self.ops.create(
            OperationClass::Task,
            "Creating instance from backup",
            instance_resources(&[&name], true),
        );
        let engine = self.arc();
        let op2 = op.clone();
        self.ops.run(op.clone(), async move {
            let lock = engine.instance_lock(&plan.row.name);
            let _g = lock.lock().await;
            engine.import_locked(&op2, source, plan).await
        });
        Ok(op)
    }

    /// The target pool: the one asked for, else the backup's if it exists
    /// here, else the default profile's root pool.
    async fn import_pool(&self, asked: Option<&str>, in_backup: &str) -> Result<Pool> {
        if let Some(p) = asked.filter(|p| !p.is_empty()) {
            return self
                .pool(p)
                .map_err(|_| EngineError::bad(format!("Storage pool {p:?} not found")));
        }
        if !in_backup.is_empty() {
            if let Ok(p) = self.pool(in_backup) {
                return Ok(p);
            }
        }
        let default_root = self
            .shared
            .profile_get("default")
            .await?
            .and_then(|p| config::root_disk(&p.devices).and_then(|(_, d)| d.get("pool").cloned()))
            .unwrap_or_else(|| "default".into());
        self.pool(&default_root).map_err(|_| {
            EngineError::bad(format!(
                "No storage pool to import into (the default profile's {default_root:?} does not exist)"
            ))
        })
    }

    /// The records the import will create, checked like a create would check them.
    async fn import_plan(
        &self,
        name: &str,
        record: &RecordIn,
        snap_names: &[String],
        snap_records: &[RecordIn],
        pool: Pool,
    ) -> Result<Plan> {
        let profiles = record
            .profiles
            .clone()
            .unwrap_or_else(|| vec!["default".into()]);
        let layers = self.import_layers(&profiles).await?;
        let local = fit_config(
            &record.config,
            &self.idmap.host_uid.to_string(),
            &idmap_json(&self.idmap),
        );
        let devices = fit_root(&layers, &local, &record.devices, &pool.name);
        self.check_record(&layers, &local, &devices).await?;
        let now = fmt_time(kante_api::now());
        let time_or = |t: Option<kante_api::Timestamp>, d: &str| {
            t.map(fmt_time).unwrap_or_else(|| d.to_string())
        };
        let row = InstanceRow {
            name: name.into(),
            project: kante_store::PROJECT.into(),
            kind: "container".into(),
            architecture: if record.architecture.is_empty() {
                std::env::consts::ARCH.into()
            } else {
                record.architecture.clone()
            },
            ephemeral: record.ephemeral,
            stateful: false,
            description: record.description.clone(),
            created_at: time_or(record.created_at, &now),
            last_used_at: fmt_time(kante_api::zero_time()),
            config: local,
            devices,
            profiles,
        };
        let zero = fmt_time(kante_api::zero_time());
        let mut snapshots = Vec::new();
        for s in snap_names.iter() {
            snapshots.push({
                let r = snap_records.iter().find(|r| &r.name == s);
                let (config, devices, profiles) = match r {
                    Some(r) => (
                        r.config.clone(),
                        r.devices.clone(),
                        r.profiles.clone().unwrap_or_else(|| row.profiles.clone()),
                    ),
                    None => (
                        row.config.clone(),
                        row.devices.clone(),
                        row.profiles.clone(),
                    ),
                };
                // A snapshot's record is checked exactly like the instance's:
                // a restore makes it the instance's own.
                let about = |e: EngineError| in_snapshot(s, e);
                let layers = self.import_layers(&profiles).await.map_err(about)?;
                let devices = fit_root(&layers, &config, &devices, &pool.name);
                self.check_record(&layers, &config, &devices)
                    .await
                    .map_err(about)?;
                SnapshotRow {
                    instance: name.into(),
                    name: s.clone(),
                    created_at: time_or(r.and_then(|r| r.created_at), &now),
                    expires_at: time_or(r.and_then(|r| r.expires_at), &zero),
                    stateful: false,
                    architecture: row.architecture.clone(),
                    ephemeral: r.map(|r| r.ephemeral).unwrap_or(row.ephemeral),
                    description: r.map(|r| r.description.clone()).unwrap_or_default(),
                    devices,
                    config,
                    profiles,
                }
            });
        }
        Ok(Plan {
            row,
            snapshots,
            pool,
            renamed: false,
        })
    }

    /// The layers of the profiles a record names, all of which must exist.
    async fn import_layers(&self, profiles: &[String]) -> Result<Vec<(ConfigMap, DevicesMap)>> {
        self.profile_layers(profiles)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => EngineError::bad(format!(
                    "{e}: create the profile before importing this backup"
                )),
                _ => e,
            })
    }

    /// The checks a create makes on a record: its config and devices, then
    /// expanded with its profiles, and the pools, volumes and networks its
    /// devices name.
    async fn check_record(
        &self,
        layers: &[(ConfigMap, DevicesMap)],
        local: &ConfigMap,
        devices: &DevicesMap,
    ) -> Result<()> {
        config::validate_config(local)?;
        config::validate_devices(devices)?;
        let (econfig, edevices) = config::expand(layers, local, devices);
        config::validate_config(&econfig)?;
        self.check_device_refs(&edevices).await
    }

    async fn import_locked(&self, op: &Arc<Op>, source: Source, plan: Plan) -> Result<()> {
        let Plan {
            row,
            snapshots,
            pool,
            renamed,
        } = plan;
        let name = row.name.clone();
        if self.node.instance_get(&name).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Instance {name:?} already exists"
            )));
        }
        let unpack = pool.create_unpack_dir(VolumeKind::Container, &name)?;
        let _unpack_guard = UnpackDir(pool.clone(), unpack.clone());
        let (dir, op2) = (unpack.clone(), op.clone());
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            let limits = Limits::import_into(&dir)?;
            match source {
                Source::Stream(archive) => archive
                    .extract(&dir, &limits, &mut |read| {
                        report_streamed(&op2, read, started)
                    })
                    .map(|_| ()),
                // The spooled file goes when the closure ends.
                Source::File(upload) => kante_images::archive::extract(
                    &upload.0,
                    &dir,
                    Layout::Backup,
                    &limits,
                    &mut |done, total| {
                        report_progress(&op2, PROGRESS_KEY, "Unpack", done, total, started)
                    },
                ),
            }
        })
        .await?
        .map_err(|e| match e.to_string() {
            t if kante_storage::is_out_of_space(&t) => {
                EngineError::from(kante_storage::StorageError::NoSpace {
                    pool: pool.name.clone(),
                    what: format!("the backup of {name}"),
                })
            }
            _ => archive_error(e),
        })?;
        let root = unpack.join("backup");
        check_tree(&root.join("container/rootfs"), "backup/container/rootfs")?;
        for s in &snapshots {
            check_tree(
                &root.join("snapshots").join(&s.name),
                &format!("backup/snapshots/{}", s.name),
            )?;
        }

        // Pending until the last step, as a creation (see reconcile.rs).
        self.record_pending(&row).await?;
        let built = async {
            let mut revert = Revert::new();
            let (p, src, n) = (pool.clone(), root.join("container"), name.clone());
            tokio::task::spawn_blocking(move || p.adopt_volume(&src, VolumeKind::Container, &n))
                .await??;
            {
                // Deleting the volume takes its snapshots along.
                let (p, n) = (pool.clone(), name.clone());
                revert.add(move || {
                    let _ = p.delete_volume(VolumeKind::Container, &n);
                });
            }
            for s in &snapshots {
                let (p, n, sn) = (pool.clone(), name.clone(), s.name.clone());
                let src = root.join("snapshots").join(&s.name);
                tokio::task::spawn_blocking(move || {
                    p.adopt_snapshot(&src, VolumeKind::Container, &n, &sn)
                })
                .await??;
                self.node.snapshot_create(s).await?;
            }
            let rootfs = pool
                .volume_path(VolumeKind::Container, &name)
                .join("rootfs");
            if renamed {
                // The hostname follows the name, as on rename.
                files::write_hostname(&rootfs, &name)?;
            }
            self.write_backup_file(&row).await;
            self.record_complete(&row).await?;
            revert.success();
            Ok::<_, EngineError>(())
        }
        .await;
        if let Err(e) = built {
            if let Err(undo) = self.drop_record(&name).await {
                tracing::error!(instance = %name, "dropping the record of a failed import: {undo}");
            }
            return Err(e);
        }
        op.set_metadata(json!({}));
        self.events.lifecycle(
            "instance-created",
            &format!("/1.0/instances/{name}"),
            json!({"source": "backup"}),
        );
        Ok(())
    }
}

/// Unpacking progress of a stream, whose size is not known.
fn report_streamed(op: &Op, read: u64, started: std::time::Instant) {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let speed = (read as f64 / secs) as u64;
    op.set_metadata(json!({
        PROGRESS_KEY: format!(
            "Unpack: {} ({}/s)",
            kante_storage::format_size(read),
            kante_storage::format_size(speed)
        ),
        "progress": {
            "stage": "unpack",
            "processed": read.to_string(),
            "speed": speed.to_string(),
        }
    }));
}

/// Says which snapshot of the backup a refusal is about.
fn in_snapshot(snapshot: &str, e: EngineError) -> EngineError {
    match e.kind() {
        ErrorKind::BadRequest => {
            EngineError::bad(format!("Snapshot {snapshot:?} of the backup: {e}"))
        }
        _ => e,
    }
}

/// Removes the staging directory of an import, whatever happened.
struct UnpackDir(Pool, PathBuf);

impl Drop for UnpackDir {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove_unpack_dir(&self.1) {
            tracing::warn!(path = %self.1.display(), "removing an import staging directory: {e}");
        }
    }
}

/// `path` must be a real directory the archive made.
fn check_tree(path: &Path, shown: &str) -> Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => Ok(()),
        _ => Err(EngineError::bad(format!(
            "Invalid backup tarball: {shown} is missing or not a directory"
        ))),
    }
}

/// Devices whose root disk is on `pool`: a local root device is pointed
/// there, and a root disk from the profiles that names another pool gets a
/// local override (as LXD does when importing into another pool).
fn fit_root(
    layers: &[(ConfigMap, DevicesMap)],
    config: &ConfigMap,
    devices: &DevicesMap,
    pool: &str,
) -> DevicesMap {
    let mut devices = devices.clone();
    for (name, dev) in devices.iter_mut() {
        if crate::devices::is_root_disk(name, dev) {
            dev.insert("pool".into(), pool.into());
        }
    }
    let (_, expanded) = config::expand(layers, config, &devices);
    match config::root_disk(&expanded) {
        Some((_, root)) if root.get("pool").map(String::as_str) == Some(pool) => {}
        Some((dev, root)) => {
            let mut root = root.clone();
            root.insert("pool".into(), pool.into());
            devices.insert(dev.clone(), root);
        }
        None => {
            let root: ConfigMap = [("type", "disk"), ("path", "/"), ("pool", pool)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            devices.insert("root".into(), root);
        }
    }
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn root_disk_moves_to_the_target_pool() {
        let mut profile = DevicesMap::new();
        profile.insert(
            "root".into(),
            dev(&[("type", "disk"), ("path", "/"), ("pool", "default")]),
        );
        let layers = vec![(ConfigMap::new(), profile)];
        // Profile root already on the target: nothing local is added.
        let d = fit_root(&layers, &ConfigMap::new(), &DevicesMap::new(), "default");
        assert!(d.is_empty());
        // Another target: a local override with the profile's keys.
        let d = fit_root(&layers, &ConfigMap::new(), &DevicesMap::new(), "fast");
        assert_eq!(d["root"]["pool"], "fast");
        assert_eq!(d["root"]["path"], "/");
        // A local root on a pool that does not exist here is repointed.
        let mut local = DevicesMap::new();
        local.insert(
            "rootfs".into(),
            dev(&[
                ("type", "disk"),
                ("path", "/"),
                ("pool", "gone"),
                ("size", "1GiB"),
            ]),
        );
        let d = fit_root(&layers, &ConfigMap::new(), &local, "fast");
        assert_eq!(d["rootfs"]["pool"], "fast");
        assert_eq!(d["rootfs"]["size"], "1GiB");
        // No root disk at all: one is added.
        let d = fit_root(&[], &ConfigMap::new(), &DevicesMap::new(), "p");
        assert_eq!(d["root"]["pool"], "p");
    }

    #[test]
    fn tarball_problems_are_client_errors() {
        for e in [
            ImageError::Corrupt("x".into()),
            ImageError::UnsafePath("../x".into()),
            ImageError::InvalidImage("x".into()),
            ImageError::TooLarge("x".into()),
        ] {
            assert_eq!(archive_error(e).status(), 400);
        }
        assert_eq!(
            archive_error(ImageError::InvalidLimit("x".into())).status(),
            500
        );
    }
}
