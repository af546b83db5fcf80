//! `/1.0/instances/{name}/files?path=…` with LXD's `X-LXD-*` headers.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kante_engine::front::{parse_file_kind, FilePut, Request};
use kante_engine::EngineError;

use super::images::body_stream;
use super::Params;
use crate::response::{answer, ApiResult};
use crate::AppState;

fn path_param(q: &Params) -> Result<String, EngineError> {
    q.get("path")
        .cloned()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| EngineError::bad("Missing path argument"))
}

pub async fn get(State(s): State<AppState>, Path(instance): Path<String>, q: Params) -> ApiResult {
    let path = path_param(&q)?;
    answer(&s, Request::FileGet { instance, path }).await
}

/// A number header: decimal, or octal with a leading `0` or `0o`.
fn header_num(h: &HeaderMap, name: &str) -> Result<Option<i64>, EngineError> {
    match h
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => Ok(None),
        Some(v) => {
            let parsed = if let Some(o) = v.strip_prefix("0o") {
                i64::from_str_radix(o, 8)
            } else if v.len() > 1 && v.starts_with('0') {
                i64::from_str_radix(&v[1..], 8)
            } else {
                v.parse()
            };
            parsed
                .map(Some)
                .map_err(|_| EngineError::bad(format!("Invalid {name} header {v:?}")))
        }
    }
}

/// The `X-LXD-*` headers of a push.
fn file_put(headers: &HeaderMap) -> Result<FilePut, EngineError> {
    let ids = |n: &str| -> Result<Option<u32>, EngineError> {
        match header_num(headers, n)? {
            None => Ok(None),
            Some(v) if v < 0 => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| EngineError::bad(format!("Invalid {n} header"))),
        }
    };
    let mode = header_num(headers, "X-LXD-mode")?
        .map(|m| u32::try_from(m).map_err(|_| EngineError::bad("Invalid X-LXD-mode header")))
        .transpose()?;
    let kind = parse_file_kind(
        headers
            .get("X-LXD-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )?;
    let append = match headers
        .get("X-LXD-write")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("overwrite")
    {
        "append" => true,
        "overwrite" | "" => false,
        other => return Err(EngineError::bad(format!("Invalid X-LXD-write {other:?}"))),
    };
    Ok(FilePut {
        uid: ids("X-LXD-uid")?,
        gid: ids("X-LXD-gid")?,
        mode,
        kind,
        append,
    })
}

pub async fn post(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let req = Request::FilePush {
        path: path_param(&q)?,
        put: file_put(&headers)?,
        body: body_stream(body),
        instance,
    };
    answer(&s, req).await
}

pub async fn delete(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    q: Params,
) -> ApiResult {
    let path = path_param(&q)?;
    answer(&s, Request::FileDelete { instance, path }).await
}
