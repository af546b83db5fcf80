//! A site against the hosts' state: per host, the preseed's steps (pools,
//! networks, profiles, server config) and the instances' changes (create,
//! change keys live, start, prune), all decided here from data alone
//! ([`plan_host`]), so the diff a user reads is exactly what `apply` does.
//! Only what the file names is compared: keys an instance has that the
//! file does not name are left alone, and an instance's image is not
//! compared once it exists (a new image means a new instance: delete it,
//! or rename it in the file).
//!
//! A host standing for a cluster member sees the instances on that
//! member; one the file places there but found on another member of the
//! cluster is moved (`Change::Move`: stopped, moved, started again if it
//! ran), then compared as any other. The members' shared preseed part is
//! planned once, by the first of them ([`Site::applies_preseed`]).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kante_client::kante_api::instance::Instance as Have;
use kante_client::kante_api::{ConfigMap, DevicesMap};
use kante_client::Client;

use crate::file::{Instance, Site};
use crate::preseed::{self, Current};

/// The config key that marks what `apply` made, with the site's name.
pub const SITE_KEY: &str = "user.kante.site";

/// What a host has now.
#[derive(Debug, Clone)]
pub struct HostState {
    pub preseed: Current,
    /// Its instances (a member's: those located on it).
    pub instances: Vec<Have>,
    /// A member's: every instance of its cluster (empty for other hosts).
    pub cluster: Vec<Have>,
    /// A member's: the names of its cluster's members (empty: the remote
    /// is no cluster).
    pub members: Vec<String>,
}

/// Reads a host's state; `member`: the host stands for that member of the
/// cluster `c` talks to.
pub async fn read_host(c: &Client, member: Option<&str>) -> Result<HostState> {
    let preseed = preseed::current(c).await?;
    let all = c.instances().await?;
    Ok(match member {
        None => HostState {
            preseed,
            instances: all,
            cluster: Vec::new(),
            members: Vec::new(),
        },
        Some(m) => HostState {
            preseed,
            instances: all.iter().filter(|i| i.location == m).cloned().collect(),
            cluster: all,
            members: cluster_members(c).await?,
        },
    })
}

/// The names of the members of the cluster `c` talks to, sorted (empty:
/// the server is no cluster).
pub async fn cluster_members(c: &Client) -> Result<Vec<String>> {
    let cluster: kante_client::kante_api::cluster::Cluster = c.get_json("/1.0/cluster").await?;
    if !cluster.enabled {
        return Ok(Vec::new());
    }
    let listed: Vec<kante_client::kante_api::cluster::ClusterMember> =
        c.get_json("/1.0/cluster/members?recursion=1").await?;
    let mut names: Vec<String> = listed.into_iter().map(|m| m.server_name).collect();
    names.sort();
    Ok(names)
}

/// One change to an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create(Instance),
    /// Keys to set (config and whole devices) and the profiles, live.
    Update {
        name: String,
        config: ConfigMap,
        devices: DevicesMap,
        profiles: Option<Vec<String>>,
        /// `key: old -> new` lines.
        diff: Vec<String>,
    },
    Start(String),
    /// To this host's member from another member of its cluster.
    Move {
        name: String,
        from: String,
        to: String,
    },
    /// Made by this site and no longer in its file (`--prune`).
    Delete(String),
}

/// One host's plan.
#[derive(Debug, Clone)]
pub struct HostPlan {
    pub host: String,
    pub preseed: Vec<preseed::Step>,
    pub changes: Vec<Change>,
    /// Instances already as the file wants them.
    pub unchanged: Vec<String>,
}

impl HostPlan {
    pub fn is_empty(&self) -> bool {
        self.preseed.is_empty() && self.changes.is_empty()
    }

    /// Whether the plan destroys something (asks first).
    pub fn destroys(&self) -> bool {
        self.changes.iter().any(|c| matches!(c, Change::Delete(_)))
            || self
                .preseed
                .iter()
                .any(|s| matches!(s, preseed::Step::DeletePool(_)))
    }

    /// The diff, one line per change (`+` create, `~` change, `-` delete).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .preseed
            .iter()
            .map(|s| format!("~ {}", preseed::describe(s)))
            .collect();
        for c in &self.changes {
            match c {
                Change::Create(i) => out.push(format!(
                    "+ instance {} (image {}{})",
                    i.name,
                    i.image,
                    i.profiles
                        .as_ref()
                        .map(|p| format!(", profiles {}", p.join(",")))
                        .unwrap_or_default()
                )),
                Change::Update { name, diff, .. } => {
                    out.push(format!("~ instance {name}"));
                    out.extend(diff.iter().map(|d| format!("    {d}")));
                }
                Change::Start(n) => out.push(format!("~ instance {n}: start")),
                Change::Move { name, from, to } => out.push(format!(
                    "~ instance {name}: move from member {from} to {to} (stopped first if running, then started again)"
                )),
                Change::Delete(n) => out.push(format!("- instance {n} (no longer in the site)")),
            }
        }
        out
    }
}

