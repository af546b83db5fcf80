//! Request bodies that arrive as byte streams: image uploads and backup
//! imports, read once on their way into the image store or the pool
//! (never held in memory, and spooled to disk only where the archive's
//! order requires it), and file pushes (streamed into the instance's file).
//!
//! Where the body is consumed: in the request handler, which pumps it
//! (see `feed.rs`) into the import reading it on a blocking thread, and
//! replies only once the whole body is read, as LXD does. An image's
//! store runs beside the handler and the operation records the result;
//! a backup's `index.yaml` is checked in the handler, then the operation
//! unpacks the rest as it arrives. The reply thus comes when it always
//! came, with the errors it always had: a refused index or a broken body
//! as the request's error, a bad archive as the operation's.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use kante_api::image::ImageAliasRef;
use kante_api::ConfigMap;
use tokio::io::AsyncWriteExt;

use super::feed::{self, drain};
use crate::error::{EngineError, Result};
use crate::images::{ImageUpload, StoreTask};
use crate::instance::files::{FileKind, FilePut};
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

/// A spooled upload part, removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `stream` to a fresh file in `dir`.
async fn spool(dir: &Path, mut stream: ByteStream) -> Result<Spool> {
    let path = dir.join(format!("upload-{}", crate::util::random_hex(16)));
    let spool = Spool(path.clone());
    let mut f = tokio::fs::File::create(&path).await?;
    while let Some(chunk) = stream.next().await {
        f.write_all(&chunk.map_err(upload_error)?).await?;
    }
    f.flush().await?;
    Ok(spool)
}

/// The client's broken body.
fn upload_error(e: std::io::Error) -> EngineError {
    EngineError::bad(format!("Reading the upload: {e}"))
}

fn read_error(e: std::io::Error) -> EngineError {
    EngineError::bad(format!("Reading the body: {e}"))
}

/// A multipart part an image upload does not take.
fn part_error(name: &str) -> EngineError {
    match name {
        "rootfs.img" => EngineError::bad("Virtual-machine images are not supported"),
        other => EngineError::bad(format!("Unexpected upload part {other:?}")),
    }
}

/// Reads the remaining parts to their end (a refused upload still gets
/// its reply after the whole body).
async fn drain_parts(parts: &mut dyn Parts) {
    while let Ok(Some((_, s))) = parts.next_part().await {
        drain(s).await;
    }
}

/// Where the store reads a split image's rootfs from, once it has read
/// the metadata part.
type RootfsTx = tokio::sync::oneshot::Sender<Option<Box<dyn std::io::Read + Send>>>;

/// Hands the store its rootfs: the part spooled before the metadata, the
/// part that follows it (streamed), or none (a unified image).
async fn send_rootfs(parts: &mut dyn Parts, early: Option<Spool>, tx: RootfsTx) -> Result<()> {
    if let Some(spooled) = early {
        // The open file outlives its name, removed when `spooled` goes.
        let f = std::fs::File::open(&spooled.0)?;
        let _ = tx.send(Some(Box::new(f)));
        return Ok(());
    }
    match parts.next_part().await? {
        None => {
            let _ = tx.send(None);
            Ok(())
        }
        Some((name, stream)) if name == "rootfs" => {
            let (feed, reader) = feed::channel();
            let _ = tx.send(Some(Box::new(reader)));
            feed.pump(stream).await.map_err(upload_error)
        }
        Some((name, stream)) => {
            drain(stream).await;
            Err(part_error(&name))
        }
    }
}

