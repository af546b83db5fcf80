//! The site file: a superset of LXD's preseed (its `config`, `networks`,
//! `storage_pools` and `profiles` at the top apply to every host, so a
//! preseed is a one-host site), plus `hosts` (each a remote, with parts of
//! its own), `groups` of hosts, `instances` placed on hosts or groups
//! (with `count` and a `{n}` in the name for replicas, per-instance
//! `vars` templated into config and devices), and ordered post-boot
//! `steps` that run a command in instances once they are ready and may
//! capture its output for later steps. [`Site::parse`] reads it and checks
//! everything that can be checked without the hosts (unknown keys, names,
//! references, duplicate names and MACs, variables used before they are
//! captured), each error naming the file's line where it can.
//!
//! A cluster is a host like any other (its remote: any member): what is
//! placed on it goes where the cluster's scheduler puts it, spread by
//! `anti_affinity`. Hosts may also stand for the members of one cluster
//! (`member:`, all reached through one remote): what is placed on such a
//! host is made on that member (`?target=`), and the cluster's pools,
//! networks and profiles (one set for all its members) are the site's
//! top-level ones, so such a host has none of its own.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use kante_client::kante_api::network::NetworksPost;
use kante_client::kante_api::storage::StoragePoolsPost;
use kante_client::kante_api::{ConfigMap, DevicesMap};
use kante_client::ProfilesPost;
use serde::Deserialize;

use crate::preseed::Preseed;
use crate::template::{render, render_map, variables};

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    /// The site's name: instances `apply` makes carry it in
    /// `user.kante.site`, which `--prune` goes by.
    #[serde(default)]
    site: String,
    #[serde(
        default,
        deserialize_with = "kante_client::kante_api::serde_util::string_map"
    )]
    config: ConfigMap,
    #[serde(default)]
    networks: Vec<NetworksPost>,
    #[serde(default)]
    storage_pools: Vec<StoragePoolsPost>,
    #[serde(default)]
    profiles: Vec<ProfilesPost>,
    #[serde(default)]
    projects: Option<serde_json::Value>,
    #[serde(default)]
    cluster: Option<serde_json::Value>,
    #[serde(default)]
    hosts: BTreeMap<String, HostSpec>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    instances: Vec<InstanceSpec>,
    #[serde(default)]
    steps: Vec<StepSpec>,
}

/// One host: the remote it is reached by (its name by default) and its
/// own preseed parts, merged over the site-wide ones by name.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    #[serde(default)]
    pub remote: Option<String>,
    /// The cluster member this host stands for (its remote is the cluster).
    #[serde(default)]
    pub member: Option<String>,
    #[serde(
        default,
        deserialize_with = "kante_client::kante_api::serde_util::string_map"
    )]
    pub config: ConfigMap,
    #[serde(default)]
    pub networks: Vec<NetworksPost>,
    #[serde(default)]
    pub storage_pools: Vec<StoragePoolsPost>,
    #[serde(default)]
    pub profiles: Vec<ProfilesPost>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceSpec {
    name: String,
    #[serde(default)]
    count: Option<u32>,
    /// A host or a group (replicas are spread over a group's hosts in
    /// turn); a site of one host needs none.
    #[serde(default)]
    host: Option<String>,
    image: String,
    #[serde(default)]
    profiles: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "kante_client::kante_api::serde_util::string_map"
    )]
    config: ConfigMap,
    #[serde(default)]
    devices: DevicesMap,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// Shorthands of `cloud-init.user-data` and `cloud-init.network-config`.
    #[serde(default)]
    user_data: Option<String>,
    #[serde(default)]
    network_config: Option<String>,
    /// On a cluster: members already holding an instance with this tag
    /// are avoided (`placement.anti-affinity`).
    #[serde(default)]
    anti_affinity: Option<String>,
    #[serde(default = "yes")]
    start: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    name: String,
    /// An instance or a list of them.
    on: OneOrMany,
    run: String,
    /// `running` (the default), `cloud-init`, `systemd` or `port:N`.
    #[serde(default)]
    ready: Option<String>,
    #[serde(default)]
    capture: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// An instance as the site wants it, templated and placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    pub host: String,
    pub image: String,
    pub profiles: Option<Vec<String>>,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    pub start: bool,
    /// Where the file defines it (1-based), for messages.
    pub line: usize,
}

/// When a step's instance counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    Running,
    CloudInit,
    Systemd,
    Port(u16),
}

