//! An instance as its guest API sees it, and the answer to one guest
//! request from that view (`api` builds it).

use super::api::{self, Reply};
use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// Instance `name` as its guest sees it.
    pub(crate) async fn devlxd_view(&self, name: &str) -> Result<api::GuestView> {
        let row = self.instance_row(name).await?;
        let (config, devices) = self.expanded(&row).await?;
        let instance_id = row
            .config
            .get("volatile.cloud-init.instance-id")
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| name.to_string());
        let member = self.location.get();
        let location = match member.as_str() {
            kante_store::STANDALONE_MEMBER => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or(member),
            _ => member,
        };
        Ok(api::GuestView {
            name: name.to_string(),
            instance_id,
            location,
            config,
            devices,
        })
    }

    /// Answers a guest's `method path` for instance `name`.
    pub(crate) async fn devlxd_answer(&self, name: &str, method: &str, path: &str) -> Reply {
        match self.devlxd_view(name).await {
            Ok(view) => api::answer(&view, method, path),
            Err(EngineError::NotFound(_)) => Reply::not_found(),
            Err(e) => {
                tracing::warn!(instance = %name, "guest API: {e}");
                Reply::error(500, "internal error")
            }
        }
    }
}
