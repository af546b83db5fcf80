//! The front door's host-wide verbs: metrics, resources, projects and
//! warnings (see `crate::metrics`, `crate::resources`,
//! `crate::projects`), and who may read metrics: trusted callers and
//! holders of a `metrics` certificate, which reaches nothing else.

use super::{Reply, Request};
use crate::error::{EngineError, Result};
use crate::remote::{Access, Caller};
use crate::Engine;

impl Engine {
    pub(super) async fn server_api(&self, req: Request) -> Result<Reply> {
        use Reply as R;
        use Request::*;
        Ok(match req {
            Metrics => R::Metrics(self.metrics_text().await?),
            Resources => R::Resources(Box::new(self.resources().await?)),
            PoolResources { pool } => R::PoolResources(self.pool_resources(&pool).await?),
            ProjectGet { name } => R::Project(Box::new(self.project_get(&name).await?)),
            ProjectCreate { name } => {
                self.project_create(&name)?;
                R::Empty
            }
            ProjectUpdate { name, put, merge } => {
                self.project_update(&name, put, merge)?;
                R::Empty
            }
            ProjectRename { name } => {
                self.project_refuse(&name, "renamed")?;
                R::Empty
            }
            ProjectDelete { name } => {
                self.project_refuse(&name, "deleted")?;
                R::Empty
            }
            WarningList => R::Warnings(Vec::new()),
            WarningGet { .. } => return Err(EngineError::NotFound("Warning not found".into())),
            other => {
                return Err(EngineError::internal(format!(
                    "{} is not a server verb",
                    other.name()
                )))
            }
        })
    }

    /// Whether `access` may make a request as a metrics reader: `GET
    /// /1.0/metrics` (`metrics`) by the holder of a `metrics` certificate.
    pub(crate) async fn metrics_reader(&self, access: &Access, metrics: bool) -> bool {
        metrics && self.holds_metrics_certificate(&access.caller).await
    }

    /// Whether `caller` showed a certificate of type `metrics` that is in
    /// the trust store.
    pub async fn holds_metrics_certificate(&self, caller: &Caller) -> bool {
        let Some(fp) = caller.fingerprint() else {
            return false;
        };
        matches!(self.shared.certificate_get(fp).await, Ok(Some(row)) if row.kind == "metrics")
    }
}
