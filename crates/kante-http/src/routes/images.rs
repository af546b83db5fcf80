//! `/1.0/images` and aliases. An upload's body goes to the engine as a
//! stream (or, for `multipart/form-data`, a sequence of named parts); the
//! engine reads it once into the image store and records it in an operation.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use futures_util::StreamExt;
use kante_api::image::{ImageAliasRef, ImageAliasesPost, ImagePut, ImagesPost};
use kante_api::ConfigMap;
use kante_engine::front::{ByteStream, ImageUploadInfo, Parts, Request, UploadBody};
use kante_engine::EngineError;
use serde::Deserialize;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::ImageList, &q).await
}

pub async fn get(
    State(s): State<AppState>,
    Path(fingerprint): Path<String>,
    q: Params,
) -> ApiResult {
    let secret = q.get("secret").cloned();
    answer(
        &s,
        Request::ImageGet {
            fingerprint,
            secret,
        },
    )
    .await
}

pub async fn put(
    State(s): State<AppState>,
    Path(fingerprint): Path<String>,
    Json(put): Json<ImagePut>,
) -> ApiResult {
    let req = Request::ImageUpdate {
        fingerprint,
        put,
        merge: false,
    };
    answer(&s, req).await
}

pub async fn patch(
    State(s): State<AppState>,
    Path(fingerprint): Path<String>,
    Json(put): Json<ImagePut>,
) -> ApiResult {
    let req = Request::ImageUpdate {
        fingerprint,
        put,
        merge: true,
    };
    answer(&s, req).await
}

pub async fn delete(State(s): State<AppState>, Path(fingerprint): Path<String>) -> ApiResult {
    answer(&s, Request::ImageDelete { fingerprint }).await
}

/// A request body as the engine takes it.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    )
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

/// The parts of a `multipart/form-data` upload, for the engine to read in turn.
struct Multipart(multer::Multipart<'static>);

fn multipart_error(e: multer::Error) -> EngineError {
    EngineError::bad(format!("Invalid multipart upload: {e}"))
}

#[async_trait::async_trait]
impl Parts for Multipart {
    async fn next_part(&mut self) -> kante_engine::Result<Option<(String, ByteStream)>> {
        let Some(field) = self.0.next_field().await.map_err(multipart_error)? else {
            return Ok(None);
        };
        let name = field.name().unwrap_or("").to_string();
        let stream: ByteStream = Box::pin(field.map(|r| r.map_err(std::io::Error::other)));
        Ok(Some((name, stream)))
    }
}

/// The `X-LXD-*` headers of an upload.
fn upload_info(headers: &HeaderMap) -> ImageUploadInfo {
    let properties: ConfigMap = query_pairs(&hdr(headers, "X-LXD-properties"))
        .into_iter()
        .collect();
    let profiles: Vec<String> = query_pairs(&hdr(headers, "X-LXD-profiles"))
        .into_iter()
        .filter(|(k, _)| k == "profile")
        .map(|(_, v)| v)
        .collect();
    let aliases = query_pairs(&hdr(headers, "X-LXD-aliases"))
        .into_iter()
        .filter(|(k, _)| k == "alias" || k == "name")
        .map(|(_, name)| ImageAliasRef {
            name,
            description: String::new(),
        })
        .collect();
    let fp = hdr(headers, "X-LXD-fingerprint");
    ImageUploadInfo {
        filename: hdr(headers, "X-LXD-filename"),
        public: matches!(hdr(headers, "X-LXD-public").as_str(), "true" | "1"),
        properties,
        aliases,
        expected_fingerprint: (!fp.is_empty()).then_some(fp),
        profiles: (!profiles.is_empty()).then_some(profiles),
    }
}

#[derive(Deserialize, Default)]
struct JsonUpload {
    #[serde(flatten)]
    post: ImagesPost,
}

pub async fn create(State(s): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let ctype = hdr(&headers, "content-type");
    let body = if ctype.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&ctype).map_err(multipart_error)?;
        let parts = multer::Multipart::new(body.into_data_stream(), boundary);
        UploadBody::Parts(Box::new(Multipart(parts)))
    } else if ctype.starts_with("application/json") {
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|e| EngineError::bad(e.to_string()))?;
        let req: JsonUpload = crate::body::parse(&bytes)?;
        return answer(&s, Request::ImageCreate(req.post)).await;
    } else {
        UploadBody::Single(body_stream(body))
    };
    let info = upload_info(&headers);
    answer(&s, Request::ImageUpload { info, body }).await
}

pub async fn export(
    State(s): State<AppState>,
    Path(fingerprint): Path<String>,
    q: Params,
) -> ApiResult {
    let secret = q.get("secret").cloned();
    answer(
        &s,
        Request::ImageExport {
            fingerprint,
            secret,
        },
    )
    .await
}

/// `POST /1.0/images/{fp}/secret`: a one-time secret for a private image.
pub async fn secret(State(s): State<AppState>, Path(fingerprint): Path<String>) -> ApiResult {
    answer(&s, Request::ImageSecret { fingerprint }).await
}

/// `POST /1.0/images/{fp}/refresh`: asks the image's source again.
pub async fn refresh(State(s): State<AppState>, Path(fingerprint): Path<String>) -> ApiResult {
    answer(&s, Request::ImageRefresh { fingerprint }).await
}

pub async fn aliases_list(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::AliasList, &q).await
}

pub async fn alias_create(
    State(s): State<AppState>,
    Json(req): Json<ImageAliasesPost>,
) -> ApiResult {
    answer(&s, Request::AliasCreate(req)).await
}

pub async fn alias_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::AliasGet { name }).await
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
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
    let req = Request::AliasUpdate {
        name,
        target: req.target,
        description: req.description,
    };
    answer(&s, req).await
}

pub async fn alias_post(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<AliasPut>,
) -> ApiResult {
    let new_name = req.name;
    answer(&s, Request::AliasRename { name, new_name }).await
}

pub async fn alias_delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::AliasDelete { name }).await
}
