//! Service discovery records: `services/<name>/<instance>`, each a
//! [`Service`] (JSON) written by the member that runs the instance under
//! its heartbeat's lease, so a dead member's records go with its lease.
//! etcd extends rather than expires leases while it has no quorum, so
//! freshness also rests on the owner's heartbeat: a reader keeps a record
//! only while its member's `alive/` record is there and younger than
//! [`LEASE_TTL`] (by the heartbeat's own time stamp).

use std::collections::BTreeMap;

use etcd_client::PutOptions;
use kante_api::service::Service;

use super::{Manager, Result};
use crate::membership::{Heartbeat, ALIVE, LEASE_TTL};

/// The directory of the records.
pub const SERVICES: &str = "services/";

/// A record's relative key.
fn key(s: &Service) -> String {
    format!("{SERVICES}{}/{}", s.name, s.instance)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Manager {
    /// Makes this member's records those of `wanted` (its running
    /// instances' services): puts what is missing or changed, or was put
    /// under a lease that is no longer this member's heartbeat's (etcd
    /// came back after the lease expired), and deletes its records of
    /// instances no longer wanted. A no-op when not clustered or the
    /// heartbeat has no lease yet; fails as unreachable when etcd does
    /// not answer (the next round tries again).
    pub async fn publish_services(&self, wanted: Vec<Service>) -> Result<()> {
        let Some((config, etcd)) = self.current() else {
            return Ok(());
        };
        let lease = match self.tasks.try_lock() {
            Ok(tasks) => tasks.beat.as_ref().map(|b| b.lease_id()).unwrap_or(0),
            // Enable, join or remove under way: the next round.
            Err(_) => return Ok(()),
        };
        if lease == 0 {
            return Ok(());
        }
        let wanted: BTreeMap<String, Vec<u8>> = wanted
            .iter()
            .map(|s| Ok((key(s), serde_json::to_vec(s)?)))
            .collect::<std::result::Result<_, serde_json::Error>>()
            .map_err(|e| super::ClusterError::Internal(e.to_string()))?;
        let cached: BTreeMap<String, Vec<u8>> = etcd
            .cached_dir(SERVICES)
            .into_iter()
            .map(|(k, v)| (format!("{SERVICES}{k}"), v))
            .collect();
        let mut published = self.published.lock().await;
        let client = etcd.client();
        for (k, v) in &wanted {
            let current = cached.get(k) == Some(v) && published.get(k) == Some(&(v.clone(), lease));
            if current {
                continue;
            }
            let full = format!("{}{k}", etcd.prefix());
            etcd.quorate(client.kv_client().put(
                full,
                v.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ))
            .await?;
            published.insert(k.clone(), (v.clone(), lease));
        }
        for (k, v) in &cached {
            let mine = serde_json::from_slice::<Service>(v)
                .map(|s| s.member == config.member)
                .unwrap_or(false);
            if mine && !wanted.contains_key(k) {
                let full = format!("{}{k}", etcd.prefix());
                etcd.quorate(client.kv_client().delete(full, None)).await?;
                published.remove(k);
            }
        }
        published.retain(|k, _| wanted.contains_key(k));
        Ok(())
    }

    /// The live services of the cluster (see the module doc), by name
    /// and instance; empty when not clustered.
    pub fn services(&self) -> Vec<Service> {
        let Some((_, etcd)) = self.current() else {
            return Vec::new();
        };
        let now = now_secs();
        let fresh: Vec<String> = etcd
            .cached_dir(ALIVE)
            .into_iter()
            .filter_map(|(name, v)| {
                let beat: Heartbeat = serde_json::from_slice(&v).ok()?;
                (now.saturating_sub(beat.at) <= LEASE_TTL as u64).then_some(name)
            })
            .collect();
        etcd.cached_dir(SERVICES)
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Service>(&v).ok())
            .filter(|s| fresh.contains(&s.member))
            .collect()
    }
}
