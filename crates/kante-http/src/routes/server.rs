//! Routes of /1.0 itself: the server's environment and config.

use axum::extract::State;
use kante_api::server::ServerPut;
use kante_engine::front::Request;

use crate::body::Json;
use crate::response::{answer, sync, ApiResult};
use crate::AppState;

pub async fn root() -> ApiResult {
    sync(["/1.0"])
}

pub async fn get(State(s): State<AppState>) -> ApiResult {
    answer(&s, Request::ServerGet).await
}

pub async fn put(State(s): State<AppState>, Json(req): Json<ServerPut>) -> ApiResult {
    let config = req.config;
    answer(
        &s,
        Request::ServerUpdate {
            config,
            merge: false,
        },
    )
    .await
}

pub async fn patch(State(s): State<AppState>, Json(req): Json<ServerPut>) -> ApiResult {
    let config = req.config;
    answer(
        &s,
        Request::ServerUpdate {
            config,
            merge: true,
        },
    )
    .await
}
