//! Instance backups: create, list, download, delete, and import a backup
//! tarball as a new instance.

use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use kante_api::backup::{InstanceBackup, InstanceBackupsPost};
use kante_api::operation::Operation;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::body::{segments_body, Segment};
use crate::client::{decode_parts, decode_response, empty_body, read_body, url, Client};
use crate::error::{ClientError, Result};
use crate::operations::{async_operation, operation_result};

/// Where to import a backup (`X-LXD-name`, `X-LXD-pool`).
#[derive(Debug, Clone, Default)]
pub struct BackupImportOptions {
    /// The new instance's name; default: the name in the backup.
    pub name: Option<String>,
    /// The storage pool; default: the backup's, if the server has it.
    pub pool: Option<String>,
}

fn backups_path(instance: &str) -> String {
    format!("/1.0/instances/{}/backups", url::seg(instance))
}

impl Client {
    /// `POST /1.0/instances/{name}/backups`; returns the operation, not yet
    /// finished (see [`Client::wait_operation_progress`]).
    pub async fn start_backup(
        &self,
        instance: &str,
        req: &InstanceBackupsPost,
    ) -> Result<Operation> {
        let resp = self.post(&backups_path(instance), req).await?;
        async_operation(&resp)
    }

    pub async fn backups(&self, instance: &str) -> Result<Vec<InstanceBackup>> {
        self.get_json(&format!("{}?recursion=1", backups_path(instance)))
            .await
    }

    pub async fn delete_backup(&self, instance: &str, backup: &str) -> Result<()> {
        let resp = self
            .delete(&format!("{}/{}", backups_path(instance), url::seg(backup)))
            .await?;
        self.finish(resp).await.map(drop)
    }

    /// Streams `GET …/backups/{backup}/export` into `out`;
    /// `progress(received, total)` (total 0 if the server did not say).
    pub async fn download_backup<W: AsyncWrite + Unpin>(
        &self,
        instance: &str,
        backup: &str,
        out: &mut W,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64> {
        let path = format!("{}/{}/export", backups_path(instance), url::seg(backup));
        let resp = self
            .send_with(Method::GET, &path, &[], empty_body())
            .await?;
        if resp.status().as_u16() >= 400 {
            let (parts, body) = read_body(resp).await?;
            decode_parts(parts, &body)?;
            return Err(ClientError::Protocol("backup download failed".into()));
        }
        let total = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut got = 0u64;
        progress(0, total);
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                out.write_all(&data).await?;
                got += data.len() as u64;
                progress(got, total);
            }
        }
        out.flush().await?;
        if total > 0 && got != total {
            return Err(ClientError::Protocol(format!(
                "backup download ended after {got} of {total} bytes"
            )));
        }
        Ok(got)
    }

    /// Uploads a backup tarball (`POST /1.0/instances`, raw body) and waits
    /// for the import; `progress(sent, total)` as the body goes out. Returns
    /// the finished operation.
    pub async fn import_backup(
        &self,
        tarball: &Path,
        opts: &BackupImportOptions,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<Operation> {
        let (body, _) = segments_body(
            vec![Segment::File(tarball.to_path_buf())],
            Box::new(progress),
        )
        .await?;
        let mut headers = vec![("Content-Type", "application/octet-stream".to_string())];
        if let Some(n) = &opts.name {
            headers.push(("X-LXD-name", n.clone()));
        }
        if let Some(p) = &opts.pool {
            headers.push(("X-LXD-pool", p.clone()));
        }
        let resp = self
            .send_with(Method::POST, "/1.0/instances", &headers, body)
            .await?;
        let resp = decode_response(resp).await?;
        let op = async_operation(&resp)?;
        self.wait_operation(&op.id, None).await
    }

    /// Waits for an operation, calling `update` with its state about once a
    /// second while it runs (progress in its metadata); Failure becomes an error.
    pub async fn wait_operation_progress(
        &self,
        id: &str,
        mut update: impl FnMut(&Operation),
    ) -> Result<Operation> {
        loop {
            match self
                .wait_operation_raw(id, Some(Duration::from_secs(1)))
                .await
            {
                Ok(op) => return operation_result(op),
                Err(ClientError::Timeout(_)) => update(&self.get_operation(id).await?),
                Err(e) => return Err(e),
            }
        }
    }
}
