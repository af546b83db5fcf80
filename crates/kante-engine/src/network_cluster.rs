//! Managed networks in a cluster, as LXD defines them: once for the
//! cluster, with each member's own keys ([`MEMBER_KEYS`]) where they must
//! differ. `POST /1.0/networks?target=M` with M's keys records a pending
//! entry; the create without a target gives the global keys and brings the
//! network up on every member with its keys merged (this member first,
//! then each other member by a forwarded `POST /1.0/networks` carrying its
//! merged config); `?target=M` on a get shows M's merged view and on a
//! put or patch changes M's keys, applied by M. A delete goes to every
//! member before the record goes. Standalone, everything is as
//! `network.rs` does it and `?target=` is refused.

use std::time::Duration;

use kante_api::network::{Network, NetworkPut, NetworksPost};
use kante_api::ConfigMap;
use kante_network::driver_for;
use kante_store::NetworkRow;

use crate::error::{EngineError, Result};
use crate::forward::{forward_of, Forward};
use crate::network::{
    managed_network, member_config, MEMBER_KEYS, OVERLAY, STATUS_CREATED, STATUS_ERRORED,
    STATUS_PENDING,
};
use crate::Engine;

/// How long a member may take to make (or delete) a network it is told of.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(30);

fn not_clustered() -> EngineError {
    EngineError::bad("Target only allowed when clustered")
}

fn kind_or_bridge(kind: &str) -> String {
    if kind.is_empty() {
        "bridge".into()
    } else {
        kind.into()
    }
}

