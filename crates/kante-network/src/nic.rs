//! `nic` devices: resolve the parent, compute a [`NicPlan`] (pure, so every
//! validation error is found before anything is made), then apply it to a
//! running instance's network namespace and remove it again.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::dnsmasq::{self, HostEntry};
use crate::driver::{macvlan_parent, BridgeBackend, BridgeConfig, NetworkSpec};
use crate::netlink::{MacvlanMode, MacvlanRequest, VethRequest};
use crate::netns::NetnsRef;
use crate::ovs::{disable_tx_offload_in_netns, Datapath};
use crate::subnet::{host_veth_name, validate_ifname, MacAddr};
use crate::{ConfigMap, NetContext, NetworkError, Result};

const NIC_KEYS: &[&str] = &[
    "type",
    "network",
    "nictype",
    "parent",
    "name",
    "hwaddr",
    "mtu",
    "host_name",
    "vlan",
    "ipv4.address",
    "ipv6.address",
    "mode",
];

/// What a NIC's `network` or `parent` turned out to be on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedParent {
    /// A managed `bridge` network (native or OVS).
    ManagedBridge {
        network: String,
        backend: BridgeBackend,
        mtu: Option<u32>,
        ipv4: Option<Ipv4Net>,
        ipv4_dhcp: bool,
        ipv6: Option<Ipv6Net>,
        state_dir: PathBuf,
    },
    /// A managed `macvlan` network.
    ManagedMacvlan {
        network: String,
        parent: String,
    },
    LinuxBridge {
        name: String,
        mtu: u32,
    },
    OvsBridge {
        name: String,
        datapath: Datapath,
        mtu: u32,
    },
    /// Any other host interface (a macvlan parent).
    HostInterface {
        name: String,
        mtu: u32,
    },
    /// Named, but not on this host.
    Missing(String),
}

/// One `nic` device of an instance, with its parent resolved.
#[derive(Debug, Clone)]
pub struct NicRequest {
    /// The device's key in the instance config (`eth0`, `mgmt`, …).
    pub device: String,
    pub config: ConfigMap,
    pub parent: ResolvedParent,
    /// Interface name when `name` is not set (`eth0`, `eth1`, … by the caller).
    pub default_name: String,
    /// `volatile.<device>.hwaddr`, so the MAC survives restarts.
    pub volatile_hwaddr: Option<String>,
}

/// The bridge a veth's host end joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    LinuxBridge(String),
    Ovs {
        bridge: String,
        /// Userspace datapath: TX checksum offload goes off in the instance.
        netdev: bool,
        vlan: Option<u16>,
    },
}

/// A managed network's dnsmasq hosts-file line for this NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub state_dir: PathBuf,
    pub entry: HostEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicLink {
    Veth {
        host_name: String,
        attach: Attach,
        reservation: Option<Reservation>,
    },
    Macvlan {
        parent: String,
        mode: MacvlanMode,
        vlan: Option<u16>,
    },
}

/// Everything needed to make one NIC, decided up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPlan {
    pub device: String,
    pub instance: String,
    /// Interface name inside the instance.
    pub name: String,
    pub hwaddr: MacAddr,
    pub mtu: Option<u32>,
    pub link: NicLink,
}

/// What [`NicPlan::apply`] made; persist `hwaddr` and `host_name` as
/// `volatile.<device>.hwaddr` / `.host_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedNic {
    pub device: String,
    pub name: String,
    pub hwaddr: MacAddr,
    pub host_name: Option<String>,
    /// The VLAN sub-interface a macvlan sits on, if one was needed.
    pub vlan_parent: Option<String>,
    pub tx_offload_disabled: bool,
}

fn bad(device: &str, msg: impl std::fmt::Display) -> NetworkError {
    NetworkError::InvalidDevice(format!("{device}: {msg}"))
}

