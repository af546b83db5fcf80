//! `/1.0/instances/{name}/backups…` and backup import (`POST /1.0/instances`
//! with an `application/octet-stream` body).

use axum::extract::{FromRequest, Path, Request, State};
use axum::routing::get;
use axum::Router;
use kante_api::backup::{InstanceBackupPost, InstanceBackupsPost};
use kante_api::instance::InstancesPost;
use kante_engine::instance::import::BackupImport;

use super::images::{file_response, hdr, spool};
use super::{instances, recursion, Params};
use crate::body::Json;
use crate::response::{operation, sync, ApiResult};
use crate::AppState;

/// Adds the backup routes under `/1.0/instances` and `/1.0/containers`.
pub fn routes(r: Router<AppState>) -> Router<AppState> {
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
    let dir = s.engine.backup_upload_dir()?;
    let file = spool(&dir, req.into_body().into_data_stream()).await?;
    let some = |v: String| (!v.is_empty()).then_some(v);
    let op = s
        .engine
        .instance_import(BackupImport {
            file: file.keep(),
            name: some(hdr(&headers, "X-LXD-name")),
            pool: some(hdr(&headers, "X-LXD-pool")),
        })
        .await?;
    operation(&op)
}

async fn list(State(s): State<AppState>, Path(name): Path<String>, q: Params) -> ApiResult {
    let backups = s.engine.backup_list(&name).await?;
    if recursion(&q) >= 1 {
        return sync(backups);
    }
    sync(
        backups
            .iter()
            .map(|b| format!("/1.0/instances/{name}/backups/{}", b.name))
            .collect::<Vec<_>>(),
    )
}

async fn create(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstanceBackupsPost>,
) -> ApiResult {
    operation(&s.engine.backup_create(&name, req).await?)
}

async fn get_one(
    State(s): State<AppState>,
    Path((name, backup)): Path<(String, String)>,
) -> ApiResult {
    sync(s.engine.backup_get(&name, &backup).await?)
}

async fn rename(
    State(s): State<AppState>,
    Path((name, backup)): Path<(String, String)>,
    Json(req): Json<InstanceBackupPost>,
) -> ApiResult {
    operation(&s.engine.backup_rename(&name, &backup, &req.name).await?)
}

async fn delete(
    State(s): State<AppState>,
    Path((name, backup)): Path<(String, String)>,
) -> ApiResult {
    operation(&s.engine.backup_delete(&name, &backup).await?)
}

/// Streams the tarball.
async fn export(
    State(s): State<AppState>,
    Path((name, backup)): Path<(String, String)>,
) -> ApiResult {
    let path = s.engine.backup_file(&name, &backup).await?;
    file_response(&path, &format!("attachment;filename={backup}")).await
}
