//! LXD's static tunnels on a managed bridge: `tunnel.NAME.protocol`
//! (`vxlan` or `gre`) with `.local`, `.remote`, `.id`, `.port`, `.ttl`,
//! `.group` and `.interface`, as LXD documents them. Each tunnel is a
//! device `BRIDGE-NAME` (vxlan, or gretap for `gre`) enslaved to the
//! bridge, so the bridge's layer-2 segment reaches the peer host.
//!
//! Defaults are LXD's, so a config written for LXD links to an LXD host
//! too: `id` 1, `ttl` 1, `port` 0 (the kernel's VXLAN port, 8472), and a
//! VXLAN without `local`/`remote` is multicast on `group` (239.0.0.1) over
//! `interface` (the interface of the default IPv4 route). A bridge with
//! tunnels gets an MTU of 1400 unless `bridge.mtu` says less, and more is
//! refused, as in LXD: the encapsulation must fit the underlay's 1500.
//!
//! What was made is recorded in the network's state directory
//! (`tunnels.json`), so a restart keeps live tunnels as they are and a
//! config change replaces only the tunnels it changed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::netlink::NetOps;
use crate::subnet::validate_ifname;
use crate::{ConfigMap, NetworkError, Result};

/// The MTU of a bridge with tunnels when `bridge.mtu` is unset (and the
/// most it may be set to).
pub const TUNNEL_MTU: u32 = 1400;

const KEYS: &[&str] = &[
    "protocol",
    "local",
    "remote",
    "port",
    "group",
    "id",
    "interface",
    "ttl",
];

/// How a tunnel reaches its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Point to point: this host's address and the peer's.
    Unicast { local: IpAddr, remote: IpAddr },
    /// VXLAN multicast: a group over an interface (`None`: the interface
    /// of the default route, looked up when the tunnel is made).
    Multicast {
        group: IpAddr,
        interface: Option<String>,
    },
}

/// One `tunnel.NAME.*` group, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub name: String,
    /// `vxlan` or `gre`.
    pub protocol: String,
    pub endpoint: Endpoint,
    /// VXLAN network identifier.
    pub id: u32,
    /// VXLAN destination UDP port; 0 is the kernel's default.
    pub port: u16,
    pub ttl: u8,
}

/// What `NetOps::create_tunnel` makes: `tunnel` as device `device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRequest {
    pub device: String,
    pub tunnel: Tunnel,
    pub mtu: u32,
}

fn invalid(msg: impl Into<String>) -> NetworkError {
    NetworkError::InvalidConfig(msg.into())
}

/// The device of tunnel `tunnel` on bridge `bridge` (LXD's naming).
pub fn device_name(bridge: &str, tunnel: &str) -> String {
    format!("{bridge}-{tunnel}")
}

/// Whether `key` belongs to a tunnel (and so is checked here).
pub fn is_tunnel_key(key: &str) -> bool {
    key.starts_with("tunnel.")
}

/// The tunnels of bridge `bridge`'s config, every key checked.
pub fn parse(bridge: &str, config: &ConfigMap) -> Result<Vec<Tunnel>> {
    let mut groups: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for (k, v) in config {
        let Some(rest) = k.strip_prefix("tunnel.") else {
            continue;
        };
        let Some((name, key)) = rest.rsplit_once('.') else {
            return Err(invalid(format!("{k:?}: expected tunnel.NAME.KEY")));
        };
        if !KEYS.contains(&key) {
            return Err(invalid(format!(
                "unknown key {k:?} (tunnel keys: {})",
                KEYS.join(", ")
            )));
        }
        groups.entry(name).or_default().insert(key, v.as_str());
    }
    groups
        .into_iter()
        .map(|(name, keys)| parse_one(bridge, name, &keys))
        .collect()
}

