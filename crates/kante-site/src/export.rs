//! `kante site export`: the current state of hosts written as a site file
//! (the way to start from an existing LXD or Kante estate). Per host: its
//! storage pools, managed networks and profiles, and its instances (image
//! by an alias of the host when one points at the instance's base image,
//! else the fingerprint; config without `volatile.*` and Kante's own
//! `user.kante.*` keys; local devices; profiles; started when running).
//! Applying the export to the same hosts changes nothing.

use serde_json::{json, Map, Value};

use crate::plan::HostState;

/// One host to export: its name in the site, its remote, what it has, and
/// its image aliases (name → fingerprint).
pub struct Exported<'a> {
    pub host: &'a str,
    pub remote: &'a str,
    pub state: &'a HostState,
    pub aliases: &'a [(String, String)],
}

/// The site file (YAML) of `hosts`, named `site`.
pub fn export(site: &str, hosts: &[Exported<'_>]) -> anyhow::Result<String> {
    let mut host_map = Map::new();
    let mut instances = Vec::new();
    for h in hosts {
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
        host_map.insert(
            h.host.to_string(),
            json!({"remote": h.remote, "storage_pools": pools, "networks": networks, "profiles": profiles}),
        );
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
                "host": h.host,
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
    }
    let doc = json!({"site": site, "hosts": host_map, "instances": instances});
    Ok(serde_yaml::to_string(&doc)?)
}
