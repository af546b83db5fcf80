//! Images from other servers, by protocol: `lxd` (another kanted or LXD,
//! `image_pull.rs`) or `simplestreams` (`simplestreams.rs`). Both an image
//! copy (`POST /1.0/images` with `source.type: image`) and a launch from a
//! remote image (`POST /1.0/instances` whose image source names a server)
//! come here; a launch's image is marked cached, as in LXD, and one
//! already here is not downloaded again.

use std::sync::Arc;

use kante_api::image::ImagesPost;
use kante_api::operation::OperationClass;
use kante_api::ConfigMap;
use serde_json::Value;

use crate::error::Result;
use crate::image_pull::{field, PullSource};
use crate::operations::Op;
use crate::simplestreams::StreamsSource;
use crate::Engine;

/// An image on another server, and where it came from as the image's
/// record keeps it (its `update_source`, what a refresh asks again).
#[derive(Debug, Clone)]
pub(crate) struct RemoteImage {
    via: Via,
    origin: ConfigMap,
}

#[derive(Debug, Clone)]
enum Via {
    Lxd(PullSource),
    Streams(StreamsSource),
}

/// The keys of a source a refresh needs (never its one-time secret).
const ORIGIN_KEYS: [&str; 5] = ["server", "protocol", "certificate", "alias", "fingerprint"];

impl RemoteImage {
    /// Reads an image `source`; `Ok(None)` when it names no other server.
    pub(crate) fn parse(source: &Value) -> Result<Option<RemoteImage>> {
        if field(source, "type") != "image" {
            return Ok(None);
        }
        let via = match field(source, "protocol") {
            "simplestreams" => Via::Streams(StreamsSource::parse(source)?),
            _ => match PullSource::parse(source)? {
                Some(p) => Via::Lxd(p),
                None => return Ok(None),
            },
        };
        let mut origin: ConfigMap = ORIGIN_KEYS
            .iter()
            .map(|k| (k.to_string(), field(source, k).to_string()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        origin
            .entry("protocol".into())
            .or_insert_with(|| "lxd".into());
        Ok(Some(RemoteImage { via, origin }))
    }

    /// The source recorded as an image's `update_source`, read back.
    /// `None` when the image came from no other server.
    pub(crate) fn from_origin(origin: &ConfigMap) -> Result<Option<RemoteImage>> {
        if origin.get("server").is_none_or(|s| s.is_empty()) {
            return Ok(None);
        }
        let mut source = serde_json::Map::new();
        source.insert("type".into(), "image".into());
        source.insert("mode".into(), "pull".into());
        for (k, v) in origin {
            source.insert(k.clone(), Value::String(v.clone()));
        }
        // A refresh follows the alias, not the image first pulled.
        if origin.contains_key("alias") {
            source.remove("fingerprint");
        }
        RemoteImage::parse(&Value::Object(source))
    }
}

impl Engine {
    /// `POST /1.0/images` pulling from another server: checks the request,
    /// then downloads and records the image in an operation.
    pub(crate) async fn image_pull(
        &self,
        post: ImagesPost,
        source: RemoteImage,
    ) -> Result<Arc<Op>> {
        self.check_image_upload(&post.aliases, None).await?;
        let op = self.ops.create(
            OperationClass::Task,
            "Downloading image",
            Default::default(),
        );
        let engine = self.arc();
        let op2 = op.clone();
        self.ops.run(op.clone(), async move {
            engine
                .fetch_image(&op2, post, source, false)
                .await
                .map(|_| ())
        });
        Ok(op)
    }

    /// Brings the image here (unless it is already) and returns its
    /// fingerprint; `cached` marks an image fetched for an instance.
    pub(crate) async fn fetch_image(
        &self,
        op: &Op,
        post: ImagesPost,
        source: RemoteImage,
        cached: bool,
    ) -> Result<String> {
        let (fp, downloaded) = match source.via {
            Via::Streams(s) => self.pull_streams(op, &post, s, cached).await?,
            Via::Lxd(s) => self.pull(op, post, s).await?,
        };
        if downloaded {
            if let Some(mut row) = self.shared.image_get(&fp).await? {
                row.cached = cached;
                row.update_source = source.origin;
                self.shared.image_update(&row).await?;
            }
        }
        Ok(fp)
    }
}