fn parse_one(bridge: &str, name: &str, keys: &BTreeMap<&str, &str>) -> Result<Tunnel> {
    let key = |k: &str| format!("tunnel.{name}.{k}");
    let device = device_name(bridge, name);
    let token = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    // Without the bridge's name (a config checked alone) only the name
    // itself can be checked.
    if !token || (!bridge.is_empty() && validate_ifname(&device).is_err()) {
        return Err(invalid(format!(
            "tunnel name {name:?}: its device {device:?} must be a valid interface name of at most 15 characters"
        )));
    }
    let get = |k: &str| keys.get(k).copied().filter(|v| !v.is_empty());
    let addr = |k: &str| -> Result<Option<IpAddr>> {
        get(k)
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| invalid(format!("{} {v:?} is not an IP address", key(k))))
            })
            .transpose()
    };
    let number =
        |k: &str, max: u64, default: u64| -> Result<u64> {
            match get(k) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
                    invalid(format!("{} {v:?}: expected a number up to {max}", key(k)))
                }),
            }
        };
    let protocol = match get("protocol") {
        Some(p @ ("vxlan" | "gre")) => p.to_string(),
        Some(p) => {
            return Err(invalid(format!(
                "{} {p:?}: expected vxlan or gre",
                key("protocol")
            )))
        }
        None => return Err(invalid(format!("{} is required", key("protocol")))),
    };
    let (local, remote) = (addr("local")?, addr("remote")?);
    let group = addr("group")?;
    let endpoint = match (local, remote) {
        (Some(l), Some(r)) => {
            if l.is_ipv4() != r.is_ipv4() {
                return Err(invalid(format!(
                    "{} and {} must be of the same IP family",
                    key("local"),
                    key("remote")
                )));
            }
            if group.is_some() {
                return Err(invalid(format!(
                    "{} is for multicast, without local and remote",
                    key("group")
                )));
            }
            Endpoint::Unicast {
                local: l,
                remote: r,
            }
        }
        (None, None) if protocol == "vxlan" => {
            let group = group.unwrap_or(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 1)));
            if !group.is_multicast() {
                return Err(invalid(format!(
                    "{} {group} is not a multicast address",
                    key("group")
                )));
            }
            let interface = get("interface").map(str::to_string);
            if let Some(i) = &interface {
                validate_ifname(i).map_err(|e| invalid(format!("{}: {e}", key("interface"))))?;
            }
            Endpoint::Multicast { group, interface }
        }
        _ => {
            return Err(invalid(format!(
                "tunnel {name}: {} needs both {} and {}",
                protocol,
                key("local"),
                key("remote")
            )))
        }
    };
    if protocol == "gre" {
        for k in ["port", "group", "id", "interface", "ttl"] {
            if get(k).is_some() {
                return Err(invalid(format!("{} applies to vxlan only", key(k))));
            }
        }
    }
    Ok(Tunnel {
        name: name.to_string(),
        protocol,
        endpoint,
        id: number("id", 16_777_215, 1)? as u32,
        port: number("port", 65_535, 0)? as u16,
        ttl: match number("ttl", 255, 1)? {
            0 => return Err(invalid(format!("{} must be 1 to 255", key("ttl")))),
            t => t as u8,
        },
    })
}

/// The bridge MTU with `tunnels` given `bridge.mtu`: 1400 by default,
/// and a larger value refused.
pub fn bridge_mtu(tunnels: &[Tunnel], asked: Option<u32>) -> Result<Option<u32>> {
    if tunnels.is_empty() {
        return Ok(asked);
    }
    match asked {
        Some(m) if m > TUNNEL_MTU => Err(invalid(format!(
            "bridge.mtu {m}: at most {TUNNEL_MTU} on a bridge with tunnels (the encapsulation must fit a 1500-byte underlay)"
        ))),
        Some(m) => Ok(Some(m)),
        None => Ok(Some(TUNNEL_MTU)),
    }
}

const RECORD: &str = "tunnels";

/// One line per tunnel made: its name, a tab, and its whole description.
fn record_line(t: &Tunnel) -> String {
    format!("{}\t{t:?}", t.name)
}

fn read_record(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join(RECORD))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(n, _)| (n.to_string(), l.to_string()))
        })
        .collect()
}

fn write_record(dir: &Path, tunnels: &[Tunnel]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(NetworkError::io("making the network's state dir"))?;
    let tmp = dir.join(format!("{RECORD}.tmp"));
    let body: String = tunnels.iter().map(|t| record_line(t) + "\n").collect();
    std::fs::write(&tmp, body).map_err(NetworkError::io("writing the tunnel record"))?;
    std::fs::rename(&tmp, dir.join(RECORD)).map_err(NetworkError::io("writing the tunnel record"))
}

/// The interface of the default IPv4 route (multicast tunnels without
/// `interface`), from `/proc/net/route`.
pub fn default_route_interface() -> Result<String> {
    let table = std::fs::read_to_string("/proc/net/route")
        .map_err(NetworkError::io("reading /proc/net/route"))?;
    table
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
        })
        .ok_or_else(|| {
            invalid("a multicast tunnel without tunnel.NAME.interface needs a default route")
        })
}

/// Makes bridge `bridge`'s tunnels what `wanted` says: tunnels that were
/// made and are no longer wanted (or changed) are removed, missing ones
/// are made, enslaved to the bridge and set up. A tunnel that cannot be
/// made is an error, and what this call made is removed again.
pub async fn ensure(
    ops: &dyn NetOps,
    bridge: &str,
    state_dir: &Path,
    wanted: &[Tunnel],
    mtu: u32,
) -> Result<()> {
    let had = read_record(state_dir);
    let lines: Vec<String> = wanted.iter().map(record_line).collect();
    for (name, line) in &had {
        if !lines.contains(line) {
            ops.delete_link(&device_name(bridge, name)).await?;
        }
    }
    let mut made = Vec::new();
    for t in wanted {
        let device = device_name(bridge, &t.name);
        let live = ops.link(&device).await?;
        if had.iter().any(|(_, l)| *l == record_line(t)) && live.is_some() {
            continue;
        }
        if let Some(l) = live {
            let ours = matches!(l.kind.as_deref(), Some("vxlan" | "gretap"));
            if !ours {
                rollback(ops, bridge, &made).await;
                return Err(NetworkError::Exists(format!(
                    "interface {device} (not a tunnel this network made)"
                )));
            }
            ops.delete_link(&device).await?;
        }
        let req = TunnelRequest {
            device: device.clone(),
            tunnel: t.clone(),
            mtu,
        };
        if let Err(e) = ops.create_tunnel(&req).await {
            rollback(ops, bridge, &made).await;
            return Err(e);
        }
        made.push(t.clone());
        let attach = async {
            ops.set_master(&device, Some(bridge)).await?;
            ops.set_up(&device).await
        };
        if let Err(e) = attach.await {
            rollback(ops, bridge, &made).await;
            return Err(e);
        }
    }
    write_record(state_dir, wanted)
}

