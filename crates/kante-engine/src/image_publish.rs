//! Making an image from an instance (`lxc publish`): `POST /1.0/images`
//! with `source: {type: "instance" | "container" | "snapshot", name:
//! "c1" | "c1/snap0"}`. The operation packs a unified image (a fresh
//! `metadata.yaml`, the volume's `rootfs/` and its `templates/`) with GNU
//! tar, numeric ids kept (the storage is unshifted: a guest's uid 0 is
//! uid 0 on disk, so the tarball needs no shifting back), then stores it
//! through the upload path (`kante_images::store_unified`: hashed,
//! scanned, the fingerprint its sha256) and records it with the request's
//! aliases, as LXD does. A running instance is refused, as LXD's server
//! refuses it (`lxc publish --force` stops it first, client-side).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kante_api::image::{ImageMetadata, ImagesPost};
use kante_api::operation::OperationClass;
use kante_api::ConfigMap;
use kante_images::archive::{pack_sections, ArchiveCompression, PackOptions, Section};
use kante_images::{ImageError, Limits};
use kante_storage::VolumeKind;
use kante_store::InstanceRow;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::images::ImageUpload;
use crate::operations::{instance_resources, Op};
use crate::Engine;

/// What a publish request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishSource {
    pub instance: String,
    pub snapshot: Option<String>,
}

impl PublishSource {
    /// Reads `source` of a `POST /1.0/images`; `Ok(None)` when it is not
    /// an instance or a snapshot.
    pub(crate) fn parse(source: &Value) -> Result<Option<PublishSource>> {
        let kind = source.get("type").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            kind,
            "instance" | "container" | "virtual-machine" | "snapshot"
        ) {
            return Ok(None);
        }
        if kind == "virtual-machine" {
            return Err(EngineError::bad("Virtual machines are not supported"));
        }
        let name = source.get("name").and_then(Value::as_str).unwrap_or("");
        let (instance, snapshot) = match name.split_once('/') {
            Some((i, s)) => (i.to_string(), Some(s.to_string())),
            None => (name.to_string(), None),
        };
        if instance.is_empty() || snapshot.as_deref() == Some("") {
            return Err(EngineError::bad(format!(
                "Image source needs an instance name (source.name), not {name:?}"
            )));
        }
        if kind == "snapshot" && snapshot.is_none() {
            return Err(EngineError::bad(format!(
                "A snapshot source is named INSTANCE/SNAPSHOT, not {name:?}"
            )));
        }
        Ok(Some(PublishSource { instance, snapshot }))
    }
}

/// The tarball's compression: LXD's names we can write.
fn compression(name: &str) -> Result<ArchiveCompression> {
    match name {
        "" => Ok(ArchiveCompression::Gzip),
        n => ArchiveCompression::parse(n).ok_or_else(|| {
            EngineError::bad(format!(
                "Unsupported compression algorithm {n:?} (gzip, zstd or none)"
            ))
        }),
    }
}

