//! Refreshing pulled images from where they came from: `POST
//! /1.0/images/{fp}/refresh` (`lxc image refresh`, `kante image refresh`)
//! for one image, and, every `images.auto_update_interval` hours (6 by
//! default, 0 never), each image marked `auto_update`. The source recorded
//! at the pull (`update_source`: server, protocol, certificate, alias) is
//! asked again; when it now holds another image, that image is fetched,
//! takes over the old one's aliases, profiles and flags, and the old one
//! goes, as LXD does. A failed fetch leaves the old image as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kante_api::image::ImagesPost;
use kante_api::operation::OperationClass;
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::image_remote::RemoteImage;
use crate::operations::Op;
use crate::Engine;

/// Overrides `images.auto_update_interval` with a period in seconds
/// (tests).
const EVERY_ENV: &str = "KANTE_IMAGE_UPDATE_EVERY_SECS";

impl Engine {
    /// Refreshes one image in an operation whose metadata says whether a
    /// newer image replaced it (`refreshed`, as lxc reads it).
    pub(crate) async fn image_refresh(&self, fp: &str) -> Result<Arc<Op>> {
        let fingerprint = self.image_get(fp).await?.fingerprint;
        let mut res = std::collections::BTreeMap::new();
        res.insert(
            "images".to_string(),
            vec![format!("/1.0/images/{fingerprint}")],
        );
        let op = self
            .ops
            .create(OperationClass::Task, "Refreshing image", res);
        let engine = self.arc();
        let op2 = op.clone();
        self.ops.run(op.clone(), async move {
            let new = engine.refresh_image(&op2, &fingerprint).await?;
            op2.set_metadata(json!({
                "refreshed": new.is_some(),
                "fingerprint": new.unwrap_or(fingerprint),
            }));
            Ok(())
        });
        Ok(op)
    }

    /// Asks the image's source again; returns the new image's fingerprint
    /// when another one replaced it.
    async fn refresh_image(&self, op: &Op, fp: &str) -> Result<Option<String>> {
        let old = self
            .shared
            .image_get(fp)
            .await?
            .ok_or_else(|| EngineError::NotFound("Image not found".into()))?;
        let Some(source) = RemoteImage::from_origin(&old.update_source)? else {
            // Uploaded or published here: nothing to ask.
            return Ok(None);
        };
        let post = ImagesPost {
            public: old.public,
            auto_update: old.auto_update,
            ..Default::default()
        };
        let new = self.fetch_image(op, post, source, old.cached).await?;
        if new == old.fingerprint {
            return Ok(None);
        }
        // The new image takes the old one's place.
        if let Some(mut row) = self.shared.image_get(&new).await? {
            row.public = old.public;
            row.auto_update = old.auto_update;
            row.cached = old.cached;
            row.profiles = old.profiles.clone();
            self.shared.image_update(&row).await?;
        }
        for mut alias in self.shared.alias_list().await? {
            if alias.target == old.fingerprint {
                alias.target = new.clone();
                self.shared.alias_update(&alias).await?;
            }
        }
        let delete = self.image_delete(&old.fingerprint).await?;
        let done = delete.wait(None).await;
        if !done.err.is_empty() {
            tracing::warn!(image = %old.fingerprint, "the refreshed image's old version stays: {}", done.err);
        }
        tracing::info!(old = %old.fingerprint, new = %new, "image refreshed");
        self.events.lifecycle(
            "image-refreshed",
            &format!("/1.0/images/{new}"),
            json!({ "old": old.fingerprint }),
        );
        Ok(Some(new))
    }

    /// Refreshes every image marked `auto_update` (one failure does not
    /// stop the others); returns how many were replaced.
    pub(crate) async fn refresh_auto_update_images(&self) -> Result<usize> {
        let mut replaced = 0;
        for row in self.shared.image_list().await? {
            if !row.auto_update || row.update_source.is_empty() {
                continue;
            }
            let op = self.image_refresh(&row.fingerprint).await?;
            let done = op.wait(None).await;
            if !done.err.is_empty() {
                tracing::warn!(image = %row.fingerprint, "auto-update failed: {}", done.err);
            } else if done.metadata["refreshed"] == json!(true) {
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    /// Starts the auto-update task; it ends when the engine is dropped.
    /// Checked once a minute, so a changed interval applies soon.
    pub(crate) fn start_image_auto_update(&self) {
        let me = self.me.clone();
        let env_every = crate::util::env_secs(EVERY_ENV, 0);
        tokio::spawn(async move {
            let tick = if env_every > 0 { env_every.min(60) } else { 60 };
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(tick)).await;
                let Some(engine) = me.upgrade() else { return };
                let every = if env_every > 0 {
                    Some(Duration::from_secs(env_every))
                } else {
                    engine.auto_update_interval().await
                };
                let Some(every) = every else { continue };
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                if let Err(e) = engine.refresh_auto_update_images().await {
                    tracing::warn!("image auto-update: {e}");
                }
            }
        });
    }

    /// `images.auto_update_interval` in hours (6 unset; 0: never).
    async fn auto_update_interval(&self) -> Option<Duration> {
        let config = self.shared.config_all().await.ok()?;
        let hours = match config.get("images.auto_update_interval") {
            Some(v) => v.trim().parse::<u64>().ok()?,
            None => 6,
        };
        (hours > 0).then(|| Duration::from_secs(hours * 3600))
    }
}
