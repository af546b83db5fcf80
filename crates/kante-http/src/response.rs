//! Rendering engine results as LXD responses.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kante_api::Envelope;
use kante_engine::{EngineError, Op};
use serde::Serialize;
use serde_json::Value;

/// Every handler returns this: a success response or an engine error.
pub type ApiResult = Result<Response, ApiError>;

pub struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0.status(), &self.0.to_string())
    }
}

fn json_response<M: Serialize>(
    status: StatusCode,
    env: &Envelope<M>,
    headers: HeaderMap,
) -> Response {
    let (status, mut body) = match serde_json::to_vec(env) {
        Ok(body) => (status, body),
        // Only a map with non-string keys fails here; say so rather than send nothing.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::to_vec(&Envelope::error(500, format!("Encoding the response: {e}")))
                .unwrap_or_default(),
        ),
    };
    body.push(b'\n');
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().extend(headers);
    resp
}

pub fn error(code: u16, message: &str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    if code == 503 {
        // Shedding load: do not keep the refused client's connection (and fd).
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &Envelope::error(code, message), h)
}

/// 200 with `metadata`, serialised straight to the body (no `Value` tree in
/// between: a list of 500 instances is mostly allocator time otherwise).
pub fn sync<T: Serialize>(metadata: T) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &Envelope::sync(&metadata),
        HeaderMap::new(),
    ))
}

/// 200 with `{}`.
pub fn empty() -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &Envelope::empty(),
        HeaderMap::new(),
    ))
}

/// 201 with a Location header and null metadata.
pub fn created(location: &str) -> ApiResult {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    Ok(json_response(StatusCode::CREATED, &Envelope::created(), h))
}

/// 202 for a background operation.
pub fn operation(op: &std::sync::Arc<Op>) -> ApiResult {
    let url = op.url();
    let meta = serde_json::to_value(op.snapshot()).unwrap_or(Value::Null);
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&url) {
        h.insert(header::LOCATION, v);
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        &Envelope::async_op(url, meta),
        h,
    ))
}
