//! Routes of `/1.0/certificates`: the trust store.

use axum::extract::{Path, State};
use kante_api::certificate::{CertificatePut, CertificatesPost};
use kante_engine::front::Request;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::CertificateList, &q).await
}

/// Also reachable untrusted: a client adding itself with a token or the
/// trust password.
pub async fn create(State(s): State<AppState>, Json(post): Json<CertificatesPost>) -> ApiResult {
    answer(&s, Request::CertificateCreate(Box::new(post))).await
}

pub async fn get(State(s): State<AppState>, Path(fingerprint): Path<String>) -> ApiResult {
    answer(&s, Request::CertificateGet { fingerprint }).await
}

pub async fn put(
    State(s): State<AppState>,
    Path(fingerprint): Path<String>,
    Json(put): Json<CertificatePut>,
) -> ApiResult {
    update(&s, fingerprint, put, false).await
}

pub async fn patch(
    State(s): State<AppState>,
    Path(fingerprint): Path<String>,
    Json(put): Json<CertificatePut>,
) -> ApiResult {
    update(&s, fingerprint, put, true).await
}

/// PUT replaces the editable fields; PATCH (`merge`) changes those given.
async fn update(s: &AppState, fingerprint: String, put: CertificatePut, merge: bool) -> ApiResult {
    let req = Request::CertificateUpdate {
        fingerprint,
        put,
        merge,
    };
    answer(s, req).await
}

pub async fn delete(State(s): State<AppState>, Path(fingerprint): Path<String>) -> ApiResult {
    answer(&s, Request::CertificateDelete { fingerprint }).await
}
