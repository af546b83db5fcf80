//! Routes of /1.0/profiles.

use axum::extract::{Path, State};
use kante_engine::profiles::{ProfilePut, ProfilesPost};

use super::{recursion, Params};
use crate::body::Json;
use crate::response::{created, empty, sync, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    let profiles = s.engine.profile_list().await?;
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

pub async fn create(State(s): State<AppState>, Json(req): Json<ProfilesPost>) -> ApiResult {
    let name = req.name.clone();
    s.engine.profile_create(req).await?;
    created(&format!("/1.0/profiles/{name}"))
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.profile_get(&name).await?)
}

pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePut>,
) -> ApiResult {
    sync(s.engine.profile_update(&name, req).await?)
}

pub async fn patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePut>,
) -> ApiResult {
    let cur = s.engine.profile_get(&name).await?;
    let mut merged = ProfilePut {
        description: cur.description,
        config: cur.config,
        devices: cur.devices,
    };
    if !req.description.is_empty() {
        merged.description = req.description;
    }
    merged.config.extend(req.config);
    merged.devices.extend(req.devices);
    sync(s.engine.profile_update(&name, merged).await?)
}

#[derive(serde::Deserialize, Default)]
pub struct ProfilePost {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    name: String,
}

pub async fn post(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePost>,
) -> ApiResult {
    s.engine.profile_get(&name).await?;
    s.engine.profile_rename(&name, &req.name).await?;
    created(&format!("/1.0/profiles/{}", req.name))
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.engine.profile_delete(&name).await?;
    empty()
}
