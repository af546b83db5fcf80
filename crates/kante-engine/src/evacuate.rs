//! Evacuating and restoring a cluster member (`POST /1.0/cluster/members/
//! NAME/state`, LXD 5.0.2's `ClusterMemberStatePost`), run as an
//! operation by member NAME itself (the request is forwarded there).
//!
//! **Evacuate** marks the member evacuated in the shared state (shown
//! `Evacuated`; the scheduler places nothing there), then takes each of
//! its instances by `cluster.evacuate` (or the request's `mode`): `stop`
//! stops it (and marks it `volatile.evacuate.stopped=true` if it ran);
//! `migrate` moves it, stopped (stateless), to the member the scheduler
//! picks, starts it there if it ran, and it carries
//! `volatile.evacuate.origin=NAME`; `auto` (the default) migrates unless
//! it has a device only this host can give (a host path, a custom
//! volume, a host device, a physical NIC), then stops.
//! **Restore** marks the member back in service, starts what evacuation
//! stopped, and moves back every instance whose origin is this member
//! (stop, move, start), the key then cleared.
//!
//! A move is LXD's migration between two servers, the member running
//! the evacuation as the client: over [`crate::forward::PeerLink`] (to
//! itself too) it asks the source for a migration (`POST
//! /1.0/instances/NAME {migration}`), gives the name's reservation up,
//! asks the destination for the instance (`POST /1.0/instances`, source
//! `migration`, pull), and deletes the source's copy only once both sides
//! succeeded. A failed transfer takes the name back for the source and
//! starts it again if it ran: an instance is always on one member at
//! least. Each instance's failure is reported in the operation by name;
//! the others go on.

use std::sync::Arc;
use std::time::Duration;

use kante_api::cluster::ClusterMemberStatePost;
use kante_api::instance::InstancesPost;
use kante_api::operation::OperationClass;
use kante_api::{ConfigMap, DevicesMap};
use kante_store::ReservationKind;
use serde_json::{json, Value};

use crate::error::{EngineError, Result};
use crate::forward::forward_of;
use crate::operations::Op;
use crate::Engine;

/// The instance key that says what evacuation does with an instance.
pub const EVACUATE_KEY: &str = "cluster.evacuate";
/// Where an instance was evacuated from (it travels with the move).
pub const ORIGIN_KEY: &str = "volatile.evacuate.origin";
/// Set on an instance that evacuation stopped (restore starts it).
pub const STOPPED_KEY: &str = "volatile.evacuate.stopped";
/// How long one step (a call, an operation) may take.
const STEP: Duration = Duration::from_secs(900);
/// How long a clean stop may take before it is forced.
const STOP_TIMEOUT: u64 = 30;

/// What evacuation does with one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Stop,
    Migrate,
}

/// The action for an instance of expanded `config` and `devices`:
/// `mode` (the request's) first, else its `cluster.evacuate`.
pub(crate) fn action(mode: &str, config: &ConfigMap, devices: &DevicesMap) -> Action {
    let policy = if mode.is_empty() {
        config.get(EVACUATE_KEY).map(String::as_str).unwrap_or("")
    } else {
        mode
    };
    match policy {
        "stop" => Action::Stop,
        "migrate" => Action::Migrate,
        _ if devices.values().any(local_only) => Action::Stop,
        _ => Action::Migrate,
    }
}

/// A device only this host can give.
fn local_only(d: &std::collections::BTreeMap<String, String>) -> bool {
    let get = |k: &str| d.get(k).map(String::as_str).unwrap_or("");
    match get("type") {
        "disk" => get("path") != "/" && !get("source").is_empty(),
        "unix-char" | "unix-block" | "usb" | "gpu" | "pci" | "infiniband" => true,
        "nic" => matches!(get("nictype"), "physical" | "sriov" | "macvlan" | "ipvlan"),
        _ => false,
    }
}

fn status(op: &Value) -> (&str, &str) {
    (
        op.get("status").and_then(Value::as_str).unwrap_or(""),
        op.get("err").and_then(Value::as_str).unwrap_or(""),
    )
}

