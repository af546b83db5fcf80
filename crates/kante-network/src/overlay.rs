//! Cluster overlay networks (`overlay`): one layer-2 segment stretched over
//! every cluster member by VXLAN, with head-end replication instead of
//! multicast.
//!
//! On each member an overlay is a Linux bridge named after the network
//! (what instances' NICs attach to, made by the `bridge` driver with its
//! dnsmasq and nftables) and a VXLAN device `kov<VNI>` enslaved to it:
//! the network's VNI, UDP port 4789, `nolearning`, `local` the member's
//! underlay address. Its forwarding database holds one all-zero entry per
//! *other* member's underlay address (flood and unknown unicast go to
//! each of them); the engine keeps those entries from the cluster's
//! membership ([`sync_peers`]). Bridge and VXLAN get the underlay MTU
//! minus the encapsulation's 50 bytes.
//!
//! With `security.encryption=wireguard` the VXLAN runs inside WireGuard
//! between the members ([`crate::overlay_wg`]): `overlay.local` and the
//! peers are then inner addresses on `kwg<VNI>`.
//!
//! Two overlays may share a subnet (not a gateway address): on a member
//! each has its own routing table for the host's side
//! ([`crate::overlay_route`]).
//!
//! The address plan: every member's bridge holds the gateway address, but
//! what concerns the gateway stays local: an nftables `bridge` table drops
//! ARP for or from the gateway address and DHCP on the VXLAN port, so each
//! guest talks to its own member's gateway (DNS, NAT egress through that
//! member's uplink) and DHCP server. Each member's dnsmasq hands out one
//! slice ([`slice_ranges`]) of the DHCP ranges: the slice number is
//! recorded per member in the shared record (`overlay.slice`), so no two
//! members give out the same address. A member numbered [`SLICES`] or
//! more (all slices taken) runs its bridge with DHCP off.
//!
//! Keys: the user's `ipv4.address` (required: the gateway and subnet),
//! `ipv4.nat`, `ipv4.dhcp`, `ipv4.dhcp.ranges`, `dns.domain` and
//! optionally `overlay.vni`; the engine's `overlay.vni` (allocated in
//! shared state when not given), and per member `overlay.slice`,
//! `overlay.local` and `overlay.peers` (the last two computed, never
//! recorded).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crate::dnsmasq::{self, Lease};
use crate::driver::{check_network_name, BridgeDriver, NetworkDriver, NetworkSpec, NetworkStatus};
use crate::netlink::NetOps;
use crate::nft;
use crate::overlay_route;
use crate::overlay_wg::{self, KEY_WG_PEERS, KEY_WG_UNDERLAY};
use crate::subnet::{self, default_dhcp_range, parse_bool, parse_dhcp_ranges, Ipv4Setting};
use crate::{ConfigMap, NetContext, NetworkError, Result};

/// VXLAN's IANA port.
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN over IPv4 adds to a frame (outer IP, UDP, VXLAN, Ethernet).
pub const ENCAP_OVERHEAD: u32 = 50;
/// The smallest overlay MTU accepted (IPv4's minimum datagram size).
pub const MIN_MTU: u32 = 576;
/// How many slices an overlay's DHCP ranges are cut into (the most
/// members that hand out addresses).
pub const SLICES: u32 = 8;
/// The most members an overlay spans: a member's `overlay.slice` is its
/// number in the overlay, below this (an encrypted overlay's inner /24
/// has one host address per number); numbers from [`SLICES`] up hold no
/// DHCP slice (that member's bridge hands out no address: its guests
/// need static ones).
pub const MAX_MEMBERS: u32 = 254;
/// The VNIs allocated automatically: from here up to [`VNI_MAX`].
pub const VNI_MIN: u32 = 4096;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 16_777_215;

/// The overlay's VNI (recorded, global).
pub const KEY_VNI: &str = "overlay.vni";
/// A member's DHCP slice (recorded, per member).
pub const KEY_SLICE: &str = "overlay.slice";
/// This member's underlay address (computed by the engine).
pub const KEY_LOCAL: &str = "overlay.local";
/// The other online members' underlay addresses, comma-separated
/// (computed by the engine).
pub const KEY_PEERS: &str = "overlay.peers";

/// The keys a user may give.
pub const USER_KEYS: &[&str] = &[
    "ipv4.address",
    "ipv4.nat",
    "ipv4.dhcp",
    "ipv4.dhcp.ranges",
    "dns.domain",
    KEY_VNI,
    overlay_wg::KEY_ENCRYPTION,
];

