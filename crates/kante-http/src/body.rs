//! Tolerant request bodies: an empty body or `null` means the default
//! (Ansible sends `null` on every request), unknown fields are ignored.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
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
