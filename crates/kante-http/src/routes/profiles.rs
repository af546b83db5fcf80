//! Routes of /1.0/profiles.

use axum::extract::{Path, State};
use kante_api::profile::{ProfilePut, ProfilesPost};
use kante_engine::front::Request;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::ProfileList, &q).await
}

pub async fn create(State(s): State<AppState>, Json(req): Json<ProfilesPost>) -> ApiResult {
    answer(&s, Request::ProfileCreate(req)).await
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ProfileGet { name }).await
}

pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<ProfilePut>,
) -> ApiResult {
    let req = Request::ProfileUpdate {
        name,
        put,
        merge: false,
    };
    answer(&s, req).await
}

pub async fn patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<ProfilePut>,
) -> ApiResult {
    let req = Request::ProfileUpdate {
        name,
        put,
        merge: true,
    };
    answer(&s, req).await
}

#[derive(serde::Deserialize, Default, schemars::JsonSchema)]
pub struct ProfilePost {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    name: String,
}

pub async fn post(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePost>,
) -> ApiResult {
    let new_name = req.name;
    answer(&s, Request::ProfileRename { name, new_name }).await
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ProfileDelete { name }).await
}
