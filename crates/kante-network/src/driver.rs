//! Managed network drivers: `bridge` (native Linux bridge or Open vSwitch,
//! with dnsmasq and nftables) and `macvlan` (a parent interface; no DHCP or
//! NAT from us). Every lifecycle step is idempotent, so a restarted daemon
//! simply calls [`NetworkDriver::start`] again.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::dnsmasq::{self, Dnsmasq, DnsmasqConfig, Lease};
use crate::nft::{self, NftNetwork, NftPlan};
use crate::ovs::Datapath;
use crate::subnet::{
    self, default_dhcp_range, overlaps, parse_bool, parse_dhcp_ranges, validate_ifname,
    Ipv4Setting, Ipv6Setting,
};
use crate::tunnel::{self, Tunnel};
use crate::{ConfigMap, NetContext, NetworkError, Result};

/// The network types [`driver_for`] knows.
pub const DRIVER_KINDS: &[&str] = &["bridge", "macvlan", "overlay"];

pub const DEFAULT_DOMAIN: &str = "kante";
const LEASE_TIME: &str = "1h";

/// A managed network as the engine stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Also the bridge's interface name for `bridge` networks.
    pub name: String,
    /// `bridge` or `macvlan`.
    pub kind: String,
    pub config: ConfigMap,
    /// Where dnsmasq's files live; removed by `delete`.
    pub state_dir: PathBuf,
    /// Prepended to nftables table names so two daemons never collide.
    pub daemon_prefix: String,
}

/// What `create`/`start` did, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkStatus {
    pub dnsmasq_pid: Option<u32>,
    pub nft: Option<NftPlan>,
}

#[async_trait]
pub trait NetworkDriver: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Checks keys and values (unknown keys are refused, `user.*` allowed).
    fn validate(&self, name: &str, config: &ConfigMap) -> Result<()>;
    /// Resolves `auto` values and fills LXD's defaults; call once at
    /// creation and store the result. `others` are the existing networks.
    fn fill_defaults(&self, config: &ConfigMap, others: &[NetworkSpec]) -> Result<ConfigMap>;
    /// Validates, refuses a subnet the host already uses, then starts.
    async fn create(&self, net: &NetworkSpec) -> Result<NetworkStatus>;
    /// Makes the network live: bridge, addresses, nftables, dnsmasq. Safe to
    /// call again (daemon start): nothing is duplicated.
    async fn start(&self, net: &NetworkSpec) -> Result<NetworkStatus>;
    /// Stops dnsmasq and removes the nftables table; the bridge stays so
    /// attached instances keep their links.
    async fn stop(&self, net: &NetworkSpec) -> Result<()>;
    /// Stops, then removes the bridge and the state directory.
    async fn delete(&self, net: &NetworkSpec) -> Result<()>;
    fn leases(&self, net: &NetworkSpec) -> Result<Vec<Lease>>;
}

/// The driver for a network type.
pub fn driver_for(kind: &str, ctx: &Arc<NetContext>) -> Result<Box<dyn NetworkDriver>> {
    match kind {
        "bridge" => Ok(Box::new(BridgeDriver { ctx: ctx.clone() })),
        "macvlan" => Ok(Box::new(MacvlanDriver { ctx: ctx.clone() })),
        "overlay" => Ok(Box::new(crate::overlay::OverlayDriver { ctx: ctx.clone() })),
        _ => Err(NetworkError::InvalidConfig(format!(
            "unknown network type {kind:?} (supported: {})",
            DRIVER_KINDS.join(", ")
        ))),
    }
}

fn invalid(msg: impl Into<String>) -> NetworkError {
    NetworkError::InvalidConfig(msg.into())
}

fn check_keys(config: &ConfigMap, allowed: &[&str]) -> Result<()> {
    for k in config.keys() {
        if !k.starts_with("user.") && !allowed.contains(&k.as_str()) {
            return Err(invalid(format!("unknown key {k:?}")));
        }
    }
    Ok(())
}

/// A network name is also an interface name and is written into nftables
/// rules and dnsmasq's config: only `[A-Za-z0-9_.-]`, so no quote, `;` or
/// brace can change what those say.
pub fn check_network_name(name: &str) -> Result<()> {
    validate_ifname(name).map_err(|e| invalid(format!("network name: {e}")))?;
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(format!(
            "network name {name:?} must only contain letters, digits, '_', '.' and '-' (not {c:?})"
        )));
    }
    Ok(())
}

