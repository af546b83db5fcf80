//! Images: import (into the content-addressed store), listing, aliases,
//! export, and unpacking once per pool for instances to be made from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kante_api::image::{
    normalise_architecture, Image, ImageAlias, ImageAliasRef, ImageAliasesPost, ImagePut,
};
use kante_api::operation::OperationClass;
use kante_api::ConfigMap;
use kante_images::{ImageError, Limits, StoredImage};
use kante_storage::{Pool, VolumeKind};
use kante_store::{AliasRow, ImageRow};
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::operations::Op;
use crate::util::{fmt_time, parse_time};
use crate::Engine;

/// An image being stored from an upload: the store's result, once the
/// body has gone through it (see `front/upload.rs`).
pub(crate) type StoreTask = tokio::sync::oneshot::Receiver<Result<StoredImage>>;

/// `POST /1.0/images` with a file body, plus its `X-LXD-*` headers.
pub(crate) struct ImageUpload {
    pub stored: StoreTask,
    pub filename: String,
    pub public: bool,
    pub properties: ConfigMap,
    pub aliases: Vec<ImageAliasRef>,
    pub profiles: Option<Vec<String>>,
}

impl Engine {
    /// Where a rootfs part sent before its metadata part is spooled
    /// (same filesystem as the store).
    pub(crate) fn upload_dir(&self) -> Result<PathBuf> {
        let d = self.paths.images().join(".uploads");
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Stores an upload in the background: `store` runs on a blocking
    /// thread with the store's directory, the expected fingerprint and the
    /// import caps. An image stored for nobody (the request went away
    /// before its operation took it) is removed.
    pub(crate) fn store_task<F>(&self, expected: Option<String>, store: F) -> StoreTask
    where
        F: FnOnce(&Path, Option<&str>, &Limits) -> std::result::Result<StoredImage, ImageError>
            + Send
            + 'static,
    {
        let dir = self.paths.images();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let d = dir.clone();
            let stored = tokio::task::spawn_blocking(move || {
                let limits = Limits::import_into(&d)?;
                store(&d, expected.as_deref(), &limits).map_err(EngineError::from)
            })
            .await
            .map_err(EngineError::from)
            .and_then(|r| r);
            if let Err(Ok(s)) = tx.send(stored) {
                let _ = kante_images::remove_stored(&dir, &s.fingerprint);
            }
        });
        rx
    }

    /// Waits for a store nobody will record, and removes what it stored.
    pub(crate) async fn abandon_store(&self, task: StoreTask) {
        if let Ok(Ok(s)) = task.await {
            let _ = kante_images::remove_stored(&self.paths.images(), &s.fingerprint);
        }
    }

    /// What an upload's headers ask for that must exist, or must not.
    pub(crate) async fn check_image_upload(
        &self,
        aliases: &[ImageAliasRef],
        profiles: Option<&[String]>,
    ) -> Result<()> {
        for a in aliases {
            kante_api::names::validate_alias_name(&a.name)?;
            if self.shared.alias_get(&a.name).await?.is_some() {
                return Err(EngineError::Conflict(format!(
                    "Alias {:?} already exists",
                    a.name
                )));
            }
        }
        for name in profiles.unwrap_or_default() {
            self.shared
                .profile_get(name)
                .await?
                .ok_or_else(|| EngineError::NotFound(format!("Profile {name:?} not found")))?;
        }
        Ok(())
    }

    pub(crate) async fn render_image(&self, row: &ImageRow) -> Image {
        let aliases = self
            .shared
            .alias_list()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.target == row.fingerprint)
            .map(|a| ImageAliasRef {
                name: a.name,
                description: a.description,
            })
            .collect();
        Image {
            auto_update: row.auto_update,
            properties: row.properties.clone(),
            public: row.public,
            expires_at: parse_time(&row.expires_at),
            profiles: row.profiles.clone(),
            aliases,
            architecture: row.architecture.clone(),
            cached: row.cached,
            filename: row.filename.clone(),
            fingerprint: row.fingerprint.clone(),
            size: row.size,
            kind: row.kind.clone(),
            created_at: parse_time(&row.created_at),
            last_used_at: parse_time(&row.last_used_at),
            uploaded_at: parse_time(&row.uploaded_at),
        }
    }

    /// The images, or for an untrusted caller (`trusted` false) the public
    /// ones only.
    pub(crate) async fn image_list(&self, trusted: bool) -> Result<Vec<Image>> {
        let mut out = Vec::new();
        for r in self.shared.image_list().await? {
            if !trusted && !r.public {
                continue;
            }
            out.push(self.render_image(&r).await);
        }
        Ok(out)
    }

    async fn image_row(&self, fp: &str) -> Result<ImageRow> {
        self.shared
            .image_get(fp)
            .await?
            .ok_or_else(|| EngineError::NotFound("Image not found".into()))
    }

    pub(crate) async fn image_get(&self, fp: &str) -> Result<Image> {
        Ok(self.render_image(&self.image_row(fp).await?).await)
    }

    /// An image as an untrusted caller may see it: a public one, by its
    /// fingerprint or a prefix matched among the public ones only (so not
    /// even an ambiguity tells of a private one); a private one is not
    /// found, exactly as a missing one.
    pub(crate) async fn public_image(&self, fp: &str) -> Result<Image> {
        let prefix = fp.to_ascii_lowercase();
        let mut rows: Vec<ImageRow> = self
            .shared
            .image_list()
            .await?
            .into_iter()
            .filter(|r| r.public && !prefix.is_empty() && r.fingerprint.starts_with(&prefix))
            .collect();
        match rows.len() {
            1 => Ok(self.render_image(&rows.remove(0)).await),
            0 => Err(EngineError::NotFound("Image not found".into())),
            _ => Err(EngineError::Conflict(format!(
                "More than one image matches {fp:?}"
            ))),
        }
    }

    /// Whether the image `fp` is public (a missing one is not).
    async fn is_public(&self, fp: &str) -> bool {
        matches!(self.shared.image_get(fp).await, Ok(Some(row)) if row.public)
    }

    /// Records an uploaded image in an operation whose result carries the
    /// fingerprint, once its store is done.
    pub(crate) fn image_import(&self, upload: ImageUpload) -> Arc<Op> {
        let op = self.ops.create(
            OperationClass::Task,
            "Downloading image",
            Default::default(),
        );
        let engine = self.arc();
        let op2 = op.clone();
        self.ops.run(op.clone(), async move {
            engine.record_upload(&op2, upload).await
        });
        op
    }

    pub(crate) async fn record_upload(&self, op: &Op, mut upload: ImageUpload) -> Result<()> {
        let stored = (&mut upload.stored)
            .await
            .map_err(|_| EngineError::internal("the image store stopped"))??;
        let fp = stored.fingerprint.clone();
        let mut properties: ConfigMap = stored.metadata.properties.clone().into_iter().collect();
        properties.extend(upload.properties.clone());
        let now = fmt_time(kante_api::now());
        let created = chrono::DateTime::from_timestamp(stored.metadata.creation_date, 0)
            .unwrap_or_else(kante_api::now);
        let expires = if stored.metadata.expiry_date > 0 {
            chrono::DateTime::from_timestamp(stored.metadata.expiry_date, 0)
                .unwrap_or_else(kante_api::zero_time)
        } else {
            kante_api::zero_time()
        };
        let row = ImageRow {
            fingerprint: fp.clone(),
            filename: upload.filename.clone(),
            size: stored.size as i64,
            architecture: normalise_architecture(&stored.metadata.architecture),
            kind: "container".into(),
            public: upload.public,
            auto_update: false,
            cached: false,
            properties,
            profiles: upload
                .profiles
                .clone()
                .unwrap_or_else(|| vec!["default".into()]),
            created_at: fmt_time(created),
            uploaded_at: now.clone(),
            last_used_at: fmt_time(kante_api::zero_time()),
            expires_at: fmt_time(expires),
            update_source: Default::default(),
        };
        if let Err(e) = self.shared.image_create(&row).await {
            let _ = kante_images::remove_stored(&self.paths.images(), &fp);
            return Err(e.into());
        }
        for a in &upload.aliases {
            self.shared
                .alias_create(&AliasRow {
                    name: a.name.clone(),
                    target: fp.clone(),
                    description: a.description.clone(),
                })
                .await?;
        }
        op.set_metadata(json!({"fingerprint": fp, "size": stored.size.to_string()}));
        self.events
            .lifecycle("image-created", &format!("/1.0/images/{fp}"), json!({}));
        Ok(())
    }

    pub(crate) async fn image_update(&self, fp: &str, put: ImagePut, merge: bool) -> Result<()> {
        let mut row = self.image_row(fp).await?;
        row.public = put.public;
        row.auto_update = put.auto_update;
        if merge {
            row.properties.extend(put.properties);
        } else {
            row.properties = put.properties;
        }
        if let Some(p) = put.profiles {
            row.profiles = p;
        }
        self.shared.image_update(&row).await?;
        Ok(())
    }

    /// Deletes an image: its record, aliases, stored files and unpacked volumes.
    pub(crate) async fn image_delete(&self, fp: &str) -> Result<Arc<Op>> {
        let row = self.image_row(fp).await?;
        let mut res = std::collections::BTreeMap::new();
        res.insert(
            "images".to_string(),
            vec![format!("/1.0/images/{}", row.fingerprint)],
        );
        let op = self.ops.create(OperationClass::Task, "Deleting image", res);
        let engine = self.arc();
        self.ops.run(op.clone(), async move {
            let fp = row.fingerprint.clone();
            let lock = engine.image_lock(&fp);
            let _g = lock.lock().await;
            engine.shared.image_delete(&fp).await?;
            let pools: Vec<Pool> = engine
                .pools
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            let dir = engine.paths.images();
            let fp2 = fp.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                for p in pools {
                    p.delete_volume(VolumeKind::Image, &fp2)?;
                }
                kante_images::remove_stored(&dir, &fp2)?;
                Ok(())
            })
            .await??;
            engine
                .events
                .lifecycle("image-deleted", &format!("/1.0/images/{fp}"), json!({}));
            Ok(())
        });
        Ok(op)
    }

    /// The stored files of an image, with the names to export them under.
    pub(crate) async fn image_export_files(&self, fp: &str) -> Result<Vec<(String, PathBuf)>> {
        let row = self.image_row(fp).await?;
        let dir = self.paths.images();
        let main = dir.join(&row.fingerprint);
        let rootfs = dir.join(format!("{}.rootfs", row.fingerprint));
        if !main.is_file() {
            // In a cluster the index is shared but files are each member's.
            return Err(EngineError::NotFound(
                "The image's files are not stored on this server".into(),
            ));
        }
        let base = if row.filename.is_empty() {
            row.fingerprint.clone()
        } else {
            row.filename.clone()
        };
        if rootfs.exists() {
            Ok(vec![(format!("meta-{base}"), main), (base, rootfs)])
        } else {
            Ok(vec![(base, main)])
        }
    }

    pub(crate) async fn touch_image(&self, fp: &str) {
        if let Ok(Some(mut row)) = self.shared.image_get(fp).await {
            row.last_used_at = fmt_time(kante_api::now());
            let _ = self.shared.image_update(&row).await;
        }
    }

    /// Unpacks the image into `pool` once, reporting progress on `op` as LXD does.
    pub(crate) async fn ensure_image_volume(&self, op: &Op, fp: &str, pool: &Pool) -> Result<()> {
        let lock = self.image_lock(fp);
        let _g = lock.lock().await;
        if pool.has_volume(VolumeKind::Image, fp) {
            return Ok(());
        }
        let dir = self.paths.images();
        let (pool, fp) = (pool.clone(), fp.to_string());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64, f64)>();
        let work = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let mut last = 0u64;
            pool.create_image_volume(&fp, &mut |staging| {
                // The cap follows the pool's filesystem (the volume's parent exists).
                let limits = Limits::import_into(staging.parent().unwrap_or(staging))?;
                kante_images::unpack(&dir, &fp, staging, &limits, &mut |done, total| {
                    let pct = (done * 100).checked_div(total).unwrap_or(0);
                    if pct != last {
                        last = pct;
                        let _ = tx.send((pct, done, start.elapsed().as_secs_f64()));
                    }
                })?;
                Ok(())
            })
        });
        while let Some((pct, done, secs)) = rx.recv().await {
            let speed = if secs > 0.0 {
                (done as f64 / secs) as u64
            } else {
                0
            };
            op.set_metadata(json!({
                "create_instance_from_image_unpack_progress": format!("Unpack: {pct}% ({})", human_rate(speed)),
                "progress": {"percent": pct.to_string(), "speed": speed.to_string(), "stage": "create_instance_from_image_unpack"},
            }));
        }
        work.await??;
        Ok(())
    }

    // ---- aliases ----

    /// The aliases, or for an untrusted caller those of public images.
    pub(crate) async fn alias_list(&self, trusted: bool) -> Result<Vec<ImageAlias>> {
        let mut out = Vec::new();
        for a in self.shared.alias_list().await? {
            if trusted || self.is_public(&a.target).await {
                out.push(render_alias(a));
            }
        }
        Ok(out)
    }

    /// An alias; to an untrusted caller one of a private image is not found.
    pub(crate) async fn alias_get(&self, name: &str, trusted: bool) -> Result<ImageAlias> {
        match self.shared.alias_get(name).await? {
            Some(a) if trusted || self.is_public(&a.target).await => Ok(render_alias(a)),
            _ => Err(EngineError::NotFound("Image alias not found".into())),
        }
    }

    pub(crate) async fn alias_create(&self, req: ImageAliasesPost) -> Result<()> {
        kante_api::names::validate_alias_name(&req.name)?;
        let img = self.image_row(&req.target).await?;
        self.shared
            .alias_create(&AliasRow {
                name: req.name,
                target: img.fingerprint,
                description: req.description,
            })
            .await?;
        Ok(())
    }

    pub(crate) async fn alias_update(
        &self,
        name: &str,
        target: Option<String>,
        description: String,
    ) -> Result<()> {
        let mut row = self
            .shared
            .alias_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Image alias not found".into()))?;
        if let Some(t) = target.filter(|t| !t.is_empty()) {
            row.target = self.image_row(&t).await?.fingerprint;
        }
        row.description = description;
        self.shared.alias_update(&row).await?;
        Ok(())
    }

    pub(crate) async fn alias_rename(&self, name: &str, new: &str) -> Result<()> {
        kante_api::names::validate_alias_name(new)?;
        Ok(self.shared.alias_rename(name, new).await?)
    }

    pub(crate) async fn alias_delete(&self, name: &str) -> Result<()> {
        if !self.shared.alias_delete(name).await? {
            return Err(EngineError::NotFound("Image alias not found".into()));
        }
        Ok(())
    }
}

fn render_alias(a: AliasRow) -> ImageAlias {
    ImageAlias {
        description: a.description,
        target: a.target,
        name: a.name,
        kind: "container".into(),
    }
}

pub(crate) fn human_rate(bytes_per_sec: u64) -> String {
    let b = bytes_per_sec as f64;
    if b >= 1e9 {
        format!("{:.2}GB/s", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2}MB/s", b / 1e6)
    } else {
        format!("{:.2}kB/s", b / 1e3)
    }
}
