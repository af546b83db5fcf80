//! `/1.0/images` and aliases. Uploads are spooled to disk (never held in
//! memory) and imported by the engine in an operation.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use futures_util::{Stream, StreamExt};
use kante_api::image::{ImageAliasRef, ImageAliasesPost, ImagePut, ImagesPost};
use kante_api::ConfigMap;
use kante_engine::images::{ImageUpload, UploadFiles};
use kante_engine::EngineError;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{recursion, Params};
use crate::body::Json;
use crate::response::{created, empty, operation, sync, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    let images = s.engine.image_list().await?;
    if recursion(&q) >= 1 {
        return sync(images);
    }
    sync(
        images
            .iter()
            .map(|i| format!("/1.0/images/{}", i.fingerprint))
            .collect::<Vec<_>>(),
    )
}

pub async fn get(State(s): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    sync(s.engine.image_get(&fp).await?)
}

pub async fn put(
    State(s): State<AppState>,
    Path(fp): Path<String>,
    Json(req): Json<ImagePut>,
) -> ApiResult {
    s.engine.image_update(&fp, req, false).await?;
    empty()
}

pub async fn patch(
    State(s): State<AppState>,
    Path(fp): Path<String>,
    Json(req): Json<ImagePut>,
) -> ApiResult {
    s.engine.image_update(&fp, req, true).await?;
    empty()
}

pub async fn delete(State(s): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    operation(&s.engine.image_delete(&fp).await?)
}

pub(crate) struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Spool {
    /// Hands the file over to the engine, which removes it when done.
    pub(crate) fn keep(self) -> PathBuf {
        let p = self.0.clone();
        std::mem::forget(self);
        p
    }
}

pub(crate) async fn spool<S, E>(dir: &std::path::Path, mut stream: S) -> Result<Spool, EngineError>
where
    S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let path = dir.join(format!("upload-{}", uuid_like()));
    let spool = Spool(path.clone());
    let mut f = tokio::fs::File::create(&path).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| EngineError::bad(format!("Reading the upload: {e}")))?;
        f.write_all(&chunk).await?;
    }
    f.flush().await?;
    Ok(spool)
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{n:x}-{}", std::process::id())
}

pub(crate) fn hdr(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// `X-LXD-properties: a=b&c=d` and `X-LXD-profiles: profile=a&profile=b`.
fn query_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| {
                percent_encoding::percent_decode_str(&x.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

#[derive(Deserialize, Default)]
struct JsonUpload {
    #[serde(flatten)]
    post: ImagesPost,
}

pub async fn create(State(s): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let ctype = hdr(&headers, "content-type");
    let dir = s.engine.upload_dir()?;
    let mut aliases: Vec<ImageAliasRef> = Vec::new();
    let files = if ctype.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&ctype)
            .map_err(|e| EngineError::bad(format!("Invalid multipart upload: {e}")))?;
        let mut mp = multer::Multipart::new(body.into_data_stream(), boundary);
        let (mut meta, mut rootfs) = (None, None);
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| EngineError::bad(format!("Invalid multipart upload: {e}")))?
        {
            let name = field.name().unwrap_or("").to_string();
            match name.as_str() {
                "metadata" => meta = Some(spool(&dir, Box::pin(field)).await?),
                "rootfs" => rootfs = Some(spool(&dir, Box::pin(field)).await?),
                "rootfs.img" => {
                    return Err(EngineError::bad("Virtual-machine images are not supported").into())
                }
                other => {
                    return Err(
                        EngineError::bad(format!("Unexpected upload part {other:?}")).into(),
                    )
                }
            }
        }
        match (meta, rootfs) {
            (Some(m), Some(r)) => UploadFiles::Split {
                metadata: m.keep(),
                rootfs: r.keep(),
            },
            (Some(m), None) => UploadFiles::Unified(m.keep()),
            _ => return Err(EngineError::bad("Multipart upload without a metadata part").into()),
        }
    } else if ctype.starts_with("application/json") {
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|e| EngineError::bad(e.to_string()))?;
        let req: JsonUpload = crate::body::parse(&bytes)?;
        let kind = req
            .post
            .source
            .as_ref()
            .and_then(|s| s.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        return Err(EngineError::NotImplemented(format!(
            "Image source {kind:?} is not supported yet: upload the image file (kante image import)"
        ))
        .into());
    } else {
        let s = spool(&dir, body.into_data_stream()).await?;
        UploadFiles::Unified(s.keep())
    };
    let props: ConfigMap = query_pairs(&hdr(&headers, "X-LXD-properties"))
        .into_iter()
        .collect();
    let profiles: Vec<String> = query_pairs(&hdr(&headers, "X-LXD-profiles"))
        .into_iter()
        .filter(|(k, _)| k == "profile")
        .map(|(_, v)| v)
        .collect();
    for (k, v) in query_pairs(&hdr(&headers, "X-LXD-aliases")) {
        if k == "alias" || k == "name" {
            aliases.push(ImageAliasRef {
                name: v,
                description: String::new(),
            });
        }
    }
    let fp = hdr(&headers, "X-LXD-fingerprint");
    let upload = ImageUpload {
        files,
        filename: hdr(&headers, "X-LXD-filename"),
        public: matches!(hdr(&headers, "X-LXD-public").as_str(), "true" | "1"),
        properties: props,
        aliases,
        expected_fingerprint: (!fp.is_empty()).then_some(fp),
        profiles: (!profiles.is_empty()).then_some(profiles),
    };
    operation(&s.engine.image_import(upload).await?)
}

