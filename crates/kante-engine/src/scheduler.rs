//! The cluster scheduler: which member a new instance is made on when
//! the client named none, or a group (`--target @GROUP`: its members
//! only). Online members only, not evacuated ones
//! (`evacuate.rs`); those of the image's
//! architecture; `placement.affinity=<instance>` keeps only the member
//! holding that instance; `placement.anti-affinity=<tag>` avoids members
//! already holding an instance with the same tag (when every member has
//! one, the spread is given up and said so); then the most free memory
//! (in 256 MiB steps, so that equal hosts are not told apart by noise),
//! then the lowest load per CPU, then the name. The decision and its
//! reasons become the instance's `volatile.placement.reason`.

use std::collections::{BTreeMap, BTreeSet};

use kante_api::instance::InstancesPost;
use kante_store::ReservationKind;

use crate::context::lock;
use crate::error::{EngineError, Result};
use crate::forward::{forward_of, Forward, Placed, FAN_OUT_TIMEOUT};
use crate::Engine;

/// Free memory is compared in steps of this many bytes.
const MEMORY_STEP: u64 = 256 << 20;

impl Engine {
    /// The image `post` creates from (fingerprint and architecture), if
    /// the index knows it.
    async fn image_of(&self, post: &InstancesPost) -> Result<Option<(String, String)>> {
        let s = &post.source;
        if !s.server.is_empty() {
            return Ok(None);
        }
        let mut fp = s.fingerprint.clone();
        if !s.alias.is_empty() {
            if let Some(a) = self.shared.alias_get(&s.alias).await? {
                fp = a.target;
            }
        }
        if fp.is_empty() {
            return Ok(None);
        }
        Ok(self.shared.image_get(&fp).await?.map(|i| {
            let arch = kante_api::image::normalise_architecture(&i.architecture);
            (i.fingerprint, arch)
        }))
    }

    /// Where `post` is created: `target` (`?target=`, LXD's
    /// `--target`) names a member, else the scheduler picks one
    /// (`placement.rs`). `forwarded_reason`: the request was forwarded
    /// here by a member that decided already (served here, with its
    /// reason). The reason of a local decision is kept until the create
    /// records it on the instance.
    pub async fn place_instance(
        &self,
        post: &InstancesPost,
        target: Option<&str>,
        forwarded_reason: Option<&str>,
    ) -> Result<Placed> {
        let target = target.filter(|t| !t.is_empty());
        let Some(me) = self.cluster.member_name() else {
            if target.is_some() {
                return Err(EngineError::bad(
                    "A target member is only valid on a clustered server",
                ));
            }
            return Ok(Placed {
                forward: None,
                reason: String::new(),
            });
        };
        let placed = if let Some(reason) = forwarded_reason {
            Placed {
                forward: None,
                reason: reason.to_string(),
            }
        } else if post.source.kind != "image" && post.source.kind != "none" {
            // Copies, migrations and imports are made where they arrive.
            match target {
                Some(t) if t != me => {
                    return Err(EngineError::bad(format!(
                        "Creating from a {:?} source on another member is not supported: send it to {t}",
                        post.source.kind
                    )))
                }
                _ => Placed {
                    forward: None,
                    reason: String::new(),
                },
            }
        } else {
            self.schedule(post, target, &me, true).await?
        };
        if placed.forward.is_none() && !placed.reason.is_empty() && !post.name.is_empty() {
            lock(&self.forwarding.placements).insert(post.name.clone(), placed.reason.clone());
        }
        Ok(placed)
    }

