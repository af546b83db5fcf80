//! `kante network …`: managed networks and host interfaces.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{bail, Result};
use kante_api::instance::Instance;
use kante_api::network::{Network, NetworkPut, NetworkState, NetworksPost, OverlayView};
use kante_api::ConfigMap;
use kante_client::Client;
use serde::Serialize;

use super::config::parse_set_args;
use super::{edit, parse_kv, print_list, to_yaml};
use crate::cli::NetworkCmd;
use crate::format::size_decimal;
use crate::table::Row;

/// A network in lxc's YAML field order (config first, as `lxc network show`).
#[derive(Serialize)]
struct Shown<'a> {
    config: &'a ConfigMap,
    description: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    used_by: &'a [String],
    managed: bool,
    status: &'a str,
    locations: &'a [String],
    /// An overlay's members and tunnels (Kante's, after lxc's fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    overlay: Option<&'a OverlayView>,
}

fn shown(n: &Network) -> Shown<'_> {
    Shown {
        config: &n.config,
        description: &n.description,
        name: &n.name,
        kind: &n.kind,
        used_by: &n.used_by,
        managed: n.managed,
        status: &n.status,
        locations: &n.locations,
        overlay: n.overlay.as_ref(),
    }
}

fn yes_no(b: bool) -> String {
    if b { "YES" } else { "NO" }.into()
}

pub fn list_rows(networks: &[Network]) -> Vec<Row> {
    let mut sorted: Vec<&Network> = networks.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let cfg = |n: &Network, k: &str| n.config.get(k).cloned().unwrap_or_default();
    sorted
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.kind.clone(),
                yes_no(n.managed),
                cfg(n, "ipv4.address"),
                cfg(n, "ipv6.address"),
                n.description.clone(),
                n.used_by.len().to_string(),
                n.status.to_uppercase(),
            ]
        })
        .collect()
}

/// The text of `lxc network info`.
pub fn render_info(name: &str, s: &NetworkState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Name: {name}");
    let _ = writeln!(out, "MAC address: {}", s.hwaddr);
    let _ = writeln!(out, "MTU: {}", s.mtu);
    let _ = writeln!(out, "State: {}", s.state);
    let _ = writeln!(out, "Type: {}", s.kind);
    if !s.addresses.is_empty() {
        out.push_str("\nIP addresses:\n");
        for a in &s.addresses {
            let _ = writeln!(
                out,
                "  {}\t{}/{} ({})",
                a.family, a.address, a.netmask, a.scope
            );
        }
    }
    out.push_str("\nNetwork usage:\n");
    let c = &s.counters;
    let _ = writeln!(out, "  Bytes received: {}", size_decimal(c.bytes_received));
    let _ = writeln!(out, "  Bytes sent: {}", size_decimal(c.bytes_sent));
    let _ = writeln!(out, "  Packets received: {}", c.packets_received);
    let _ = writeln!(out, "  Packets sent: {}", c.packets_sent);
    if let Some(o) = &s.overlay {
        render_overlay(&mut out, o);
    }
    out
}

/// An overlay's tunnels as `network info` shows them on one member.
fn render_overlay(out: &mut String, o: &OverlayView) {
    let _ = writeln!(
        out,
        "\nOverlay (VNI {}, encryption {}, UDP port {}, MTU {}, seen from {}):",
        o.vni, o.encryption, o.port, o.mtu, o.seen_from
    );
    for m in &o.members {
        let mut line = format!("  {} underlay {}", m.name, m.underlay);
        if !m.inner.is_empty() {
            let _ = write!(line, " inner {}", m.inner);
        }
        if !m.online {
            line.push_str(" (offline)");
        }
        if let Some(p) = &m.peer {
            let hs = p
                .handshake_age
                .map_or("never".to_string(), |a| format!("{a}s ago"));
            let _ = write!(
                line,
                " handshake {hs} rx {} tx {}",
                size_decimal(p.rx_bytes as i64),
                size_decimal(p.tx_bytes as i64)
            );
        }
        let _ = writeln!(out, "{line}");
    }
}

/// The nic device `network attach` adds: managed networks by name (so the
/// NIC inherits the network's settings), host interfaces by parent.
pub fn attach_device(n: &Network, ifname: Option<&str>) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    d.insert("type".to_string(), "nic".to_string());
    if n.managed {
        d.insert("network".into(), n.name.clone());
    } else {
        let nictype = if n.kind == "bridge" {
            "bridged"
        } else {
            "macvlan"
        };
        d.insert("nictype".into(), nictype.into());
        d.insert("parent".into(), n.name.clone());
    }
    if let Some(i) = ifname {
        d.insert("name".into(), i.to_string());
    }
    d
}

