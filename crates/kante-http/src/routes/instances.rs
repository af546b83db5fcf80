//! Routes of /1.0/instances: list, create, state, update, rename, delete, logs.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use kante_api::exec::ExecPost;
use kante_api::instance::{Instance, InstancePost, InstancePut, InstanceStatePut, InstancesPost};
use kante_engine::EngineError;

use super::{recursion, Params};
use crate::body::Json;
use crate::filter;
use crate::response::{empty, operation, sync, ApiError, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, q: Params) -> ApiResult {
    let f = q.get("filter").cloned().unwrap_or_default();
    let filtered = !f.trim().is_empty();
    // Only a filter needs the JSON form of each instance.
    let keep = |i: &Instance| -> Result<bool, ApiError> {
        if !filtered {
            return Ok(true);
        }
        filter::matches(&f, &serde_json::to_value(i).unwrap_or_default())
            .map_err(|e| ApiError(EngineError::bad(format!("Invalid filter: {e}"))))
    };
    let url = |name: &str| format!("/1.0/instances/{name}");
    match recursion(&q) {
        0 if !filtered => sync(
            s.engine
                .instance_names()
                .await?
                .iter()
                .map(|n| url(n))
                .collect::<Vec<_>>(),
        ),
        r @ (0 | 1) => {
            let mut kept = Vec::new();
            for i in s.engine.instance_list().await? {
                if keep(&i)? {
                    kept.push(i);
                }
            }
            if r == 0 {
                sync(kept.iter().map(|i| url(&i.name)).collect::<Vec<_>>())
            } else {
                sync(kept)
            }
        }
        _ => {
            let mut out = Vec::new();
            for i in s.engine.instance_list_full().await? {
                if keep(&i.instance)? {
                    out.push(i);
                }
            }
            sync(out)
        }
    }
}

pub async fn create(State(s): State<AppState>, Json(req): Json<InstancesPost>) -> ApiResult {
    operation(&s.engine.instance_create(req).await?)
}

pub async fn get(State(s): State<AppState>, Path(name): Path<String>, q: Params) -> ApiResult {
    if recursion(&q) >= 1 {
        return sync(s.engine.instance_get_full(&name).await?);
    }
    sync(s.engine.instance_get(&name).await?)
}

/// PUT is asynchronous in LXD (and restore travels through it).
pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstancePut>,
) -> ApiResult {
    operation(&s.engine.instance_put(&name, req).await?)
}

pub async fn patch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult {
    sync(s.engine.instance_patch(&name, body).await?)
}

pub async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    operation(&s.engine.instance_delete_op(&name).await?)
}

pub async fn post(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstancePost>,
) -> ApiResult {
    operation(&s.engine.instance_post(&name, req).await?)
}

pub async fn state_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    sync(s.engine.instance_state(&name).await?)
}

pub async fn state_put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstanceStatePut>,
) -> ApiResult {
    operation(&s.engine.instance_state_put(&name, req).await?)
}

pub async fn exec(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ExecPost>,
) -> ApiResult {
    operation(&s.engine.instance_exec(&name, req).await?)
}

pub async fn snapshots(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Params,
) -> ApiResult {
    let snaps = s.engine.snapshot_list(&name).await?;
    if recursion(&q) >= 1 {
        return sync(snaps);
    }
    sync(
        snaps
            .iter()
            .map(|sn| format!("/1.0/instances/{name}/snapshots/{}", sn.name))
            .collect::<Vec<_>>(),
    )
}

pub async fn snapshot_create(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<kante_engine::instance::snapshots::SnapshotsPost>,
) -> ApiResult {
    operation(&s.engine.snapshot_create(&name, req).await?)
}

pub async fn snapshot_get(
    State(s): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ApiResult {
    sync(s.engine.snapshot_get(&name, &snap).await?)
}

#[derive(serde::Deserialize, Default)]
pub struct SnapshotPost {
    #[serde(default, deserialize_with = "kante_api::serde_util::null_default")]
    name: String,
    #[serde(default, deserialize_with = "kante_api::serde_util::lenient_bool")]
    migration: bool,
}

pub async fn snapshot_post(
    State(s): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
    Json(req): Json<SnapshotPost>,
) -> ApiResult {
    if req.migration {
        return Err(
            EngineError::NotImplemented("Snapshot migration is not supported yet".into()).into(),
        );
    }
    operation(&s.engine.snapshot_rename(&name, &snap, &req.name).await?)
}

#[derive(serde::Deserialize, Default)]
pub struct SnapshotPut {
    #[serde(default)]
    expires_at: Option<kante_api::Timestamp>,
}

pub async fn snapshot_put(
    State(s): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
    Json(req): Json<SnapshotPut>,
) -> ApiResult {
    operation(&s.engine.snapshot_put(&name, &snap, req.expires_at).await?)
}

pub async fn snapshot_delete(
    State(s): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ApiResult {
    operation(&s.engine.snapshot_delete(&name, &snap).await?)
}

pub async fn console_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let log = s.engine.instance_console_log(&name).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        log,
    )
        .into_response())
}

pub async fn console_delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.engine.instance_console_clear(&name).await?;
    empty()
}

pub async fn console_attach() -> ApiResult {
    Err(EngineError::NotImplemented(
        "Interactive console attach is not supported yet; use `kante console --show-log`".into(),
    )
    .into())
}

pub async fn logs(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.engine.instance_row(&name).await?;
    sync([format!("/1.0/instances/{name}/logs/lxc.log")])
}

/// `lxc.log` (our console log) or a recorded exec output.
pub async fn log_get(
    State(s): State<AppState>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult {
    let body = s.engine.instance_log(&name, &file).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain")], body).into_response())
}