/// A post-boot step, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub on: Vec<String>,
    pub run: String,
    pub ready: Ready,
    pub capture: Option<String>,
    pub timeout: u64,
}

/// A site read and checked.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    /// Host name → its remote.
    pub hosts: BTreeMap<String, String>,
    /// Host name → the cluster member it stands for (`member:`).
    pub members: BTreeMap<String, String>,
    /// Host name → its preseed (site-wide parts merged with its own).
    pub preseeds: BTreeMap<String, Preseed>,
    pub instances: Vec<Instance>,
    pub steps: Vec<Step>,
    /// The hosts a run plans (`apply --target`); all when empty.
    pub targets: BTreeSet<String>,
}

/// The 1-based line of the first line of `text` holding `needle` (0: none).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

/// The file's YAML. YAML's merge keys (`<<: *anchor`, for instances that
/// share most of their keys) are applied first; an error then names the
/// line of the key it is about, else the parser's own location.
fn read(file: &str, text: &str) -> Result<SiteFile> {
    let located = |e: serde_yaml::Error| match e.location() {
        Some(l) => anyhow::anyhow!("{file}:{}: {e}", l.line()),
        None => {
            let msg = e.to_string();
            let key = msg.split('`').nth(1).unwrap_or_default();
            match line_of(text, &format!("{key}:")) {
                0 => anyhow::anyhow!("{file}: {msg}"),
                n => anyhow::anyhow!("{file}:{n}: {msg}"),
            }
        }
    };
    if !text.contains("<<:") {
        return serde_yaml::from_str(text).map_err(located);
    }
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(located)?;
    value.apply_merge().map_err(located)?;
    serde_yaml::from_value(value).map_err(located)
}

/// Merges `own` over `all` by `name`.
fn merged<T: Clone>(all: &[T], own: &[T], name: impl Fn(&T) -> &str) -> Vec<T> {
    let mut out: Vec<T> = all
        .iter()
        .filter(|a| !own.iter().any(|o| name(o) == name(a)))
        .cloned()
        .collect();
    out.extend(own.iter().cloned());
    out
}

impl Site {
    /// Reads a site file (`file` names it in errors); `default_host` is
    /// the one host of a site that names none (a plain preseed).
    pub fn parse(file: &str, text: &str, default_host: &str) -> Result<Site> {
        let raw = read(file, text)?;
        let at = |needle: &str| format!("{file}:{}", line_of(text, needle));
        let mut specs = raw.hosts.clone();
        if specs.is_empty() {
            specs.insert(default_host.to_string(), HostSpec::default());
        }
        for (g, members) in &raw.groups {
            if specs.contains_key(g) {
                bail!("{}: group {g:?} has the name of a host", at(g));
            }
            for m in members {
                if !specs.contains_key(m) {
                    bail!(
                        "{}: group {g:?} names {m:?}, which is not a host of the site",
                        at(g)
                    );
                }
            }
        }
        let members = members(&specs, &at)?;
        let mut hosts = BTreeMap::new();
        let mut preseeds = BTreeMap::new();
        for (name, h) in &specs {
            hosts.insert(
                name.clone(),
                h.remote.clone().unwrap_or_else(|| name.clone()),
            );
            preseeds.insert(
                name.clone(),
                Preseed {
                    config: raw
                        .config
                        .iter()
                        .chain(&h.config)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    networks: merged(&raw.networks, &h.networks, |n| &n.name),
                    storage_pools: merged(&raw.storage_pools, &h.storage_pools, |p| &p.name),
                    profiles: merged(&raw.profiles, &h.profiles, |p| &p.name),
                    projects: raw.projects.clone(),
                    cluster: raw.cluster.clone(),
                },
            );
        }
        let instances = expand(&raw, &specs, &at)?;
        let steps = steps(&raw, &instances, &at)?;
        Ok(Site {
            name: if raw.site.is_empty() {
                "site".into()
            } else {
                raw.site
            },
            hosts,
            members,
            preseeds,
            instances,
            steps,
            targets: BTreeSet::new(),
        })
    }

    /// Limits runs to `hosts` (`apply --target`): a cluster's shared
    /// preseed part is then planned by the first of its member hosts
    /// among them. A name the site lacks is refused.
    pub fn target(&mut self, hosts: &[String]) -> Result<()> {
        for h in hosts {
            if !self.hosts.contains_key(h) {
                bail!("--target {h}: the site has no host {h:?}");
            }
        }
        self.targets = hosts.iter().cloned().collect();
        Ok(())
    }

