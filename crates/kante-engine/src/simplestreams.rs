//! Images from simplestreams servers (`protocol: simplestreams`, as
//! images.linuxcontainers.org publishes them): `streams/v1/index.json`
//! names the products file of `datatype: image-downloads`; the product
//! whose `aliases` (comma-separated) hold the asked alias, for this
//! host's architecture, gives its latest version's items. A split image
//! is `lxd.tar.xz` (metadata) with `root.tar.xz` (or a squashfs rootfs),
//! its LXD fingerprint the metadata item's `combined_rootxz_sha256`
//! (`combined_sha256` in older trees; `combined_squashfs_sha256`); a
//! unified one is `lxd_combined.tar.gz`, its fingerprint its sha256.
//!
//! Each file is streamed into the image store as it arrives, its size and
//! sha256 checked on the way (a mismatch, a short file or a stalled server
//! fails the body, and the store keeps nothing), and the store checks the
//! combined fingerprint. An image already here is not downloaded again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use kante_api::image::ImagesPost;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use kante_images::streams::{
    choose, host_arch, parse_products, products_paths, Choice, Download, StreamsError,
};

use crate::error::{EngineError, Result};
use crate::front::{feed, ByteStream};
use crate::image_pull::{field, report, tokio_stream_timeout, Endpoint};
use crate::images::{ImageUpload, StoreTask};
use crate::operations::Op;
use crate::Engine;

/// The largest index or products file taken (images.linuxcontainers.org's
/// products file is a few MiB).
const MAX_INDEX: usize = 64 << 20;

impl From<StreamsError> for EngineError {
    fn from(e: StreamsError) -> EngineError {
        match e {
            StreamsError::Invalid(m) => EngineError::bad(m),
            StreamsError::NotFound(m) => EngineError::NotFound(m),
            StreamsError::Conflict(m) => EngineError::Conflict(m),
        }
    }
}

/// What a simplestreams request names.
#[derive(Debug, Clone)]
pub(crate) struct StreamsSource {
    endpoint: Endpoint,
    /// The server's path (`https://host/path`), empty at its root.
    base: String,
    name: String,
}

impl StreamsSource {
    /// `source` of a `POST /1.0/images` or `/1.0/instances` with
    /// `protocol: simplestreams`: a server, an optional certificate to pin
    /// (else the system's CAs decide), and an alias or a fingerprint.
    pub(crate) fn parse(source: &Value) -> Result<StreamsSource> {
        let mode = field(source, "mode");
        if !mode.is_empty() && mode != "pull" {
            return Err(EngineError::NotImplemented(format!(
                "Image copy mode {mode:?} is not supported (only \"pull\")"
            )));
        }
        let (endpoint, base) =
            Endpoint::parse(field(source, "server"), field(source, "certificate"), 443)?;
        let name = [field(source, "alias"), field(source, "fingerprint")]
            .into_iter()
            .find(|s| !s.is_empty())
            .ok_or_else(|| EngineError::bad("Image source needs an alias or a fingerprint"))?
            .to_string();
        Ok(StreamsSource {
            endpoint,
            base,
            name,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    async fn json(&self, path: &str) -> Result<Value> {
        let (status, doc) = self.endpoint.get_doc(&self.url(path), MAX_INDEX).await?;
        if !status.is_success() {
            return Err(EngineError::bad(format!(
                "The image server https://{} answered {status} for {path}",
                self.endpoint.authority
            )));
        }
        if doc.is_null() {
            return Err(EngineError::bad(format!(
                "The image server's {path} is not valid JSON (truncated?)"
            )));
        }
        Ok(doc)
    }

    /// Resolves the request on the server.
    async fn resolve(&self) -> Result<Choice> {
        let index = self.json("streams/v1/index.json").await?;
        let mut last = None;
        for path in products_paths(&index)? {
            let doc = self.json(&path).await?;
            let products = parse_products(&path, doc)?;
            match choose(&products, &self.name, host_arch()) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(EngineError::from(e)),
            }
        }
        Err(last.unwrap_or_else(|| EngineError::NotFound("Image not found".into())))
    }

    /// One file's body, its size and sha256 checked as it streams.
    async fn body(&self, d: &Download, counted: Arc<AtomicU64>) -> Result<ByteStream> {
        let resp = self.endpoint.get(&self.url(&d.path)).await?;
        if !resp.status().is_success() {
            return Err(EngineError::bad(format!(
                "The image server answered {} for {}",
                resp.status(),
                d.path
            )));
        }
        let body = resp
            .into_body()
            .into_data_stream()
            .map(move |c| {
                let c = c.map_err(std::io::Error::other)?;
                counted.fetch_add(c.len() as u64, Ordering::Relaxed);
                Ok(c)
            })
            .boxed();
        Ok(verified(tokio_stream_timeout(body), d.clone()))
    }
}

/// A body that fails (instead of ending) when it is longer or shorter
/// than `d.size` or its sha256 is not `d.sha256`.
fn verified(body: ByteStream, d: Download) -> ByteStream {
    struct State {
        body: ByteStream,
        hasher: Sha256,
        n: u64,
        d: Download,
        done: bool,
    }
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let st = State {
        body,
        hasher: Sha256::new(),
        n: 0,
        d,
        done: false,
    };
    futures_util::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        match st.body.next().await {
            Some(Ok(c)) => {
                st.n += c.len() as u64;
                if st.d.size > 0 && st.n > st.d.size {
                    st.done = true;
                    let m = format!("{} is longer than its {} bytes", st.d.path, st.d.size);
                    return Some((Err(bad(m)), st));
                }
                st.hasher.update(&c);
                Some((Ok::<Bytes, std::io::Error>(c), st))
            }
            Some(Err(e)) => {
                st.done = true;
                Some((Err(e), st))
            }
            None => {
                st.done = true;
                let got = hex::encode(st.hasher.finalize_reset());
                if st.d.size > 0 && st.n != st.d.size {
                    let m = format!(
                        "{} is truncated: {} of {} bytes",
                        st.d.path, st.n, st.d.size
                    );
                    Some((Err(bad(m)), st))
                } else if got != st.d.sha256 {
                    let m = format!(
                        "{} does not match its sha256 (expected {}, got {got})",
                        st.d.path, st.d.sha256
                    );
                    Some((Err(bad(m)), st))
                } else {
                    None
                }
            }
        }
    })
    .boxed()
}

