//! `kante site export`: the current state of hosts written as a site file
//! (the way to start from an existing LXD or Kante estate). Per host: its
//! storage pools, managed networks and profiles, and its instances (image
//! by an alias of the host when one points at the instance's base image,
//! else the fingerprint; config without `volatile.*` and Kante's own
//! `user.kante.*` keys; local devices; profiles; started when running).
//! A cluster exported on its own is written as its members: one host per
//! member (`member:`, all through the cluster's remote), the cluster's
//! pools, networks and profiles at the top of the file (they are one set
//! for all members), and each instance on the member it is located on.
//! Among other remotes a cluster stays one host (its instances then go
//! where its scheduler puts them). Applying the export to the same hosts
//! changes nothing.

use serde_json::{json, Map, Value};

use kante_client::kante_api::instance::Instance as Have;

use crate::plan::HostState;

/// One host to export: its name in the site, its remote, what it has, its
/// image aliases (name → fingerprint), and, for a cluster, its members'
/// names (empty: the remote is no cluster).
pub struct Exported<'a> {
    pub host: &'a str,
    pub remote: &'a str,
    pub state: &'a HostState,
    pub aliases: &'a [(String, String)],
    pub members: &'a [String],
}

/// A host's pools, managed networks and profiles, as the file's parts.
fn parts(h: &Exported<'_>) -> Map<String, Value> {
    let cur = &h.state.preseed;
    let pools: Vec<Value> = cur
        .pools
        .iter()
        .map(|p| json!({"name": p.name, "driver": p.driver, "description": p.description, "config": p.config}))
        .collect();
    let networks: Vec<Value> = cur
        .networks
        .iter()
        .filter(|n| n.managed)
        .map(|n| json!({"name": n.name, "type": n.kind, "description": n.description, "config": n.config}))
        .collect();
    let profiles: Vec<Value> = cur
        .profiles
        .iter()
        .map(|p| json!({"name": p.name, "description": p.description, "config": p.config, "devices": p.devices}))
        .collect();
    let mut m = Map::new();
    m.insert("storage_pools".into(), Value::Array(pools));
    m.insert("networks".into(), Value::Array(networks));
    m.insert("profiles".into(), Value::Array(profiles));
    m
}

/// The site file (YAML) of `hosts`, named `site`.
pub fn export(site: &str, hosts: &[Exported<'_>]) -> anyhow::Result<String> {
    let mut doc = Map::new();
    doc.insert("site".into(), json!(site));
    let mut host_map = Map::new();
    let mut instances = Vec::new();
    match hosts {
        // A cluster alone: its members are the hosts.
        [h] if !h.members.is_empty() => {
            doc.extend(parts(h));
            for m in h.members {
                host_map.insert(m.clone(), json!({"remote": h.remote, "member": m}));
            }
            instances = exported_instances(h, |i| i.location.clone());
        }
        _ => {
            for h in hosts {
                let mut part = parts(h);
                part.insert("remote".into(), json!(h.remote));
                host_map.insert(h.host.to_string(), Value::Object(part));
                instances.extend(exported_instances(h, |_| h.host.to_string()));
            }
        }
    }
    doc.insert("hosts".into(), Value::Object(host_map));
    doc.insert("instances".into(), Value::Array(instances));
    Ok(serde_yaml::to_string(&Value::Object(doc))?)
}

/// `h`'s instances as the file's entries, by name, each on the host
/// `host_of` names.
fn exported_instances(h: &Exported<'_>, host_of: impl Fn(&Have) -> String) -> Vec<Value> {
    let mut instances = Vec::new();
    let mut mine: Vec<_> = h.state.instances.iter().collect();
    mine.sort_by(|a, b| a.name.cmp(&b.name));
    for i in mine {
        let base = i
            .config
            .get("volatile.base_image")
            .cloned()
            .unwrap_or_default();
        let image = h
            .aliases
            .iter()
            .filter(|(_, fp)| *fp == base)
            .map(|(a, _)| a.clone())
            .min_by_key(|a| (a.len(), a.clone()))
            .unwrap_or(base);
        let config: Map<String, Value> = i
            .config
            .iter()
            .filter(|(k, _)| !k.starts_with("volatile.") && !k.starts_with("user.kante."))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut inst = json!({
            "name": i.name,
            "host": host_of(i),
            "image": image,
            "profiles": i.profiles,
        });
        if !config.is_empty() {
            inst["config"] = Value::Object(config);
        }
        if !i.devices.is_empty() {
            inst["devices"] = json!(i.devices);
        }
        if i.status != "Running" {
            inst["start"] = json!(false);
        }
        instances.push(inst);
    }
    instances
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
