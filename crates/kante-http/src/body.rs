//! Tolerant request bodies: an empty body or `null` means the default
//! (Ansible sends `null` on every request), unknown fields are ignored.
//! A small body is read in full before its handler runs ([`read_ahead`]).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::response::ApiError;
use kante_engine::EngineError;

pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError(EngineError::bad(format!(
                "Failed to read the request body: {e}"
            )))
        })?;
        parse(&bytes).map(Json)
    }
}

pub fn parse<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(trimmed)
        .map_err(|e| ApiError(EngineError::bad(format!("Invalid request body: {e}"))))
}

/// Largest body [`read_ahead`] reads (what Go's `net/http`, LXD's server,
/// drains of a body its handler left unread).
pub const READ_AHEAD: usize = 256 * 1024;

/// Middleware: a request whose `Content-Length` is at most [`READ_AHEAD`]
/// has its body read in full before the handler runs, whether the handler
/// reads it or not. Otherwise a handler that ignores its body (every GET
/// and DELETE; Ansible sends `null` on those) answers while the body is
/// still on its way, hyper closes the connection rather than reuse it with
/// bytes unread, and a client that writes its headers and body in two
/// writes and keeps the connection alive (Python's `http.client`) fails
/// on the body's write. Larger and chunked bodies (uploads, file pushes)
/// still stream to their handlers.
pub async fn read_ahead(req: Request, next: Next) -> Response {
    let small = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > 0 && n <= READ_AHEAD);
    if !small {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, READ_AHEAD).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => crate::response::error(400, &format!("Failed to read the request body: {e}")),
    }
}