/// What [`NetOps::create_vxlan`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanRequest {
    pub device: String,
    pub vni: u32,
    pub local: IpAddr,
    pub port: u16,
    pub mtu: u32,
}

fn invalid(msg: impl Into<String>) -> NetworkError {
    NetworkError::InvalidConfig(msg.into())
}

/// The VXLAN device of the overlay with `vni`.
pub fn device_name(vni: u32) -> String {
    format!("kov{vni}")
}

/// An overlay's config, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// `None` until the engine allocated one.
    pub vni: Option<u32>,
    pub ipv4: Ipv4Net,
    pub ipv4_nat: bool,
    pub ipv4_dhcp: bool,
    /// The whole overlay's DHCP ranges (every member's slice is cut from them).
    pub dhcp_ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub domain: Option<String>,
    pub slice: Option<u32>,
    pub local: Option<IpAddr>,
    pub peers: Vec<IpAddr>,
}

impl OverlayConfig {
    /// Parses and checks a config (the user's keys and the engine's).
    pub fn parse(config: &ConfigMap) -> Result<OverlayConfig> {
        let engine_keys = [
            KEY_SLICE,
            KEY_LOCAL,
            KEY_PEERS,
            KEY_WG_PEERS,
            KEY_WG_UNDERLAY,
        ];
        for k in config.keys() {
            if !k.starts_with("user.")
                && !USER_KEYS.contains(&k.as_str())
                && !engine_keys.contains(&k.as_str())
            {
                return Err(invalid(format!(
                    "unknown key {k:?} for an overlay network (keys: {})",
                    USER_KEYS.join(", ")
                )));
            }
        }
        overlay_wg::encrypted(config)?;
        let get = |k: &str| config.get(k).map(String::as_str);
        let flag = |k: &str, default: bool| get(k).map_or(Ok(default), |v| parse_bool(k, v));
        let ipv4 = match get("ipv4.address") {
            None => {
                return Err(invalid(
                    "an overlay needs ipv4.address (its gateway and subnet, e.g. 10.0.9.1/24)",
                ))
            }
            Some(v) => match subnet::parse_ipv4_address(v)? {
                Ipv4Setting::Gateway(n) => n,
                _ => {
                    return Err(invalid(format!(
                    "ipv4.address {v:?}: an overlay needs an explicit gateway address and prefix"
                )))
                }
            },
        };
        if ipv4.prefix_len() > 29 {
            return Err(invalid(format!(
                "ipv4.address {ipv4}: an overlay's subnet must be /29 or larger"
            )));
        }
        let number = |k: &str, min: u32, max: u32| -> Result<Option<u32>> {
            get(k)
                .map(|v| {
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or_else(|| invalid(format!("{k} {v:?}: expected {min} to {max}")))
                })
                .transpose()
        };
        let dhcp_ranges = match get("ipv4.dhcp.ranges") {
            Some(r) => parse_dhcp_ranges(r, ipv4)?,
            None => vec![default_dhcp_range(ipv4)],
        };
        if let Some(d) = get("dns.domain") {
            if d.is_empty()
                || !d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
            {
                return Err(invalid(format!(
                    "dns.domain {d:?} is not a DNS domain name"
                )));
            }
        }
        let local = get(KEY_LOCAL)
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| invalid(format!("{KEY_LOCAL} {v:?} is not an IP address")))
            })
            .transpose()?;
        let mut peers = Vec::new();
        for p in get(KEY_PEERS)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let ip: IpAddr = p
                .parse()
                .map_err(|_| invalid(format!("{KEY_PEERS}: {p:?} is not an IP address")))?;
            if !peers.contains(&ip) {
                peers.push(ip);
            }
        }
        Ok(OverlayConfig {
            vni: number(KEY_VNI, 1, VNI_MAX)?,
            ipv4,
            ipv4_nat: flag("ipv4.nat", false)?,
            ipv4_dhcp: flag("ipv4.dhcp", true)?,
            dhcp_ranges,
            domain: get("dns.domain").map(str::to_string),
            slice: number(KEY_SLICE, 0, MAX_MEMBERS - 1)?,
            local,
            peers,
        })
    }

    /// The config of this member's bridge (for the `bridge` driver): the
    /// gateway, NAT, this member's DHCP slice, the MTU, no IPv6.
    fn bridge_config(&self, mtu: u32) -> ConfigMap {
        let mut c = ConfigMap::new();
        c.insert("ipv4.address".into(), self.ipv4.to_string());
        c.insert("ipv4.nat".into(), self.ipv4_nat.to_string());
        c.insert("ipv6.address".into(), "none".into());
        c.insert("bridge.mtu".into(), mtu.to_string());
        if let Some(d) = &self.domain {
            c.insert("dns.domain".into(), d.clone());
        }
        let slice = match (self.ipv4_dhcp, self.slice) {
            (true, Some(s)) => slice_ranges(&self.dhcp_ranges, s, SLICES),
            _ => Vec::new(),
        };
        if slice.is_empty() {
            c.insert("ipv4.dhcp".into(), "false".into());
        } else {
            let text: Vec<String> = slice.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            c.insert("ipv4.dhcp.ranges".into(), text.join(","));
        }
        c
    }
}

