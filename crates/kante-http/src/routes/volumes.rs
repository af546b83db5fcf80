//! `/1.0/storage-pools/{pool}/volumes…`: storage volumes and their snapshots.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use kante_api::storage::{
    StorageVolumePost, StorageVolumePut, StorageVolumesPost, VolumeSnapshotsPost,
};
use kante_engine::EngineError;

use super::{recursion, Params};
use crate::body::Json;
use crate::response::{created, empty, operation, sync, ApiResult};
use crate::AppState;

/// Adds the volume routes to the router.
pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let base = "/1.0/storage-pools/{name}/volumes";
    r.route(base, get(list_all).post(create_any))
        .route(&format!("{base}/{{kind}}"), get(list).post(create))
        .route(
            &format!("{base}/{{kind}}/{{vol}}"),
            get(get_one)
                .put(put)
                .patch(patch)
                .post(rename)
                .delete(delete),
        )
        .route(
            &format!("{base}/{{kind}}/{{vol}}/snapshots"),
            get(snapshots).post(snapshot_create),
        )
        .route(
            &format!("{base}/{{kind}}/{{vol}}/snapshots/{{snap}}"),
            get(snapshot_get).delete(snapshot_delete),
        )
}

async fn render_list(
    s: &AppState,
    pool: &str,
    kind: &str,
    q: &std::collections::HashMap<String, String>,
) -> ApiResult {
    let vols = s.engine.volume_list(pool, kind).await?;
    if recursion(q) >= 1 {
        return sync(vols);
    }
    sync(
        vols.iter()
            .map(|v| format!("/1.0/storage-pools/{pool}/volumes/{}/{}", v.kind, v.name))
            .collect::<Vec<_>>(),
    )
}

async fn list_all(State(s): State<AppState>, Path(pool): Path<String>, q: Params) -> ApiResult {
    render_list(&s, &pool, "", &q).await
}

async fn list(
    State(s): State<AppState>,
    Path((pool, kind)): Path<(String, String)>,
    q: Params,
) -> ApiResult {
    render_list(&s, &pool, &kind, &q).await
}

async fn create_any(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    Json(req): Json<StorageVolumesPost>,
) -> ApiResult {
    let name = req.name.clone();
    s.engine.volume_create(&pool, req).await?;
    created(&format!("/1.0/storage-pools/{pool}/volumes/custom/{name}"))
}

async fn create(
    State(s): State<AppState>,
    Path((pool, kind)): Path<(String, String)>,
    Json(mut req): Json<StorageVolumesPost>,
) -> ApiResult {
    if !req.kind.is_empty() && req.kind != kind {
        return Err(EngineError::bad(format!(
            "Volume type {:?} in the body does not match {kind:?} in the URL",
            req.kind
        ))
        .into());
    }
    req.kind = kind;
    let name = req.name.clone();
    s.engine.volume_create(&pool, req).await?;
    created(&format!("/1.0/storage-pools/{pool}/volumes/custom/{name}"))
}

async fn get_one(
    State(s): State<AppState>,
    Path((pool, kind, vol)): Path<(String, String, String)>,
) -> ApiResult {
    sync(s.engine.volume_get(&pool, &kind, &vol).await?)
}

/// Only custom volumes change through these routes.
fn custom_only(kind: &str) -> Result<(), EngineError> {
    if kind == "custom" {
        return Ok(());
    }
    Err(EngineError::bad(format!(
        "Only custom volumes can be changed here, not {kind:?} volumes"
    )))
}

async fn put(
    State(s): State<AppState>,
    Path((pool, kind, vol)): Path<(String, String, String)>,
    Json(req): Json<StorageVolumePut>,
) -> ApiResult {
    custom_only(&kind)?;
    s.engine.volume_update(&pool, &vol, req, false).await?;
    empty()
}

async fn patch(
    State(s): State<AppState>,
    Path((pool, kind, vol)): Path<(String, String, String)>,
    Json(req): Json<StorageVolumePut>,
) -> ApiResult {
    custom_only(&kind)?;
    s.engine.volume_update(&pool, &vol, req, true).await?;
    empty()
}

async fn rename(
    State(s): State<AppState>,
    Path((pool, kind, vol)): Path<(String, String, String)>,
    Json(req): Json<StorageVolumePost>,
) -> ApiResult {
    custom_only(&kind)?;
    if !req.pool.is_empty() && req.pool != pool {
        return Err(EngineError::NotImplemented(
            "Moving a volume to another pool is not supported; copy it instead".into(),
        )
        .into());
    }
    s.engine.volume_rename(&pool, &vol, &req.name).await?;
    created(&format!(
        "/1.0/storage-pools/{pool}/volumes/custom/{}",
        req.name
    ))
}

async fn delete(
    State(s): State<AppState>,
    Path((pool, kind, vol)): Path<(String, String, String)>,
) -> ApiResult {
    custom_only(&kind)?;
    s.engine.volume_delete(&pool, &vol).await?;
    empty()
}

async fn snapshots(
    State(s): State<AppState>,
    Path((pool, kind, vol)): Path<(String, String, String)>,
    q: Params,
) -> ApiResult {
    custom_only(&kind)?;
    let snaps = s.engine.volume_snapshot_list(&pool, &vol).await?;
    if recursion(&q) >= 1 {
        return sync(snaps);
    }
    sync(
        snaps
            .iter()
            .map(|x| {
                format!(
                    "/1.0/storage-pools/{pool}/volumes/custom/{vol}/snapshots/{}",
                    x.name
                )
            })
            .collect::<Vec<_>>(),
    )
}

async fn snapshot_create(
    State(s): State<AppState>,
    Path((pool, kind, vol)): Path<(String, String, String)>,
    Json(req): Json<VolumeSnapshotsPost>,
) -> ApiResult {
    custom_only(&kind)?;
    operation(&s.engine.volume_snapshot_create(&pool, &vol, req)?)
}

async fn snapshot_get(
    State(s): State<AppState>,
    Path((pool, kind, vol, snap)): Path<(String, String, String, String)>,
) -> ApiResult {
    custom_only(&kind)?;
    sync(s.engine.volume_snapshot_get(&pool, &vol, &snap).await?)
}

async fn snapshot_delete(
    State(s): State<AppState>,
    Path((pool, kind, vol, snap)): Path<(String, String, String, String)>,
) -> ApiResult {
    custom_only(&kind)?;
    operation(&s.engine.volume_snapshot_delete(&pool, &vol, &snap).await?)
}