async fn rollback(ops: &dyn NetOps, bridge: &str, made: &[Tunnel]) {
    for t in made {
        let _ = ops.delete_link(&device_name(bridge, &t.name)).await;
    }
}

/// Removes every tunnel device the record lists (network deletion).
pub async fn remove_all(ops: &dyn NetOps, bridge: &str, state_dir: &Path) -> Result<()> {
    for (name, _) in read_record(state_dir) {
        ops.delete_link(&device_name(bridge, &name)).await?;
    }
    let _ = std::fs::remove_file(state_dir.join(RECORD));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lxd_style_tunnels_parse_with_lxd_defaults() {
        let t = parse(
            "br-demo",
            &cfg(&[
                ("tunnel.site2.protocol", "vxlan"),
                ("tunnel.site2.local", "192.0.2.1"),
                ("tunnel.site2.remote", "192.0.2.2"),
                ("tunnel.site2.id", "42"),
                ("ipv4.address", "none"),
            ]),
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "site2");
        assert_eq!((t[0].id, t[0].port, t[0].ttl), (42, 0, 1));
        assert_eq!(
            t[0].endpoint,
            Endpoint::Unicast {
                local: "192.0.2.1".parse().unwrap(),
                remote: "192.0.2.2".parse().unwrap()
            }
        );
        let m = parse("br0", &cfg(&[("tunnel.m.protocol", "vxlan")])).unwrap();
        assert_eq!(
            m[0].endpoint,
            Endpoint::Multicast {
                group: "239.0.0.1".parse().unwrap(),
                interface: None
            }
        );
        assert_eq!(device_name("br-demo", "site2"), "br-demo-site2");
    }

    #[test]
    fn bad_tunnel_keys_are_refused_with_the_key_named() {
        let bad = |pairs: &[(&str, &str)], want: &str| {
            let e = parse("br0", &cfg(pairs)).unwrap_err().to_string();
            assert!(e.contains(want), "{pairs:?}: {e}");
        };
        bad(
            &[("tunnel.t.remote", "192.0.2.2")],
            "tunnel.t.protocol is required",
        );
        bad(&[("tunnel.t.protocol", "ipip")], "expected vxlan or gre");
        bad(
            &[
                ("tunnel.t.protocol", "vxlan"),
                ("tunnel.t.local", "192.0.2.1"),
                ("tunnel.t.remote", "not-an-ip"),
            ],
            "tunnel.t.remote \"not-an-ip\" is not an IP address",
        );
        bad(
            &[
                ("tunnel.t.protocol", "vxlan"),
                ("tunnel.t.local", "192.0.2.1"),
                ("tunnel.t.remote", "192.0.2.2"),
                ("tunnel.t.port", "70000"),
            ],
            "tunnel.t.port",
        );
        bad(
            &[("tunnel.t.protocol", "vxlan"), ("tunnel.t.id", "16777216")],
            "tunnel.t.id",
        );
        bad(
            &[("tunnel.t.protocol", "vxlan"), ("tunnel.t.ttl", "0")],
            "tunnel.t.ttl",
        );
        bad(
            &[
                ("tunnel.t.protocol", "vxlan"),
                ("tunnel.t.local", "192.0.2.1"),
                ("tunnel.t.remote", "2001:db8::2"),
            ],
            "same IP family",
        );
        bad(
            &[
                ("tunnel.t.protocol", "gre"),
                ("tunnel.t.local", "192.0.2.1"),
            ],
            "needs both",
        );
        bad(
            &[
                ("tunnel.t.protocol", "vxlan"),
                ("tunnel.t.group", "10.0.0.1"),
            ],
            "not a multicast address",
        );
        bad(
            &[("tunnel.t.protocol", "vxlan"), ("tunnel.t.mtu", "1")],
            "unknown key",
        );
        bad(
            &[("tunnel.averylongname.protocol", "vxlan")],
            "at most 15 characters",
        );
    }

    #[test]
    fn tunnels_bound_the_bridge_mtu() {
        let t = parse("br0", &cfg(&[("tunnel.m.protocol", "vxlan")])).unwrap();
        assert_eq!(bridge_mtu(&t, None).unwrap(), Some(1400));
        assert_eq!(bridge_mtu(&t, Some(1300)).unwrap(), Some(1300));
        assert!(bridge_mtu(&t, Some(1500)).is_err());
        assert_eq!(bridge_mtu(&[], Some(9000)).unwrap(), Some(9000));
        assert_eq!(bridge_mtu(&[], None).unwrap(), None);
    }
}
