//! Request bodies that arrive as byte streams: image uploads and backup
//! imports (spooled to disk here, never held in memory, then imported in
//! an operation) and file pushes (streamed into the instance's file).

use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use kante_api::image::ImageAliasRef;
use kante_api::ConfigMap;
use tokio::io::AsyncWriteExt;

use crate::error::{EngineError, Result};
use crate::images::{ImageUpload, UploadFiles};
use crate::instance::files::{FileKind, FilePut};
use crate::instance::import::BackupImport;
use crate::Engine;

/// A request body as it arrives; an error is the client's (a broken read).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The named parts of a `multipart/form-data` body, one after the other
/// (each must be read before the next is asked for).
#[async_trait::async_trait]
pub trait Parts: Send {
    /// The next part's form name and bytes; `None` after the last.
    async fn next_part(&mut self) -> Result<Option<(String, ByteStream)>>;
}

/// An image upload's body: the image file, or its parts.
pub enum UploadBody {
    /// One file (a unified image, or a metadata tarball alone).
    Single(ByteStream),
    /// `metadata` and `rootfs` parts (a split image).
    Parts(Box<dyn Parts>),
}

/// What comes with an uploaded image (LXD's `X-LXD-*` headers).
#[derive(Debug, Clone, Default)]
pub struct ImageUploadInfo {
    pub filename: String,
    pub public: bool,
    pub properties: ConfigMap,
    pub aliases: Vec<ImageAliasRef>,
    pub expected_fingerprint: Option<String>,
    pub profiles: Option<Vec<String>>,
}

/// The longest symlink target a push may carry.
const MAX_SYMLINK_TARGET: usize = 4096;

/// A spooled upload, removed when dropped unless kept.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Spool {
    /// Hands the file over to the engine's import, which removes it when done.
    fn keep(self) -> PathBuf {
        let p = self.0.clone();
        std::mem::forget(self);
        p
    }
}

/// Writes `stream` to a fresh file in `dir`.
async fn spool(dir: &Path, mut stream: ByteStream) -> Result<Spool> {
    let path = dir.join(format!("upload-{}", crate::util::random_hex(16)));
    let spool = Spool(path.clone());
    let mut f = tokio::fs::File::create(&path).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| EngineError::bad(format!("Reading the upload: {e}")))?;
        f.write_all(&chunk).await?;
    }
    f.flush().await?;
    Ok(spool)
}

fn read_error(e: std::io::Error) -> EngineError {
    EngineError::bad(format!("Reading the body: {e}"))
}

impl Engine {
    /// `POST /1.0/images` with a file body: spools it, then imports it in
    /// an operation. Only container images are taken.
    pub(super) async fn image_upload(
        &self,
        info: ImageUploadInfo,
        body: UploadBody,
    ) -> Result<std::sync::Arc<crate::Op>> {
        let dir = self.upload_dir()?;
        let files = match body {
            UploadBody::Single(stream) => UploadFiles::Unified(spool(&dir, stream).await?.keep()),
            UploadBody::Parts(mut parts) => {
                let (mut meta, mut rootfs) = (None, None);
                while let Some((name, stream)) = parts.next_part().await? {
                    match name.as_str() {
                        "metadata" => meta = Some(spool(&dir, stream).await?),
                        "rootfs" => rootfs = Some(spool(&dir, stream).await?),
                        "rootfs.img" => {
                            return Err(EngineError::bad(
                                "Virtual-machine images are not supported",
                            ))
                        }
                        other => {
                            return Err(EngineError::bad(format!(
                                "Unexpected upload part {other:?}"
                            )))
                        }
                    }
                }
                match (meta, rootfs) {
                    (Some(m), Some(r)) => UploadFiles::Split {
                        metadata: m.keep(),
                        rootfs: r.keep(),
                    },
                    (Some(m), None) => UploadFiles::Unified(m.keep()),
                    _ => return Err(EngineError::bad("Multipart upload without a metadata part")),
                }
            }
        };
        self.image_import(ImageUpload {
            files,
            filename: info.filename,
            public: info.public,
            properties: info.properties,
            aliases: info.aliases,
            expected_fingerprint: info.expected_fingerprint,
            profiles: info.profiles,
        })
        .await
    }

    /// `POST /1.0/instances` with a backup tarball: spools it, then makes
    /// the instance from it in an operation.
    pub(super) async fn backup_import(
        &self,
        body: ByteStream,
        name: Option<String>,
        pool: Option<String>,
    ) -> Result<std::sync::Arc<crate::Op>> {
        let dir = self.backup_upload_dir()?;
        let file = spool(&dir, body).await?;
        self.instance_import(BackupImport {
            file: file.keep(),
            name,
            pool,
        })
        .await
    }

    /// A file push: a symlink takes its target from the body, a file its
    /// content (streamed, never held whole), a directory nothing.
    pub(super) async fn file_push(
        &self,
        instance: &str,
        path: &str,
        put: FilePut,
        mut body: ByteStream,
    ) -> Result<()> {
        if put.mode.is_some_and(|m| m > 0o7777) {
            return Err(EngineError::bad("Invalid X-LXD-mode header"));
        }
        let target = if put.kind == FileKind::Symlink {
            let mut t = Vec::new();
            while let Some(chunk) = body.next().await {
                t.extend_from_slice(&chunk.map_err(read_error)?);
                if t.len() > MAX_SYMLINK_TARGET {
                    return Err(EngineError::bad("Symlink target is too long"));
                }
            }
            Some(
                String::from_utf8(t)
                    .map_err(|_| EngineError::bad("Symlink target is not UTF-8"))?,
            )
        } else {
            None
        };
        if let Some(file) = self.file_put(instance, path, put, target).await? {
            let mut f = tokio::fs::File::from_std(file);
            while let Some(chunk) = body.next().await {
                f.write_all(&chunk.map_err(read_error)?).await?;
            }
            f.flush().await?;
        }
        Ok(())
    }
}