/// Which switch a `bridge` network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeBackend {
    Native,
    /// Open vSwitch with the userspace (netdev) datapath.
    OpenVswitch,
}

/// A `bridge` network's config, parsed. `auto` must have been resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub backend: BridgeBackend,
    pub mtu: Option<u32>,
    pub ipv4: Option<Ipv4Net>,
    pub ipv4_nat: bool,
    pub ipv4_dhcp: bool,
    pub dhcp_ranges: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
    pub ipv6: Option<Ipv6Net>,
    pub ipv6_nat: bool,
    pub domain: String,
    pub external_interfaces: Vec<String>,
    /// `tunnel.NAME.*`: static tunnels to other hosts.
    pub tunnels: Vec<Tunnel>,
}

const BRIDGE_KEYS: &[&str] = &[
    "ipv4.address",
    "ipv4.nat",
    "ipv4.dhcp",
    "ipv4.dhcp.ranges",
    "ipv6.address",
    "ipv6.nat",
    "dns.domain",
    "bridge.driver",
    "bridge.mtu",
    "bridge.external_interfaces",
];

fn validate_domain(d: &str) -> Result<()> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.is_empty() || d.len() > 253 || !d.split('.').all(ok_label) {
        return Err(invalid(format!(
            "dns.domain {d:?} is not a DNS domain name"
        )));
    }
    Ok(())
}

impl BridgeConfig {
    /// Parses and checks a config (`auto` is refused here: see `fill_defaults`).
    pub fn parse(config: &ConfigMap) -> Result<BridgeConfig> {
        let plain: ConfigMap = config
            .iter()
            .filter(|(k, _)| !tunnel::is_tunnel_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        check_keys(&plain, BRIDGE_KEYS)?;
        // The device names are checked with the bridge's name (`validate`).
        let tunnels = tunnel::parse("", config)?;
        let get = |k: &str| config.get(k).map(String::as_str);
        let flag = |k: &str, default: bool| get(k).map_or(Ok(default), |v| parse_bool(k, v));
        let backend = match get("bridge.driver").unwrap_or("native") {
            "native" => BridgeBackend::Native,
            "openvswitch" => BridgeBackend::OpenVswitch,
            other => {
                return Err(invalid(format!(
                    "bridge.driver {other:?}: expected native or openvswitch"
                )))
            }
        };
        let mtu = match get("bridge.mtu") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(m) if (68..=65535).contains(&m) => Some(m),
                _ => return Err(invalid(format!("bridge.mtu {v:?}: expected 68 to 65535"))),
            },
        };
        let mtu = tunnel::bridge_mtu(&tunnels, mtu)?;
        if !tunnels.is_empty() && backend == BridgeBackend::OpenVswitch {
            return Err(invalid(
                "tunnel.* on an Open vSwitch bridge is not supported yet (use bridge.driver=native)",
            ));
        }
        let ipv4 = match subnet::parse_ipv4_address(get("ipv4.address").unwrap_or("none"))? {
            Ipv4Setting::None => None,
            Ipv4Setting::Gateway(n) => Some(n),
            Ipv4Setting::Auto => return Err(invalid("ipv4.address=auto was not resolved")),
        };
        let ipv6 = match subnet::parse_ipv6_address(get("ipv6.address").unwrap_or("none"))? {
            Ipv6Setting::None => None,
            Ipv6Setting::Gateway(n) => Some(n),
            Ipv6Setting::Auto => return Err(invalid("ipv6.address=auto was not resolved")),
        };
        if let (Some(m), Some(_)) = (mtu, ipv6) {
            if m < 1280 {
                return Err(invalid("bridge.mtu must be at least 1280 with IPv6"));
            }
        }
        let ipv4_dhcp = flag("ipv4.dhcp", true)?;
        let dhcp_ranges = match (ipv4, get("ipv4.dhcp.ranges")) {
            (Some(n), Some(r)) => parse_dhcp_ranges(r, n)?,
            (Some(n), None) => vec![default_dhcp_range(n)],
            (None, Some(_)) => return Err(invalid("ipv4.dhcp.ranges needs ipv4.address")),
            (None, None) => vec![],
        };
        let domain = get("dns.domain").unwrap_or(DEFAULT_DOMAIN).to_string();
        validate_domain(&domain)?;
        let mut external_interfaces = Vec::new();
        for i in get("bridge.external_interfaces")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            validate_ifname(i).map_err(|e| invalid(format!("bridge.external_interfaces: {e}")))?;
            external_interfaces.push(i.to_string());
        }
        Ok(BridgeConfig {
            backend,
            mtu,
            ipv4,
            ipv4_nat: flag("ipv4.nat", false)?,
            ipv4_dhcp,
            dhcp_ranges,
            ipv6,
            ipv6_nat: flag("ipv6.nat", false)?,
            domain,
            external_interfaces,
            tunnels,
        })
    }

    fn subnets(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.ipv4.iter().map(|n| IpNet::V4(n.trunc())).collect();
        v.extend(self.ipv6.iter().map(|n| IpNet::V6(n.trunc())));
        v
    }
}