impl Engine {
    /// `POST /1.0/cluster/members/NAME/state` on member NAME.
    pub(crate) async fn member_state(
        &self,
        name: &str,
        post: ClusterMemberStatePost,
    ) -> Result<Arc<Op>> {
        let Some(me) = self.cluster.member_name() else {
            return Err(EngineError::bad("This server is not clustered"));
        };
        if name != me {
            return Err(EngineError::internal(format!(
                "The state of member {name:?} is changed by {name:?}, not {me:?}"
            )));
        }
        match post.mode.as_str() {
            "" | "stop" | "migrate" => {}
            "live-migrate" => {
                return Err(EngineError::bad(
                    "Live migration is not supported: use mode stop or migrate",
                ))
            }
            other => {
                return Err(EngineError::bad(format!(
                    "Invalid evacuation mode {other:?} (stop or migrate)"
                )))
            }
        }
        let evacuated = self.cluster.evacuated().contains(&me);
        let evacuate = match post.action.as_str() {
            "evacuate" if evacuated => {
                return Err(EngineError::bad(format!(
                    "Cluster member {me:?} is already evacuated"
                )))
            }
            "restore" if !evacuated => {
                return Err(EngineError::bad(format!(
                    "Cluster member {me:?} is not evacuated"
                )))
            }
            "evacuate" => true,
            "restore" => false,
            other => {
                return Err(EngineError::bad(format!(
                    "Invalid action {other:?} (evacuate or restore)"
                )))
            }
        };
        if self.forwarding.link().is_none() {
            return Err(EngineError::internal("No link to the other members"));
        }
        let description = if evacuate {
            "Evacuating cluster member"
        } else {
            "Restoring cluster member"
        };
        let op = self
            .ops
            .create(OperationClass::Task, description, Default::default());
        let (engine, op2, mode) = (self.arc(), op.clone(), post.mode);
        self.ops.run(op.clone(), async move {
            let outcomes = if evacuate {
                engine.evacuate(&op2, &me, &mode).await?
            } else {
                engine.restore(&op2, &me).await?
            };
            let failed: Vec<String> = outcomes
                .into_iter()
                .filter_map(|(n, r)| r.err().map(|e| format!("{n}: {e}")))
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(EngineError::internal(format!(
                    "{description} {me}: {}",
                    failed.join("; ")
                )))
            }
        });
        Ok(op)
    }

    /// `POST /1.0/instances/NAME?target=MEMBER` with `migration` (LXD's
    /// move between cluster members, `kante move NAME --target MEMBER`),
    /// on the member holding NAME: the instance moves, stopped, as an
    /// evacuation moves it (a running one is stopped, moved, started
    /// there; live migration is refused), keeping its name.
    pub(crate) async fn instance_move_to(
        &self,
        name: &str,
        post: &kante_api::instance::InstancePost,
        to: &str,
    ) -> Result<Arc<Op>> {
        if post.live {
            return Err(EngineError::bad(
                "Live migration is not supported: move it stopped (--stateless)",
            ));
        }
        if !post.name.is_empty() && post.name != name {
            return Err(EngineError::bad(
                "A move between cluster members keeps the instance's name",
            ));
        }
        let me = self
            .cluster
            .member_name()
            .ok_or_else(|| EngineError::bad("The server is not clustered"))?;
        self.instance_row(name).await?;
        if to == me {
            return Err(EngineError::bad(format!(
                "Instance {name:?} is already on member {to:?}"
            )));
        }
        match self.cluster.peers().into_iter().find(|p| p.name == to) {
            None => {
                return Err(EngineError::NotFound(format!(
                    "Cluster member {to:?} not found"
                )))
            }
            Some(p) if !p.online => {
                return Err(EngineError::Unavailable(format!(
                    "Cluster member {to:?} is offline"
                )))
            }
            Some(_) => {}
        }
        if self.forwarding.link().is_none() {
            return Err(EngineError::internal("No link to the other members"));
        }
        let op = self.ops.create(
            OperationClass::Task,
            "Migrating instance",
            [(
                "instances".to_string(),
                vec![format!("/1.0/instances/{name}")],
            )]
            .into_iter()
            .collect(),
        );
        let (engine, name, to) = (self.arc(), name.to_string(), to.to_string());
        self.ops.run(op.clone(), async move {
            engine.move_instance(&name, &me, &to, None).await
        });
        Ok(op)
    }

    /// Records one instance's outcome in the operation's metadata.
    fn note(op: &Op, done: &mut serde_json::Map<String, Value>, name: &str, what: String) {
        done.insert(name.to_string(), Value::String(what));
        op.set_metadata(json!({ "instances": done.clone() }));
    }

    async fn evacuate(&self, op: &Op, me: &str, mode: &str) -> Result<Vec<(String, Result<()>)>> {
        self.cluster
            .set_evacuated(me, true)
            .await
            .map_err(crate::cluster::err)?;
        let mut done = serde_json::Map::new();
        let mut out = Vec::new();
        for row in self.node.instance_list().await? {
            let name = row.name.clone();
            let r = async {
                let (config, devices) = self.expanded(&row).await?;
                match action(mode, &config, &devices) {
                    Action::Stop => {
                        if self.peer_stop(me, &name, &config).await? {
                            self.set_local_key(&name, STOPPED_KEY, Some("true")).await?;
                        }
                        Ok::<_, EngineError>(format!("stopped on {me}"))
                    }
                    Action::Migrate => {
                        let to = self.evacuation_target(&row).await?;
                        self.move_instance(&name, me, &to, Some(me)).await?;
                        Ok(format!("moved to {to}"))
                    }
                }
            }
            .await;
            Self::note(
                op,
                &mut done,
                &name,
                match &r {
                    Ok(what) => what.clone(),
                    Err(e) => format!("failed: {e}"),
                },
            );
            out.push((name, r.map(|_| ())));
        }
        Ok(out)
    }

    async fn restore(&self, op: &Op, me: &str) -> Result<Vec<(String, Result<()>)>> {
        self.cluster
            .set_evacuated(me, false)
            .await
            .map_err(crate::cluster::err)?;
        let mut done = serde_json::Map::new();
        let mut out = Vec::new();
        for row in self.node.instance_list().await? {
            if row.config.get(STOPPED_KEY).map(String::as_str) != Some("true") {
                continue;
            }
            let name = row.name.clone();
            let r = async {
                self.peer_start(me, &name).await?;
                self.set_local_key(&name, STOPPED_KEY, None).await
            }
            .await;
            let what = match &r {
                Ok(()) => format!("started on {me}"),
                Err(e) => format!("failed: {e}"),
            };
            Self::note(op, &mut done, &name, what);
            out.push((name, r));
        }
        for (member, list) in self.cluster_instance_configs(me).await? {
            if member == me {
                continue;
            }
            for (name, config) in list {
                if config.get(ORIGIN_KEY).map(String::as_str) != Some(me) {
                    continue;
                }
                let r = async {
                    self.move_instance(&name, &member, me, None).await?;
                    self.set_local_key(&name, ORIGIN_KEY, None).await
                }
                .await;
                let what = match &r {
                    Ok(()) => format!("moved back from {member}"),
                    Err(e) => format!("failed: {e}"),
                };
                Self::note(op, &mut done, &name, what);
                out.push((name, r));
            }
        }
        Ok(out)
    }

    /// The member the scheduler picks for `row` (never an evacuated one).
    async fn evacuation_target(&self, row: &kante_store::InstanceRow) -> Result<String> {
        let mut post = InstancesPost {
            name: row.name.clone(),
            ..Default::default()
        };
        post.put.config = row.config.clone();
        post.source.kind = "none".into();
        let me = self.cluster.member_name().unwrap_or_default();
        let placed = self.schedule(&post, None, &me, false).await?;
        crate::context::lock(&self.forwarding.placements).remove(&row.name);
        match placed.forward {
            Some(f) => Ok(f.member),
            None => Err(EngineError::Unavailable(
                "No other cluster member can take it".into(),
            )),
        }
    }

    /// Sets (or with `None` removes) a config key of a local instance,
    /// volatile keys included.
    async fn set_local_key(&self, name: &str, key: &str, value: Option<&str>) -> Result<()> {
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let mut row = self.instance_row(name).await?;
        match value {
            Some(v) => row.config.insert(key.into(), v.into()),
            None => row.config.remove(key),
        };
        self.node.instance_update(&row).await?;
        Ok(())
    }

    /// `method path` on `member` (this one too) over the peer link.
    async fn peer_call(
        &self,
        member: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let link = self
            .forwarding
            .link()
            .ok_or_else(|| EngineError::internal("No link to the other members"))?;
        let peer = self
            .cluster
            .peers()
            .into_iter()
            .find(|p| p.name == member)
            .ok_or_else(|| EngineError::NotFound(format!("Cluster member {member:?} not found")))?;
        link.send(&forward_of(&peer), method, path, body, STEP)
            .await
            .map_err(|e| EngineError::Unavailable(format!("{method} {path} on {member}: {e}")))
    }

    /// Waits for operation `id` on `member`: its record, or its error.
    async fn peer_wait(&self, member: &str, id: &str) -> Result<Value> {
        let path = format!("/1.0/operations/{id}/wait?timeout={}", STEP.as_secs() - 30);
        let op = self.peer_call(member, "GET", &path, None).await?;
        match status(&op) {
            ("Success", _) => Ok(op),
            (s, err) => Err(EngineError::internal(format!(
                "on {member}: {}",
                if err.is_empty() { s } else { err }
            ))),
        }
    }

    /// `method path` on `member` answering an operation, waited for.
    async fn peer_op(
        &self,
        member: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let op = self.peer_call(member, method, path, body).await?;
        let id = op.get("id").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() {
            return Err(EngineError::internal(format!(
                "{method} {path} on {member} answered no operation"
            )));
        }
        self.peer_wait(member, id).await
    }

    fn instance_path(name: &str) -> String {
        format!("/1.0/instances/{}", crate::util::percent(name))
    }

    /// Stops `name` on `member` if it runs (cleanly, forced after its
    /// `boot.host_shutdown_timeout`); whether it ran.
    async fn peer_stop(&self, member: &str, name: &str, config: &ConfigMap) -> Result<bool> {
        let path = Self::instance_path(name);
        let inst = self.peer_call(member, "GET", &path, None).await?;
        if inst.get("status").and_then(Value::as_str) != Some("Running") {
            return Ok(false);
        }
        let timeout = config
            .get("boot.host_shutdown_timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(STOP_TIMEOUT);
        let state = format!("{path}/state");
        let clean = json!({"action": "stop", "timeout": timeout, "force": false});
        if let Err(e) = self.peer_op(member, "PUT", &state, Some(clean)).await {
            tracing::warn!(instance = name, %member, "clean stop failed, forcing: {e}");
            let forced = json!({"action": "stop", "timeout": -1, "force": true});
            self.peer_op(member, "PUT", &state, Some(forced)).await?;
        }
        Ok(true)
    }

    async fn peer_start(&self, member: &str, name: &str) -> Result<()> {
        let state = format!("{}/state", Self::instance_path(name));
        let start = json!({"action": "start", "timeout": -1});
        self.peer_op(member, "PUT", &state, Some(start)).await?;
        Ok(())
    }

    /// Moves instance `name` from member `from` to member `to` (see the
    /// module's doc); `origin`: recorded as [`ORIGIN_KEY`] on it.
    async fn move_instance(
        &self,
        name: &str,
        from: &str,
        to: &str,
        origin: Option<&str>,
    ) -> Result<()> {
        let path = Self::instance_path(name);
        let inst = self.peer_call(from, "GET", &path, None).await?;
        let mut config: ConfigMap =
            serde_json::from_value(inst.get("config").cloned().unwrap_or_default())
                .unwrap_or_default();
        if let Some(o) = origin {
            config.insert(ORIGIN_KEY.into(), o.into());
        }
        let running = self.peer_stop(from, name, &config).await?;
        // Until the name is given up, a failure leaves it where it was,
        // running again if it ran.
        let prepared = async {
            // Its overlay addresses are held for it before it leaves.
            let mut leases = std::collections::BTreeMap::new();
            for ov in self.overlay_leases_needed(&inst).await? {
                let path = format!("/1.0/networks/{}/leases", crate::util::percent(&ov));
                match self.peer_call(from, "GET", &path, None).await {
                    Ok(Value::Array(a)) => {
                        leases.insert(ov, a);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(instance = name, network = %ov, "leases on {from}: {e}")
                    }
                }
            }
            self.overlay_hold_for_move(name, &inst, &leases).await?;
            let source = self
                .peer_call(
                    from,
                    "POST",
                    &path,
                    Some(json!({"migration": true, "live": false})),
                )
                .await?;
            let src_id = source
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let secrets = source.get("metadata").cloned().unwrap_or_default();
            let peer = self
                .cluster
                .peers()
                .into_iter()
                .find(|p| p.name == from)
                .ok_or_else(|| {
                    EngineError::NotFound(format!("Cluster member {from:?} not found"))
                })?;
            let field = |k: &str| inst.get(k).cloned().unwrap_or(Value::Null);
            let post = json!({
                "name": name,
                "type": "container",
                "architecture": field("architecture"),
                "description": field("description"),
                "ephemeral": field("ephemeral"),
                "profiles": field("profiles"),
                "devices": field("devices"),
                "config": config,
                "source": {
                    "type": "migration",
                    "mode": "pull",
                    "operation": format!("https://{}/1.0/operations/{src_id}", peer.address),
                    "certificate": peer.certificate,
                    "secrets": secrets,
                },
            });
            // The name goes with the instance: `to` reserves it when it
            // records the copy.
            self.shared
                .release(ReservationKind::InstanceName, name, from)
                .await?;
            Ok::<_, EngineError>((src_id, post))
        }
        .await;
        let names = ReservationKind::InstanceName;
        let (src_id, post) = match prepared {
            Ok(p) => p,
            Err(e) => {
                if running {
                    if let Err(r) = self.peer_start(from, name).await {
                        tracing::error!(instance = name, %from, "starting it again: {r}");
                    }
                }
                return Err(e);
            }
        };
        let made = async {
            self.peer_op(to, "POST", "/1.0/instances", Some(post))
                .await
                .map_err(|e| EngineError::internal(format!("receiving on {to}: {e}")))
        }
        .await;
        let sent = self.peer_wait(from, &src_id).await;
        if let Err(e) = made.as_ref().and(sent.as_ref()) {
            let e = EngineError::internal(format!("moving from {from} to {to}: {e}"));
            // It stays where it was: its name back, running if it ran.
            if made.is_err() {
                if let Err(r) = self.shared.reserve(names, name, from).await {
                    tracing::error!(instance = name, %from, "taking its name back: {r}");
                }
                if running {
                    if let Err(r) = self.peer_start(from, name).await {
                        tracing::error!(instance = name, %from, "starting it again: {r}");
                    }
                }
            }
            return Err(e);
        }
        self.peer_op(from, "DELETE", &path, None)
            .await
            .map_err(|e| {
                EngineError::internal(format!(
                    "moved to {to}, but its copy on {from} was not deleted: {e}"
                ))
            })?;
        if running {
            self.peer_start(to, name)
                .await
                .map_err(|e| EngineError::internal(format!("moved to {to}, not started: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(list: &[&[(&str, &str)]]) -> DevicesMap {
        list.iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    format!("d{i}"),
                    d.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_policy_and_local_devices_decide() {
        let root = devices(&[&[("type", "disk"), ("path", "/"), ("pool", "default")]]);
        let host = devices(&[&[("type", "disk"), ("path", "/srv"), ("source", "/srv")]]);
        let key = |v: &str| ConfigMap::from([(EVACUATE_KEY.to_string(), v.to_string())]);
        let none = ConfigMap::new();
        assert_eq!(action("", &none, &root), Action::Migrate);
        assert_eq!(action("", &key("auto"), &host), Action::Stop);
        assert_eq!(action("", &key("stop"), &root), Action::Stop);
        assert_eq!(action("", &key("migrate"), &host), Action::Migrate);
        assert_eq!(action("stop", &key("migrate"), &root), Action::Stop);
        let usb = devices(&[&[("type", "usb")]]);
        assert_eq!(action("", &none, &usb), Action::Stop);
        let bridged = devices(&[&[("type", "nic"), ("network", "kantebr0")]]);
        assert_eq!(action("", &none, &bridged), Action::Migrate);
    }
}