    /// Picks the member for `post` (`target` when named), this member
    /// being `me`. With `claim`, an anti-affinity decision is claimed in
    /// the shared state for `post.name` until the chosen member records
    /// the instance ([`Engine::release_placement_claim`]).
    pub(crate) async fn schedule(
        &self,
        post: &InstancesPost,
        target: Option<&str>,
        me: &str,
        claim: bool,
    ) -> Result<Placed> {
        let peers = self.cluster.peers();
        let forward = |p: &kante_cluster::Peer| {
            (p.name != me).then(|| Forward {
                member: p.name.clone(),
                address: p.address.clone(),
                certificate: p.certificate.clone(),
            })
        };
        let group = target
            .and_then(|t| t.strip_prefix('@'))
            .map(|g| self.cluster.group(g).map(|x| (g, x.members)))
            .transpose()
            .map_err(crate::cluster::err)?;
        if let Some(t) = target.filter(|_| group.is_none()) {
            let p = peers
                .iter()
                .find(|p| p.name == t)
                .ok_or_else(|| EngineError::NotFound(format!("Cluster member {t:?} not found")))?;
            if !p.online {
                return Err(EngineError::Unavailable(format!(
                    "Cluster member {t:?} is offline"
                )));
            }
            if p.evacuated {
                return Err(EngineError::bad(format!(
                    "Cluster member {t:?} is evacuated: restore it first"
                )));
            }
            return Ok(Placed {
                forward: forward(p),
                reason: format!("target {t} requested"),
            });
        }
        let mut notes = Vec::new();
        let mut cands: Vec<&kante_cluster::Peer> =
            peers.iter().filter(|p| p.online && !p.evacuated).collect();
        if let Some((g, members)) = &group {
            cands.retain(|p| members.contains(&p.name));
            if cands.is_empty() {
                return Err(EngineError::Unavailable(format!(
                    "No online member of cluster group {g:?} can take the instance"
                )));
            }
            notes.push(format!("in group {g} (target @{g})"));
        }
        if let Some((fp, arch)) = self.image_of(post).await? {
            cands.retain(|p| {
                p.beat.as_ref().is_some_and(|b| {
                    kante_api::image::normalise_architecture(&b.architecture) == arch
                })
            });
            notes.push(format!("architecture {arch}"));
            if keep_holders(&mut cands, &fp) {
                notes.push(format!("holding image {}", &fp[..fp.len().min(12)]));
            }
        }
        let config = &post.put.config;
        if let Some(partner) = config.get("placement.affinity").filter(|v| !v.is_empty()) {
            let holder = if self.node.instance_get(partner).await?.is_some() {
                me.to_string()
            } else {
                self.shared
                    .reservations(ReservationKind::InstanceName)
                    .await?
                    .get(partner)
                    .cloned()
                    .ok_or_else(|| {
                        EngineError::bad(format!(
                            "placement.affinity: no instance {partner:?} in the cluster"
                        ))
                    })?
            };
            cands.retain(|p| p.name == holder);
            if cands.is_empty() {
                return Err(EngineError::Unavailable(format!(
                    "placement.affinity: member {holder:?} holding {partner:?} is offline or of another architecture"
                )));
            }
            notes.push(format!("beside {partner} (placement.affinity)"));
        }
        let mut claim_tag = None;
        let before_spread = cands.clone();
        if let Some(tag) = config
            .get("placement.anti-affinity")
            .filter(|v| !v.is_empty())
        {
            // Claims first, then the listing: a claim goes only once its
            // instance is recorded, so one gone before the claims are read
            // shows in the listing read after them. (Read the other way
            // round, a creation recorded and its claim given up between
            // the two reads was seen in neither, and two concurrent
            // creations with one tag could land on one member.)
            let claims = self.placement_claims(tag).await?;
            let all = self.cluster_instance_configs(me).await?;
            let existing: BTreeSet<&String> = all.values().flatten().map(|(n, _)| n).collect();
            let mut taken: BTreeSet<String> = all
                .iter()
                .filter(|(_, list)| {
                    list.iter().any(|(name, c)| {
                        *name != post.name && c.get("placement.anti-affinity") == Some(tag)
                    })
                })
                .map(|(member, _)| member.clone())
                .collect();
            // Creations in flight elsewhere hold claims until they are
            // recorded; a claim whose instance is listed has done its work.
            for (member, holder) in claims {
                if holder == post.name {
                    continue;
                }
                if existing.contains(&holder) {
                    let key = claim_key(tag, &member);
                    let _ = self
                        .shared
                        .release(ReservationKind::Placement, &key, &holder)
                        .await;
                    continue;
                }
                taken.insert(member);
            }
            let free: Vec<&kante_cluster::Peer> = cands
                .iter()
                .copied()
                .filter(|p| !taken.contains(&p.name))
                .collect();
            if free.is_empty() {
                notes.push(format!(
                    "every candidate holds placement.anti-affinity={tag}, spread given up"
                ));
            } else {
                if !taken.is_empty() {
                    let names: Vec<&str> = taken.iter().map(|n| n.as_str()).collect();
                    notes.push(format!(
                        "avoiding {} (placement.anti-affinity={tag})",
                        names.join(",")
                    ));
                }
                cands = free;
                if claim && !post.name.is_empty() {
                    claim_tag = Some(tag.clone());
                }
            }
        }
        let key = |p: &kante_cluster::Peer| {
            let b = p.beat.clone().unwrap_or_default();
            let load = (b.load1 / b.cpus.max(1) as f64 * 100.0) as u64;
            (
                std::cmp::Reverse(b.memory_free / MEMORY_STEP),
                load,
                p.name.clone(),
            )
        };
        cands.sort_by_key(|p| key(p));
        if let Some(tag) = &claim_tag {
            // Of concurrent creations with the same tag, one wins each
            // member (a compare-and-swap in the shared state).
            let mut won = None;
            for (i, p) in cands.iter().enumerate() {
                let k = claim_key(tag, &p.name);
                match self
                    .shared
                    .reserve(ReservationKind::Placement, &k, &post.name)
                    .await
                {
                    Ok(()) => {
                        won = Some(i);
                        break;
                    }
                    Err(kante_store::StoreError::Conflict(_)) => notes.push(format!(
                        "{} claimed meanwhile by a concurrent creation (placement.anti-affinity={tag})",
                        p.name
                    )),
                    Err(e) => return Err(e.into()),
                }
            }
            match won {
                Some(i) => cands = cands.split_off(i),
                None => {
                    notes.push(format!(
                        "every candidate holds placement.anti-affinity={tag}, spread given up"
                    ));
                    cands = before_spread;
                    cands.sort_by_key(|p| key(p));
                }
            }
        }
        let Some(chosen) = cands.first() else {
            return Err(EngineError::Unavailable(
                "No online cluster member can take the instance".into(),
            ));
        };
        let beat = chosen.beat.clone().unwrap_or_default();
        let among: Vec<&str> = cands.iter().map(|p| p.name.as_str()).collect();
        notes.push(format!(
            "most free memory ({} MiB free, load {:.2} on {} CPUs) of {}",
            beat.memory_free >> 20,
            beat.load1,
            beat.cpus,
            among.join(",")
        ));
        Ok(Placed {
            forward: forward(chosen),
            reason: format!("scheduler chose {}: {}", chosen.name, notes.join("; ")),
        })
    }

