//! Routes of /1.0/networks: managed bridges and their leases.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kante_api::network::{NetworkPut, NetworksPost};
use kante_engine::forward::FORWARDED_HEADER;
use kante_engine::front::Request;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::NetworkList, &q).await
}

/// `?target=`: a cluster member's name.
fn target(q: &Params) -> Option<String> {
    q.get("target").filter(|t| !t.is_empty()).cloned()
}

/// Sent by another member (the forwarding middleware lets only members
/// send the header): it tells this member of a cluster-wide change.
fn notified(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Params,
    Json(post): Json<NetworksPost>,
) -> ApiResult {
    let req = Request::NetworkCreate {
        post,
        target: target(&q),
        notified: notified(&headers),
    };
    answer(&s, req).await
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>, q: Params) -> ApiResult {
    let target = target(&q);
    answer(&s, Request::NetworkGet { name, target }).await
}

pub async fn put(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Params,
    Json(put): Json<NetworkPut>,
) -> ApiResult {
    let req = Request::NetworkUpdate {
        name,
        put,
        merge: false,
        target: target(&q),
        notified: notified(&headers),
    };
    answer(&s, req).await
}

pub async fn patch(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Params,
    Json(put): Json<NetworkPut>,
) -> ApiResult {
    let req = Request::NetworkUpdate {
        name,
        put,
        merge: true,
        target: target(&q),
        notified: notified(&headers),
    };
    answer(&s, req).await
}

/// `POST /1.0/networks/{name}`: LXD's rename body.
#[derive(serde::Deserialize, Default, schemars::JsonSchema)]
pub struct NetworkPost {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    name: String,
}

pub async fn post(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<NetworkPost>,
) -> ApiResult {
    let new_name = req.name;
    answer(&s, Request::NetworkRename { name, new_name }).await
}

pub async fn delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let notified = notified(&headers);
    answer(&s, Request::NetworkDelete { name, notified }).await
}

pub async fn state(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::NetworkState { name }).await
}

pub async fn leases(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::NetworkLeases { name }).await
}
