//! `/1.0/storage-pools/{pool}/volumes…`: storage volumes and their snapshots.

use crate::methods::{get, post};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kante_api::storage::{
    StorageVolumePost, StorageVolumePut, StorageVolumesPost, VolumeSnapshotsPost,
};
use kante_engine::front::Request;
use kante_engine::EngineError;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

/// Adds the volume routes to the router.
pub fn routes(r: crate::Routes) -> crate::Routes {
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
            get(snapshot_get)
                .post(snapshot_send)
                .delete(snapshot_delete),
        )
        // lxc 5.0's form of a snapshot sent to another server: the
        // snapshot's name after its volume's, unescaped.
        .route(
            &format!("{base}/{{kind}}/{{vol}}/{{snap}}"),
            post(snapshot_send),
        )
}

/// `{pool}/volumes/{kind}/{volume}` of the URL.
type VolumePath = Path<(String, String, String)>;

/// A member asking another (the forwarding middleware lets only members
/// send the header, and sends a `?target=` request on to its member)
/// lists that member's own volumes; a client every member's.
fn all_members(headers: &HeaderMap) -> bool {
    !headers.contains_key(kante_engine::forward::FORWARDED_HEADER)
}

async fn list_all(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    headers: HeaderMap,
    q: Params,
) -> ApiResult {
    let all_members = all_members(&headers);
    let req = Request::VolumeList {
        pool,
        kind: None,
        all_members,
    };
    listing(&s, req, &q).await
}

async fn list(
    State(s): State<AppState>,
    Path((pool, kind)): Path<(String, String)>,
    headers: HeaderMap,
    q: Params,
) -> ApiResult {
    let (kind, all_members) = (Some(kind), all_members(&headers));
    let req = Request::VolumeList {
        pool,
        kind,
        all_members,
    };
    listing(&s, req, &q).await
}

async fn create_any(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    Json(post): Json<StorageVolumesPost>,
) -> ApiResult {
    let req = Request::VolumeCreate {
        pool,
        kind: None,
        post,
    };
    answer(&s, req).await
}

async fn create(
    State(s): State<AppState>,
    Path((pool, kind)): Path<(String, String)>,
    Json(post): Json<StorageVolumesPost>,
) -> ApiResult {
    let req = Request::VolumeCreate {
        pool,
        kind: Some(kind),
        post,
    };
    answer(&s, req).await
}

async fn get_one(State(s): State<AppState>, Path((pool, kind, volume)): VolumePath) -> ApiResult {
    answer(&s, Request::VolumeGet { pool, kind, volume }).await
}

async fn put(
    State(s): State<AppState>,
    Path((pool, kind, volume)): VolumePath,
    Json(put): Json<StorageVolumePut>,
) -> ApiResult {
    let req = Request::VolumeUpdate {
        pool,
        kind,
        volume,
        put,
        merge: false,
    };
    answer(&s, req).await
}

async fn patch(
    State(s): State<AppState>,
    Path((pool, kind, volume)): VolumePath,
    Json(put): Json<StorageVolumePut>,
) -> ApiResult {
    let req = Request::VolumeUpdate {
        pool,
        kind,
        volume,
        put,
        merge: true,
    };
    answer(&s, req).await
}

async fn rename(
    State(s): State<AppState>,
    Path((pool, kind, volume)): VolumePath,
    Json(post): Json<StorageVolumePost>,
) -> ApiResult {
    let req = Request::VolumeRename {
        pool,
        kind,
        volume,
        post,
    };
    answer(&s, req).await
}

async fn delete(State(s): State<AppState>, Path((pool, kind, volume)): VolumePath) -> ApiResult {
    answer(&s, Request::VolumeDelete { pool, kind, volume }).await
}

async fn snapshots(
    State(s): State<AppState>,
    Path((pool, kind, volume)): VolumePath,
    q: Params,
) -> ApiResult {
    listing(&s, Request::VolumeSnapshotList { pool, kind, volume }, &q).await
}

async fn snapshot_create(
    State(s): State<AppState>,
    Path((pool, kind, volume)): VolumePath,
    Json(post): Json<VolumeSnapshotsPost>,
) -> ApiResult {
    let req = Request::VolumeSnapshotCreate {
        pool,
        kind,
        volume,
        post,
    };
    answer(&s, req).await
}

/// A volume snapshot offered to another server (`migration: true`), as
/// a volume of its own: the volume's migration with `VOLUME/SNAPSHOT`.
async fn snapshot_send(
    State(s): State<AppState>,
    Path((pool, kind, volume, snapshot)): Path<(String, String, String, String)>,
    Json(post): Json<StorageVolumePost>,
) -> ApiResult {
    if !post.migration {
        return Err(EngineError::bad("Renaming a volume snapshot is not supported").into());
    }
    let req = Request::VolumeRename {
        pool,
        kind,
        volume: format!("{volume}/{snapshot}"),
        post,
    };
    answer(&s, req).await
}

async fn snapshot_get(
    State(s): State<AppState>,
    Path((pool, kind, volume, snapshot)): Path<(String, String, String, String)>,
) -> ApiResult {
    let req = Request::VolumeSnapshotGet {
        pool,
        kind,
        volume,
        snapshot,
    };
    answer(&s, req).await
}

async fn snapshot_delete(
    State(s): State<AppState>,
    Path((pool, kind, volume, snapshot)): Path<(String, String, String, String)>,
) -> ApiResult {
    let req = Request::VolumeSnapshotDelete {
        pool,
        kind,
        volume,
        snapshot,
    };
    answer(&s, req).await
}