    /// Own instances' names and config, and (over [`crate::forward::PeerLink`]) every
    /// online member's: member → [(instance, config)]. Members that did
    /// not answer are left out.
    pub(crate) async fn cluster_instance_configs(
        &self,
        me: &str,
    ) -> Result<BTreeMap<String, Vec<(String, kante_api::ConfigMap)>>> {
        let mut out = BTreeMap::new();
        let own = self
            .node
            .instance_list()
            .await?
            .into_iter()
            .map(|r| (r.name, r.config))
            .collect();
        out.insert(me.to_string(), own);
        let Some(link) = self.forwarding.link() else {
            return Ok(out);
        };
        let asks = self.online_peers().into_iter().map(|p| {
            let link = link.clone();
            async move {
                let to = forward_of(&p);
                let got = link
                    .get(&to, "/1.0/instances?recursion=1", FAN_OUT_TIMEOUT)
                    .await;
                (p.name, got)
            }
        });
        for (member, got) in futures_util::future::join_all(asks).await {
            match got.map(serde_json::from_value::<Vec<kante_api::instance::Instance>>) {
                Ok(Ok(list)) => {
                    out.insert(
                        member,
                        list.into_iter().map(|i| (i.name, i.config)).collect(),
                    );
                }
                Ok(Err(e)) => tracing::warn!(%member, "its instance list does not parse: {e}"),
                Err(e) => tracing::warn!(%member, "its instances could not be listed: {e}"),
            }
        }
        Ok(out)
    }
}