/// Refuses a config whose subnets overlap those of `others` (other than
/// itself, by name).
pub fn check_no_overlap(name: &str, config: &ConfigMap, others: &[NetworkSpec]) -> Result<()> {
    let mine = BridgeConfig::parse(config)?.subnets();
    for o in others
        .iter()
        .filter(|o| o.name != name && o.kind == "bridge")
    {
        let Ok(theirs) = BridgeConfig::parse(&o.config) else {
            continue;
        };
        for a in &mine {
            if let Some(b) = theirs.subnets().iter().find(|b| overlaps(a, b)) {
                return Err(invalid(format!(
                    "subnet {a} overlaps {b} of network {:?}",
                    o.name
                )));
            }
        }
    }
    Ok(())
}

pub(crate) struct BridgeDriver {
    pub(crate) ctx: Arc<NetContext>,
}

impl BridgeDriver {
    async fn ensure_bridge(&self, name: &str, c: &BridgeConfig) -> Result<()> {
        let ops = &self.ctx.ops;
        match c.backend {
            BridgeBackend::Native => match ops.link(name).await? {
                Some(l) if l.is_bridge() => {
                    // Unset is LXD's 1500 (so removing the last tunnel
                    // gives the bridge its usual MTU back).
                    let want = c.mtu.unwrap_or(1500);
                    if want != l.mtu {
                        ops.set_mtu(name, want).await?;
                    }
                    if !l.up {
                        ops.set_up(name).await?;
                    }
                }
                Some(l) => {
                    return Err(NetworkError::Exists(format!(
                        "interface {name} (a {} link, not a bridge)",
                        l.kind.as_deref().unwrap_or("physical")
                    )))
                }
                None => ops.create_bridge(name, c.mtu).await?,
            },
            BridgeBackend::OpenVswitch => {
                let ovs = &self.ctx.ovs;
                if !ovs.is_ovs_bridge(name).await {
                    if let Some(l) = ops.link(name).await? {
                        return Err(NetworkError::Exists(format!(
                            "interface {name} (a {} link, not an OVS bridge)",
                            l.kind.as_deref().unwrap_or("physical")
                        )));
                    }
                }
                // Without the kernel module only the userspace datapath works.
                ovs.add_bridge(name, Datapath::Netdev).await?;
                if let Some(m) = c.mtu {
                    ovs.set_mtu(name, m).await?;
                }
                ops.set_up(name).await?;
            }
        }
        Ok(())
    }

    async fn ensure_external(&self, name: &str, c: &BridgeConfig) -> Result<()> {
        let ops = &self.ctx.ops;
        for ext in &c.external_interfaces {
            let l = ops
                .link(ext)
                .await?
                .ok_or_else(|| NetworkError::NotFound(format!("external interface {ext}")))?;
            match c.backend {
                BridgeBackend::Native => {
                    let br = ops.link(name).await?.map(|b| b.index);
                    if l.master.is_some() && l.master != br {
                        return Err(NetworkError::Exists(format!(
                            "external interface {ext} is already attached elsewhere"
                        )));
                    }
                    if l.master.is_none() {
                        ops.set_master(ext, Some(name)).await?;
                    }
                }
                BridgeBackend::OpenVswitch => {
                    self.ctx.ovs.add_port(name, ext, &[], None).await?;
                }
            }
            if !l.up {
                ops.set_up(ext).await?;
            }
        }
        Ok(())
    }

    fn stop_dnsmasq(&self, net: &NetworkSpec) -> Result<()> {
        if let Some(mut d) = self.ctx.dnsmasq_map().remove(&net.name) {
            d.stop();
        }
        dnsmasq::stop_stale(&net.state_dir)?;
        Ok(())
    }
}

