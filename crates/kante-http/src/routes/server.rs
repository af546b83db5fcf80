//! Routes of /1.0 itself: the server's environment and config.

use axum::extract::State;

use crate::body::Json;
use crate::response::{empty, sync, ApiResult};
use crate::AppState;
use kante_api::server::ServerPut;

pub async fn root() -> ApiResult {
    sync(["/1.0"])
}

pub async fn get(State(s): State<AppState>) -> ApiResult {
    sync(s.engine.server_info().await?)
}

pub async fn put(State(s): State<AppState>, Json(req): Json<ServerPut>) -> ApiResult {
    s.engine.server_update(req.config, false).await?;
    empty()
}

pub async fn patch(State(s): State<AppState>, Json(req): Json<ServerPut>) -> ApiResult {
    s.engine.server_update(req.config, true).await?;
    empty()
}