/// The shared key of anti-affinity tag `tag`'s claim on `member`.
fn claim_key(tag: &str, member: &str) -> String {
    format!("anti-affinity/{tag}/{member}")
}

impl Engine {
    /// Claims on members for tag `tag`: (member, instance in flight).
    async fn placement_claims(&self, tag: &str) -> Result<Vec<(String, String)>> {
        let prefix = claim_key(tag, "");
        Ok(self
            .shared
            .reservations(ReservationKind::Placement)
            .await?
            .into_iter()
            .filter_map(|(k, holder)| {
                let member = k.strip_prefix(&prefix)?;
                (!member.contains('/')).then(|| (member.to_string(), holder))
            })
            .collect())
    }

    /// Gives up the anti-affinity claim the scheduler made on `member` for
    /// instance `name` of config `config`, once the instance is recorded
    /// there or its creation failed (a no-op when there is none).
    pub(crate) async fn release_placement_claim(
        &self,
        name: &str,
        config: &kante_api::ConfigMap,
        member: &str,
    ) {
        let Some(tag) = config
            .get("placement.anti-affinity")
            .filter(|v| !v.is_empty())
        else {
            return;
        };
        if self.cluster.member_name().is_none() || name.is_empty() {
            return;
        }
        let key = claim_key(tag, member);
        if let Err(e) = self
            .shared
            .release(ReservationKind::Placement, &key, name)
            .await
        {
            tracing::warn!(instance = name, key, "giving up a placement claim: {e}");
        }
    }

    /// A creation placed on `member` that did not reach it (or was
    /// refused there): its claim goes.
    pub async fn placement_abandoned(&self, post: &InstancesPost, member: &str) {
        self.release_placement_claim(&post.name, &post.put.config, member)
            .await;
    }

    /// At start, before this member serves: claims on it are left over
    /// from creations a crash cut short (or recorded ones whose claim a
    /// crash kept), none is in flight here.
    pub(crate) async fn release_orphaned_claims(&self) {
        let Some(me) = self.cluster.member_name() else {
            return;
        };
        let claims = match self.shared.reservations(ReservationKind::Placement).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("listing placement claims: {e}");
                return;
            }
        };
        let suffix = format!("/{me}");
        for (key, holder) in claims {
            if key.ends_with(&suffix) {
                tracing::warn!(key, holder, "giving up a placement claim left by a crash");
                let _ = self
                    .shared
                    .release(ReservationKind::Placement, &key, &holder)
                    .await;
            }
        }
    }
}

/// Keeps the candidates whose heartbeat says they hold image `fp`'s files,
/// when any does (the image index is shared but its files are each
/// member's: a member without them fetches them, `image_member.rs`, which
/// this spares); whether it narrowed.
fn keep_holders(cands: &mut Vec<&kante_cluster::Peer>, fp: &str) -> bool {
    let holds = |p: &&kante_cluster::Peer| {
        p.beat
            .as_ref()
            .is_some_and(|b| b.images.iter().any(|i| i == fp))
    };
    if !cands.iter().any(holds) {
        return false;
    }
    cands.retain(holds);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, images: &[&str]) -> kante_cluster::Peer {
        kante_cluster::Peer {
            name: name.into(),
            address: String::new(),
            certificate: String::new(),
            online: true,
            evacuated: false,
            beat: Some(kante_cluster::membership::Heartbeat {
                images: images.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn an_image_goes_where_its_files_are() {
        let (a, b, c) = (peer("a", &["f1"]), peer("b", &["f1", "f2"]), peer("c", &[]));
        let mut cands = vec![&a, &b, &c];
        assert!(keep_holders(&mut cands, "f2"));
        assert_eq!(
            cands.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        let mut cands = vec![&a, &b, &c];
        assert!(keep_holders(&mut cands, "f1"));
        assert_eq!(cands.len(), 2);
        // Nobody online holds it: nothing is narrowed (the create says so itself).
        let mut cands = vec![&a, &c];
        assert!(!keep_holders(&mut cands, "f9"));
        assert_eq!(cands.len(), 2);
    }
}