fn shown(v: Option<&String>) -> String {
    v.map_or_else(|| "(unset)".into(), |v| format!("{v:?}"))
}

/// The plan of `host`; `others` are the instance names on the site's
/// other hosts (a name placed here but living there is refused).
pub fn plan_host(
    site: &Site,
    host: &str,
    state: &HostState,
    others: &BTreeMap<String, String>,
    prune: bool,
) -> Result<HostPlan> {
    let seed = site
        .preseeds
        .get(host)
        .ok_or_else(|| anyhow::anyhow!("{host:?} is no host of the site"))?;
    if let Some(m) = site.members.get(host) {
        if state.members.is_empty() {
            bail!("host {host} stands for cluster member {m:?}, but its remote is not a cluster");
        }
        if !state.members.contains(m) {
            bail!(
                "host {host} stands for cluster member {m:?}, which its cluster does not have (members: {})",
                state.members.join(", ")
            );
        }
    }
    let preseed = if site.applies_preseed(host) {
        preseed::plan(seed, &state.preseed).map_err(|e| anyhow::anyhow!("host {host}: {e}"))?
    } else {
        Vec::new()
    };
    let defined: Vec<&str> = state
        .preseed
        .profiles
        .iter()
        .map(|p| p.name.as_str())
        .chain(seed.profiles.iter().map(|p| p.name.as_str()))
        .collect();
    let mut changes = Vec::new();
    let mut unchanged = Vec::new();
    for want in site.instances.iter().filter(|i| i.host == host) {
        for p in want.profiles.iter().flatten() {
            if !defined.contains(&p.as_str()) {
                bail!(
                    "line {}: instance {} uses profile {p:?}, which neither the site nor host {host} defines",
                    want.line,
                    want.name
                );
            }
        }
        for (dev, keys) in &want.devices {
            let parent = keys.get("network").or_else(|| keys.get("parent"));
            let Some(parent) =
                parent.filter(|_| keys.get("type").map(String::as_str) == Some("nic"))
            else {
                continue;
            };
            let known = state.preseed.networks.iter().any(|n| &n.name == parent)
                || seed.networks.iter().any(|n| &n.name == parent);
            if !known {
                bail!(
                    "line {}: instance {} device {dev} uses network {parent:?}, which neither the site nor host {host} has",
                    want.line,
                    want.name
                );
            }
        }
        if let Some(other) = others
            .get(&want.name)
            .filter(|o| !site.same_cluster(o, host))
        {
            bail!(
                "line {}: instance {} is placed on {host} but exists on {other}: move it there first (kante move) or delete it",
                want.line,
                want.name
            );
        }
        let member = site.members.get(host);
        let here = state.instances.iter().find(|h| h.name == want.name);
        let elsewhere = || {
            let m = member?;
            state
                .cluster
                .iter()
                .find(|h| h.name == want.name && &h.location != m)
                .map(|h| (m, h))
        };
        let have = match (here, elsewhere()) {
            (Some(h), _) => h,
            (None, Some((to, h))) => {
                changes.push(Change::Move {
                    name: want.name.clone(),
                    from: h.location.clone(),
                    to: to.clone(),
                });
                h
            }
            (None, None) => {
                changes.push(Change::Create(want.clone()));
                continue;
            }
        };
        let moved = here.is_none();
        let mut diff = Vec::new();
        let mut config = ConfigMap::new();
        for (k, v) in &want.config {
            if have.config.get(k) != Some(v) {
                diff.push(format!(
                    "config {k}: {} -> {v:?}",
                    shown(have.config.get(k))
                ));
                config.insert(k.clone(), v.clone());
            }
        }
        let mut devices = DevicesMap::new();
        for (d, keys) in &want.devices {
            if have.devices.get(d) != Some(keys) {
                let was = if have.devices.contains_key(d) {
                    "changed"
                } else {
                    "added"
                };
                diff.push(format!("device {d}: {was}"));
                devices.insert(d.clone(), keys.clone());
            }
        }
        let profiles = want.profiles.clone().filter(|p| *p != have.profiles);
        if let Some(p) = &profiles {
            diff.push(format!(
                "profiles: {} -> {}",
                have.profiles.join(","),
                p.join(",")
            ));
        }
        // A move starts again what ran; what did not and should is started.
        let start = want.start && have.status != "Running";
        if diff.is_empty() && !start && !moved {
            unchanged.push(want.name.clone());
            continue;
        }
        if !diff.is_empty() {
            changes.push(Change::Update {
                name: want.name.clone(),
                config,
                devices,
                profiles,
                diff,
            });
        }
        if start {
            changes.push(Change::Start(want.name.clone()));
        }
    }
    if prune {
        for have in &state.instances {
            let ours = have.config.get(SITE_KEY) == Some(&site.name);
            let wanted = site.instances.iter().any(|i| {
                i.name == have.name && (i.host == host || site.same_cluster(&i.host, host))
            });
            if ours && !wanted {
                changes.push(Change::Delete(have.name.clone()));
            }
        }
    }
    Ok(HostPlan {
        host: host.to_string(),
        preseed,
        changes,
        unchanged,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
