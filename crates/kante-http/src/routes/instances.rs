//! Routes of /1.0/instances: list, create, state, update, rename, delete,
//! exec, console, logs and snapshots, each parsed into a front-door request.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kante_api::console::ConsolePost;
use kante_api::exec::ExecPost;
use kante_api::instance::{InstancePost, InstancePut, InstanceStatePut, InstancesPost};
use kante_engine::front::{ListDetail, Request, SnapshotsPost};

use super::{recursion, Params};
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, headers: HeaderMap, q: Params) -> ApiResult {
    let detail = match recursion(&q) {
        0 => ListDetail::Names,
        1 => ListDetail::Records,
        _ => ListDetail::Full,
    };
    let filter = q.get("filter").cloned().unwrap_or_default();
    // A member asking another lists that member's own (the forwarding
    // middleware lets only members send the header).
    let all_members = !headers.contains_key(kante_engine::forward::FORWARDED_HEADER);
    let req = Request::InstanceList {
        detail,
        filter,
        all_members,
    };
    listing(&s, req, &q).await
}

pub async fn create(State(s): State<AppState>, Json(req): Json<InstancesPost>) -> ApiResult {
    answer(&s, Request::InstanceCreate(Box::new(req))).await
}

pub async fn get(State(s): State<AppState>, Path(instance): Path<String>, q: Params) -> ApiResult {
    let full = recursion(&q) >= 1;
    answer(&s, Request::InstanceGet { instance, full }).await
}

/// PUT is asynchronous in LXD (and restore travels through it).
pub async fn put(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    Json(put): Json<InstancePut>,
) -> ApiResult {
    answer(&s, Request::InstanceUpdate { instance, put }).await
}

pub async fn patch(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult {
    answer(&s, Request::InstancePatch { instance, body }).await
}

pub async fn delete(State(s): State<AppState>, Path(instance): Path<String>) -> ApiResult {
    answer(&s, Request::InstanceDelete { instance }).await
}

pub async fn post(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    q: Params,
    Json(post): Json<InstancePost>,
) -> ApiResult {
    // A move between cluster members names the member (LXD's `?target=`).
    let target = q.get("target").filter(|t| !t.is_empty()).cloned();
    answer(
        &s,
        Request::InstanceRename {
            instance,
            post,
            target,
        },
    )
    .await
}

pub async fn state_get(State(s): State<AppState>, Path(instance): Path<String>) -> ApiResult {
    answer(&s, Request::InstanceStateGet { instance }).await
}

pub async fn state_put(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    Json(put): Json<InstanceStatePut>,
) -> ApiResult {
    answer(&s, Request::InstanceStatePut { instance, put }).await
}

pub async fn exec(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    Json(post): Json<ExecPost>,
) -> ApiResult {
    answer(&s, Request::InstanceExec { instance, post }).await
}

pub async fn snapshots(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    q: Params,
) -> ApiResult {
    listing(&s, Request::SnapshotList { instance }, &q).await
}

pub async fn snapshot_create(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    Json(post): Json<SnapshotsPost>,
) -> ApiResult {
    answer(&s, Request::SnapshotCreate { instance, post }).await
}

pub async fn snapshot_get(
    State(s): State<AppState>,
    Path((instance, snapshot)): Path<(String, String)>,
) -> ApiResult {
    answer(&s, Request::SnapshotGet { instance, snapshot }).await
}

pub async fn snapshot_post(
    State(s): State<AppState>,
    Path((instance, snapshot)): Path<(String, String)>,
    Json(post): Json<InstancePost>,
) -> ApiResult {
    let req = Request::SnapshotRename {
        instance,
        snapshot,
        post,
    };
    answer(&s, req).await
}

#[derive(serde::Deserialize, Default, schemars::JsonSchema)]
pub struct SnapshotPut {
    #[serde(default)]
    expires_at: Option<kante_api::Timestamp>,
}

pub async fn snapshot_put(
    State(s): State<AppState>,
    Path((instance, snapshot)): Path<(String, String)>,
    Json(put): Json<SnapshotPut>,
) -> ApiResult {
    let req = Request::SnapshotUpdate {
        instance,
        snapshot,
        expires_at: put.expires_at,
    };
    answer(&s, req).await
}

pub async fn snapshot_delete(
    State(s): State<AppState>,
    Path((instance, snapshot)): Path<(String, String)>,
) -> ApiResult {
    answer(&s, Request::SnapshotDelete { instance, snapshot }).await
}

pub async fn console_get(State(s): State<AppState>, Path(instance): Path<String>) -> ApiResult {
    answer(&s, Request::ConsoleLog { instance }).await
}

pub async fn console_delete(State(s): State<AppState>, Path(instance): Path<String>) -> ApiResult {
    answer(&s, Request::ConsoleClear { instance }).await
}

pub async fn console_attach(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    Json(post): Json<ConsolePost>,
) -> ApiResult {
    answer(&s, Request::ConsoleAttach { instance, post }).await
}

pub async fn logs(State(s): State<AppState>, Path(instance): Path<String>) -> ApiResult {
    answer(&s, Request::LogList { instance }).await
}

/// `lxc.log` (our console log) or a recorded exec output.
pub async fn log_get(
    State(s): State<AppState>,
    Path((instance, file)): Path<(String, String)>,
) -> ApiResult {
    answer(&s, Request::LogGet { instance, file }).await
}
