//! The instance verbs that do their work in an operation, as the API calls
//! them: each checks what it can at once (a 4xx before any operation
//! starts), creates its operation here and returns it. The HTTP layer only
//! parses the request and renders the operation; it decides nothing.

use std::sync::Arc;

use kante_api::instance::{InstancePost, InstancePut, InstanceStatus};
use kante_api::operation::OperationClass;

use crate::error::{EngineError, Result};
use crate::operations::{instance_resources, Op};
use crate::Engine;

impl Engine {
    /// `PUT /1.0/instances/{name}`: a restore (`restore` set) or a whole
    /// update. The update's report (which changes took effect at once, which
    /// wait for the next start) becomes the operation's metadata.
    pub(crate) async fn instance_put(&self, name: &str, req: InstancePut) -> Result<Arc<Op>> {
        let name = name.to_string();
        let engine = self.arc();
        if !req.restore.is_empty() {
            // A missing or foreign snapshot is a 400 before any operation starts.
            self.restore_source(&name, &req.restore).await?;
            let op = self.task("Restoring snapshot", &name);
            self.ops.run(op.clone(), async move {
                engine.instance_restore(&name, &req.restore).await
            });
            return Ok(op);
        }
        self.instance_row(&name).await?;
        let op = self.task("Updating instance", &name);
        let op2 = op.clone();
        self.ops.run(op.clone(), async move {
            let report = engine.instance_update(&name, req, false).await?;
            op2.set_metadata(serde_json::to_value(report).unwrap_or_default());
            Ok(())
        });
        Ok(op)
    }

    /// `PATCH /1.0/instances/{name}`: only the keys the body names change
    /// (`ephemeral`, a plain bool on the wire, keeps its value unless given).
    pub(crate) async fn instance_patch(
        &self,
        name: &str,
        body: serde_json::Value,
    ) -> Result<crate::instance::live::ChangeReport> {
        let given_ephemeral = body.get("ephemeral").is_some();
        let mut req: InstancePut = serde_json::from_value(body)
            .map_err(|e| EngineError::bad(format!("Invalid request body: {e}")))?;
        if !req.restore.is_empty() {
            return Err(EngineError::bad("PATCH cannot restore a snapshot"));
        }
        if !given_ephemeral {
            req.ephemeral = self.instance_row(name).await?.ephemeral;
        }
        self.instance_update(name, req, true).await
    }

    /// `DELETE /1.0/instances/{name}`: only a stopped instance.
    pub(crate) async fn instance_delete_op(&self, name: &str) -> Result<Arc<Op>> {
        self.instance_row(name).await?;
        if self.instance_status(name) != InstanceStatus::Stopped {
            return Err(EngineError::bad("Instance is running"));
        }
        let op = self.task("Deleting instance", name);
        let (engine, name) = (self.arc(), name.to_string());
        self.ops.run(
            op.clone(),
            async move { engine.instance_delete(&name).await },
        );
        Ok(op)
    }

    /// `POST /1.0/instances/{name}`: a rename (a migration goes to
    /// `migration/send.rs` from the front door).
    pub(crate) async fn instance_post(&self, name: &str, req: InstancePost) -> Result<Arc<Op>> {
        self.instance_row(name).await?;
        if req.name.is_empty() {
            return Err(EngineError::bad("No new name given"));
        }
        kante_api::names::validate_instance_name(&req.name)?;
        let op = self.task("Renaming instance", name);
        let (engine, name) = (self.arc(), name.to_string());
        self.ops.run(op.clone(), async move {
            engine.instance_rename(&name, &req.name).await
        });
        Ok(op)
    }

    /// `PUT /1.0/instances/{name}/snapshots/{snap}`: its expiry (done at
    /// once; the operation is LXD's shape for this verb).
    pub(crate) async fn snapshot_put(
        &self,
        name: &str,
        snap: &str,
        expires_at: Option<kante_api::Timestamp>,
    ) -> Result<Arc<Op>> {
        self.snapshot_set_expiry(name, snap, expires_at.unwrap_or_else(kante_api::zero_time))
            .await?;
        let op = self.task("Updating snapshot", name);
        self.ops.run(op.clone(), async { Ok(()) });
        Ok(op)
    }

    /// `GET /1.0/instances/{name}/logs/{file}`: the console log (standing in
    /// for liblxc's `lxc.log`) or a recorded exec output.
    pub(crate) async fn instance_log(&self, name: &str, file: &str) -> Result<Vec<u8>> {
        match file {
            "lxc.log" | "console.log" => self.instance_console_log(name).await,
            other if other.starts_with("exec_") && !other.contains('/') => {
                self.instance_row(name).await?;
                tokio::fs::read(self.paths.instance_logs(name).join(other))
                    .await
                    .map_err(|_| EngineError::NotFound("Log not found".into()))
            }
            _ => Err(EngineError::NotFound("Log not found".into())),
        }
    }

    fn task(&self, description: &str, name: &str) -> Arc<Op> {
        self.ops.create(
            OperationClass::Task,
            description,
            instance_resources(&[name], true),
        )
    }
}