#[async_trait]
impl NetworkDriver for BridgeDriver {
    fn kind(&self) -> &'static str {
        "bridge"
    }

    fn validate(&self, name: &str, config: &ConfigMap) -> Result<()> {
        check_network_name(name)?;
        // `auto` is acceptable input: check the rest with it resolved.
        let mut c = config.clone();
        if c.get("ipv4.address").map(String::as_str) == Some("auto") {
            c.insert("ipv4.address".into(), "10.0.0.1/24".into());
        }
        if c.get("ipv6.address").map(String::as_str) == Some("auto") {
            c.insert("ipv6.address".into(), "fd42::1/64".into());
        }
        BridgeConfig::parse(&c)?;
        tunnel::parse(name, &c).map(|_| ())
    }

    fn fill_defaults(&self, config: &ConfigMap, others: &[NetworkSpec]) -> Result<ConfigMap> {
        let mut c = config.clone();
        let v4 = c
            .entry("ipv4.address".into())
            .or_insert_with(|| "auto".into());
        if v4 == "auto" {
            let taken: Vec<Ipv4Net> = others
                .iter()
                .filter_map(|o| BridgeConfig::parse(&o.config).ok()?.ipv4.map(|n| n.trunc()))
                .collect();
            *v4 = subnet::pick_free_ipv4(&taken)?.to_string();
            c.entry("ipv4.nat".into()).or_insert_with(|| "true".into());
        }
        let v6 = c
            .entry("ipv6.address".into())
            .or_insert_with(|| "auto".into());
        if v6 == "auto" {
            *v6 = subnet::random_ipv6_ula().to_string();
            c.entry("ipv6.nat".into()).or_insert_with(|| "true".into());
        }
        BridgeConfig::parse(&c)?;
        Ok(c)
    }

    async fn create(&self, net: &NetworkSpec) -> Result<NetworkStatus> {
        self.validate(&net.name, &net.config)?;
        let c = BridgeConfig::parse(&net.config)?;
        if self.ctx.ops.link(&net.name).await?.is_none() {
            // Only v4 is compared: host v6 routes are mostly link-local noise.
            if let Some(v4) = c.ipv4 {
                if let Some(h) = subnet::host_ipv4_networks()?
                    .into_iter()
                    .filter(|h| h.prefix_len() > 0)
                    .find(|h| subnet::overlaps_v4(h, &v4.trunc()))
                {
                    return Err(invalid(format!(
                        "ipv4.address {v4} overlaps {h}, which the host already uses"
                    )));
                }
            }
        }
        self.start(net).await
    }

    async fn start(&self, net: &NetworkSpec) -> Result<NetworkStatus> {
        check_network_name(&net.name)?;
        let c = BridgeConfig::parse(&net.config)?;
        self.ensure_bridge(&net.name, &c).await?;
        for a in c
            .ipv4
            .map(IpNet::V4)
            .into_iter()
            .chain(c.ipv6.map(IpNet::V6))
        {
            self.ctx.ops.add_address(&net.name, a).await?;
        }
        self.ensure_external(&net.name, &c).await?;
        let tunnels = tunnel::parse(&net.name, &net.config)?;
        let mtu = c.mtu.unwrap_or(tunnel::TUNNEL_MTU);
        tunnel::ensure(&*self.ctx.ops, &net.name, &net.state_dir, &tunnels, mtu).await?;
        let table = nft::table_name(&net.daemon_prefix, &net.name)?;
        let plan = nft::apply(&NftNetwork {
            table,
            bridge: net.name.clone(),
            ipv4: c.ipv4,
            ipv4_nat: c.ipv4_nat,
            ipv6: c.ipv6,
            ipv6_nat: c.ipv6_nat,
        })
        .await?;
        for change in &plan.changes {
            tracing::info!(network = %net.name, "{change}");
        }
        let mut status = NetworkStatus {
            nft: Some(plan),
            dnsmasq_pid: None,
        };
        if c.ipv4.is_some() || c.ipv6.is_some() {
            self.stop_dnsmasq(net)?;
            let cfg = DnsmasqConfig {
                interface: net.name.clone(),
                state_dir: net.state_dir.clone(),
                ipv4: c.ipv4,
                dhcp_ranges: if c.ipv4_dhcp {
                    c.dhcp_ranges.clone()
                } else {
                    vec![]
                },
                lease_time: LEASE_TIME.into(),
                ipv6: c.ipv6,
                domain: c.domain.clone(),
                user: DnsmasqConfig::pick_user(&net.state_dir),
                forwards: self.ctx.dns_forwards(),
            };
            let d = Dnsmasq::start(&cfg)?;
            status.dnsmasq_pid = d.pid();
            self.ctx.dnsmasq_map().insert(net.name.clone(), d);
        }
        Ok(status)
    }

    async fn stop(&self, net: &NetworkSpec) -> Result<()> {
        self.stop_dnsmasq(net)?;
        nft::remove_table(&nft::table_name(&net.daemon_prefix, &net.name)?).await?;
        Ok(())
    }

    async fn delete(&self, net: &NetworkSpec) -> Result<()> {
        self.stop(net).await?;
        tunnel::remove_all(&*self.ctx.ops, &net.name, &net.state_dir).await?;
        let backend = BridgeConfig::parse(&net.config).map(|c| c.backend);
        if backend.as_ref().ok() == Some(&BridgeBackend::OpenVswitch) {
            self.ctx.ovs.del_bridge(&net.name).await?;
        } else if let Some(l) = self.ctx.ops.link(&net.name).await? {
            // Never delete a host interface that merely shares the name.
            if l.is_bridge() {
                self.ctx.ops.delete_link(&net.name).await?;
            }
        }
        remove_dir(&net.state_dir)
    }

    fn leases(&self, net: &NetworkSpec) -> Result<Vec<Lease>> {
        dnsmasq::read_leases(&net.state_dir)
    }
}

fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NetworkError::io(format!("removing {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

struct MacvlanDriver {
    ctx: Arc<NetContext>,
}

/// The `parent` of a macvlan network.
pub fn macvlan_parent(config: &ConfigMap) -> Result<String> {
    check_keys(config, &["parent"])?;
    let p = config
        .get("parent")
        .ok_or_else(|| invalid("macvlan networks need parent"))?;
    validate_ifname(p).map_err(|e| invalid(format!("parent: {e}")))?;
    Ok(p.clone())
}

#[async_trait]
impl NetworkDriver for MacvlanDriver {
    fn kind(&self) -> &'static str {
        "macvlan"
    }

    fn validate(&self, name: &str, config: &ConfigMap) -> Result<()> {
        check_network_name(name)?;
        macvlan_parent(config).map(|_| ())
    }

    fn fill_defaults(&self, config: &ConfigMap, _others: &[NetworkSpec]) -> Result<ConfigMap> {
        macvlan_parent(config)?;
        Ok(config.clone())
    }

    async fn create(&self, net: &NetworkSpec) -> Result<NetworkStatus> {
        self.validate(&net.name, &net.config)?;
        self.start(net).await
    }

    async fn start(&self, net: &NetworkSpec) -> Result<NetworkStatus> {
        let parent = macvlan_parent(&net.config)?;
        if self.ctx.ops.link(&parent).await?.is_none() {
            return Err(NetworkError::NotFound(format!("parent interface {parent}")));
        }
        Ok(NetworkStatus::default())
    }

    async fn stop(&self, _net: &NetworkSpec) -> Result<()> {
        Ok(())
    }

    async fn delete(&self, net: &NetworkSpec) -> Result<()> {
        remove_dir(&net.state_dir)
    }

    fn leases(&self, _net: &NetworkSpec) -> Result<Vec<Lease>> {
        Ok(Vec::new())
    }
}

/// The gateway addresses of a bridge network (for the API's network state).
pub fn gateway_addresses(config: &ConfigMap) -> Vec<IpAddr> {
    let Ok(c) = BridgeConfig::parse(config) else {
        return Vec::new();
    };
    let mut v: Vec<IpAddr> = c.ipv4.map(|n| IpAddr::V4(n.addr())).into_iter().collect();
    v.extend(c.ipv6.map(|n| IpAddr::V6(n.addr())));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FakeNetOps, Ovs};

    fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ctx() -> Arc<NetContext> {
        NetContext::new(Arc::new(FakeNetOps::new()), Ovs::system())
    }

    fn spec(name: &str, config: ConfigMap) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            kind: "bridge".into(),
            config,
            state_dir: PathBuf::from("/nonexistent"),
            daemon_prefix: String::new(),
        }
    }

    #[test]
    fn registry() {
        let c = ctx();
        assert_eq!(driver_for("bridge", &c).unwrap().kind(), "bridge");
        assert_eq!(driver_for("macvlan", &c).unwrap().kind(), "macvlan");
        assert!(matches!(
            driver_for("ovn", &c),
            Err(NetworkError::InvalidConfig(_))
        ));
    }

    #[test]
    fn bridge_validation() {
        let d = driver_for("bridge", &ctx()).unwrap();
        d.validate("ktbr0", &cfg(&[("ipv4.address", "auto"), ("user.x", "y")]))
            .unwrap();
        d.validate(
            "ktbr0",
            &cfg(&[("ipv4.address", "10.3.0.1/24"), ("ipv4.nat", "true")]),
        )
        .unwrap();
        for bad in [
            cfg(&[("ipv4.adress", "10.3.0.1/24")]),
            cfg(&[("ipv4.address", "10.3.0.0/24")]),
            cfg(&[("ipv4.nat", "maybe")]),
            cfg(&[("bridge.driver", "vpp")]),
            cfg(&[("bridge.mtu", "10")]),
            cfg(&[("dns.domain", "bad domain")]),
            cfg(&[
                ("ipv4.address", "10.3.0.1/24"),
                ("ipv4.dhcp.ranges", "10.4.0.2-10.4.0.9"),
            ]),
            cfg(&[("parent", "eth0")]),
        ] {
            assert!(d.validate("ktbr0", &bad).is_err(), "{bad:?}");
        }
        assert!(d.validate("a-name-way-too-long", &cfg(&[])).is_err());
    }

    #[test]
    fn network_names_cannot_carry_nft_syntax() {
        for ok in ["lxdbr0", "br_0", "net.1", "a-b", "A9"] {
            assert!(check_network_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a\"b;", "a{b", "a}b", "a;b", "a'b", "a$b", "a b", "a/b", "é", "x\n",
        ] {
            let e = check_network_name(bad).unwrap_err().to_string();
            assert!(e.contains("network name"), "{bad}: {e}");
        }
        let m = driver_for("macvlan", &ctx()).unwrap();
        assert!(m.validate("a\"b;", &cfg(&[("parent", "eth0")])).is_err());
        let b = driver_for("bridge", &ctx()).unwrap();
        assert!(b.validate("a\"b;", &cfg(&[])).is_err());
    }

    #[test]
    fn defaults_and_overlap() {
        let d = driver_for("bridge", &ctx()).unwrap();
        let a = spec("kta", cfg(&[("ipv4.address", "10.77.0.1/16")]));
        let filled = d
            .fill_defaults(&cfg(&[]), std::slice::from_ref(&a))
            .unwrap();
        let c = BridgeConfig::parse(&filled).unwrap();
        let v4 = c.ipv4.unwrap();
        assert!(!subnet::overlaps_v4(&v4, &"10.77.0.0/16".parse().unwrap()));
        assert!(c.ipv4_nat && c.ipv6_nat && c.ipv6.is_some());
        let explicit = d
            .fill_defaults(
                &cfg(&[("ipv4.address", "10.9.0.1/24"), ("ipv6.address", "none")]),
                &[],
            )
            .unwrap();
        assert_eq!(
            explicit.get("ipv4.nat"),
            None,
            "explicit subnets keep nat off"
        );
        let clash = cfg(&[("ipv4.address", "10.77.3.1/24")]);
        let e = check_no_overlap("ktb", &clash, std::slice::from_ref(&a)).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
        check_no_overlap("kta", &clash, &[a]).unwrap();
    }

    #[test]
    fn macvlan_validation() {
        let d = driver_for("macvlan", &ctx()).unwrap();
        d.validate("ktmv", &cfg(&[("parent", "eth0")])).unwrap();
        assert!(d.validate("ktmv", &cfg(&[])).is_err());
        assert!(d
            .validate(
                "ktmv",
                &cfg(&[("parent", "eth0"), ("ipv4.address", "auto")])
            )
            .is_err());
    }

    #[tokio::test]
    async fn macvlan_missing_parent() {
        let d = driver_for("macvlan", &ctx()).unwrap();
        let mut s = spec("ktmv", cfg(&[("parent", "nope0")]));
        s.kind = "macvlan".into();
        assert!(matches!(d.start(&s).await, Err(NetworkError::NotFound(_))));
    }
}