/// The device `network detach` removes: the named one, or the only nic
/// using the network (lxc's rules and messages).
pub fn detach_device(inst: &Instance, network: &str, device: Option<&str>) -> Result<String> {
    let uses = |d: &BTreeMap<String, String>| {
        d.get("type").map(String::as_str) == Some("nic")
            && (d.get("network").map(String::as_str) == Some(network)
                || d.get("parent").map(String::as_str) == Some(network))
    };
    let name = match device {
        Some(n) => n.to_string(),
        None => {
            let mut found = inst.devices.iter().filter(|(_, d)| uses(d));
            let Some((name, _)) = found.next() else {
                bail!("No device found for this network");
            };
            if found.next().is_some() {
                bail!("More than one device matches, specify the device name");
            }
            name.clone()
        }
    };
    let Some(d) = inst.devices.get(&name) else {
        bail!("The specified device doesn't exist");
    };
    if !uses(d) {
        bail!("The specified device doesn't match the network");
    }
    Ok(name)
}

async fn managed(c: &Client, name: &str) -> Result<(Network, Option<String>)> {
    let (n, etag) = c.network_with_etag(name).await?;
    if !n.managed {
        bail!("Only managed networks can be modified");
    }
    Ok((n, etag))
}

pub async fn run(c: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create {
            name,
            config,
            kind,
            description,
            target,
        } => {
            let config = config
                .iter()
                .map(|kv| parse_kv(kv))
                .collect::<Result<_>>()?;
            let post = NetworksPost {
                name: name.clone(),
                kind: kind.unwrap_or_default(),
                description: description.unwrap_or_default(),
                config,
            };
            c.create_network_at(&post, target.as_deref()).await?;
            match target {
                Some(t) => println!("Network {name} pending on member {t}"),
                None => println!("Network {name} created"),
            }
        }
        NetworkCmd::List { format, .. } => {
            let list = c.networks().await?;
            let header = [
                "NAME",
                "TYPE",
                "MANAGED",
                "IPV4",
                "IPV6",
                "DESCRIPTION",
                "USED BY",
                "STATE",
            ];
            print_list(format, &list, &header, || list_rows(&list))?;
        }
        NetworkCmd::Show { name, target } => {
            let n = c.network_at(&name, target.as_deref()).await?;
            print!("{}", to_yaml(&shown(&n))?);
        }
        NetworkCmd::Info { name } => {
            let s = c.network_state(&name).await?;
            print!("{}", render_info(&name, &s));
        }
        NetworkCmd::Leases { name, format } => {
            let leases = c.network_leases(&name).await?;
            let header = ["HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"];
            print_list(format, &leases, &header, || {
                leases
                    .iter()
                    .map(|l| {
                        vec![
                            l.hostname.clone(),
                            l.hwaddr.clone(),
                            l.address.clone(),
                            l.kind.to_uppercase(),
                        ]
                    })
                    .collect()
            })?;
        }
        NetworkCmd::Delete { name } => {
            c.delete_network(&name).await?;
            println!("Network {name} deleted");
        }
        NetworkCmd::Get { name, key, target } => {
            let n = c.network_at(&name, target.as_deref()).await?;
            println!("{}", n.config.get(&key).map(String::as_str).unwrap_or(""));
        }
        NetworkCmd::Set { name, args, target } => {
            managed(c, &name).await?;
            let patch = NetworkPut {
                description: String::new(),
                config: parse_set_args(&args)?.into_iter().collect(),
            };
            c.patch_network_at(&name, &patch, target.as_deref()).await?;
        }
        NetworkCmd::Unset { name, keys, target } => {
            managed(c, &name).await?;
            let n = c.network_at(&name, target.as_deref()).await?;
            let mut config = ConfigMap::new();
            for k in keys {
                if !n.config.contains_key(&k) {
                    bail!("Key {k} is not set");
                }
                // PATCH removes keys sent with an empty value.
                config.insert(k, String::new());
            }
            let patch = NetworkPut {
                description: String::new(),
                config,
            };
            c.patch_network_at(&name, &patch, target.as_deref()).await?;
        }
        NetworkCmd::Edit { name } => {
            let (n, etag) = managed(c, &name).await?;
            let current = to_yaml(&shown(&n))?;
            edit::edit("network", &current, |new: NetworkPut| {
                let (name, etag) = (name.clone(), etag.clone());
                async move { Ok(c.update_network(&name, &new, etag.as_deref()).await?) }
            })
            .await?;
        }
        NetworkCmd::Rename { name, new_name } => {
            c.rename_network(&name, &new_name).await?;
            println!("Network {name} renamed to {new_name}");
        }
        NetworkCmd::Attach {
            network,
            instance,
            device,
            ifname,
        } => {
            let n = c.network(&network).await?;
            let dev_name = device.unwrap_or_else(|| network.clone());
            let inst = c.instance(&instance).await?;
            if inst.devices.contains_key(&dev_name) {
                bail!("The device already exists");
            }
            let dev = attach_device(&n, ifname.as_deref());
            // PATCH merges devices; ephemeral is sent back because the
            // daemon's PATCH treats an absent value as false.
            let patch = serde_json::json!({
                "devices": { dev_name: dev },
                "ephemeral": inst.ephemeral,
            });
            c.patch_instance(&instance, &patch).await?;
        }
        NetworkCmd::Detach {
            network,
            instance,
            device,
        } => {
            let (inst, etag) = c.instance_with_etag(&instance).await?;
            let dev = detach_device(&inst, &network, device.as_deref())?;
            let mut put = super::config::writable(&inst, false);
            put.devices.remove(&dev);
            c.update_instance(&instance, &put, etag.as_deref()).await?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, kind: &str, managed: bool) -> Network {
        Network {
            name: name.into(),
            kind: kind.into(),
            managed,
            ..Default::default()
        }
    }

    #[test]
    fn list_rows_like_lxc() {
        let mut br = net("kantebr0", "bridge", true);
        br.config
            .insert("ipv4.address".into(), "10.0.3.1/24".into());
        br.status = "Created".into();
        br.used_by = vec!["/1.0/instances/c1".into()];
        let rows = list_rows(&[br, net("lo", "loopback", false)]);
        assert_eq!(
            rows[0],
            vec![
                "kantebr0",
                "bridge",
                "YES",
                "10.0.3.1/24",
                "",
                "",
                "1",
                "CREATED"
            ]
        );
        assert_eq!(rows[1], vec!["lo", "loopback", "NO", "", "", "", "0", ""]);
    }

    #[test]
    fn attach_devices() {
        let d = attach_device(&net("kantebr0", "bridge", true), Some("eth1"));
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"type": "nic", "network": "kantebr0", "name": "eth1"})
        );
        let d = attach_device(&net("br9", "bridge", false), None);
        assert_eq!(d["nictype"], "bridged");
        assert_eq!(d["parent"], "br9");
        assert_eq!(
            attach_device(&net("eth0", "physical", false), None)["nictype"],
            "macvlan"
        );
    }

    #[test]
    fn detach_picks_the_matching_nic() {
        let mut inst: Instance = serde_json::from_value(serde_json::json!({
            "architecture": "x86_64", "config": {}, "ephemeral": false, "profiles": [],
            "stateful": false, "description": "", "created_at": "2026-01-01T00:00:00Z",
            "expanded_config": {}, "expanded_devices": {}, "name": "c1", "status": "Stopped",
            "status_code": 102, "last_used_at": "2026-01-01T00:00:00Z", "location": "none",
            "type": "container", "project": "default",
            "devices": {"eth1": {"type": "nic", "network": "br1"},
                        "data": {"type": "disk", "path": "/x", "source": "/y"}}
        }))
        .unwrap();
        assert_eq!(detach_device(&inst, "br1", None).unwrap(), "eth1");
        assert_eq!(
            detach_device(&inst, "br2", None).unwrap_err().to_string(),
            "No device found for this network"
        );
        assert!(detach_device(&inst, "br1", Some("data")).is_err());
        assert!(detach_device(&inst, "br1", Some("nope")).is_err());
        let dup: BTreeMap<String, String> = [("type", "nic"), ("parent", "br1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        inst.devices.insert("eth2".into(), dup);
        assert!(detach_device(&inst, "br1", None)
            .unwrap_err()
            .to_string()
            .contains("More than one"));
    }

    #[test]
    fn info_like_lxc() {
        let s: NetworkState = serde_json::from_value(serde_json::json!({
            "addresses": [{"family": "inet", "address": "10.0.3.1", "netmask": "24", "scope": "global"}],
            "counters": {"bytes_received": 2130, "bytes_sent": 736, "packets_received": 3, "packets_sent": 21},
            "hwaddr": "00:16:3e:00:00:01", "mtu": 1500, "state": "up", "type": "broadcast"
        }))
        .unwrap();
        let expected = "\
Name: br0
MAC address: 00:16:3e:00:00:01
MTU: 1500
State: up
Type: broadcast

IP addresses:
  inet\t10.0.3.1/24 (global)

Network usage:
  Bytes received: 2.13kB
  Bytes sent: 736B
  Packets received: 3
  Packets sent: 21
";
        assert_eq!(render_info("br0", &s), expected);
    }

    #[test]
    fn show_yaml_round_trips_into_put() {
        let mut n = net("br1", "bridge", true);
        n.config.insert("ipv4.address".into(), "10.1.0.1/24".into());
        n.description = "lab".into();
        let yaml = to_yaml(&shown(&n)).unwrap();
        assert!(
            yaml.starts_with("config:\n  ipv4.address: 10.1.0.1/24\n"),
            "{yaml}"
        );
        let put: NetworkPut = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!((put.description.as_str(), put.config.len()), ("lab", 1));
    }
}