pub async fn export(State(s): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    let files = s.engine.image_export_files(&fp).await?;
    if files.len() == 1 {
        let (name, path) = &files[0];
        return file_response(path, &format!("inline;filename={name}")).await;
    }
    // Split image: multipart with the metadata and rootfs parts.
    let boundary = format!("kante-{}", uuid_like());
    let mut parts: Vec<futures_util::stream::BoxStream<'static, std::io::Result<Vec<u8>>>> =
        Vec::new();
    for (i, (name, path)) in files.into_iter().enumerate() {
        let field = if i == 0 { "metadata" } else { "rootfs" };
        let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n");
        parts.push(futures_util::stream::once(async move { Ok(head.into_bytes()) }).boxed());
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(EngineError::from)?;
        parts.push(tokio_stream(f).boxed());
        parts.push(futures_util::stream::once(async { Ok(b"\r\n".to_vec()) }).boxed());
    }
    let tail = format!("--{boundary}--\r\n");
    parts.push(futures_util::stream::once(async move { Ok(tail.into_bytes()) }).boxed());
    let mut resp = Response::new(Body::from_stream(
        futures_util::stream::iter(parts).flatten(),
    ));
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// A file streamed as `application/octet-stream` with its length and a
/// `Content-Disposition` (image and backup exports).
pub(crate) async fn file_response(path: &std::path::Path, disposition: &str) -> ApiResult {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(EngineError::from)?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut resp = Response::new(Body::from_stream(tokio_stream(f)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

pub(crate) fn tokio_stream(
    file: tokio::fs::File,
) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

pub async fn aliases_list(State(s): State<AppState>, q: Params) -> ApiResult {
    let aliases = s.engine.alias_list().await?;
    if recursion(&q) >= 1 {
        return sync(aliases);
    }
    sync(
        aliases
            .iter()
            .map(|a| format!("/1.0/images/aliases/{}", a.name))
            .collect::<Vec<_>>(),
    )
}

pub async fn alias_create(
    State(s): State<AppState>,
    Json(req): Json<ImageAliasesPost>,
) -> ApiResult {
    let name = req.name.clone();
    s.engine.alias_create(req).await?;
    created(&format!("/1.0/images/aliases/{name}"))
}

pub async fn alias_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.alias_get(&name).await?)
}

#[derive(Deserialize, Default)]
pub struct AliasPut {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    target: String,
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    description: String,
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    name: String,
}

pub async fn alias_put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<AliasPut>,
) -> ApiResult {
    s.engine
        .alias_update(&name, Some(req.target), req.description)
        .await?;
    empty()
}

pub async fn alias_post(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<AliasPut>,
) -> ApiResult {
    s.engine.alias_rename(&name, &req.name).await?;
    created(&format!("/1.0/images/aliases/{}", req.name))
}

pub async fn alias_delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.engine.alias_delete(&name).await?;
    empty()
}
