//! Cluster-wide lists. Operations (`GET /1.0/operations` on a clustered
//! member): this member's and every other online member's, each asked
//! with the same short timeout; one that does not answer is left out with
//! a log line (operations are not recorded in shared state).
//!
//! A pool's volumes (`GET /1.0/storage-pools/POOL/volumes` on a
//! clustered member): this member's and every other online member's,
//! asked the same way, each with its `location` (custom volumes live on
//! one member); a member that does not answer is left out with a log
//! line (volumes are not in shared state).
//!
//! The cluster-wide instance list (`GET /1.0/instances` on a clustered
//! member): this member's own instances (always, even when the cluster
//! is unhealthy), and each other online member's, asked in parallel over
//! [`crate::forward::PeerLink`] with a short timeout and the same
//! recursion and `filter=`, each with `location` set to its member. A
//! member that is offline or does not answer is shown from the shared
//! reservations: its instances' names with status `Error`, so the user
//! sees they exist, and a description naming the member (and, while the
//! cluster's store is unreachable, the age of the view); a log line says
//! so.

use std::collections::BTreeMap;

use kante_api::instance::{Instance, InstanceFull};
use kante_api::operation::Operation;
use kante_api::storage::StorageVolume;
use kante_store::ReservationKind;

use crate::error::Result;
use crate::forward::{forward_of, FAN_OUT_TIMEOUT};
use crate::front::{ListDetail, Reply};
use crate::util::percent;
use crate::Engine;

/// What one member answered.
enum Got {
    Names(Vec<String>),
    Records(Vec<Instance>),
    Full(Vec<InstanceFull>),
}

/// What an instance of an unreachable member says of itself: the
/// member, and the age of the view it comes from while the cluster's
/// store is unreachable (`kante list` repeats it on stderr).
fn unreachable_note(member: &str, view_age: Option<std::time::Duration>) -> String {
    match view_age {
        None => format!("Cluster member {member} is unreachable"),
        Some(age) => format!(
            "Cluster member {member} is unreachable (stale: as the cluster was seen {}s ago)",
            age.as_secs()
        ),
    }
}

/// An instance known only by its reservation on a member that did not
/// answer.
fn unreachable(name: &str, member: &str, view_age: Option<std::time::Duration>) -> Instance {
    let doc = serde_json::json!({
        "architecture": "", "config": {}, "devices": {}, "ephemeral": false,
        "profiles": [], "stateful": false,
        "description": unreachable_note(member, view_age),
        "created_at": "1970-01-01T00:00:00Z", "expanded_config": {},
        "expanded_devices": {}, "name": name, "status": "Error",
        "status_code": 400, "last_used_at": "1970-01-01T00:00:00Z",
        "location": member, "type": "container", "project": "default",
    });
    serde_json::from_value(doc).expect("a well-formed instance")
}

impl Engine {
    /// `own` (this member's operations) with every other online member's,
    /// oldest first.
    pub(crate) async fn cluster_operations(&self, mut own: Vec<Operation>) -> Vec<Operation> {
        let (Some(me), Some(link)) = (self.cluster.member_name(), self.forwarding.link()) else {
            return own;
        };
        let asks = self
            .cluster
            .peers()
            .into_iter()
            .filter(|p| p.name != me && p.online)
            .map(|p| {
                let link = link.clone();
                let to = forward_of(&p);
                async move {
                    let got = link
                        .get(&to, "/1.0/operations?recursion=1", FAN_OUT_TIMEOUT)
                        .await
                        .and_then(|v| {
                            serde_json::from_value::<BTreeMap<String, Vec<Operation>>>(v)
                                .map_err(|e| format!("its answer does not parse: {e}"))
                        });
                    (to.member, got)
                }
            });
        for (member, got) in futures_util::future::join_all(asks).await {
            match got {
                Ok(groups) => own.extend(groups.into_values().flatten().map(|mut op| {
                    if op.location.is_empty() || op.location == "none" {
                        op.location = member.clone();
                    }
                    op
                })),
                Err(why) => tracing::warn!(
                    %member,
                    "cluster member did not answer the operation list ({why}): its operations are not shown"
                ),
            }
        }
        own.sort_by_key(|o| o.created_at);
        own
    }

