//! Routes of /1.0/networks: managed bridges and their leases.

use axum::extract::{Path, State};
use kante_api::network::{NetworkPut, NetworksPost};
use kante_engine::front::Request;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::NetworkList, &q).await
}

pub async fn create(State(s): State<AppState>, Json(req): Json<NetworksPost>) -> ApiResult {
    answer(&s, Request::NetworkCreate(req)).await
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::NetworkGet { name }).await
}

pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<NetworkPut>,
) -> ApiResult {
    let req = Request::NetworkUpdate {
        name,
        put,
        merge: false,
    };
    answer(&s, req).await
}

pub async fn patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<NetworkPut>,
) -> ApiResult {
    let req = Request::NetworkUpdate {
        name,
        put,
        merge: true,
    };
    answer(&s, req).await
}

pub async fn post(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::NetworkRename { name }).await
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::NetworkDelete { name }).await
}

pub async fn state(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::NetworkState { name }).await
}

pub async fn leases(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::NetworkLeases { name }).await
}