impl Engine {
    /// Downloads the image `source` names from a simplestreams server
    /// (unless it is here already) and records it; returns its
    /// fingerprint and whether it was downloaded. `cached`: the download
    /// is for an instance (LXD marks such images cached).
    pub(crate) async fn pull_streams(
        &self,
        op: &Op,
        post: &ImagesPost,
        source: StreamsSource,
        cached: bool,
    ) -> Result<(String, bool)> {
        tracing::info!(server = %source.endpoint.authority, name = %source.name,
            "fetching an image from a simplestreams server");
        let choice = source.resolve().await?;
        let fp = choice.fingerprint.clone();
        // One download per image: a second launch of it waits, then finds it.
        let lock = self.image_lock(&fp);
        let _g = lock.lock().await;
        if self.shared.image_get(&fp).await?.is_some() {
            for a in &post.aliases {
                self.alias_create(kante_api::image::ImageAliasesPost {
                    name: a.name.clone(),
                    description: a.description.clone(),
                    target: fp.clone(),
                    ..Default::default()
                })
                .await?;
            }
            op.set_metadata(json!({"fingerprint": fp}));
            return Ok((fp, false));
        }
        let total = choice.meta.size + choice.rootfs.as_ref().map_or(0, |r| r.size);
        let done = Arc::new(AtomicU64::new(0));
        let download = self.download_streams(&source, &choice, done.clone());
        tokio::pin!(download);
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let task = loop {
            tokio::select! {
                r = &mut download => break r,
                _ = tick.tick() => report(op, done.load(Ordering::Relaxed), total, start),
            }
        }
        .map_err(|e| {
            EngineError::bad(format!(
                "Downloading the image from https://{} failed: {e}",
                source.endpoint.authority
            ))
        })?;
        report(op, done.load(Ordering::Relaxed), total, start);
        let mut properties = choice.properties.clone();
        properties.extend(post.properties.clone());
        let filename = choice
            .rootfs
            .as_ref()
            .unwrap_or(&choice.meta)
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        self.record_upload(
            op,
            ImageUpload {
                stored: task,
                filename,
                public: post.public,
                properties,
                aliases: post.aliases.clone(),
                profiles: None,
            },
        )
        .await?;
        if let Some(mut row) = self.shared.image_get(&fp).await? {
            row.cached = cached;
            row.auto_update = post.auto_update;
            self.shared.image_update(&row).await?;
        }
        Ok((fp, true))
    }

    /// Streams the chosen files into the store; its task once all arrived.
    async fn download_streams(
        &self,
        source: &StreamsSource,
        choice: &Choice,
        done: Arc<AtomicU64>,
    ) -> Result<StoreTask> {
        let expected = Some(choice.fingerprint.clone());
        let meta = source.body(&choice.meta, done.clone()).await?;
        let Some(root) = &choice.rootfs else {
            let (feed, reader) = feed::channel();
            let task = self.store_task(expected, move |d, e, l| {
                kante_images::store_unified(d, reader, e, l)
            });
            return match feed.pump(meta).await {
                Ok(()) => Ok(task),
                Err(e) => {
                    self.abandon_store(task).await;
                    Err(EngineError::bad(e.to_string()))
                }
            };
        };
        let (meta_feed, meta_reader) = feed::channel();
        let (root_feed, root_reader) = feed::channel();
        let task = self.store_task(expected, move |d, e, l| {
            kante_images::store_split(d, meta_reader, root_reader, e, l)
        });
        if let Err(e) = meta_feed.pump(meta).await {
            drop(root_feed);
            self.abandon_store(task).await;
            return Err(EngineError::bad(e.to_string()));
        }
        let body = match source.body(root, done).await {
            Ok(b) => b,
            Err(e) => {
                drop(root_feed);
                self.abandon_store(task).await;
                return Err(e);
            }
        };
        match root_feed.pump(body).await {
            Ok(()) => Ok(task),
            Err(e) => {
                self.abandon_store(task).await;
                Err(EngineError::bad(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
#[path = "simplestreams_tests.rs"]
mod tests;
