//! Background operations: get, wait, cancel.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kante_api::operation::{Operation, OperationList};
use kante_api::{ResponseType, StatusCode};

use crate::client::{url, ApiResponse, Client};
use crate::error::{ClientError, Result};

/// Maps a final operation to `Ok`, or its `err` to `ClientError::Operation`.
pub fn operation_result(op: Operation) -> Result<Operation> {
    match op.status() {
        Some(StatusCode::Failure) | Some(StatusCode::Cancelled) => {
            let msg = if op.err.is_empty() {
                format!("Operation {}", op.status.to_lowercase())
            } else {
                op.err
            };
            Err(ClientError::Operation(msg))
        }
        _ => Ok(op),
    }
}

/// The instance names an operation lists under `resources.instances`
/// (falling back to `containers`), e.g. the name the server picked at create.
pub fn operation_instances(op: &Operation) -> Vec<String> {
    let urls = op
        .resources
        .get("instances")
        .or_else(|| op.resources.get("containers"));
    urls.map(|v| {
        v.iter()
            .filter_map(|u| {
                let path = u.split('?').next().unwrap_or(u);
                path.rsplit('/').next().map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// How much longer than its own timeout a bounded wait may take to answer.
const WAIT_MARGIN_SECS: u64 = 20;

impl Client {
    /// `GET /1.0/operations`: URLs grouped by lowercased status.
    pub async fn operations(&self) -> Result<OperationList> {
        self.get_json("/1.0/operations").await
    }

    /// `GET /1.0/operations?recursion=1`: objects grouped by lowercased status.
    pub async fn operations_full(&self) -> Result<BTreeMap<String, Vec<Operation>>> {
        self.get_json("/1.0/operations?recursion=1").await
    }

    pub async fn get_operation(&self, id: &str) -> Result<Operation> {
        self.get_json(&format!("/1.0/operations/{}", url::seg(id)))
            .await
    }

    /// `DELETE /1.0/operations/{id}`: asks the server to cancel.
    pub async fn cancel_operation(&self, id: &str) -> Result<()> {
        self.delete(&format!("/1.0/operations/{}", url::seg(id)))
            .await
            .map(|_| ())
    }

    /// Waits until the operation is final and returns it whatever its status
    /// (exec uses this: a Failure such as "Command not found" still carries
    /// `return`). `None` waits forever; otherwise `ClientError::Timeout`.
    pub async fn wait_operation_raw(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Operation> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let secs: i64 = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::Timeout(id.to_string()));
                    }
                    // The API takes whole seconds; round up so a short wait still waits.
                    left.as_millis().div_ceil(1000).max(1) as i64
                }
            };
            let path = format!("/1.0/operations/{}/wait?timeout={secs}", url::seg(id));
            let request = self.get_json::<Operation>(&path);
            // A bounded wait gets its answer in about `secs`: past that
            // and a margin, the server or the link is gone (a cut link
            // would otherwise hold the request for TCP's whole
            // retransmission time, a quarter of an hour).
            let op = if secs >= 0 {
                let bound = secs as u64 + WAIT_MARGIN_SECS;
                tokio::time::timeout(Duration::from_secs(bound), request)
                    .await
                    .map_err(|_| ClientError::NoAnswer(bound))??
            } else {
                request.await?
            };
            if op.is_final() {
                return Ok(op);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClientError::Timeout(id.to_string()));
            }
        }
    }

    /// Waits for the operation (`GET /1.0/operations/{id}/wait?timeout=N`) and
    /// returns the final object; Failure or Cancelled become `ClientError::Operation(err)`.
    pub async fn wait_operation(&self, id: &str, timeout: Option<Duration>) -> Result<Operation> {
        operation_result(self.wait_operation_raw(id, timeout).await?)
    }

    /// Completes a response that may have started an operation: waits for it
    /// and checks its result. A sync response yields `None`.
    pub async fn finish(&self, resp: ApiResponse) -> Result<Option<Operation>> {
        if resp.envelope.kind != ResponseType::Async {
            return Ok(None);
        }
        let id = resp
            .operation_id()
            .ok_or_else(|| ClientError::Protocol("async response without an operation".into()))?;
        self.wait_operation(&id, None).await.map(Some)
    }
}

/// Decodes the operation object carried by an async response.
pub(crate) fn async_operation(resp: &ApiResponse) -> Result<Operation> {
    if resp.envelope.kind != ResponseType::Async {
        return Err(ClientError::Protocol(format!(
            "expected an async response, got {:?}",
            resp.envelope.kind
        )));
    }
    resp.metadata()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(status_code: u16, err: &str) -> Operation {
        serde_json::from_value(serde_json::json!({
            "id": "x", "class": "task", "description": "", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "status": StatusCode::try_from(status_code).unwrap().name(),
            "status_code": status_code,
            "resources": {"containers": ["/1.0/containers/c1"], "instances": ["/1.0/instances/web%2D1?project=p"]},
            "metadata": null, "may_cancel": false, "err": err, "location": "none"
        }))
        .unwrap()
    }

    #[test]
    fn failure_becomes_error_with_err_text() {
        let e = operation_result(op(400, "The instance is already running")).unwrap_err();
        assert_eq!(e.to_string(), "The instance is already running");
        assert!(operation_result(op(200, "")).is_ok());
        assert_eq!(
            operation_result(op(401, "")).unwrap_err().to_string(),
            "Operation cancelled"
        );
    }

    #[test]
    fn instance_names_from_resources() {
        assert_eq!(operation_instances(&op(200, "")), vec!["web-1"]);
    }
}
