//! The members as the API shows them (`GET /1.0/cluster/members[/NAME]`,
//! LXD's shape: `Online` while the member's heartbeat lease lives, else
//! `Offline`; `Evacuated` (and online) from its evacuation to its
//! restore; role `database` for an etcd voter), and their removal
//! (`DELETE /1.0/cluster/members/NAME[?force=1]`).

use kante_api::cluster::ClusterMember;
use kante_store::{ReservationKind, SharedState};

use super::{ClusterError, Manager, Result};
use crate::membership::{Heartbeat, ALIVE, LEASE_TTL, ROSTER};

/// A member as forwarding and placement see it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    /// Its HTTPS address (`host:port`).
    pub address: String,
    /// Its server certificate (PEM), to pin; empty if unknown.
    pub certificate: String,
    /// Whether its heartbeat lives (as last seen while etcd is away).
    pub online: bool,
    /// What its heartbeat says (free memory, load, architecture).
    pub beat: Option<Heartbeat>,
    /// Whether it is evacuated (`evacuated.rs`): nothing is placed on it.
    pub evacuated: bool,
}

impl Manager {
    /// Every member of this member's cluster (this one too), by name;
    /// empty when standalone.
    pub fn peers(&self) -> Vec<Peer> {
        let Some((_, etcd)) = self.current() else {
            return Vec::new();
        };
        let alive: std::collections::BTreeMap<String, Heartbeat> = etcd
            .cached_dir(ALIVE)
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect();
        let evacuated = self.evacuated();
        let mut out: Vec<Peer> = self
            .roster(&etcd)
            .into_iter()
            .map(|m| {
                let beat = alive.get(&m.name).cloned();
                let certificate = match &beat {
                    Some(b) if !b.certificate.is_empty() => b.certificate.clone(),
                    _ => m.certificate.clone(),
                };
                Peer {
                    evacuated: evacuated.contains(&m.name),
                    online: beat.is_some(),
                    name: m.name,
                    address: m.address,
                    certificate,
                    beat,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// How old this member's view of the cluster is while etcd is
    /// unreachable (`None` while the watch keeps it current, or when not
    /// clustered).
    pub fn view_age(&self) -> Option<std::time::Duration> {
        self.current().and_then(|(_, etcd)| etcd.stale_for())
    }

    /// Every member, by name.
    pub fn members(&self) -> Result<Vec<ClusterMember>> {
        let (_, etcd) = self.clustered()?;
        let alive: std::collections::BTreeMap<String, Heartbeat> = etcd
            .cached_dir(ALIVE)
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect();
        let stale = etcd.stale_for();
        let evacuated = self.evacuated();
        let mut groups = self.groups_by_member(&etcd);
        let mut out: Vec<ClusterMember> = self
            .roster(&etcd)
            .into_iter()
            .map(|m| {
                let beat = alive.get(&m.name);
                let (status, message) = match (beat, stale) {
                    (Some(_), None) => ("Online", "Fully operational".to_string()),
                    (None, None) => (
                        "Offline",
                        format!("No heartbeat for more than {LEASE_TTL}s"),
                    ),
                    (_, Some(age)) => (
                        if beat.is_some() { "Online" } else { "Offline" },
                        format!(
                            "The cluster's store is unreachable: as last seen {}s ago",
                            age.as_secs()
                        ),
                    ),
                };
                // LXD's words for a member under maintenance.
                let (status, message) = if evacuated.contains(&m.name) && beat.is_some() {
                    ("Evacuated", "Unavailable due to maintenance".to_string())
                } else {
                    (status, message)
                };
                ClusterMember {
                    server_name: m.name.clone(),
                    url: format!("https://{}", m.address),
                    database: m.voter,
                    status: status.into(),
                    message,
                    architecture: beat
                        .map(|b| b.architecture.clone())
                        .unwrap_or(m.architecture.clone()),
                    failure_domain: "default".into(),
                    description: String::new(),
                    config: Default::default(),
                    groups: groups
                        .remove(&m.name)
                        .unwrap_or_else(|| vec![super::groups::DEFAULT.into()]),
                    roles: beat.map(|b| b.roles.clone()).unwrap_or_else(|| {
                        if m.voter {
                            vec!["database".into()]
                        } else {
                            Vec::new()
                        }
                    }),
                }
            })
            .collect();
        out.sort_by(|a, b| a.server_name.cmp(&b.server_name));
        Ok(out)
    }

    /// One member.
    pub fn member(&self, name: &str) -> Result<ClusterMember> {
        self.members()?
            .into_iter()
            .find(|m| m.server_name == name)
            .ok_or_else(|| ClusterError::NotFound(format!("Cluster member {name:?} not found")))
    }

    /// Removes member `name` from the cluster (its etcd voter too). One
    /// that still holds instances is refused, with their names, unless
    /// `force` (its instances' names are then given up).
    pub async fn remove(&self, name: &str, force: bool) -> Result<()> {
        let _serial = self.tasks.lock().await;
        let (config, etcd) = self.clustered()?;
        let Some(entry) = self.roster(&etcd).into_iter().find(|m| m.name == name) else {
            return Err(ClusterError::NotFound(format!(
                "Cluster member {name:?} not found"
            )));
        };
        if name == config.member {
            return Err(ClusterError::Bad(
                "A member cannot remove itself: remove it from another member".into(),
            ));
        }
        let held: Vec<String> = etcd
            .reservations(ReservationKind::InstanceName)
            .await?
            .into_iter()
            .filter(|(_, holder)| holder == name)
            .map(|(k, _)| k)
            .collect();
        if !held.is_empty() && !force {
            return Err(ClusterError::Bad(format!(
                "Member {name:?} still holds instances: {} (use --force to remove it anyway)",
                held.join(", ")
            )));
        }
        let client = etcd.client();
        if entry.voter {
            let list = super::join::bounded_call(client.cluster_client().member_list()).await?;
            if let Some(m) = list.members().iter().find(|m| m.name() == name) {
                super::join::bounded_call(client.cluster_client().member_remove(m.id())).await?;
            }
        }
        for key in held {
            etcd.release(ReservationKind::InstanceName, &key, name)
                .await?;
        }
        for dir in [
            ROSTER,
            ALIVE,
            crate::keys::MEMBERS,
            super::evacuated::EVACUATED,
            super::groups::MEMBER_GROUPS,
        ] {
            let key = format!("{}{dir}{name}", etcd.prefix());
            super::join::bounded_call(client.kv_client().delete(key, None)).await?;
        }
        tracing::info!(member = name, force, "member removed from the cluster");
        Ok(())
    }
}