/// The external interfaces a bridge config names.
fn externals(config: &ConfigMap) -> Vec<String> {
    config
        .get("bridge.external_interfaces")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl Engine {
    /// The member named `name` to send a request to: 404 if there is no
    /// such member, 503 if it is offline.
    fn network_peer(&self, name: &str) -> Result<Forward> {
        match self.cluster.peers().into_iter().find(|p| p.name == name) {
            Some(p) if p.online => Ok(forward_of(&p)),
            Some(_) => Err(EngineError::Unavailable(format!(
                "Cluster member {name:?} is offline"
            ))),
            None => Err(EngineError::NotFound(format!(
                "Cluster member {name:?} not found"
            ))),
        }
    }

    /// Sends `method path` with `body` to member `to`, as a forwarded
    /// request: its answer's metadata, or an error naming it.
    async fn network_send(
        &self,
        to: &Forward,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let link = self
            .forwarding
            .link()
            .ok_or_else(|| EngineError::Unavailable("No link to the other members".into()))?;
        link.send(to, method, path, body, MEMBER_TIMEOUT)
            .await
            .map_err(|e| EngineError::bad(format!("{}: {e}", to.member)))
    }

    /// `POST /1.0/networks[?target=M]` (see the module's doc); `notified`:
    /// a member that made the global create tells this one to make it.
    pub(crate) async fn network_create_at(
        &self,
        post: NetworksPost,
        target: Option<String>,
        notified: bool,
    ) -> Result<()> {
        let Some(me) = self.cluster.member_name() else {
            return match target {
                Some(_) => Err(not_clustered()),
                None => self.network_create(post).await,
            };
        };
        match target {
            _ if notified => self.network_bring_up(post).await,
            Some(_) if post.kind == OVERLAY => Err(EngineError::bad(
                "An overlay is defined once for the whole cluster: create it without --target",
            )),
            None if post.kind == OVERLAY => self.overlay_create(post, &me).await,
            Some(member) => self.network_define_on(post, &member).await,
            None => self.network_create_everywhere(post, &me).await,
        }
    }

    /// Records `member`'s own keys of a network not yet created (pending).
    async fn network_define_on(&self, post: NetworksPost, member: &str) -> Result<()> {
        if !self.cluster.peers().iter().any(|p| p.name == member) {
            return Err(EngineError::NotFound(format!(
                "Cluster member {member:?} not found"
            )));
        }
        let kind = kind_or_bridge(&post.kind);
        let driver = driver_for(&kind, &self.net)?;
        if let Some(k) = post
            .config
            .keys()
            .find(|k| !MEMBER_KEYS.contains(&k.as_str()))
        {
            return Err(EngineError::bad(format!(
                "Config key {k:?} may not be used as member-specific key"
            )));
        }
        match self.shared.network_get(&post.name).await? {
            None => {
                driver.validate(&post.name, &post.config)?;
                let row = NetworkRow {
                    name: post.name,
                    kind,
                    description: post.description,
                    status: STATUS_PENDING.into(),
                    members: [(member.to_string(), post.config)].into(),
                    ..Default::default()
                };
                self.shared.network_create(&row).await?;
            }
            Some(mut row) => {
                if row.kind != kind {
                    return Err(EngineError::bad(format!(
                        "Requested network type {kind:?} doesn't match type in existing database record {:?}",
                        row.kind
                    )));
                }
                if row.members.contains_key(member) {
                    return Err(EngineError::bad(format!(
                        "The network is already defined on member {member:?}"
                    )));
                }
                if row.status != STATUS_PENDING {
                    return Err(EngineError::bad("The network is not in pending state"));
                }
                driver.validate(&post.name, &post.config)?;
                row.members.insert(member.to_string(), post.config);
                self.shared.network_update(&row).await?;
            }
        }
        Ok(())
    }

    /// The create without a target in a cluster: the global keys recorded,
    /// then the network made on this member and on every other one with
    /// its own keys. `Errored` until every member made it (a re-run, with
    /// no global keys, tries again).
    async fn network_create_everywhere(&self, post: NetworksPost, me: &str) -> Result<()> {
        if let Some(k) = post
            .config
            .keys()
            .find(|k| MEMBER_KEYS.contains(&k.as_str()))
        {
            return Err(EngineError::bad(format!(
                "Config key {k:?} is cluster member specific"
            )));
        }
        let mut row = self.shared.network_get(&post.name).await?.ok_or_else(|| {
            EngineError::bad("Network not pending on any node (use --target <node> first)")
        })?;
        let kind = kind_or_bridge(&post.kind);
        if row.kind != kind {
            return Err(EngineError::bad(format!(
                "Requested network type {kind:?} doesn't match type in existing database record {:?}",
                row.kind
            )));
        }
        let driver = driver_for(&kind, &self.net)?;
        let peers = self.cluster.peers();
        match row.status.as_str() {
            STATUS_PENDING => {
                let missing: Vec<&str> = peers
                    .iter()
                    .filter(|p| !row.members.contains_key(&p.name))
                    .map(|p| p.name.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(EngineError::bad(format!(
                        "Network not defined on nodes: {}",
                        missing.join(", ")
                    )));
                }
                driver.validate(&post.name, &post.config)?;
                let others: Vec<_> = self
                    .network_specs()
                    .await?
                    .into_iter()
                    .filter(|s| s.name != post.name)
                    .collect();
                let global = driver.fill_defaults(&post.config, &others)?;
                row.config = global;
                for m in row.members.keys() {
                    driver
                        .validate(&post.name, &member_config(&row, m))
                        .map_err(|e| EngineError::bad(format!("{m}: {e}")))?;
                }
                if kind == "bridge" {
                    let mine = member_config(&row, me);
                    kante_network::driver::check_no_overlap(&post.name, &mine, &others)?;
                }
                row.description = post.description;
                row.status = STATUS_ERRORED.into();
                self.shared.network_update(&row).await?;
            }
            STATUS_ERRORED if !post.config.is_empty() => {
                return Err(EngineError::bad(
                    "Network already partially created. Please do not specify any global config when re-running create",
                ))
            }
            STATUS_ERRORED => {}
            _ => return Err(EngineError::bad("The network is already created")),
        }
        let mut failed = Vec::new();
        let spec = self.network_spec(&row);
        if let Err(e) = driver.create(&spec).await {
            let _ = driver.delete(&spec).await;
            failed.push(format!("{me}: {e}"));
        }
        let others = peers.into_iter().filter(|p| p.name != me);
        let asks = others.map(|p| {
            let body = NetworksPost {
                name: row.name.clone(),
                kind: row.kind.clone(),
                description: row.description.clone(),
                config: member_config(&row, &p.name),
            };
            async move {
                if !p.online {
                    return Err(format!("{}: the member is offline", p.name));
                }
                let body = serde_json::to_value(&body).map_err(|e| e.to_string())?;
                self.network_send(&forward_of(&p), "POST", "/1.0/networks", Some(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
        for got in futures_util::future::join_all(asks).await {
            if let Err(e) = got {
                failed.push(e);
            }
        }
        if !failed.is_empty() {
            return Err(EngineError::bad(format!(
                "Failed creating the network on: {}",
                failed.join("; ")
            )));
        }
        self.network_created(&mut row).await
    }

    /// Makes a network on this member from the config another member sent
    /// (its global keys with this member's merged); the record is theirs
    /// to write.
    async fn network_bring_up(&self, post: NetworksPost) -> Result<()> {
        let kind = kind_or_bridge(&post.kind);
        let driver = driver_for(&kind, &self.net)?;
        driver.validate(&post.name, &post.config)?;
        let spec = self.spec_of(&post.name, &kind, post.config);
        if let Err(e) = driver.create(&spec).await {
            let _ = driver.delete(&spec).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// `GET /1.0/networks/NAME[?target=M]`: with a target, M's view (its
    /// keys merged over the global ones).
    pub(crate) async fn network_get_at(
        &self,
        name: &str,
        target: Option<String>,
    ) -> Result<Network> {
        let Some(member) = target else {
            return self.network_get(name).await;
        };
        let Some(me) = self.cluster.member_name() else {
            return Err(not_clustered());
        };
        if member != me {
            let to = self.network_peer(&member)?;
            let path = format!("/1.0/networks/{name}?target={member}");
            let got = self.network_send(&to, "GET", &path, None).await?;
            return serde_json::from_value(got)
                .map_err(|e| EngineError::Internal(format!("{member}'s answer: {e}")));
        }
        let Some(row) = self.shared.network_get(name).await? else {
            return self.network_get(name).await;
        };
        let config = member_config(&row, &member);
        let used_by = self.network_users(name).await?;
        let mut net = managed_network(row, used_by, &member);
        net.config = config;
        net.locations = vec![member];
        Ok(net)
    }

    /// `PUT`/`PATCH /1.0/networks/NAME[?target=M]`: with a target, M's own
    /// keys (others may only be given with their current value, as a full
    /// `PUT` of M's view does), applied by M; without, the global keys,
    /// applied by every member (the others first, then here with the
    /// record); `notified`: another member's change of them.
    pub(crate) async fn network_update_at(
        &self,
        name: &str,
        put: NetworkPut,
        merge: bool,
        target: Option<String>,
        notified: bool,
    ) -> Result<()> {
        let Some(me) = self.cluster.member_name() else {
            if target.is_some() {
                return Err(not_clustered());
            }
            return self
                .network_update(name, put.description, put.config, merge)
                .await;
        };
        let Some(member) = target else {
            if notified {
                return self.network_apply_notified(name, put).await;
            }
            return self.network_update_everywhere(name, put, merge, &me).await;
        };
        if member != me {
            let to = self.network_peer(&member)?;
            let path = format!("/1.0/networks/{name}?target={member}");
            let method = if merge { "PATCH" } else { "PUT" };
            let body =
                serde_json::to_value(&put).map_err(|e| EngineError::Internal(e.to_string()))?;
            self.network_send(&to, method, &path, Some(body)).await?;
            return Ok(());
        }
        let mut row = self
            .shared
            .network_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        for (k, v) in &put.config {
            if !MEMBER_KEYS.contains(&k.as_str()) && row.config.get(k) != Some(v) {
                return Err(EngineError::bad(format!(
                    "Config key {k:?} may not be used as member-specific key"
                )));
            }
        }
        let mut own = if merge {
            row.members.get(&me).cloned().unwrap_or_default()
        } else {
            ConfigMap::new()
        };
        for (k, v) in put.config {
            if !MEMBER_KEYS.contains(&k.as_str()) {
                continue;
            }
            if v.is_empty() {
                own.remove(&k);
            } else {
                own.insert(k, v);
            }
        }
        let driver = driver_for(&row.kind, &self.net)?;
        if row.status == STATUS_PENDING {
            driver.validate(name, &own)?;
            row.members.insert(me, own);
            self.shared.network_update(&row).await?;
            return Ok(());
        }
        let old = self.network_spec(&row);
        row.members.insert(me, own);
        let new = self.network_spec(&row);
        driver.validate(name, &new.config)?;
        // Recorded first: a store that cannot be written changes nothing.
        self.shared.network_update(&row).await?;
        driver.stop(&old).await?;
        if row.kind == "bridge" {
            let kept = externals(&new.config);
            let bridge = self.net.ops.link(name).await?.map(|l| l.index);
            for ext in externals(&old.config)
                .into_iter()
                .filter(|e| !kept.contains(e))
            {
                let link = self.net.ops.link(&ext).await?;
                if link.is_some_and(|l| l.master.is_some() && l.master == bridge) {
                    self.net.ops.set_master(&ext, None).await?;
                }
            }
        }
        driver.start(&new).await?;
        Ok(())
    }

    /// A change of a cluster network's global keys: checked here, applied
    /// by every other member (told its merged view while the record still
    /// holds the old keys), then here, and recorded.
    async fn network_update_everywhere(
        &self,
        name: &str,
        put: NetworkPut,
        merge: bool,
        me: &str,
    ) -> Result<()> {
        if let Some(k) = put
            .config
            .keys()
            .find(|k| MEMBER_KEYS.contains(&k.as_str()))
        {
            return Err(EngineError::bad(format!(
                "Config key {k:?} is cluster member specific"
            )));
        }
        let (old, new) = self
            .network_update_plan(name, put.description, put.config, merge)
            .await?;
        let peers = self.other_members_online(me)?;
        let path = format!("/1.0/networks/{name}");
        let path = &path;
        let new_ref = &new;
        let asks = peers.iter().map(|p| async move {
            let view = NetworkPut {
                description: new_ref.description.clone(),
                config: member_config(new_ref, &p.name),
            };
            let body =
                serde_json::to_value(&view).map_err(|e| EngineError::Internal(e.to_string()))?;
            self.network_send(&forward_of(p), "PUT", path, Some(body))
                .await
        });
        all_done(asks, "updating").await?;
        self.network_apply(&old, &new, true).await
    }

    /// Applies another member's change of a network's global keys here:
    /// `put` is this member's merged view; the record is the caller's.
    async fn network_apply_notified(&self, name: &str, put: NetworkPut) -> Result<()> {
        let old = self
            .shared
            .network_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        let mut new = old.clone();
        new.config = put.config;
        new.description = put.description;
        let (was, will) = (self.network_spec(&old), self.network_spec(&new));
        let fixed = ["ipv4.address", "ipv6.address", "bridge.driver", "parent"];
        if fixed
            .iter()
            .any(|k| was.config.get(*k) != will.config.get(*k))
            && !self.network_users(name).await?.is_empty()
        {
            return Err(EngineError::bad(
                "Addresses, bridge.driver and parent cannot change while the network is in use",
            ));
        }
        driver_for(&new.kind, &self.net)?.validate(name, &will.config)?;
        self.network_apply(&old, &new, false).await
    }

    /// `DELETE /1.0/networks/NAME`: in a cluster, every member deletes its
    /// network (each refusing while its instances use it) before the
    /// record goes; `notified`: another member asks this one.
    pub(crate) async fn network_delete_at(&self, name: &str, notified: bool) -> Result<()> {
        let Some(me) = self.cluster.member_name() else {
            return self.network_delete(name).await;
        };
        let row = self.shared.network_get(name).await?;
        if notified {
            let Some(row) = row else { return Ok(()) };
            let users = self.network_users(name).await?;
            if !users.is_empty() {
                return Err(EngineError::bad(format!(
                    "The network is currently in use by {}",
                    users.join(", ")
                )));
            }
            if row.status == STATUS_PENDING {
                return Ok(());
            }
            let driver = driver_for(&row.kind, &self.net)?;
            driver.delete(&self.network_spec(&row)).await?;
            return Ok(());
        }
        let Some(mut row) = row else {
            return self.network_delete(name).await;
        };
        // An overlay is marked first: the keepers make a `Created` overlay
        // on a member that lacks it (`network_overlay_join.rs`), and must
        // not make it again where it was just deleted. If the delete
        // fails, the mark goes and the keepers make it again where gone.
        let marked = row.kind == OVERLAY && row.status == STATUS_CREATED;
        if row.status != STATUS_PENDING {
            let peers = self.other_members_online(&me)?;
            if marked {
                row.status = STATUS_ERRORED.into();
                self.shared.network_update(&row).await?;
            }
            let path = format!("/1.0/networks/{name}");
            let path = &path;
            let asks = peers.iter().map(|p| async move {
                self.network_send(&forward_of(p), "DELETE", path, None)
                    .await
            });
            if let Err(e) = all_done(asks, "deleting").await {
                self.network_unmark(&mut row, marked).await;
                return Err(e);
            }
        }
        let result = self.network_delete(name).await;
        if result.is_err() {
            self.network_unmark(&mut row, marked).await;
        }
        result
    }

    /// Undoes an overlay delete's mark (see [`Self::network_delete_at`]).
    async fn network_unmark(&self, row: &mut NetworkRow, marked: bool) {
        if !marked {
            return;
        }
        row.status = STATUS_CREATED.into();
        if let Err(e) = self.shared.network_update(row).await {
            tracing::warn!(network = %row.name, "the overlay stays marked Errored: {e}");
        }
    }
}

impl Engine {
    /// The other members, all of which must be online for a change that
    /// every member applies (503 naming the first one that is not).
    fn other_members_online(&self, me: &str) -> Result<Vec<kante_cluster::Peer>> {
        let peers: Vec<_> = self
            .cluster
            .peers()
            .into_iter()
            .filter(|p| p.name != me)
            .collect();
        if let Some(p) = peers.iter().find(|p| !p.online) {
            return Err(EngineError::Unavailable(format!(
                "Cluster member {:?} is offline",
                p.name
            )));
        }
        Ok(peers)
    }
}

/// Waits for every member's answer; one error naming each member that
/// failed (`doing` says what, as in "Failed deleting the network on: …").
async fn all_done<F, T, E>(asks: impl Iterator<Item = F>, doing: &str) -> Result<()>
where
    F: std::future::Future<Output = std::result::Result<T, E>>,
    E: std::fmt::Display,
{
    let failed: Vec<String> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    if !failed.is_empty() {
        return Err(EngineError::bad(format!(
            "Failed {doing} the network on: {}",
            failed.join("; ")
        )));
    }
    Ok(())
}
