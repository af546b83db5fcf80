//! `DELETE /1.0/instances/{name}`: a stopped, unprotected instance goes
//! with its volume, record, backups and DHCP reservations.

use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// `DELETE /1.0/instances/{name}`: only a stopped instance.
    pub(crate) async fn instance_delete(&self, name: &str) -> Result<()> {
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let row = self.instance_row(name).await?;
        if self.running(name).is_some() {
            return Err(EngineError::bad("Instance is running"));
        }
        let (econfig, _) = self.expanded(&row).await?;
        if crate::util::is_true(econfig.get("security.protection.delete")) {
            return Err(EngineError::bad(
                "Instance is protected from being deleted (security.protection.delete)",
            ));
        }
        let nics = self.stored_nic_plans(&row).await;
        // Volume set aside, record, files: all or nothing at any crash.
        self.remove_instance(&row).await?;
        self.backups_remove_all(name);
        self.devlxd_clear(name);
        // Its DHCP reservations go with it.
        self.remove_nics(name, &nics, true).await;
        // A moved instance's copy: its MAC's line goes back at once with
        // the address still held for it.
        self.overlay_holds_now().await;
        crate::lock(&self.instance_locks).remove(name);
        self.events.lifecycle(
            "instance-deleted",
            &format!("/1.0/instances/{name}"),
            serde_json::json!({}),
        );
        Ok(())
    }
}
