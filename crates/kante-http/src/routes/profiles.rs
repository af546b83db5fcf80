use axum::extract::{Path, State};
use kante_engine::profiles::ProfilePut;
use kante_engine::EngineError;

use super::{recursion, Params};
use crate::body::Json;
use crate::response::{created, empty, sync, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    let profiles = s.engine.profile_list()?;
    if recursion(&q) >= 1 {
        return sync(profiles);
    }
    sync(
        profiles
            .iter()
            .map(|p| format!("/1.0/profiles/{}", p.name))
            .collect::<Vec<_>>(),
    )
}

pub async fn create(State(s): State<AppState>, Json(req): Json<ProfilePut>) -> ApiResult {
    let name = req.name.clone();
    s.engine.profile_create(req)?;
    created(&format!("/1.0/profiles/{name}"))
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.profile_get(&name)?)
}

pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePut>,
) -> ApiResult {
    s.engine.profile_update(&name, req)?;
    empty()
}

pub async fn patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePut>,
) -> ApiResult {
    let cur = s.engine.profile_get(&name)?;
    let mut merged = ProfilePut {
        name: name.clone(),
        description: cur.description,
        config: cur.config,
        devices: cur.devices,
    };
    if !req.description.is_empty() {
        merged.description = req.description;
    }
    merged.config.extend(req.config);
    merged.devices.extend(req.devices);
    s.engine.profile_update(&name, merged)?;
    empty()
}

pub async fn post(State(_s): State<AppState>, Path(_name): Path<String>) -> ApiResult {
    Err(EngineError::NotImplemented("Renaming profiles is not supported yet".into()).into())
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.engine.profile_delete(&name)?;
    empty()
}
