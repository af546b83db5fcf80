//! Routes of /1.0/networks: managed bridges and their leases.

use axum::extract::{Path, State};
use kante_api::network::{NetworkPut, NetworksPost};
use kante_engine::EngineError;

use super::{recursion, Params};
use crate::body::Json;
use crate::response::{created, empty, sync, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    let networks = s.engine.network_list().await?;
    if recursion(&q) >= 1 {
        return sync(networks);
    }
    sync(
        networks
            .iter()
            .map(|n| format!("/1.0/networks/{}", n.name))
            .collect::<Vec<_>>(),
    )
}

pub async fn create(State(s): State<AppState>, Json(req): Json<NetworksPost>) -> ApiResult {
    let name = req.name.clone();
    s.engine.network_create(req).await?;
    created(&format!("/1.0/networks/{name}"))
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.network_get(&name).await?)
}

pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<NetworkPut>,
) -> ApiResult {
    s.engine
        .network_update(&name, req.description, req.config, false)
        .await?;
    empty()
}

pub async fn patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<NetworkPut>,
) -> ApiResult {
    s.engine
        .network_update(&name, req.description, req.config, true)
        .await?;
    empty()
}

pub async fn post(State(_s): State<AppState>, Path(_name): Path<String>) -> ApiResult {
    Err(EngineError::NotImplemented("Renaming networks is not supported".into()).into())
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.engine.network_delete(&name).await?;
    empty()
}

pub async fn state(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.network_state(&name).await?)
}

pub async fn leases(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.network_leases(&name).await?)
}