    /// `own` (this member's listing) with every other member's.
    pub(crate) async fn cluster_listing(
        &self,
        detail: ListDetail,
        filter: &str,
        own: Reply,
    ) -> Result<Reply> {
        let Some(me) = self.cluster.member_name() else {
            return Ok(own);
        };
        let mut out = match own {
            Reply::InstanceNames(n) => Got::Names(n),
            Reply::Instances(mut v) => {
                v.iter_mut().for_each(|i| i.location = me.clone());
                Got::Records(v)
            }
            Reply::InstancesFull(mut v) => {
                v.iter_mut().for_each(|i| i.instance.location = me.clone());
                Got::Full(v)
            }
            other => return Ok(other),
        };
        let recursion = match detail {
            ListDetail::Names => 0,
            ListDetail::Records => 1,
            ListDetail::Full => 2,
        };
        let mut path = format!("/1.0/instances?recursion={recursion}");
        if !filter.trim().is_empty() {
            path.push_str(&format!("&filter={}", percent(filter)));
        }
        let link = self.forwarding.link();
        let others: Vec<kante_cluster::Peer> = self
            .cluster
            .peers()
            .into_iter()
            .filter(|p| p.name != me)
            .collect();
        let asks = others.iter().map(|p| {
            let (link, path) = (link.clone(), path.clone());
            let to = forward_of(p);
            let online = p.online;
            async move {
                let got = match (online, link) {
                    (false, _) => Err("offline".to_string()),
                    (true, None) => Err("no link to other members".to_string()),
                    (true, Some(link)) => link.get(&to, &path, FAN_OUT_TIMEOUT).await,
                };
                (to.member, got)
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut held: Option<BTreeMap<String, String>> = None;
        let view_age = self.cluster.view_age();
        for (member, got) in answers {
            let parsed = got.and_then(|v| {
                let r = match &out {
                    Got::Names(_) => serde_json::from_value::<Vec<String>>(v).map(Got::Names),
                    Got::Records(_) => serde_json::from_value(v).map(Got::Records),
                    Got::Full(_) => serde_json::from_value(v).map(Got::Full),
                };
                r.map_err(|e| format!("its answer does not parse: {e}"))
            });
            match (parsed, &mut out) {
                (Ok(Got::Names(n)), Got::Names(all)) => all.extend(
                    n.iter()
                        .map(|u| u.rsplit('/').next().unwrap_or(u).to_string()),
                ),
                (Ok(Got::Records(v)), Got::Records(all)) => {
                    all.extend(v.into_iter().map(|mut i| {
                        i.location = member.clone();
                        i
                    }))
                }
                (Ok(Got::Full(v)), Got::Full(all)) => all.extend(v.into_iter().map(|mut i| {
                    i.instance.location = member.clone();
                    i
                })),
                (Ok(_), _) => {}
                (Err(why), out) => {
                    if held.is_none() {
                        held = Some(
                            self.shared
                                .reservations(ReservationKind::InstanceName)
                                .await
                                .unwrap_or_else(|e| {
                                    tracing::warn!("reading the instance reservations: {e}");
                                    Default::default()
                                }),
                        );
                    }
                    let names: Vec<&String> = held
                        .iter()
                        .flatten()
                        .filter(|(_, h)| **h == member)
                        .map(|(n, _)| n)
                        .collect();
                    tracing::warn!(
                        %member,
                        instances = names.len(),
                        "cluster member did not answer the instance list ({why}): its instances are shown from the shared reservations as Error"
                    );
                    for name in names {
                        let i = unreachable(name, &member, view_age);
                        let doc = serde_json::to_value(&i).unwrap_or_default();
                        if !crate::front::filter::matches(filter, &doc).unwrap_or(true) {
                            continue;
                        }
                        match out {
                            Got::Names(all) => all.push(name.clone()),
                            Got::Records(all) => all.push(i),
                            Got::Full(all) => all.push(InstanceFull {
                                instance: i,
                                backups: None,
                                state: None,
                                snapshots: None,
                            }),
                        }
                    }
                }
            }
        }
        Ok(match out {
            Got::Names(n) => Reply::InstanceNames(n),
            Got::Records(v) => Reply::Instances(v),
            Got::Full(v) => Reply::InstancesFull(v),
        })
    }

    /// `own` (this member's volumes of `pool`, of `kind` if given) with
    /// every other online member's, each with its location.
    pub(crate) async fn cluster_volumes(
        &self,
        pool: &str,
        kind: Option<&str>,
        mut own: Vec<StorageVolume>,
    ) -> Vec<StorageVolume> {
        let (Some(me), Some(link)) = (self.cluster.member_name(), self.forwarding.link()) else {
            return own;
        };
        own.iter_mut().for_each(|v| v.location = me.clone());
        let mut path = format!("/1.0/storage-pools/{}/volumes", percent(pool));
        if let Some(k) = kind {
            path.push('/');
            path.push_str(&percent(k));
        }
        path.push_str("?recursion=1");
        let asks = self.online_peers().into_iter().map(|p| {
            let (link, path, to) = (link.clone(), path.clone(), forward_of(&p));
            async move {
                let got = link.get(&to, &path, FAN_OUT_TIMEOUT).await.and_then(|v| {
                    serde_json::from_value::<Vec<StorageVolume>>(v)
                        .map_err(|e| format!("its answer does not parse: {e}"))
                });
                (to.member, got)
            }
        });
        for (member, got) in futures_util::future::join_all(asks).await {
            match got {
                Ok(list) => own.extend(list.into_iter().map(|mut v| {
                    v.location = member.clone();
                    v
                })),
                Err(why) => tracing::warn!(
                    %member,
                    pool,
                    "cluster member did not answer the volume list ({why}): its volumes are not shown"
                ),
            }
        }
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_members_instance_says_how_old_its_view_is() {
        let i = unreachable("c3", "h3", None);
        assert_eq!(i.status, "Error");
        assert_eq!(i.location, "h3");
        assert_eq!(i.description, "Cluster member h3 is unreachable");
        let i = unreachable("c3", "h3", Some(std::time::Duration::from_millis(42_900)));
        assert_eq!(
            i.description,
            "Cluster member h3 is unreachable (stale: as the cluster was seen 42s ago)"
        );
    }
}
