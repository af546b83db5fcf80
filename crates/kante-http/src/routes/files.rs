//! `/1.0/instances/{name}/files?path=…` with LXD's `X-LXD-*` headers.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use kante_api::Envelope;
use kante_engine::instance::files::{parse_file_kind, FileGet, FileKind, FileMeta, FilePut};
use kante_engine::EngineError;
use tokio::io::AsyncWriteExt;

use super::Params;
use crate::response::{empty, ApiResult};
use crate::AppState;

fn path_param(q: &Params) -> Result<String, EngineError> {
    q.get("path")
        .cloned()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| EngineError::bad("Missing path argument"))
}

fn meta_headers(h: &mut HeaderMap, m: &FileMeta) {
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("X-LXD-uid", m.uid.to_string());
    set("X-LXD-gid", m.gid.to_string());
    set("X-LXD-mode", format!("{:04o}", m.mode));
    set("X-LXD-type", m.kind.as_str().to_string());
    set(
        "X-LXD-modified",
        m.modified.format("%Y-%m-%d %H:%M:%S %z UTC").to_string(),
    );
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>, q: Params) -> ApiResult {
    let path = path_param(&q)?;
    let base = path.rsplit('/').next().unwrap_or("").to_string();
    match s.engine.file_get(&name, &path).await? {
        FileGet::File(f, meta) => {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let stream = tokio_util_stream(f);
            let mut resp = Response::new(Body::from_stream(stream));
            let h = resp.headers_mut();
            meta_headers(h, &meta);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if let Ok(v) = HeaderValue::from_str(&format!("inline;filename={base}")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        FileGet::Symlink(target, meta) => {
            let mut resp = Response::new(Body::from(target));
            let h = resp.headers_mut();
            meta_headers(h, &meta);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("inline;filename={base}")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        FileGet::Directory(names, meta) => {
            let mut body =
                serde_json::to_vec(&Envelope::sync(serde_json::json!(names))).unwrap_or_default();
            body.push(b'\n');
            let mut resp = body.into_response();
            let h = resp.headers_mut();
            meta_headers(h, &meta);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
    }
}

/// Streams a file in 64 KiB chunks without holding it in memory.
fn tokio_util_stream(
    f: std::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    let file = tokio::fs::File::from_std(f);
    futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
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

pub async fn post(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let path = path_param(&q)?;
    let ids = |n: &str| -> Result<Option<u32>, EngineError> {
        match header_num(&headers, n)? {
            None => Ok(None),
            Some(v) if v < 0 => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| EngineError::bad(format!("Invalid {n} header"))),
        }
    };
    let mode = match header_num(&headers, "X-LXD-mode")? {
        Some(m) if !(0..=0o7777).contains(&m) => {
            return Err(EngineError::bad("Invalid X-LXD-mode header").into())
        }
        other => other.map(|m| m as u32),
    };
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
        other => return Err(EngineError::bad(format!("Invalid X-LXD-write {other:?}")).into()),
    };
    let put = FilePut {
        uid: ids("X-LXD-uid")?,
        gid: ids("X-LXD-gid")?,
        mode,
        kind,
        append,
    };
    let mut stream = body.into_data_stream();
    let target = if kind == FileKind::Symlink {
        let mut t = Vec::new();
        while let Some(chunk) = stream.next().await {
            t.extend_from_slice(
                &chunk.map_err(|e| EngineError::bad(format!("Reading the body: {e}")))?,
            );
            if t.len() > 4096 {
                return Err(EngineError::bad("Symlink target is too long").into());
            }
        }
        Some(String::from_utf8(t).map_err(|_| EngineError::bad("Symlink target is not UTF-8"))?)
    } else {
        None
    };
    if let Some(file) = s.engine.file_put(&name, &path, put, target).await? {
        let mut f = tokio::fs::File::from_std(file);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| EngineError::bad(format!("Reading the body: {e}")))?;
            f.write_all(&chunk).await.map_err(EngineError::from)?;
        }
        f.flush().await.map_err(EngineError::from)?;
    }
    empty()
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>, q: Params) -> ApiResult {
    let path = path_param(&q)?;
    s.engine.file_delete(&name, &path).await?;
    empty()
}