/// Slice `slice` of `slices` of `ranges`: the addresses of all ranges in
/// order, cut into `slices` runs as equal as can be (the first ones one
/// longer), as sub-ranges. Empty when the slice holds no address.
pub fn slice_ranges(
    ranges: &[(Ipv4Addr, Ipv4Addr)],
    slice: u32,
    slices: u32,
) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let total: u64 = ranges
        .iter()
        .map(|(a, b)| u64::from(u32::from(*b)) - u64::from(u32::from(*a)) + 1)
        .sum();
    let (n, s) = (u64::from(slices.max(1)), u64::from(slice));
    if s >= n {
        return Vec::new();
    }
    let (base, extra) = (total / n, total % n);
    let start = s * base + s.min(extra);
    let len = base + u64::from(s < extra);
    let (mut from, mut to) = (start, start + len); // offsets [from, to)
    let mut out = Vec::new();
    for (a, b) in ranges {
        let size = u64::from(u32::from(*b)) - u64::from(u32::from(*a)) + 1;
        if from < to && from < size {
            let lo = u32::from(*a) as u64 + from;
            let hi = u32::from(*a) as u64 + to.min(size) - 1;
            out.push((Ipv4Addr::from(lo as u32), Ipv4Addr::from(hi as u32)));
        }
        from = from.saturating_sub(size);
        to = to.saturating_sub(size);
    }
    out
}

