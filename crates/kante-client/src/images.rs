//! Images and aliases: list, get, resolve, upload, delete.

use std::path::{Path, PathBuf};

use hyper::Method;
use kante_api::image::{Image, ImageAlias, ImageAliasesPost};

use crate::body::{multipart_segments, segments_body, ProgressFn, Segment};
use crate::client::{decode_response, url, Client};
use crate::error::{ClientError, Result};

/// Optional headers of an image upload.
#[derive(Debug, Clone, Default)]
pub struct ImageUploadOptions {
    /// `X-LXD-filename`; defaults to the file's own name.
    pub filename: Option<String>,
    /// `X-LXD-public`.
    pub public: bool,
}

impl Client {
    /// `GET /1.0/images?recursion=1`.
    pub async fn images(&self) -> Result<Vec<Image>> {
        self.get_json("/1.0/images?recursion=1").await
    }

    /// `GET /1.0/images/{fingerprint}`; a unique prefix is accepted by the server.
    pub async fn image(&self, fingerprint: &str) -> Result<Image> {
        self.get_json(&format!("/1.0/images/{}", url::seg(fingerprint)))
            .await
    }

    /// `GET /1.0/images/aliases?recursion=1`.
    pub async fn image_aliases(&self) -> Result<Vec<ImageAlias>> {
        self.get_json("/1.0/images/aliases?recursion=1").await
    }

    pub async fn image_alias(&self, name: &str) -> Result<ImageAlias> {
        self.get_json(&format!("/1.0/images/aliases/{}", url::slashed(name)))
            .await
    }

    /// `POST /1.0/images/aliases` (201; 409 if it exists).
    pub async fn create_image_alias(
        &self,
        name: &str,
        target: &str,
        description: &str,
    ) -> Result<()> {
        let body = ImageAliasesPost {
            name: name.into(),
            description: description.into(),
            target: target.into(),
            kind: String::new(),
        };
        self.post("/1.0/images/aliases", &body).await.map(|_| ())
    }

    pub async fn delete_image_alias(&self, name: &str) -> Result<()> {
        self.delete(&format!("/1.0/images/aliases/{}", url::slashed(name)))
            .await
            .map(|_| ())
    }

    /// `DELETE /1.0/images/{fingerprint}`, waiting for the operation.
    pub async fn delete_image(&self, fingerprint: &str) -> Result<()> {
        let resp = self
            .delete(&format!("/1.0/images/{}", url::seg(fingerprint)))
            .await?;
        self.finish(resp).await.map(|_| ())
    }

    /// An alias or a fingerprint (prefix) to the full fingerprint, as `lxc`
    /// does: alias first, then the image itself. Fails with "Image not found".
    pub async fn resolve_image(&self, name: &str) -> Result<String> {
        match self.image_alias(name).await {
            Ok(alias) => return Ok(alias.target),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        // An alias may contain characters a fingerprint never has; don't ask then.
        if name.is_empty() || name.contains('/') {
            return Err(ClientError::Api {
                status: 404,
                message: "Image not found".into(),
            });
        }
        Ok(self.image(name).await?.fingerprint)
    }

    /// Uploads a unified image tarball (`POST /1.0/images`, raw body sent
    /// chunked), waits for the import and returns the fingerprint.
    /// `progress(sent, total)` is called as the body goes out.
    pub async fn upload_image(
        &self,
        tarball: &Path,
        opts: &ImageUploadOptions,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<String> {
        let filename = opts.filename.clone().unwrap_or_else(|| file_name(tarball));
        let (body, _) = segments_body(
            vec![Segment::File(tarball.to_path_buf())],
            Box::new(progress),
        )
        .await?;
        let mut headers = vec![
            ("Content-Type", "application/octet-stream".to_string()),
            ("X-LXD-filename", filename),
        ];
        if opts.public {
            headers.push(("X-LXD-public", "true".into()));
        }
        self.finish_upload(&headers, body).await
    }

    /// Uploads a split image (metadata tarball + rootfs) as multipart/form-data
    /// with parts `metadata` and `rootfs`; returns the fingerprint.
    pub async fn upload_image_split(
        &self,
        metadata: &Path,
        rootfs: &Path,
        opts: &ImageUploadOptions,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<String> {
        let boundary = format!("kante-{:016x}", rand_u64());
        let parts: [(&str, PathBuf); 2] = [
            ("metadata", metadata.to_path_buf()),
            ("rootfs", rootfs.to_path_buf()),
        ];
        let progress: ProgressFn = Box::new(progress);
        let (body, _) = segments_body(multipart_segments(&boundary, &parts), progress).await?;
        let filename = opts.filename.clone().unwrap_or_else(|| file_name(metadata));
        let mut headers = vec![
            (
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            ),
            ("X-LXD-filename", filename),
        ];
        if opts.public {
            headers.push(("X-LXD-public", "true".into()));
        }
        self.finish_upload(&headers, body).await
    }

    async fn finish_upload(
        &self,
        headers: &[(&str, String)],
        body: crate::client::ReqBody,
    ) -> Result<String> {
        let resp = self
            .send_with(Method::POST, "/1.0/images", headers, body)
            .await?;
        let resp = decode_response(resp).await?;
        let op = self.finish(resp).await?.ok_or_else(|| {
            ClientError::Protocol("image upload did not return an operation".into())
        })?;
        op.metadata
            .get("fingerprint")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("image upload result has no fingerprint".into()))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Enough randomness for a multipart boundary, without a rand dependency.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
