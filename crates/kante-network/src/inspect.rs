//! Host interfaces as LXD lists them among networks (the unmanaged ones),
//! with their counters.

use std::path::Path;

use ipnet::IpNet;

use crate::netlink::{LinkDetails, LinkStats, NetOps};
use crate::Result;

/// LXD's `type` of an unmanaged network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceKind {
    Physical,
    Bridge,
    Bond,
    Vlan,
    Loopback,
    Unknown,
}

impl InterfaceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            InterfaceKind::Physical => "physical",
            InterfaceKind::Bridge => "bridge",
            InterfaceKind::Bond => "bond",
            InterfaceKind::Vlan => "vlan",
            InterfaceKind::Loopback => "loopback",
            InterfaceKind::Unknown => "unknown",
        }
    }

    /// Classifies a link; `sys_class_net` is normally `/sys/class/net`
    /// (a physical NIC has a `device` link there).
    pub fn of(link: &LinkDetails, sys_class_net: &Path) -> InterfaceKind {
        if link.loopback {
            return InterfaceKind::Loopback;
        }
        match link.kind.as_deref() {
            Some("bridge") | Some("openvswitch") => InterfaceKind::Bridge,
            Some("bond") => InterfaceKind::Bond,
            Some("vlan") => InterfaceKind::Vlan,
            Some(_) => InterfaceKind::Unknown,
            None if sys_class_net.join(&link.name).join("device").exists() => {
                InterfaceKind::Physical
            }
            None => InterfaceKind::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub kind: InterfaceKind,
    pub mtu: u32,
    pub hwaddr: Option<String>,
    pub up: bool,
    /// The bridge or bond it is enslaved to.
    pub master: Option<String>,
    pub addresses: Vec<IpNet>,
    pub counters: LinkStats,
}

/// Every interface of the host namespace, sorted by name.
pub async fn list_host_interfaces(ops: &dyn NetOps) -> Result<Vec<HostInterface>> {
    let links = ops.links().await?;
    let mut out = Vec::new();
    for l in &links {
        let master = l
            .master
            .and_then(|m| links.iter().find(|x| x.index == m))
            .map(|m| m.name.clone());
        // An interface may vanish between the two calls: show it bare.
        let addresses = ops.addresses(&l.name).await.unwrap_or_default();
        out.push(HostInterface {
            name: l.name.clone(),
            kind: InterfaceKind::of(l, Path::new("/sys/class/net")),
            mtu: l.mtu,
            hwaddr: l.hwaddr.clone(),
            up: l.up,
            master,
            addresses,
            counters: l.stats,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One interface's counters; `None` if it does not exist.
pub async fn interface_counters(ops: &dyn NetOps, name: &str) -> Result<Option<LinkStats>> {
    Ok(ops.link(name).await?.map(|l| l.stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FakeNetOps, NetOps};

    #[tokio::test]
    async fn kinds() {
        let f = FakeNetOps::new();
        f.add_link("br0", Some("bridge"));
        f.add_link("bond0", Some("bond"));
        f.add_link("eth0.5", Some("vlan"));
        f.add_link("veth1", Some("veth"));
        f.add_link("enp0", None);
        f.set_master("veth1", Some("br0")).await.unwrap();
        let list = list_host_interfaces(&f).await.unwrap();
        let kind = |n: &str| list.iter().find(|i| i.name == n).unwrap().kind;
        assert_eq!(kind("lo"), InterfaceKind::Loopback);
        assert_eq!(kind("br0"), InterfaceKind::Bridge);
        assert_eq!(kind("bond0"), InterfaceKind::Bond);
        assert_eq!(kind("eth0.5"), InterfaceKind::Vlan);
        assert_eq!(kind("veth1"), InterfaceKind::Unknown);
        // No /sys/class/net/enp0/device on this host: not provably physical.
        assert_eq!(kind("enp0"), InterfaceKind::Unknown);
        let veth = list.iter().find(|i| i.name == "veth1").unwrap();
        assert_eq!(veth.master.as_deref(), Some("br0"));
    }

    #[tokio::test]
    async fn real_host_has_loopback() {
        let ops = crate::RtNetlink::new().unwrap();
        let list = list_host_interfaces(&ops).await.unwrap();
        let lo = list.iter().find(|i| i.name == "lo").expect("lo");
        assert_eq!(lo.kind, InterfaceKind::Loopback);
        assert!(lo.addresses.iter().any(|a| a.addr().is_loopback()));
        assert!(interface_counters(&ops, "lo").await.unwrap().is_some());
        assert!(interface_counters(&ops, "ktnonexist0")
            .await
            .unwrap()
            .is_none());
    }
}