/// Finds what a NIC's `network` or `parent` is. `networks` are the managed
/// networks.
pub async fn resolve_parent(
    ctx: &NetContext,
    config: &ConfigMap,
    networks: &[NetworkSpec],
) -> Result<ResolvedParent> {
    if let Some(n) = config.get("network") {
        let spec = networks
            .iter()
            .find(|s| &s.name == n)
            .ok_or_else(|| NetworkError::InvalidDevice(format!("network {n:?} does not exist")))?;
        return Ok(match spec.kind.as_str() {
            "bridge" => {
                let c = BridgeConfig::parse(&spec.config)?;
                ResolvedParent::ManagedBridge {
                    network: spec.name.clone(),
                    backend: c.backend,
                    mtu: c.mtu,
                    ipv4: c.ipv4,
                    ipv4_dhcp: c.ipv4_dhcp,
                    ipv6: c.ipv6,
                    state_dir: spec.state_dir.clone(),
                }
            }
            "overlay" => {
                let c = crate::overlay::OverlayConfig::parse(&spec.config)?;
                // The MTU is worked out from the underlay when it starts.
                let mtu = ctx.ops.link(&spec.name).await?.map(|l| l.mtu);
                ResolvedParent::ManagedBridge {
                    network: spec.name.clone(),
                    backend: BridgeBackend::Native,
                    mtu,
                    ipv4: Some(c.ipv4),
                    ipv4_dhcp: c.ipv4_dhcp,
                    ipv6: None,
                    state_dir: spec.state_dir.clone(),
                }
            }
            "macvlan" => ResolvedParent::ManagedMacvlan {
                network: spec.name.clone(),
                parent: macvlan_parent(&spec.config)?,
            },
            k => {
                return Err(NetworkError::InvalidDevice(format!(
                    "network type {k:?} unsupported"
                )))
            }
        });
    }
    let Some(parent) = config.get("parent") else {
        return Ok(ResolvedParent::Missing(String::new()));
    };
    validate_ifname(parent).map_err(|e| NetworkError::InvalidDevice(e.to_string()))?;
    if config.get("nictype").map(String::as_str) == Some("bridged")
        && ctx.ovs.is_ovs_bridge(parent).await
    {
        let datapath = ctx.ovs.datapath_type(parent).await?;
        let mtu = ctx.ops.link(parent).await?.map_or(1500, |l| l.mtu);
        return Ok(ResolvedParent::OvsBridge {
            name: parent.clone(),
            datapath,
            mtu,
        });
    }
    Ok(match ctx.ops.link(parent).await? {
        Some(l) if l.is_bridge() => ResolvedParent::LinuxBridge {
            name: parent.clone(),
            mtu: l.mtu,
        },
        Some(l) => ResolvedParent::HostInterface {
            name: parent.clone(),
            mtu: l.mtu,
        },
        None => ResolvedParent::Missing(parent.clone()),
    })
}

/// Plans all NICs of an instance, refusing duplicate interface names, host
/// names and MACs between them.
pub fn plan_nics(daemon_id: &str, instance: &str, nics: &[NicRequest]) -> Result<Vec<NicPlan>> {
    let mut plans: Vec<NicPlan> = Vec::new();
    let (mut names, mut hosts, mut macs) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for r in nics {
        let p = NicPlan::compute(daemon_id, instance, r)?;
        if !names.insert(p.name.clone()) {
            return Err(bad(
                &p.device,
                format!("interface name {:?} is used twice", p.name),
            ));
        }
        if !macs.insert(p.hwaddr) {
            return Err(bad(&p.device, format!("hwaddr {} is used twice", p.hwaddr)));
        }
        if let NicLink::Veth { host_name, .. } = &p.link {
            if !hosts.insert(host_name.clone()) {
                return Err(bad(
                    &p.device,
                    format!("host_name {host_name:?} is used twice"),
                ));
            }
        }
        plans.push(p);
    }
    Ok(plans)
}

fn parse_vlan(device: &str, v: Option<&String>) -> Result<Option<u16>> {
    v.map(|v| match v.parse::<u16>() {
        Ok(n) if (1..=4094).contains(&n) => Ok(n),
        _ => Err(bad(device, format!("vlan {v:?}: expected 1 to 4094"))),
    })
    .transpose()
}

/// A valid DNS label for dnsmasq's hosts file, if the instance name is one.
fn dns_label(instance: &str) -> Option<String> {
    let ok = !instance.is_empty()
        && instance.len() <= 63
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !instance.starts_with('-');
    ok.then(|| instance.to_string())
}

