//! The guest API's image export, `GET /1.0/images/{fingerprint}/export`,
//! for instances with `security.devlxd.images=true` (a nested daemon then
//! takes images from the host's store rather than downloading them): the
//! image's stored files as the main API exports them, one body for a
//! unified image, `multipart/form-data` (`metadata`, `rootfs`) for a split
//! one, streamed from disk.

use std::path::PathBuf;

use super::api::Reply;
use crate::error::EngineError;
use crate::Engine;

/// What to send for an export: the files, in order, with their names.
pub struct ExportFiles {
    pub parts: Vec<(String, PathBuf)>,
}

impl ExportFiles {
    /// The content type and the bytes around each file: for a unified
    /// image none, for a split one the multipart part heads and the end.
    pub fn framing(&self, boundary: &str) -> (String, Vec<Vec<u8>>, Vec<u8>) {
        if self.parts.len() == 1 {
            return (
                "application/octet-stream".into(),
                vec![Vec::new()],
                Vec::new(),
            );
        }
        let heads = self
            .parts
            .iter()
            .enumerate()
            .map(|(i, (filename, _))| {
                let field = if i == 0 { "metadata" } else { "rootfs" };
                let lead = if i == 0 { "" } else { "\r\n" };
                format!(
                    "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .into_bytes()
            })
            .collect();
        (
            format!("multipart/form-data; boundary={boundary}"),
            heads,
            format!("\r\n--{boundary}--\r\n").into_bytes(),
        )
    }
}

/// A guest may read exactly one path under `/1.0/images`.
pub fn export_fingerprint(path: &str) -> Option<&str> {
    let fp = path.strip_prefix("/1.0/images/")?.strip_suffix("/export")?;
    (!fp.is_empty() && fp.bytes().all(|b| b.is_ascii_hexdigit())).then_some(fp)
}

impl Engine {
    /// The files instance `name`'s guest may download for image `fp`, or
    /// the refusal to send it.
    pub(crate) async fn devlxd_image_export(
        &self,
        name: &str,
        fp: &str,
    ) -> std::result::Result<ExportFiles, Reply> {
        let view = match self.devlxd_view(name).await {
            Ok(v) => v,
            Err(_) => return Err(Reply::not_found()),
        };
        if !crate::util::is_true(view.config.get("security.devlxd.images")) {
            return Err(Reply::forbidden());
        }
        match self.image_export_files(fp).await {
            Ok(parts) => Ok(ExportFiles { parts }),
            Err(EngineError::NotFound(_)) => Err(Reply::not_found()),
            Err(e) => {
                tracing::warn!(instance = %name, "guest API image export: {e}");
                Err(Reply::error(500, "internal error"))
            }
        }
    }
}