    /// Whether a run plans `host` (every host unless [`Site::target`] limited it).
    pub fn targeted(&self, host: &str) -> bool {
        self.targets.is_empty() || self.targets.contains(host)
    }

    /// Whether `host` applies its preseed part: every host but the
    /// members of a cluster after the first (by name, among the hosts
    /// this run plans), which share it.
    pub fn applies_preseed(&self, host: &str) -> bool {
        let Some(remote) = self.hosts.get(host) else {
            return false;
        };
        !self.members.contains_key(host)
            || self
                .members
                .keys()
                .find(|h| self.hosts.get(*h) == Some(remote) && self.targeted(h))
                .is_some_and(|first| first == host)
    }

    /// Whether hosts `a` and `b` are members of one cluster.
    pub fn same_cluster(&self, a: &str, b: &str) -> bool {
        self.members.contains_key(a)
            && self.members.contains_key(b)
            && self.hosts.get(a) == self.hosts.get(b)
    }
}

/// The hosts that stand for cluster members, checked: such a host has no
/// pools, networks, profiles or config of its own (the cluster's are the
/// site's), no two name one member, and a remote reached by several hosts
/// is a cluster each of them names a member of.
fn members(
    specs: &BTreeMap<String, HostSpec>,
    at: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut by_remote: BTreeMap<String, Vec<(&str, Option<&str>)>> = BTreeMap::new();
    for (name, h) in specs {
        let remote = h.remote.clone().unwrap_or_else(|| name.clone());
        by_remote
            .entry(remote)
            .or_default()
            .push((name.as_str(), h.member.as_deref()));
        let Some(m) = &h.member else { continue };
        if m.is_empty() {
            bail!(
                "{}: host {name:?} names an empty member",
                at(&format!("{name}:"))
            );
        }
        let own = !h.config.is_empty()
            || !h.networks.is_empty()
            || !h.storage_pools.is_empty()
            || !h.profiles.is_empty();
        if own {
            bail!(
                "{}: host {name:?} is member {m:?} of a cluster: its pools, networks, profiles and config are the cluster's, so put them at the top of the file",
                at(&format!("{name}:"))
            );
        }
        out.insert(name.clone(), m.clone());
    }
    for (remote, hosts) in &by_remote {
        if hosts.len() < 2 {
            continue;
        }
        if let Some((h, _)) = hosts.iter().find(|(_, m)| m.is_none()) {
            bail!(
                "{}: hosts {} all reach remote {remote:?}: a cluster's hosts each name the member they stand for (member: NAME)",
                at(&format!("{h}:")),
                hosts.iter().map(|(h, _)| *h).collect::<Vec<_>>().join(", ")
            );
        }
        let mut seen = BTreeMap::new();
        for (h, m) in hosts {
            if let Some(other) = seen.insert(m.unwrap_or_default(), *h) {
                bail!(
                    "{}: hosts {other:?} and {h:?} both stand for member {:?} of {remote:?}",
                    at(&format!("{h}:")),
                    m.unwrap_or_default()
                );
            }
        }
    }
    Ok(out)
}