impl NicPlan {
    /// Validates one NIC and decides names, MAC, MTU and attachment.
    pub fn compute(daemon_id: &str, instance: &str, r: &NicRequest) -> Result<NicPlan> {
        let dev = r.device.as_str();
        let c = &r.config;
        for k in c.keys() {
            if !NIC_KEYS.contains(&k.as_str()) {
                return Err(bad(dev, format!("unknown key {k:?}")));
            }
        }
        let managed = c.contains_key("network");
        if managed && c.contains_key("parent") {
            return Err(bad(dev, "network and parent cannot be used together"));
        }
        let nictype = match (&r.parent, c.get("nictype").map(String::as_str)) {
            (_, Some(t)) if t != "bridged" && t != "macvlan" => {
                return Err(bad(
                    dev,
                    format!("unknown nictype {t:?} (supported: bridged, macvlan)"),
                ))
            }
            (ResolvedParent::ManagedBridge { .. }, Some("macvlan"))
            | (ResolvedParent::ManagedMacvlan { .. }, Some("bridged")) => {
                return Err(bad(dev, "nictype does not match the network's type"))
            }
            (ResolvedParent::ManagedBridge { .. }, _) => "bridged",
            (ResolvedParent::ManagedMacvlan { .. }, _) => "macvlan",
            (_, Some(t)) => t,
            (_, None) => return Err(bad(dev, "set network, or nictype and parent")),
        };
        let name = c
            .get("name")
            .cloned()
            .unwrap_or_else(|| r.default_name.clone());
        validate_ifname(&name).map_err(|e| bad(dev, e))?;
        let hwaddr = match (c.get("hwaddr"), &r.volatile_hwaddr) {
            (Some(h), _) => h.parse::<MacAddr>().map_err(|e| bad(dev, e))?,
            (None, Some(h)) => h.parse::<MacAddr>().map_err(|e| bad(dev, e))?,
            (None, None) => MacAddr::random_kante(),
        };
        let mtu = match c.get("mtu") {
            Some(v) => match v.parse::<u32>() {
                Ok(m) if (68..=65535).contains(&m) => Some(m),
                _ => return Err(bad(dev, format!("mtu {v:?}: expected 68 to 65535"))),
            },
            None => None,
        };
        let vlan = parse_vlan(dev, c.get("vlan"))?;
        let refuse = |key: &str, why: &str| -> Result<()> {
            if c.contains_key(key) {
                return Err(bad(dev, format!("{key} {why}")));
            }
            Ok(())
        };
        if nictype == "macvlan" {
            refuse("host_name", "is only for bridged NICs")?;
            refuse("ipv4.address", "needs a managed bridge network")?;
            refuse("ipv6.address", "needs a managed bridge network")?;
            let parent = match &r.parent {
                ResolvedParent::ManagedMacvlan { parent, .. } => parent.clone(),
                ResolvedParent::HostInterface { name, .. }
                | ResolvedParent::LinuxBridge { name, .. } => name.clone(),
                ResolvedParent::OvsBridge { name, .. } => {
                    return Err(bad(
                        dev,
                        format!("parent {name} is an OVS bridge: use nictype=bridged"),
                    ))
                }
                ResolvedParent::Missing(p) if p.is_empty() => {
                    return Err(bad(dev, "parent is required"))
                }
                ResolvedParent::Missing(p) => {
                    return Err(bad(dev, format!("parent {p} does not exist")))
                }
                ResolvedParent::ManagedBridge { .. } => unreachable!("nictype checked above"),
            };
            let mode = c
                .get("mode")
                .map_or(Ok(MacvlanMode::Bridge), |m| m.parse())?;
            return Ok(NicPlan {
                device: dev.into(),
                instance: instance.into(),
                name,
                hwaddr,
                mtu,
                link: NicLink::Macvlan { parent, mode, vlan },
            });
        }
        refuse("mode", "is only for macvlan NICs")?;
        let host_name = match c.get("host_name") {
            Some(h) => {
                validate_ifname(h).map_err(|e| bad(dev, e))?;
                h.clone()
            }
            None => host_veth_name(daemon_id, instance, dev),
        };
        let (attach, parent_mtu, reservation) = match &r.parent {
            ResolvedParent::ManagedBridge {
                network,
                backend,
                mtu: net_mtu,
                ipv4,
                ipv4_dhcp,
                ipv6,
                state_dir,
            } => {
                let attach = match backend {
                    BridgeBackend::Native if vlan.is_some() => {
                        return Err(NetworkError::Unsupported(format!(
                            "{dev}: vlan on a native bridge network (use bridge.driver=openvswitch)"
                        )))
                    }
                    BridgeBackend::Native => Attach::LinuxBridge(network.clone()),
                    BridgeBackend::OpenVswitch => Attach::Ovs {
                        bridge: network.clone(),
                        netdev: true,
                        vlan,
                    },
                };
                let v4 = static_v4(dev, c.get("ipv4.address"), *ipv4, *ipv4_dhcp)?;
                let v6 = static_v6(dev, c.get("ipv6.address"), *ipv6)?;
                let entry = HostEntry {
                    hwaddr,
                    ipv4: v4,
                    ipv6: v6,
                    name: dns_label(instance),
                };
                let res = (entry.ipv4.is_some() || entry.ipv6.is_some() || entry.name.is_some())
                    .then(|| Reservation {
                        state_dir: state_dir.clone(),
                        entry,
                    });
                (attach, *net_mtu, res)
            }
            other => {
                refuse("ipv4.address", "needs a managed bridge network")?;
                refuse("ipv6.address", "needs a managed bridge network")?;
                match other {
                    ResolvedParent::LinuxBridge { name, mtu } => {
                        if vlan.is_some() {
                            return Err(NetworkError::Unsupported(format!(
                                "{dev}: vlan on Linux bridge {name} (use an OVS bridge)"
                            )));
                        }
                        (Attach::LinuxBridge(name.clone()), Some(*mtu), None)
                    }
                    ResolvedParent::OvsBridge {
                        name,
                        datapath,
                        mtu,
                    } => (
                        Attach::Ovs {
                            bridge: name.clone(),
                            netdev: *datapath == Datapath::Netdev,
                            vlan,
                        },
                        Some(*mtu),
                        None,
                    ),
                    ResolvedParent::HostInterface { name, .. } => {
                        return Err(bad(dev, format!("parent {name} is not a bridge")))
                    }
                    ResolvedParent::Missing(p) if p.is_empty() => {
                        return Err(bad(dev, "parent is required"))
                    }
                    ResolvedParent::Missing(p) => {
                        return Err(bad(dev, format!("parent {p} does not exist")))
                    }
                    ResolvedParent::ManagedMacvlan { .. }
                    | ResolvedParent::ManagedBridge { .. } => {
                        unreachable!("handled above")
                    }
                }
            }
        };
        Ok(NicPlan {
            device: dev.into(),
            instance: instance.into(),
            name,
            hwaddr,
            mtu: mtu.or(parent_mtu),
            link: NicLink::Veth {
                host_name,
                attach,
                reservation,
            },
        })
    }

