//! Evacuated members: `evacuated/<name>` (value: the Unix time it was
//! evacuated) is there from a member's evacuation to its restore. The
//! API shows such a member `Evacuated`, and the scheduler places nothing
//! on it (`Peer::evacuated`). Moving its instances is the engine's
//! (`kante-engine/src/evacuate.rs`).

use std::time::{Duration, Instant};

use super::{ClusterError, Manager, Result};

/// The directory of the marks.
pub const EVACUATED: &str = "evacuated/";

impl Manager {
    /// The names of the evacuated members, as the cache last saw them.
    pub fn evacuated(&self) -> std::collections::BTreeSet<String> {
        match self.current() {
            Some((_, etcd)) => etcd
                .cached_dir(EVACUATED)
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
            None => Default::default(),
        }
    }

    /// Marks member `name` evacuated (`on`) or back in service, and waits
    /// (bounded) until this member's cache shows it, so that a placement
    /// decided next sees it. Needs the cluster's quorum.
    pub async fn set_evacuated(&self, name: &str, on: bool) -> Result<()> {
        let (_, etcd) = self.clustered()?;
        if !self.peers().iter().any(|p| p.name == name) {
            return Err(ClusterError::NotFound(format!(
                "Cluster member {name:?} not found"
            )));
        }
        let key = format!("{}{EVACUATED}{name}", etcd.prefix());
        let client = etcd.client();
        if on {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            etcd.quorate(client.kv_client().put(key, now.to_string(), None))
                .await?;
        } else {
            etcd.quorate(client.kv_client().delete(key, None)).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.evacuated().contains(name) != on {
            if Instant::now() > deadline {
                return Err(ClusterError::Unavailable(
                    "The cluster's store did not confirm the member's state within 5s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
