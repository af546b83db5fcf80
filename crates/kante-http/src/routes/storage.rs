use axum::extract::{Path, State};

use super::{recursion, Params};
use crate::response::{sync, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    let pools = s.engine.pool_list()?;
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
    sync(s.engine.pool_get(&name)?)
}