/// The new image's `metadata.yaml`: the volume's own (its templates kept)
/// or a fresh one, with the instance's architecture, now as its creation
/// date, and properties from the instance's `image.*` keys under the
/// request's.
pub(crate) fn publish_metadata(
    existing: Option<ImageMetadata>,
    row: &InstanceRow,
    requested: &ConfigMap,
    now: i64,
    expiry: i64,
) -> ImageMetadata {
    let mut meta = existing.unwrap_or_default();
    let mut properties: BTreeMap<String, String> = row
        .config
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("image.")?.to_string(), v.clone())))
        .collect();
    properties.extend(requested.iter().map(|(k, v)| (k.clone(), v.clone())));
    meta.architecture = row.architecture.clone();
    meta.creation_date = now;
    meta.expiry_date = expiry;
    meta.properties = properties;
    meta
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Engine {
    /// `POST /1.0/images` from an instance or a snapshot: checks the
    /// request, then packs, stores and records the image in an operation.
    pub(crate) async fn image_publish(
        &self,
        post: ImagesPost,
        source: PublishSource,
    ) -> Result<Arc<Op>> {
        self.check_image_upload(&post.aliases, None).await?;
        let compression = compression(&post.compression_algorithm)?;
        let row = self.instance_row(&source.instance).await?;
        if let Some(s) = &source.snapshot {
            self.node.snapshot_get(&row.name, s).await?.ok_or_else(|| {
                EngineError::NotFound(format!("Snapshot {}/{s} not found", row.name))
            })?;
        } else if self.running(&row.name).is_some() {
            return Err(EngineError::bad(
                "Cannot export a running instance as an image (stop it first, or publish with --force)",
            ));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Creating image",
            instance_resources(&[&row.name], false),
        );
        let engine = self.arc();
        let op2 = op.clone();
        self.ops.run(op.clone(), async move {
            engine.publish(&op2, post, row, source, compression).await
        });
        Ok(op)
    }

    async fn publish(
        &self,
        op: &Arc<Op>,
        post: ImagesPost,
        row: InstanceRow,
        source: PublishSource,
        compression: ArchiveCompression,
    ) -> Result<()> {
        let lock = self.instance_lock(&row.name);
        let guard = lock.lock().await;
        if source.snapshot.is_none() && self.running(&row.name).is_some() {
            return Err(EngineError::bad(
                "Cannot export a running instance as an image",
            ));
        }
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let volume = match &source.snapshot {
            Some(s) => pool.snapshot_path(VolumeKind::Container, &row.name, s)?,
            None => pool.volume_path(VolumeKind::Container, &row.name),
        };
        if !volume.join("rootfs").is_dir() {
            return Err(EngineError::internal(format!(
                "{} has no rootfs",
                volume.display()
            )));
        }
        let existing = match std::fs::read_to_string(volume.join("metadata.yaml")) {
            Ok(text) => Some(serde_yaml::from_str::<ImageMetadata>(&text).map_err(|e| {
                EngineError::bad(format!("The instance's metadata.yaml is invalid: {e}"))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(EngineError::io("reading metadata.yaml", e)),
        };
        let expiry = post
            .expires_at
            .map(|t| t.timestamp())
            .filter(|t| *t > 0)
            .unwrap_or(0);
        let meta = publish_metadata(
            existing,
            &row,
            &post.properties,
            kante_api::now().timestamp(),
            expiry,
        );
        let work = self.upload_dir()?;
        let head = TempDir(work.join(format!("publish-{}", crate::util::random_hex(8))));
        std::fs::create_dir(&head.0)?;
        std::fs::write(
            head.0.join("metadata.yaml"),
            serde_yaml::to_string(&meta).map_err(EngineError::internal)?,
        )?;
        let mut sections = vec![Section {
            dir: head.0.clone(),
            prefix: String::new(),
            members: vec!["metadata.yaml".into()],
        }];
        sections.push(Section::tree(volume.join("rootfs"), "rootfs"));
        if volume.join("templates").is_dir() {
            sections.push(Section::tree(volume.join("templates"), "templates"));
        }
        let tarball = head.0.join("image.tar");
        let limits = Limits::import_into(&work)?;
        let opts = PackOptions {
            compression,
            mode: 0o600,
            allow_changed_files: false,
            limits,
        };
        let (out, op2, started) = (tarball.clone(), op.clone(), std::time::Instant::now());
        tokio::task::spawn_blocking(move || {
            pack_sections(&sections, &out, &opts, &mut |done, total| {
                crate::instance::backups::report_progress(
                    &op2,
                    "create_image_from_container_pack_progress",
                    "Image pack",
                    done,
                    total,
                    started,
                )
            })
        })
        .await?
        .map_err(|e| match e {
            ImageError::TooLarge(m) => EngineError::bad(format!("The image is too large: {m}")),
            e => EngineError::internal(format!("Packing the image: {e}")),
        })?;
        drop(guard);
        let file = std::fs::File::open(&tarball)?;
        let stored = self.store_task(None, move |d, e, l| {
            kante_images::store_unified(d, std::io::BufReader::new(file), e, l)
        });
        let filename = format!(
            "{}.{}",
            source
                .snapshot
                .as_ref()
                .map(|s| format!("{}-{s}", row.name))
                .unwrap_or_else(|| row.name.clone()),
            compression.extension()
        );
        // The tarball stays open in the store until it is read; its name goes with `head`.
        let recorded = self
            .record_upload(
                op,
                ImageUpload {
                    stored,
                    filename,
                    public: post.public,
                    properties: ConfigMap::new(),
                    aliases: post.aliases.clone(),
                    profiles: None,
                },
            )
            .await;
        drop(head);
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources_name_an_instance_or_a_snapshot() {
        let p = |v: Value| PublishSource::parse(&v);
        assert_eq!(p(json!({"type": "image"})).unwrap(), None);
        assert_eq!(
            p(json!({"type": "container", "name": "c1"})).unwrap(),
            Some(PublishSource {
                instance: "c1".into(),
                snapshot: None
            })
        );
        assert_eq!(
            p(json!({"type": "snapshot", "name": "c1/s0"})).unwrap(),
            Some(PublishSource {
                instance: "c1".into(),
                snapshot: Some("s0".into())
            })
        );
        for bad in [
            json!({"type": "instance"}),
            json!({"type": "snapshot", "name": "c1"}),
            json!({"type": "instance", "name": "c1/"}),
            json!({"type": "virtual-machine", "name": "v"}),
        ] {
            assert!(p(bad.clone()).is_err(), "{bad}");
        }
        assert!(compression("xz-bogus").is_err());
        assert_eq!(compression("").unwrap(), ArchiveCompression::Gzip);
    }

    #[test]
    fn metadata_takes_the_image_keys_under_the_request() {
        let mut row = InstanceRow {
            name: "c1".into(),
            project: "default".into(),
            kind: "container".into(),
            architecture: "x86_64".into(),
            ephemeral: false,
            stateful: false,
            description: String::new(),
            created_at: String::new(),
            last_used_at: String::new(),
            config: ConfigMap::new(),
            devices: Default::default(),
            profiles: vec![],
        };
        row.config.insert("image.os".into(), "Debian".into());
        row.config.insert("image.release".into(), "bookworm".into());
        row.config.insert("limits.cpu".into(), "1".into());
        let mut existing = ImageMetadata {
            architecture: "aarch64".into(),
            creation_date: 5,
            ..Default::default()
        };
        existing.templates.insert(
            "/etc/hostname".into(),
            kante_api::image::ImageTemplate {
                when: vec!["create".into()],
                template: "hostname.tpl".into(),
                ..Default::default()
            },
        );
        let mut asked = ConfigMap::new();
        asked.insert("release".into(), "custom".into());
        asked.insert("description".into(), "mine".into());
        let m = publish_metadata(Some(existing), &row, &asked, 1000, 0);
        assert_eq!(m.architecture, "x86_64");
        assert_eq!(m.creation_date, 1000);
        assert_eq!(m.properties["os"], "Debian");
        assert_eq!(m.properties["release"], "custom");
        assert_eq!(m.properties["description"], "mine");
        assert!(!m.properties.contains_key("cpu"));
        assert!(m.templates.contains_key("/etc/hostname"));
        let fresh = publish_metadata(None, &row, &ConfigMap::new(), 7, 99);
        assert_eq!(fresh.expiry_date, 99);
        assert!(fresh.templates.is_empty());
    }
}
