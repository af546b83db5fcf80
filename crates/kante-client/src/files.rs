//! Files inside instances: `/1.0/instances/{name}/files?path=…`.

use std::path::Path;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderMap;
use hyper::Method;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::body::{segments_body, Segment};
use crate::client::{
    decode_parts, decode_response, empty_body, full_body, read_body, url, Client, ReqBody,
};
use crate::error::{ClientError, Result};

pub use kante_api::file::FileKind;

/// Owner, permissions and type from the `X-LXD-*` response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub uid: i64,
    pub gid: i64,
    /// Permission bits (`X-LXD-mode`, octal on the wire).
    pub mode: u32,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// File bytes (empty when they were streamed to a writer instead).
    File(Vec<u8>),
    /// Entry names of a directory.
    Directory(Vec<String>),
    /// The link target; the server does not follow links.
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGet {
    pub meta: FileMeta,
    pub content: FileContent,
}

/// Headers of a push. `None` leaves the choice to the server (`-1`).
#[derive(Debug, Clone, Default)]
pub struct FilePushOptions {
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub mode: Option<u32>,
    /// `X-LXD-write: append` instead of overwrite.
    pub append: bool,
}

fn files_path(name: &str, path: &str) -> String {
    format!(
        "/1.0/instances/{}/files?path={}",
        url::seg(name),
        url::query(path)
    )
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn parse_meta(h: &HeaderMap) -> FileMeta {
    let num = |n: &str| {
        header_str(h, n)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let mode = header_str(h, "x-lxd-mode")
        .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        .unwrap_or(0o644);
    let kind = match header_str(h, "x-lxd-type") {
        Some("directory") => FileKind::Directory,
        Some("symlink") => FileKind::Symlink,
        _ => FileKind::File,
    };
    FileMeta {
        uid: num("x-lxd-uid"),
        gid: num("x-lxd-gid"),
        mode,
        kind,
    }
}

impl Client {
    /// Reads a file, directory listing or symlink target into memory.
    pub async fn file_get(&self, name: &str, path: &str) -> Result<FileGet> {
        let mut buf = Vec::new();
        let mut got = self.file_get_into(name, path, &mut buf).await?;
        if let FileContent::File(ref mut data) = got.content {
            *data = buf;
        }
        Ok(got)
    }

    /// Like `file_get`, but a regular file's bytes are streamed into `out`
    /// (the returned content is then `File(vec![])`).
    pub async fn file_get_into<W: AsyncWrite + Unpin>(
        &self,
        name: &str,
        path: &str,
        out: &mut W,
    ) -> Result<FileGet> {
        let resp = self
            .send_with(Method::GET, &files_path(name, path), &[], empty_body())
            .await?;
        let status = resp.status().as_u16();
        let meta = parse_meta(resp.headers());
        let is_json = header_str(resp.headers(), "content-type")
            .is_some_and(|c| c.starts_with("application/json"));
        if status >= 400 {
            let (parts, body) = read_body(resp).await?;
            decode_parts(parts, &body)?;
            return Err(ClientError::Protocol(format!(
                "file GET failed with HTTP {status}"
            )));
        }
        match meta.kind {
            FileKind::Directory => {
                let entries: Vec<String> = decode_response(resp).await?.into_metadata()?;
                Ok(FileGet {
                    meta,
                    content: FileContent::Directory(entries),
                })
            }
            FileKind::Symlink => {
                let (_, body) = read_body(resp).await?;
                let target = String::from_utf8_lossy(&body).into_owned();
                Ok(FileGet {
                    meta,
                    content: FileContent::Symlink(target),
                })
            }
            FileKind::File if is_json => {
                // A server that lists a directory without X-LXD-type.
                let entries: Vec<String> = decode_response(resp).await?.into_metadata()?;
                let meta = FileMeta {
                    kind: FileKind::Directory,
                    ..meta
                };
                Ok(FileGet {
                    meta,
                    content: FileContent::Directory(entries),
                })
            }
            FileKind::File => {
                let mut body = resp.into_body();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        out.write_all(&data).await?;
                    }
                }
                out.flush().await?;
                Ok(FileGet {
                    meta,
                    content: FileContent::File(Vec::new()),
                })
            }
        }
    }

    async fn file_post(
        &self,
        name: &str,
        path: &str,
        kind: FileKind,
        opts: &FilePushOptions,
        body: ReqBody,
    ) -> Result<()> {
        // Like lxc, leave out what is not set: the server then keeps or picks.
        let mut headers = vec![("X-LXD-type", kind.as_str().to_string())];
        if let Some(uid) = opts.uid {
            headers.push(("X-LXD-uid", uid.to_string()));
        }
        if let Some(gid) = opts.gid {
            headers.push(("X-LXD-gid", gid.to_string()));
        }
        if let Some(mode) = opts.mode {
            headers.push(("X-LXD-mode", format!("{mode:04o}")));
        }
        if kind == FileKind::File {
            let write = if opts.append { "append" } else { "overwrite" };
            headers.push(("X-LXD-write", write.to_string()));
        }
        let resp = self
            .send_with(Method::POST, &files_path(name, path), &headers, body)
            .await?;
        decode_response(resp).await.map(|_| ())
    }

    /// Writes `data` to a file (created or truncated; mode/owner apply only
    /// when the server creates it).
    pub async fn file_push_bytes(
        &self,
        name: &str,
        path: &str,
        data: impl Into<Bytes>,
        opts: &FilePushOptions,
    ) -> Result<()> {
        self.file_post(name, path, FileKind::File, opts, full_body(data))
            .await
    }

    /// Streams a local file (chunked) with `progress(sent, total)`.
    pub async fn file_push_path(
        &self,
        name: &str,
        path: &str,
        local: &Path,
        opts: &FilePushOptions,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<()> {
        let (body, _) =
            segments_body(vec![Segment::File(local.to_path_buf())], Box::new(progress)).await?;
        self.file_post(name, path, FileKind::File, opts, body).await
    }

    /// Creates a directory (a no-op on the server if it exists).
    pub async fn file_mkdir(&self, name: &str, path: &str, opts: &FilePushOptions) -> Result<()> {
        self.file_post(name, path, FileKind::Directory, opts, empty_body())
            .await
    }

    /// Creates a symlink at `path` pointing to `target`.
    pub async fn file_symlink(
        &self,
        name: &str,
        path: &str,
        target: &str,
        opts: &FilePushOptions,
    ) -> Result<()> {
        self.file_post(
            name,
            path,
            FileKind::Symlink,
            opts,
            full_body(target.as_bytes().to_vec()),
        )
        .await
    }

    pub async fn file_delete(&self, name: &str, path: &str) -> Result<()> {
        self.delete(&files_path(name, path)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn meta_from_go_canonical_headers() {
        let mut h = HeaderMap::new();
        h.insert("X-Lxd-Uid", HeaderValue::from_static("1000"));
        h.insert("X-Lxd-Gid", HeaderValue::from_static("100"));
        h.insert("X-Lxd-Mode", HeaderValue::from_static("0755"));
        h.insert("X-Lxd-Type", HeaderValue::from_static("symlink"));
        assert_eq!(
            parse_meta(&h),
            FileMeta {
                uid: 1000,
                gid: 100,
                mode: 0o755,
                kind: FileKind::Symlink
            }
        );
    }

    #[test]
    fn path_is_query_escaped() {
        assert_eq!(
            files_path("c1", "/etc/os release"),
            "/1.0/instances/c1/files?path=%2Fetc%2Fos%20release"
        );
    }
}
