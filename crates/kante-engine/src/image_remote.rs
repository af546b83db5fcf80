//! Images from other servers, by protocol: `lxd` (another kanted or LXD,
//! `image_pull.rs`) or `simplestreams` (`simplestreams.rs`). Both an image
//! copy (`POST /1.0/images` with `source.type: image`) and a launch from a
//! remote image (`POST /1.0/instances` whose image source names a server)
//! come here; a launch's image is marked cached, as in LXD, and one
//! already here is not downloaded again.

use std::sync::Arc;

use kante_api::image::ImagesPost;
use kante_api::operation::OperationClass;
use serde_json::Value;

use crate::error::Result;
use crate::image_pull::{field, PullSource};
use crate::operations::Op;
use crate::simplestreams::StreamsSource;
use crate::Engine;

/// An image on another server.
#[derive(Debug, Clone)]
pub(crate) enum RemoteImage {
    Lxd(PullSource),
    Streams(StreamsSource),
}

impl RemoteImage {
    /// Reads an image `source`; `Ok(None)` when it names no other server.
    pub(crate) fn parse(source: &Value) -> Result<Option<RemoteImage>> {
        if field(source, "type") != "image" {
            return Ok(None);
        }
        match field(source, "protocol") {
            "simplestreams" => Ok(Some(RemoteImage::Streams(StreamsSource::parse(source)?))),
            _ => Ok(PullSource::parse(source)?.map(RemoteImage::Lxd)),
        }
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
        match source {
            RemoteImage::Streams(s) => self.pull_streams(op, &post, s, cached).await,
            RemoteImage::Lxd(s) => {
                let (fp, downloaded) = self.pull(op, post, s).await?;
                if cached && downloaded {
                    if let Some(mut row) = self.shared.image_get(&fp).await? {
                        row.cached = true;
                        self.shared.image_update(&row).await?;
                    }
                }
                Ok(fp)
            }
        }
    }
}