/// The nftables `bridge` table that keeps the gateway and DHCP local to
/// each member: ARP naming the gateway's address and DHCP are dropped on
/// the VXLAN port, whichever way they go.
pub fn render_l2_table(table: &str, vxlan: &str, gateway: Ipv4Addr) -> String {
    let mut s =
        format!("table bridge {table}\ndelete table bridge {table}\ntable bridge {table} {{\n");
    s.push_str(&format!(
        "  chain keep_local {{\n    ether type arp arp saddr ip {gateway} drop\n    \
         ether type arp arp daddr ip {gateway} drop\n    \
         ether type ip ip protocol udp udp dport {{ 67, 68 }} drop\n  }}\n"
    ));
    for (chain, hook, dirs) in [
        ("forward", "forward", &["iifname", "oifname"][..]),
        ("input", "input", &["iifname"][..]),
        ("output", "output", &["oifname"][..]),
    ] {
        s.push_str(&format!(
            "  chain {chain} {{\n    type filter hook {hook} priority 0; policy accept;\n"
        ));
        for d in dirs {
            s.push_str(&format!("    {d} \"{vxlan}\" jump keep_local\n"));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

async fn remove_l2_table(table: &str) -> Result<()> {
    let out = nft::nft(&["list", "tables", "bridge"], None).await?;
    if out
        .lines()
        .any(|l| l.trim() == format!("table bridge {table}"))
    {
        nft::nft(&["delete", "table", "bridge", table], None).await?;
    }
    Ok(())
}

/// The MTU of the interface holding `local` (the underlay).
pub(crate) async fn underlay_mtu(ops: &dyn NetOps, local: IpAddr) -> Result<(String, u32)> {
    for l in ops.links().await? {
        if l.loopback {
            continue;
        }
        if ops
            .addresses(&l.name)
            .await?
            .iter()
            .any(|a| a.addr() == local)
        {
            return Ok((l.name, l.mtu));
        }
    }
    Err(invalid(format!(
        "no interface on this member holds its underlay address {local}"
    )))
}

const FDB_RECORD: &str = "fdb";

fn read_fdb(dir: &Path) -> Vec<IpAddr> {
    std::fs::read_to_string(dir.join(FDB_RECORD))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn write_fdb(dir: &Path, peers: &[IpAddr]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(NetworkError::io("making the network's state dir"))?;
    let tmp = dir.join(format!("{FDB_RECORD}.tmp"));
    let body: String = peers.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&tmp, body).map_err(NetworkError::io("writing the FDB record"))?;
    std::fs::rename(&tmp, dir.join(FDB_RECORD)).map_err(NetworkError::io("writing the FDB record"))
}

/// Makes the overlay's FDB hold exactly one all-zero entry per peer in
/// `net`'s `overlay.peers`: entries of peers gone are removed, new ones
/// added (`full`: every wanted entry is appended again, as at start, when
/// the record may not match the kernel). The peers applied are recorded
/// in the state dir. Returns the peers added and removed.
pub async fn sync_peers(
    ctx: &NetContext,
    net: &NetworkSpec,
    full: bool,
) -> Result<(Vec<IpAddr>, Vec<IpAddr>)> {
    let c = OverlayConfig::parse(&net.config)?;
    let vni = c.vni.ok_or_else(|| invalid("the overlay has no VNI yet"))?;
    if overlay_wg::encrypted(&net.config)? {
        if overlay_wg::sync(ctx, net).await? {
            tracing::warn!(network = %net.name, "wireguard-go was not running: restarted");
        }
        if !overlay_wg::peers_known(&net.config) {
            return Ok((Vec::new(), Vec::new()));
        }
    }
    let dev = device_name(vni);
    let had = read_fdb(&net.state_dir);
    let wanted: Vec<IpAddr> = c
        .peers
        .iter()
        .copied()
        .filter(|p| Some(*p) != c.local)
        .collect();
    let mut removed = Vec::new();
    for p in had.iter().filter(|p| !wanted.contains(p)) {
        ctx.ops.fdb_delete(&dev, *p).await?;
        removed.push(*p);
    }
    let mut added = Vec::new();
    for p in wanted.iter().filter(|p| full || !had.contains(p)) {
        ctx.ops.fdb_append(&dev, *p).await?;
        if !had.contains(p) {
            added.push(*p);
        }
    }
    if !added.is_empty() || !removed.is_empty() || full {
        write_fdb(&net.state_dir, &wanted)?;
    }
    Ok((added, removed))
}

/// The `overlay` driver (see the module's doc).
pub struct OverlayDriver {
    pub(crate) ctx: Arc<NetContext>,
}

impl OverlayDriver {
    fn bridge(&self) -> BridgeDriver {
        BridgeDriver {
            ctx: self.ctx.clone(),
        }
    }

    /// The bridge as the `bridge` driver makes it (`mtu` its MTU).
    fn bridge_spec(net: &NetworkSpec, c: &OverlayConfig, mtu: u32) -> NetworkSpec {
        NetworkSpec {
            kind: "bridge".into(),
            config: c.bridge_config(mtu),
            ..net.clone()
        }
    }

    /// Makes (or keeps) the VXLAN device, enslaved and up; `true` if it
    /// was made now.
    async fn ensure_vxlan(&self, bridge: &str, req: &VxlanRequest) -> Result<bool> {
        let ops = &self.ctx.ops;
        let br = ops.link(bridge).await?.map(|l| l.index);
        let made = match ops.link(&req.device).await? {
            Some(l) if l.kind.as_deref() == Some("vxlan") => {
                if l.mtu != req.mtu {
                    ops.set_mtu(&req.device, req.mtu).await?;
                }
                false
            }
            Some(l) => {
                return Err(NetworkError::Exists(format!(
                    "interface {} (a {} link, not this overlay's VXLAN)",
                    req.device,
                    l.kind.as_deref().unwrap_or("physical")
                )))
            }
            None => {
                ops.create_vxlan(req).await?;
                true
            }
        };
        let live = ops.link(&req.device).await?;
        if live.as_ref().and_then(|l| l.master) != br || made {
            ops.set_master(&req.device, Some(bridge)).await?;
        }
        ops.set_up(&req.device).await?;
        Ok(made)
    }
}

#[async_trait]
impl NetworkDriver for OverlayDriver {
    fn kind(&self) -> &'static str {
        "overlay"
    }

    fn validate(&self, name: &str, config: &ConfigMap) -> Result<()> {
        check_network_name(name)?;
        OverlayConfig::parse(config).map(|_| ())
    }

    fn fill_defaults(&self, config: &ConfigMap, _others: &[NetworkSpec]) -> Result<ConfigMap> {
        OverlayConfig::parse(config)?;
        Ok(config.clone())
    }

    async fn create(&self, net: &NetworkSpec) -> Result<NetworkStatus> {
        self.validate(&net.name, &net.config)?;
        if self.ctx.ops.link(&net.name).await?.is_some() {
            return Err(NetworkError::Exists(format!("interface {}", net.name)));
        }
        // A fresh VXLAN device starts with an empty FDB.
        let _ = std::fs::remove_file(net.state_dir.join(FDB_RECORD));
        self.start(net).await
    }

    async fn start(&self, net: &NetworkSpec) -> Result<NetworkStatus> {
        check_network_name(&net.name)?;
        let c = OverlayConfig::parse(&net.config)?;
        let vni = c.vni.ok_or_else(|| invalid("the overlay has no VNI yet"))?;
        let local = c.local.ok_or_else(|| {
            invalid("this member's underlay address is unknown (overlays need a cluster)")
        })?;
        // Encrypted: `local` is the inner address, on `kwg<VNI>`.
        if overlay_wg::encrypted(&net.config)? {
            overlay_wg::ensure(&self.ctx, net).await?;
        }
        let (underlay, umtu) = underlay_mtu(&*self.ctx.ops, local).await?;
        let mtu = umtu.saturating_sub(ENCAP_OVERHEAD);
        if mtu < MIN_MTU {
            return Err(invalid(format!(
                "the underlay {underlay}'s MTU {umtu} is too small for VXLAN (needs at least {})",
                MIN_MTU + ENCAP_OVERHEAD
            )));
        }
        let status = self
            .bridge()
            .start(&Self::bridge_spec(net, &c, mtu))
            .await?;
        let req = VxlanRequest {
            device: device_name(vni),
            vni,
            local,
            port: VXLAN_PORT,
            mtu,
        };
        if self.ensure_vxlan(&net.name, &req).await? {
            let _ = std::fs::remove_file(net.state_dir.join(FDB_RECORD));
        }
        // The bridge follows its smallest port's MTU unless told again.
        self.ctx.ops.set_mtu(&net.name, mtu).await?;
        let table = nft::table_name(&net.daemon_prefix, &net.name)?;
        nft::nft(
            &["-f", "-"],
            Some(&render_l2_table(&table, &req.device, c.ipv4.addr())),
        )
        .await?;
        overlay_route::ensure(&table, &net.name, vni, c.ipv4).await?;
        sync_peers(&self.ctx, net, true).await?;
        Ok(status)
    }

    async fn stop(&self, net: &NetworkSpec) -> Result<()> {
        let c = OverlayConfig::parse(&net.config)?;
        self.bridge()
            .stop(&Self::bridge_spec(net, &c, MIN_MTU))
            .await?;
        let table = nft::table_name(&net.daemon_prefix, &net.name)?;
        if let Some(vni) = c.vni {
            overlay_route::remove(&table, vni, c.ipv4.addr()).await?;
        }
        remove_l2_table(&table).await
    }

    async fn delete(&self, net: &NetworkSpec) -> Result<()> {
        let c = OverlayConfig::parse(&net.config)?;
        self.stop(net).await?;
        if let Some(vni) = c.vni {
            let dev = device_name(vni);
            if let Some(l) = self.ctx.ops.link(&dev).await? {
                if l.kind.as_deref() == Some("vxlan") {
                    self.ctx.ops.delete_link(&dev).await?;
                }
            }
            if overlay_wg::encrypted(&net.config)? {
                overlay_wg::remove(&self.ctx, net, vni).await?;
            }
        }
        self.bridge()
            .delete(&Self::bridge_spec(net, &c, MIN_MTU))
            .await
    }

    fn leases(&self, net: &NetworkSpec) -> Result<Vec<Lease>> {
        dnsmasq::read_leases(&net.state_dir)
    }
}

/// The gateway of an overlay config (for the NICs attached to it).
pub fn gateway(config: &ConfigMap) -> Option<Ipv4Net> {
    OverlayConfig::parse(config).ok().map(|c| c.ipv4)
}

/// Why two overlays' configs would clash on a member: the same gateway
/// address (one host cannot hold it on two bridges: dnsmasq could not
/// bind it twice). VNIs are the engine's reservations.
pub fn clash(a: &ConfigMap, b: &ConfigMap) -> Option<String> {
    let (a, b) = (OverlayConfig::parse(a).ok()?, OverlayConfig::parse(b).ok()?);
    (a.ipv4.addr() == b.ipv4.addr()).then(|| format!("gateway address {} is taken", a.ipv4.addr()))
}

#[cfg(test)]
#[path = "overlay_tests.rs"]
mod tests;