/// The instances, replicas expanded, placed and templated.
fn expand(
    raw: &SiteFile,
    hosts: &BTreeMap<String, HostSpec>,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<Instance>> {
    let mut out: Vec<Instance> = Vec::new();
    let mut macs: BTreeMap<String, String> = BTreeMap::new();
    for spec in &raw.instances {
        let where_ = at(&format!("name: {}", spec.name));
        let line = where_
            .rsplit(':')
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let targets: Vec<String> = match &spec.host {
            Some(h) if hosts.contains_key(h) => vec![h.clone()],
            Some(g) => match raw.groups.get(g) {
                Some(m) if !m.is_empty() => m.clone(),
                _ => bail!("{where_}: instance {:?} is placed on {g:?}, which is no host or group of the site", spec.name),
            },
            None if hosts.len() == 1 => hosts.keys().cloned().collect(),
            None => bail!("{where_}: instance {:?} needs `host:` (a host or a group): the site has several hosts", spec.name),
        };
        let count = spec.count.unwrap_or(1);
        if spec.count.is_some() && !spec.name.contains("{n}") {
            bail!(
                "{where_}: instance {:?} has a count, so its name needs {{n}} (as web{{n}})",
                spec.name
            );
        }
        for n in 1..=count {
            let host = targets[(n as usize - 1) % targets.len()].clone();
            let name = spec.name.replace("{n}", &n.to_string());
            let mut vars: BTreeMap<String, String> = spec
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.replace("{n}", &n.to_string())))
                .collect();
            vars.insert("name".into(), name.clone());
            vars.insert("host".into(), host.clone());
            vars.insert("n".into(), n.to_string());
            let mut config =
                render_map(&spec.config, &vars).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?;
            if let Some(u) = &spec.user_data {
                config.insert(
                    "cloud-init.user-data".into(),
                    render(u, &vars).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?,
                );
            }
            if let Some(c) = &spec.network_config {
                config.insert(
                    "cloud-init.network-config".into(),
                    render(c, &vars).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?,
                );
            }
            if let Some(tag) = &spec.anti_affinity {
                config.insert(
                    "placement.anti-affinity".into(),
                    render(tag, &vars).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?,
                );
            }
            let mut devices = DevicesMap::new();
            for (dev, keys) in &spec.devices {
                devices.insert(
                    dev.clone(),
                    render_map(keys, &vars).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?,
                );
            }
            if out.iter().any(|i| i.name == name) {
                bail!("{where_}: two instances are called {name:?}");
            }
            let mut own_macs: Vec<String> = devices
                .values()
                .filter_map(|d| d.get("hwaddr").cloned())
                .collect();
            own_macs.extend(
                config
                    .iter()
                    .filter(|(k, _)| k.ends_with(".hwaddr"))
                    .map(|(_, v)| v.clone()),
            );
            for mac in own_macs {
                let mac = mac.to_ascii_lowercase();
                if let Some(other) = macs.insert(mac.clone(), name.clone()) {
                    bail!("{where_}: {name:?} and {other:?} have the same MAC {mac}");
                }
            }
            out.push(Instance {
                name,
                host,
                image: render(&spec.image, &vars).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?,
                profiles: spec.profiles.clone(),
                config,
                devices,
                start: spec.start,
                line,
            });
        }
    }
    Ok(out)
}

/// The steps, checked: known instances, a readiness that parses, and
/// every `{{VAR}}` captured by an earlier step (or `ip:INSTANCE`).
fn steps(raw: &SiteFile, instances: &[Instance], at: &dyn Fn(&str) -> String) -> Result<Vec<Step>> {
    let mut captured: BTreeSet<String> = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for s in &raw.steps {
        let where_ = at(&format!("name: {}", s.name));
        if !names.insert(s.name.clone()) {
            bail!("{where_}: two steps are called {:?}", s.name);
        }
        let on = match &s.on {
            OneOrMany::One(o) => vec![o.clone()],
            OneOrMany::Many(v) => v.clone(),
        };
        if on.is_empty() {
            bail!("{where_}: step {:?} runs on no instance", s.name);
        }
        for o in &on {
            if !instances.iter().any(|i| &i.name == o) {
                bail!(
                    "{where_}: step {:?} runs on {o:?}, which is no instance of the site",
                    s.name
                );
            }
        }
        for v in variables(&s.run) {
            let known = captured.contains(&v)
                || v.strip_prefix("ip:")
                    .is_some_and(|i| instances.iter().any(|x| x.name == i));
            if !known {
                bail!("{where_}: step {:?} uses {{{{{v}}}}}, which no earlier step captures (steps run in file order)", s.name);
            }
        }
        let ready = match s.ready.as_deref().unwrap_or("running") {
            "running" => Ready::Running,
            "cloud-init" => Ready::CloudInit,
            "systemd" => Ready::Systemd,
            p => match p.strip_prefix("port:").and_then(|n| n.parse().ok()) {
                Some(port) => Ready::Port(port),
                None => bail!("{where_}: step {:?}: ready must be running, cloud-init, systemd or port:N, not {p:?}", s.name),
            },
        };
        if let Some(c) = &s.capture {
            if c.is_empty()
                || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || c.starts_with("ip") && c.contains(':')
            {
                bail!(
                    "{where_}: step {:?} captures into {c:?}: use letters, digits and _",
                    s.name
                );
            }
            if on.len() != 1 {
                bail!(
                    "{where_}: step {:?} captures from several instances: name one",
                    s.name
                );
            }
            captured.insert(c.clone());
        }
        out.push(Step {
            name: s.name.clone(),
            on,
            run: s.run.clone(),
            ready,
            capture: s.capture.clone(),
            timeout: s.timeout.unwrap_or(600),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
