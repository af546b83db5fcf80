//! `/1.0/instances/{name}/backups…` and backup import (`POST /1.0/instances`
//! with an `application/octet-stream` body).

use crate::methods::get;
use axum::extract::{FromRequest, Path, Request, State};
use kante_api::backup::{InstanceBackupPost, InstanceBackupsPost};
use kante_api::instance::InstancesPost;
use kante_engine::front::Request as Req;

use super::images::{body_stream, hdr};
use super::{instances, Params};
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

/// Adds the backup routes under `/1.0/instances` and `/1.0/containers`.
pub fn routes(r: crate::Routes) -> crate::Routes {
    let mut r = r;
    for base in ["/1.0/instances", "/1.0/containers"] {
        r = r
            .route(&format!("{base}/{{name}}/backups"), get(list).post(create))
            .route(
                &format!("{base}/{{name}}/backups/{{backup}}"),
                get(get_one).post(rename).delete(delete),
            )
            .route(
                &format!("{base}/{{name}}/backups/{{backup}}/export"),
                get(export),
            );
    }
    r
}

/// `POST /1.0/instances`: a JSON create, or a backup tarball to import.
pub async fn create_or_import(State(s): State<AppState>, req: Request) -> ApiResult {
    let headers = req.headers().clone();
    if !hdr(&headers, "content-type").starts_with("application/octet-stream") {
        let Json(body) = Json::<InstancesPost>::from_request(req, &s).await?;
        return instances::create(State(s), Json(body)).await;
    }
    let some = |v: String| (!v.is_empty()).then_some(v);
    let import = Req::InstanceImport {
        body: body_stream(req.into_body()),
        name: some(hdr(&headers, "X-LXD-name")),
        pool: some(hdr(&headers, "X-LXD-pool")),
    };
    answer(&s, import).await
}

async fn list(State(s): State<AppState>, Path(instance): Path<String>, q: Params) -> ApiResult {
    listing(&s, Req::BackupList { instance }, &q).await
}

async fn create(
    State(s): State<AppState>,
    Path(instance): Path<String>,
    Json(post): Json<InstanceBackupsPost>,
) -> ApiResult {
    answer(&s, Req::BackupCreate { instance, post }).await
}

async fn get_one(
    State(s): State<AppState>,
    Path((instance, backup)): Path<(String, String)>,
) -> ApiResult {
    answer(&s, Req::BackupGet { instance, backup }).await
}

async fn rename(
    State(s): State<AppState>,
    Path((instance, backup)): Path<(String, String)>,
    Json(post): Json<InstanceBackupPost>,
) -> ApiResult {
    let req = Req::BackupRename {
        instance,
        backup,
        new_name: post.name,
    };
    answer(&s, req).await
}

async fn delete(
    State(s): State<AppState>,
    Path((instance, backup)): Path<(String, String)>,
) -> ApiResult {
    answer(&s, Req::BackupDelete { instance, backup }).await
}

/// Streams the tarball.
async fn export(
    State(s): State<AppState>,
    Path((instance, backup)): Path<(String, String)>,
) -> ApiResult {
    answer(&s, Req::BackupExport { instance, backup }).await
}