impl Engine {
    /// `POST /1.0/images` with a file body: streams it into the image
    /// store (hashed, checked and written in one pass), then records it in
    /// an operation. Only container images are taken.
    pub(super) async fn image_upload(
        &self,
        info: ImageUploadInfo,
        body: UploadBody,
    ) -> Result<std::sync::Arc<crate::Op>> {
        let checked = self
            .check_image_upload(&info.aliases, info.profiles.as_deref())
            .await;
        let stored = match (checked, body) {
            (Err(e), UploadBody::Single(s)) => {
                drain(s).await;
                return Err(e);
            }
            (Err(e), UploadBody::Parts(mut p)) => {
                drain_parts(p.as_mut()).await;
                return Err(e);
            }
            (Ok(()), UploadBody::Single(stream)) => {
                let (feed, reader) = feed::channel();
                let task = self.store_task(info.expected_fingerprint.clone(), move |d, e, l| {
                    kante_images::store_unified(d, reader, e, l)
                });
                if let Err(e) = feed.pump(stream).await {
                    self.abandon_store(task).await;
                    return Err(upload_error(e));
                }
                task
            }
            (Ok(()), UploadBody::Parts(parts)) => self.upload_parts(&info, parts).await?,
        };
        Ok(self.image_import(ImageUpload {
            stored,
            filename: info.filename,
            public: info.public,
            properties: info.properties,
            aliases: info.aliases,
            profiles: info.profiles,
        }))
    }

    /// A `multipart/form-data` upload: `metadata`, then `rootfs` (a split
    /// image) or nothing (a unified one), streamed into the store. A
    /// rootfs sent before its metadata (LXD's clients never do) is
    /// spooled, for the fingerprint hashes the metadata first.
    pub(crate) async fn upload_parts(
        &self,
        info: &ImageUploadInfo,
        mut parts: Box<dyn Parts>,
    ) -> Result<StoreTask> {
        let mut early_rootfs = None;
        let meta = loop {
            let next = match parts.next_part().await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(EngineError::bad("Multipart upload without a metadata part"))
                }
                Err(e) => return Err(e),
            };
            match next.0.as_str() {
                "metadata" => break next.1,
                "rootfs" if early_rootfs.is_none() => {
                    early_rootfs = Some(spool(&self.upload_dir()?, next.1).await?)
                }
                other => {
                    let e = part_error(other);
                    drain(next.1).await;
                    drain_parts(parts.as_mut()).await;
                    return Err(e);
                }
            }
        };
        let (feed, reader) = feed::channel();
        let (rootfs_tx, rootfs_rx) = tokio::sync::oneshot::channel();
        let task = self.store_task(info.expected_fingerprint.clone(), move |d, e, l| {
            let rootfs = move || {
                rootfs_rx.blocking_recv().map_err(|_| {
                    kante_images::ImageError::InvalidImage("the upload was abandoned".into())
                })
            };
            kante_images::store_upload(d, reader, rootfs, e, l)
        });
        if let Err(e) = feed.pump(meta).await {
            drop(rootfs_tx);
            self.abandon_store(task).await;
            return Err(upload_error(e));
        }
        let sent = send_rootfs(parts.as_mut(), early_rootfs, rootfs_tx).await;
        // Any part after these two is refused, as LXD reads two at most.
        let refused = match sent {
            Err(e) => Some(e),
            Ok(()) => match parts.next_part().await {
                Ok(None) => None,
                Ok(Some((name, stream))) => {
                    drain(stream).await;
                    Some(part_error(&name))
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = refused {
            drain_parts(parts.as_mut()).await;
            self.abandon_store(task).await;
            return Err(e);
        }
        Ok(task)
    }

    /// `POST /1.0/instances` with a backup tarball: its `index.yaml` is
    /// checked as soon as it has arrived, then an operation unpacks the
    /// rest as it arrives (see `instance/import.rs`).
    pub(super) async fn backup_import(
        &self,
        body: ByteStream,
        name: Option<String>,
        pool: Option<String>,
    ) -> Result<std::sync::Arc<crate::Op>> {
        // Where the body goes if it must be spooled after all: ready first.
        let spool_dir = match self.backup_upload_dir() {
            Ok(d) => d,
            Err(e) => {
                drain(body).await;
                return Err(e);
            }
        };
        let (feed, reader) = feed::channel();
        let (pumped, started) = tokio::join!(
            feed.pump(body),
            self.instance_import_stream(reader, &spool_dir, name, pool)
        );
        match pumped {
            Ok(()) => started,
            Err(e) => {
                // The import fails on the broken body too: reply once it has cleaned up.
                if let Ok(op) = started {
                    op.wait(None).await;
                }
                Err(upload_error(e))
            }
        }
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
