//! Routes of the host as a whole: `/1.0/metrics`, `/1.0/resources`, a
//! pool's `/resources`, `/1.0/projects` and `/1.0/warnings`.

use axum::extract::{Path, State};
use kante_api::project::ProjectPut;
use kante_engine::front::Request;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn metrics(State(s): State<AppState>) -> ApiResult {
    answer(&s, Request::Metrics).await
}

pub async fn resources(State(s): State<AppState>) -> ApiResult {
    answer(&s, Request::Resources).await
}

pub async fn pool_resources(State(s): State<AppState>, Path(pool): Path<String>) -> ApiResult {
    answer(&s, Request::PoolResources { pool }).await
}

pub async fn projects(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::ProjectList, &q).await
}

#[derive(serde::Deserialize, Default, schemars::JsonSchema)]
pub struct Named {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    name: String,
}

pub async fn project_create(State(s): State<AppState>, Json(req): Json<Named>) -> ApiResult {
    answer(&s, Request::ProjectCreate { name: req.name }).await
}

pub async fn project_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ProjectGet { name }).await
}

pub async fn project_put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<ProjectPut>,
) -> ApiResult {
    let merge = false;
    answer(&s, Request::ProjectUpdate { name, put, merge }).await
}

pub async fn project_patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<ProjectPut>,
) -> ApiResult {
    let merge = true;
    answer(&s, Request::ProjectUpdate { name, put, merge }).await
}

pub async fn project_post(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ProjectRename { name }).await
}

pub async fn project_delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ProjectDelete { name }).await
}

pub async fn warnings(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::WarningList, &q).await
}

pub async fn warning_get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    answer(&s, Request::WarningGet { id }).await
}

/// The routes above, added to `r`.
pub fn routes(r: crate::Routes) -> crate::Routes {
    use crate::methods::get;
    r.route("/1.0/metrics", get(metrics))
        .route("/1.0/resources", get(resources))
        .route("/1.0/storage-pools/{name}/resources", get(pool_resources))
        .route("/1.0/projects", get(projects).post(project_create))
        .route(
            "/1.0/projects/{name}",
            get(project_get)
                .put(project_put)
                .patch(project_patch)
                .post(project_post)
                .delete(project_delete),
        )
        .route("/1.0/warnings", get(warnings))
        .route("/1.0/warnings/{id}", get(warning_get))
}