    /// Makes the NIC inside `netns` (the instance's). Nothing is left
    /// behind if a step fails.
    pub async fn apply(&self, ctx: &NetContext, netns: &NetnsRef) -> Result<AppliedNic> {
        let mut out = AppliedNic {
            device: self.device.clone(),
            name: self.name.clone(),
            hwaddr: self.hwaddr,
            host_name: None,
            vlan_parent: None,
            tx_offload_disabled: false,
        };
        match &self.link {
            NicLink::Macvlan { parent, mode, vlan } => {
                let parent = match vlan {
                    Some(v) => {
                        let p = ctx.ops.ensure_vlan(parent, *v).await?;
                        out.vlan_parent = Some(p.clone());
                        p
                    }
                    None => parent.clone(),
                };
                ctx.ops
                    .create_macvlan(&MacvlanRequest {
                        name: self.name.clone(),
                        parent,
                        mode: *mode,
                        netns: netns.clone(),
                        hwaddr: Some(self.hwaddr),
                        mtu: self.mtu,
                    })
                    .await?;
            }
            NicLink::Veth {
                host_name,
                attach,
                reservation,
            } => {
                // The name is ours (hash of daemon/instance/device): a
                // leftover is from a crash, so replace it.
                if let Some(l) = ctx.ops.link(host_name).await? {
                    if l.kind.as_deref() != Some("veth") {
                        return Err(NetworkError::Exists(format!(
                            "interface {host_name} (not a veth)"
                        )));
                    }
                    ctx.ops.delete_link(host_name).await?;
                }
                let master = match attach {
                    Attach::LinuxBridge(b) => Some(b.clone()),
                    Attach::Ovs { .. } => None,
                };
                ctx.ops
                    .create_veth(&VethRequest {
                        host_name: host_name.clone(),
                        peer_name: self.name.clone(),
                        peer_netns: netns.clone(),
                        peer_hwaddr: Some(self.hwaddr),
                        mtu: self.mtu,
                        master,
                    })
                    .await?;
                out.host_name = Some(host_name.clone());
                if let Err(e) = self
                    .finish_veth(ctx, netns, host_name, attach, reservation, &mut out)
                    .await
                {
                    if let Attach::Ovs { .. } = attach {
                        let _ = ctx.ovs.del_port(host_name).await;
                    }
                    let _ = ctx.ops.delete_link(host_name).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn finish_veth(
        &self,
        ctx: &NetContext,
        netns: &NetnsRef,
        host_name: &str,
        attach: &Attach,
        reservation: &Option<Reservation>,
        out: &mut AppliedNic,
    ) -> Result<()> {
        if let Attach::Ovs {
            bridge,
            netdev,
            vlan,
        } = attach
        {
            let ids = [
                ("kante-instance", self.instance.as_str()),
                ("kante-device", self.device.as_str()),
            ];
            ctx.ovs.add_port(bridge, host_name, &ids, *vlan).await?;
            if *netdev {
                disable_tx_offload_in_netns(netns, &self.name)?;
                out.tx_offload_disabled = true;
            }
        }
        if let Some(r) = reservation {
            if dnsmasq::set_host(&r.state_dir, r.entry.clone())? {
                dnsmasq::reload_hosts_at(&r.state_dir)?;
            }
        }
        Ok(())
    }

    /// Takes the NIC down: deletes the host end (which takes the instance
    /// end with it) and the OVS port. The dnsmasq reservation and the NIC's
    /// DHCPv4 leases go only when `forever` (the device or instance is being
    /// deleted), so a restarted instance keeps its address and name.
    pub async fn remove(&self, ctx: &NetContext, forever: bool) -> Result<()> {
        if let NicLink::Veth {
            host_name,
            attach,
            reservation,
        } = &self.link
        {
            if let Attach::Ovs { .. } = attach {
                ctx.ovs.del_port(host_name).await?;
            }
            ctx.ops.delete_link(host_name).await?;
            if let (true, Some(r)) = (forever, reservation) {
                if dnsmasq::remove_host(&r.state_dir, r.entry.hwaddr)? {
                    dnsmasq::reload_hosts_at(&r.state_dir)?;
                }
                // Its leases go too (as LXD does): the address is free
                // again and the lease file does not grow with every
                // deleted instance. A release that fails costs only the
                // wait for the lease to expire, so it does not fail the
                // delete.
                let bridge = match attach {
                    Attach::LinuxBridge(b) | Attach::Ovs { bridge: b, .. } => b,
                };
                if let Err(e) = crate::dhcp::release_leases(bridge, &r.state_dir, r.entry.hwaddr) {
                    tracing::warn!("releasing the DHCP leases of {host_name}: {e}");
                }
            }
        }
        // A macvlan lives in the instance's namespace and goes with it.
        Ok(())
    }
}

fn static_v4(
    dev: &str,
    v: Option<&String>,
    net: Option<Ipv4Net>,
    dhcp: bool,
) -> Result<Option<Ipv4Addr>> {
    let Some(v) = v else { return Ok(None) };
    let a: Ipv4Addr = v
        .parse()
        .map_err(|_| bad(dev, format!("ipv4.address {v:?} is not an IPv4 address")))?;
    let net = net.ok_or_else(|| bad(dev, "ipv4.address: the network has no IPv4"))?;
    if !dhcp {
        return Err(bad(dev, "ipv4.address: the network has ipv4.dhcp=false"));
    }
    if !net.contains(&a) || a == net.network() || a == net.broadcast() {
        return Err(bad(
            dev,
            format!("ipv4.address {a} is outside {}", net.trunc()),
        ));
    }
    if a == net.addr() {
        return Err(bad(
            dev,
            format!("ipv4.address {a} is the network's gateway"),
        ));
    }
    Ok(Some(a))
}

fn static_v6(dev: &str, v: Option<&String>, net: Option<Ipv6Net>) -> Result<Option<Ipv6Addr>> {
    let Some(v) = v else { return Ok(None) };
    let a: Ipv6Addr = v
        .parse()
        .map_err(|_| bad(dev, format!("ipv6.address {v:?} is not an IPv6 address")))?;
    let net = net.ok_or_else(|| bad(dev, "ipv6.address: the network has no IPv6"))?;
    if !net.contains(&a) || a == net.network() {
        return Err(bad(
            dev,
            format!("ipv6.address {a} is outside {}", net.trunc()),
        ));
    }
    if a == net.addr() {
        return Err(bad(
            dev,
            format!("ipv6.address {a} is the network's gateway"),
        ));
    }
    Ok(Some(a))
}

#[cfg(test)]
#[path = "nic_tests.rs"]
mod tests;
