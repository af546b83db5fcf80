//! Routes of /1.0/storage-pools (volumes have their own file).

use axum::extract::{Path, State};

use kante_engine::pools::StoragePoolsPost;
use serde::Deserialize;

use super::{recursion, Params};
use crate::body::Json;
use crate::response::{created, empty, sync, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    let pools = s.engine.pool_list().await?;
    if recursion(&q) >= 1 {
        return sync(pools);
    }
    sync(
        pools
            .iter()
            .map(|p| format!("/1.0/storage-pools/{}", p.name))
            .collect::<Vec<_>>(),
    )
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.pool_get(&name).await?)
}

pub async fn create(State(s): State<AppState>, Json(req): Json<StoragePoolsPost>) -> ApiResult {
    let name = req.name.clone();
    s.engine.pool_create(req).await?;
    created(&format!("/1.0/storage-pools/{name}"))
}

#[derive(Deserialize, Default)]
pub struct PoolPut {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    description: String,
    #[serde(default, deserialize_with = "kante_api::serde_util::string_map")]
    config: kante_api::ConfigMap,
}

pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<PoolPut>,
) -> ApiResult {
    s.engine
        .pool_update(&name, req.description, req.config, false)
        .await?;
    empty()
}

pub async fn patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<PoolPut>,
) -> ApiResult {
    s.engine
        .pool_update(&name, req.description, req.config, true)
        .await?;
    empty()
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.engine.pool_delete(&name).await?;
    empty()
}
