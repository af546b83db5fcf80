//! Routes of /1.0/storage-pools (volumes have their own file).

use axum::extract::{Path, State};
use kante_api::storage::{StoragePoolPut, StoragePoolsPost};
use kante_engine::front::Request;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::PoolList, &q).await
}

pub async fn get(State(s): State<AppState>, Path(pool): Path<String>) -> ApiResult {
    answer(&s, Request::PoolGet { pool }).await
}

pub async fn create(State(s): State<AppState>, Json(req): Json<StoragePoolsPost>) -> ApiResult {
    answer(&s, Request::PoolCreate(req)).await
}

pub async fn put(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    Json(put): Json<StoragePoolPut>,
) -> ApiResult {
    let req = Request::PoolUpdate {
        pool,
        put,
        merge: false,
    };
    answer(&s, req).await
}

pub async fn patch(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    Json(put): Json<StoragePoolPut>,
) -> ApiResult {
    let req = Request::PoolUpdate {
        pool,
        put,
        merge: true,
    };
    answer(&s, req).await
}

pub async fn delete(State(s): State<AppState>, Path(pool): Path<String>) -> ApiResult {
    answer(&s, Request::PoolDelete { pool }).await
}
