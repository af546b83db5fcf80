//! The verbs the front door composes from the engine's methods, with the
//! checks that belong to the API rather than to one method: filtered
//! listings, profile merges, which volumes the API may change, downloads.

use kante_api::instance::Instance;
use kante_api::profile::ProfilePut;
use kante_api::storage::{StorageVolumePost, StorageVolumesPost};

use super::filter;
use super::reply::{Disposition, Download, DownloadPart, Reply};
use super::request::ListDetail;
use crate::error::{EngineError, Result};
use crate::Engine;

/// Only custom volumes change through the volume verbs (an instance's
/// volume changes with its instance).
pub(super) fn custom_only(kind: &str) -> Result<()> {
    if kind == "custom" {
        return Ok(());
    }
    Err(EngineError::bad(format!(
        "Only custom volumes can be changed here, not {kind:?} volumes"
    )))
}

fn volume_location(pool: &str, name: &str) -> String {
    format!("/1.0/storage-pools/{pool}/volumes/custom/{name}")
}

impl Engine {
    /// Instances as asked: names, records or full, keeping those `filter`
    /// matches. Only a filter needs each instance's JSON form.
    pub(super) async fn instance_listing(&self, detail: ListDetail, f: &str) -> Result<Reply> {
        let filtered = !f.trim().is_empty();
        let keep = |i: &Instance| -> Result<bool> {
            if !filtered {
                return Ok(true);
            }
            filter::matches(f, &serde_json::to_value(i).unwrap_or_default())
                .map_err(|e| EngineError::bad(format!("Invalid filter: {e}")))
        };
        if detail == ListDetail::Names && !filtered {
            return Ok(Reply::InstanceNames(self.instance_names().await?));
        }
        if detail == ListDetail::Full {
            let mut out = Vec::new();
            for i in self.instance_list_full().await? {
                if keep(&i.instance)? {
                    out.push(i);
                }
            }
            return Ok(Reply::InstancesFull(out));
        }
        let mut kept = Vec::new();
        for i in self.instance_list().await? {
            if keep(&i)? {
                kept.push(i);
            }
        }
        Ok(match detail {
            ListDetail::Names => Reply::InstanceNames(kept.into_iter().map(|i| i.name).collect()),
            _ => Reply::Instances(kept),
        })
    }

    /// PUT replaces the profile; PATCH (`merge`) adds or replaces the keys
    /// and devices given and a non-empty description.
    pub(super) async fn profile_change(
        &self,
        name: &str,
        put: ProfilePut,
        merge: bool,
    ) -> Result<Reply> {
        let put = if merge {
            let cur = self.profile_get(name).await?;
            let mut merged = ProfilePut {
                description: cur.description,
                config: cur.config,
                devices: cur.devices,
            };
            if !put.description.is_empty() {
                merged.description = put.description;
            }
            merged.config.extend(put.config);
            merged.devices.extend(put.devices);
            merged
        } else {
            put
        };
        Ok(Reply::ProfileChanges(self.profile_update(name, put).await?))
    }

    /// Renames a profile that exists (404 otherwise).
    pub(super) async fn profile_move(&self, name: &str, new_name: &str) -> Result<Reply> {
        self.profile_get(name).await?;
        self.profile_rename(name, new_name).await?;
        Ok(Reply::Created {
            location: format!("/1.0/profiles/{new_name}"),
        })
    }

    /// Creates a volume; a type in the URL must agree with the body's. A
    /// volume received from another server (`source.type: "migration"`)
    /// or copied from another member is made by an operation.
    pub(super) async fn volume_make(
        &self,
        pool: &str,
        kind: Option<String>,
        mut post: StorageVolumesPost,
    ) -> Result<Reply> {
        if let Some(kind) = kind {
            if !post.kind.is_empty() && post.kind != kind {
                return Err(EngineError::bad(format!(
                    "Volume type {:?} in the body does not match {kind:?} in the URL",
                    post.kind
                )));
            }
            post.kind = kind;
        }
        match post.source.kind.as_str() {
            "migration" => {
                if !matches!(post.kind.as_str(), "" | "custom") {
                    custom_only(&post.kind)?;
                }
                let op = self.volume_migration_create(pool, post).await?;
                return Ok(Reply::Operation(op));
            }
            "copy" => {
                if let Some(op) = self.volume_copy_from_member(pool, &post).await? {
                    return Ok(Reply::Operation(op));
                }
            }
            _ => {}
        }
        let name = post.name.clone();
        self.volume_create(pool, post).await?;
        Ok(Reply::Created {
            location: volume_location(pool, &name),
        })
    }

    /// Renames a custom volume in its pool (moving it to another is
    /// refused), or with `migration` offers it to another server.
    pub(super) async fn volume_move(
        &self,
        pool: &str,
        kind: &str,
        volume: &str,
        post: StorageVolumePost,
    ) -> Result<Reply> {
        custom_only(kind)?;
        if post.migration {
            let op = self.volume_migration_source(pool, volume, post).await?;
            return Ok(Reply::Operation(op));
        }
        if !post.pool.is_empty() && post.pool != pool {
            return Err(EngineError::NotImplemented(
                "Moving a volume to another pool is not supported; copy it instead".into(),
            ));
        }
        self.volume_rename(pool, volume, &post.name).await?;
        Ok(Reply::Created {
            location: volume_location(pool, &post.name),
        })
    }

    /// The log files of an existing instance.
    pub(super) async fn log_files(&self, instance: &str) -> Result<Reply> {
        self.instance_row(instance).await?;
        Ok(Reply::Logs {
            instance: instance.to_string(),
            files: vec!["lxc.log".to_string()],
        })
    }

    /// An image's files, opened: one, or its metadata and rootfs.
    pub(super) async fn image_download(&self, fingerprint: &str) -> Result<Reply> {
        let files = self.image_export_files(fingerprint).await?;
        let mut parts = Vec::new();
        for (i, (filename, path)) in files.into_iter().enumerate() {
            let field = if i == 0 { "metadata" } else { "rootfs" };
            parts.push(open_part(field, filename, &path).await?);
        }
        Ok(Reply::Download(Download {
            disposition: Disposition::Inline,
            parts,
        }))
    }

    /// A backup's tarball, opened.
    pub(super) async fn backup_download(&self, instance: &str, backup: &str) -> Result<Reply> {
        let path = self.backup_file(instance, backup).await?;
        Ok(Reply::Download(Download {
            disposition: Disposition::Attachment,
            parts: vec![open_part("backup", backup.to_string(), &path).await?],
        }))
    }
}

async fn open_part(
    field: &'static str,
    filename: String,
    path: &std::path::Path,
) -> Result<DownloadPart> {
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    Ok(DownloadPart {
        field,
        filename,
        file,
        len,
    })
}
