//! Kernel-facing link operations: the [`NetOps`] trait and its rtnetlink
//! implementation. Container-side interfaces are created directly inside the
//! container's network namespace (IFLA_NET_NS_PID/FD on the veth peer or the
//! macvlan), with their final name, MAC and MTU, so nothing ever has to
//! enter that namespace to rename or move them.

use std::fmt;
use std::os::fd::AsRawFd;
use std::str::FromStr;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{
    Handle, LinkBridge, LinkGre, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVlan, LinkVxlan,
};

use crate::netns::NetnsRef;
use crate::overlay::VxlanRequest;
use crate::subnet::{validate_ifname, MacAddr};
use crate::tunnel::{Endpoint, TunnelRequest};
use crate::{NetworkError, Result};
use std::net::IpAddr;

/// What the kernel says about one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkDetails {
    pub index: u32,
    pub name: String,
    /// IFLA_INFO_KIND (`bridge`, `veth`, `macvlan`, `vlan`, `bond`, `tun`,
    /// `openvswitch`, …); `None` for physical NICs and loopback.
    pub kind: Option<String>,
    /// Index of the bridge or bond this link is enslaved to.
    pub master: Option<u32>,
    pub mtu: u32,
    /// `aa:bb:…` as the kernel reports it (may be all-zero for loopback).
    pub hwaddr: Option<String>,
    pub up: bool,
    pub loopback: bool,
    pub stats: LinkStats,
}

impl LinkDetails {
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}

/// Interface counters (IFLA_STATS64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// A veth pair whose peer is born inside another network namespace.
#[derive(Debug, Clone)]
pub struct VethRequest {
    pub host_name: String,
    pub peer_name: String,
    pub peer_netns: NetnsRef,
    pub peer_hwaddr: Option<MacAddr>,
    pub mtu: Option<u32>,
    /// Linux bridge to enslave the host end to (done in the same message).
    pub master: Option<String>,
}

/// Macvlan modes (`mode=` of a macvlan NIC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacvlanMode {
    #[default]
    Bridge,
    Vepa,
    Private,
    Passthru,
}

impl FromStr for MacvlanMode {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "bridge" | "" => MacvlanMode::Bridge,
            "vepa" => MacvlanMode::Vepa,
            "private" => MacvlanMode::Private,
            "passthru" => MacvlanMode::Passthru,
            _ => {
                return Err(NetworkError::InvalidDevice(format!(
                    "mode {s:?}: expected bridge, vepa, private or passthru"
                )))
            }
        })
    }
}

impl fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Private => "private",
            MacvlanMode::Passthru => "passthru",
        })
    }
}

/// A macvlan born inside another network namespace.
#[derive(Debug, Clone)]
pub struct MacvlanRequest {
    pub name: String,
    pub parent: String,
    pub mode: MacvlanMode,
    pub netns: NetnsRef,
    pub hwaddr: Option<MacAddr>,
    pub mtu: Option<u32>,
}

/// The kernel operations networks and NICs need. [`RtNetlink`] is the real
/// one; [`crate::FakeNetOps`] records calls for unit tests.
#[async_trait]
pub trait NetOps: Send + Sync {
    async fn link(&self, name: &str) -> Result<Option<LinkDetails>>;
    async fn links(&self) -> Result<Vec<LinkDetails>>;
    /// Creates a Linux bridge, up. `Exists` if the name is taken.
    async fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<()>;
    async fn set_up(&self, name: &str) -> Result<()>;
    async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()>;
    /// Enslaves `name` to bridge `master`, or frees it with `None`.
    async fn set_master(&self, name: &str, master: Option<&str>) -> Result<()>;
    /// Adds an address; already present is fine. IPv6 gets NODAD so that
    /// dnsmasq can bind it at once.
    async fn add_address(&self, name: &str, addr: IpNet) -> Result<()>;
    async fn addresses(&self, name: &str) -> Result<Vec<IpNet>>;
    /// Creates the pair; the host end is brought up (and enslaved when asked).
    async fn create_veth(&self, req: &VethRequest) -> Result<()>;
    async fn create_macvlan(&self, req: &MacvlanRequest) -> Result<()>;
    /// Makes (or reuses) the VLAN sub-interface `parent.id`, up; returns its name.
    async fn ensure_vlan(&self, parent: &str, id: u16) -> Result<String>;
    /// Deletes a link; `false` if there was none.
    async fn delete_link(&self, name: &str) -> Result<bool>;
    /// Brings `name` up inside `netns` (an instance's end of a NIC).
    async fn set_up_in(&self, netns: &NetnsRef, name: &str) -> Result<()>;
    /// Makes a VXLAN or gretap device (a bridge's static tunnel), down
    /// and unattached.
    async fn create_tunnel(&self, req: &TunnelRequest) -> Result<()>;
    /// Makes an overlay's VXLAN device (no learning, no remote: its peers
    /// are FDB entries), down and unattached.
    async fn create_vxlan(&self, req: &VxlanRequest) -> Result<()>;
    /// Appends an all-zero FDB entry to `device` towards `dst` (head-end
    /// replication: broadcast and unknown frames go to every such `dst`);
    /// already present is fine.
    async fn fdb_append(&self, device: &str, dst: IpAddr) -> Result<()>;
    /// Removes the all-zero FDB entry of `device` towards `dst`; `false`
    /// if there was none.
    async fn fdb_delete(&self, device: &str, dst: IpAddr) -> Result<bool>;
}

/// [`NetOps`] over an rtnetlink socket in the caller's network namespace.
#[derive(Clone)]
pub struct RtNetlink {
    handle: Handle,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// How often an interrupted dump is asked again before it is an error.
const DUMP_RETRIES: u32 = 5;

fn nl_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let op = op.into();
    move |e| {
        let source = match errno(&e) {
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::other(e.to_string()),
        };
        NetworkError::Netlink { op, source }
    }
}

fn details(msg: &LinkMessage) -> LinkDetails {
    let mut d = LinkDetails {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        loopback: msg.header.flags.contains(LinkFlags::Loopback),
        ..Default::default()
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => d.name = n.clone(),
            LinkAttribute::Mtu(m) => d.mtu = *m,
            LinkAttribute::Controller(m) if *m != 0 => d.master = Some(*m),
            LinkAttribute::Address(b) => {
                d.hwaddr = Some(
                    b.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        d.kind = Some(k.to_string());
                    }
                }
            }
            LinkAttribute::Stats64(s) => {
                d.stats = LinkStats {
                    rx_bytes: s.rx_bytes,
                    rx_packets: s.rx_packets,
                    rx_errors: s.rx_errors,
                    rx_dropped: s.rx_dropped,
                    tx_bytes: s.tx_bytes,
                    tx_packets: s.tx_packets,
                    tx_errors: s.tx_errors,
                    tx_dropped: s.tx_dropped,
                }
            }
            _ => {}
        }
    }
    d
}

fn check_name(name: &str) -> Result<()> {
    validate_ifname(name).map_err(|e| NetworkError::InvalidDevice(e.to_string()))
}

impl RtNetlink {
    /// Opens a netlink socket; its connection task runs on the current
    /// tokio runtime.
    pub fn new() -> Result<RtNetlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(NetworkError::io("opening a netlink socket"))?;
        tokio::spawn(conn);
        Ok(RtNetlink { handle })
    }

    async fn index(&self, name: &str) -> Result<u32> {
        self.link(name)
            .await?
            .map(|l| l.index)
            .ok_or_else(|| NetworkError::NotFound(format!("interface {name}")))
    }

    async fn change(&self, op: String, msg: LinkMessage) -> Result<()> {
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(nl_err(op))
    }
}

#[async_trait]
impl NetOps for RtNetlink {
    async fn link(&self, name: &str) -> Result<Option<LinkDetails>> {
        check_name(name)?;
        let mut s = self.handle.link().get().match_name(name).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(details(&m))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(format!("looking up {name}"))(e)),
        }
    }

    async fn links(&self) -> Result<Vec<LinkDetails>> {
        // A dump the kernel finds changed under it (a veth made or removed
        // meanwhile: NLM_F_DUMP_INTR) ends in EBUSY; it is only to be
        // asked again. Seen in the suite: a network listing failed while
        // a prune deleted guests on the same host.
        let mut tries = 0;
        loop {
            let got: std::result::Result<Vec<LinkMessage>, _> =
                self.handle.link().get().execute().try_collect().await;
            match got {
                Ok(msgs) => return Ok(msgs.iter().map(details).collect()),
                Err(e) if errno(&e) == Some(libc::EBUSY) && tries < DUMP_RETRIES => tries += 1,
                Err(e) => return Err(nl_err("listing links")(e)),
            }
        }
    }

    async fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<()> {
        check_name(name)?;
        let mut b = LinkBridge::new(name).up();
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        match self.handle.link().add(b.build()).execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                Err(NetworkError::Exists(format!("interface {name}")))
            }
            r => r.map_err(nl_err(format!("creating bridge {name}"))),
        }
    }

    async fn set_up(&self, name: &str) -> Result<()> {
        let idx = self.index(name).await?;
        self.change(
            format!("setting {name} up"),
            LinkUnspec::new_with_index(idx).up().build(),
        )
        .await
    }

    async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        let idx = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(idx).mtu(mtu).build();
        self.change(format!("setting the MTU of {name} to {mtu}"), msg)
            .await
    }

    async fn set_master(&self, name: &str, master: Option<&str>) -> Result<()> {
        let idx = self.index(name).await?;
        let b = LinkUnspec::new_with_index(idx);
        let b = match master {
            Some(m) => b.controller(self.index(m).await?),
            None => b.nocontroller(),
        };
        self.change(format!("attaching {name} to {master:?}"), b.build())
            .await
    }

    async fn add_address(&self, name: &str, addr: IpNet) -> Result<()> {
        let idx = self.index(name).await?;
        let mut req = self
            .handle
            .address()
            .add(idx, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(nl_err(format!("adding {addr} to {name}"))),
        }
    }

    async fn addresses(&self, name: &str) -> Result<Vec<IpNet>> {
        let idx = self.index(name).await?;
        // Asked again when interrupted, as `links` is.
        let mut tries = 0;
        let msgs: Vec<_> = loop {
            let got: std::result::Result<Vec<_>, _> = self
                .handle
                .address()
                .get()
                .set_link_index_filter(idx)
                .execute()
                .try_collect()
                .await;
            match got {
                Ok(msgs) => break msgs,
                Err(e) if errno(&e) == Some(libc::EBUSY) && tries < DUMP_RETRIES => tries += 1,
                Err(e) => return Err(nl_err(format!("listing addresses of {name}"))(e)),
            }
        };
        let mut out = Vec::new();
        for m in msgs {
            if m.header.index != idx {
                continue;
            }
            // IFA_LOCAL is the interface's own address on point-to-point links.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = local.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = addr {
                if let Ok(n) = IpNet::new(ip, m.header.prefix_len) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    async fn create_veth(&self, req: &VethRequest) -> Result<()> {
        check_name(&req.host_name)?;
        check_name(&req.peer_name)?;
        // Held open until the kernel has the message: it is passed by number.
        let ns = match &req.peer_netns {
            NetnsRef::Path(_) => Some(req.peer_netns.open()?),
            NetnsRef::Pid(_) => None,
        };
        let mut peer = LinkUnspec::new_with_name(&req.peer_name);
        if let Some(mac) = req.peer_hwaddr {
            peer = peer.address(mac.octets().to_vec());
        }
        if let Some(m) = req.mtu {
            peer = peer.mtu(m);
        }
        peer = match (&req.peer_netns, &ns) {
            (NetnsRef::Pid(pid), _) => peer.setns_by_pid(*pid),
            (_, Some(f)) => peer.setns_by_fd(f.as_raw_fd()),
            _ => unreachable!("a path namespace is opened above"),
        };
        let mut host = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(req.host_name.clone())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(m) = req.mtu {
            host = host.mtu(m);
        }
        if let Some(br) = &req.master {
            host = host.controller(self.index(br).await?);
        }
        let r = self.handle.link().add(host.build()).execute().await;
        drop(ns);
        match r {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(NetworkError::Exists(format!(
                "interface {} on the host or {} in the instance",
                req.host_name, req.peer_name
            ))),
            r => r.map_err(nl_err(format!(
                "creating veth {} / {} (in {})",
                req.host_name,
                req.peer_name,
                req.peer_netns.path().display()
            ))),
        }
    }

    async fn create_macvlan(&self, req: &MacvlanRequest) -> Result<()> {
        check_name(&req.name)?;
        let parent = self.index(&req.parent).await?;
        let mode = match req.mode {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        };
        let ns = match &req.netns {
            NetnsRef::Path(_) => Some(req.netns.open()?),
            NetnsRef::Pid(_) => None,
        };
        let mut b = LinkMacVlan::new(&req.name, parent, mode);
        if let Some(mac) = req.hwaddr {
            b = b.address(mac.octets().to_vec());
        }
        if let Some(m) = req.mtu {
            b = b.mtu(m);
        }
        b = match (&req.netns, &ns) {
            (NetnsRef::Pid(pid), _) => b.setns_by_pid(*pid),
            (_, Some(f)) => b.setns_by_fd(f.as_raw_fd()),
            _ => unreachable!("a path namespace is opened above"),
        };
        let r = self.handle.link().add(b.build()).execute().await;
        drop(ns);
        match r {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(NetworkError::Exists(format!(
                "interface {} in the instance",
                req.name
            ))),
            r => r.map_err(nl_err(format!(
                "creating macvlan {} on {}",
                req.name, req.parent
            ))),
        }
    }

    async fn ensure_vlan(&self, parent: &str, id: u16) -> Result<String> {
        let name = format!("{parent}.{id}");
        check_name(&name)?;
        if let Some(l) = self.link(&name).await? {
            if l.kind.as_deref() != Some("vlan") {
                return Err(NetworkError::Exists(format!(
                    "interface {name} (not a VLAN)"
                )));
            }
            if !l.up {
                self.set_up(&name).await?;
            }
            return Ok(name);
        }
        let p = self.index(parent).await?;
        let msg = LinkVlan::new(&name, p, id).up().build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(name),
            Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => Err(NetworkError::Unsupported(
                format!("VLAN {id} on {parent}: this kernel has no 802.1Q VLAN support"),
            )),
            Err(e) => Err(nl_err(format!("creating VLAN {name}"))(e)),
        }
    }

    async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(l) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(l.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(nl_err(format!("deleting {name}"))(e)),
        }
    }

    async fn set_up_in(&self, netns: &NetnsRef, name: &str) -> Result<()> {
        crate::netns::set_up_in_netns(netns, name)
    }

    async fn create_tunnel(&self, req: &TunnelRequest) -> Result<()> {
        check_name(&req.device)?;
        let t = &req.tunnel;
        let msg = match t.protocol.as_str() {
            "gre" => {
                let Endpoint::Unicast {
                    local: IpAddr::V4(l),
                    remote: IpAddr::V4(r),
                } = t.endpoint
                else {
                    return Err(NetworkError::Unsupported(format!(
                        "tunnel {}: gre over IPv6 is not supported",
                        t.name
                    )));
                };
                LinkGre::new_gretap(&req.device)
                    .local(l)
                    .remote(r)
                    .mtu(req.mtu)
                    .build()
            }
            _ => {
                let mut b = LinkVxlan::new(&req.device, t.id)
                    .port(t.port)
                    .ttl(t.ttl)
                    .mtu(req.mtu);
                b = match &t.endpoint {
                    Endpoint::Unicast { local, remote } => match (local, remote) {
                        (IpAddr::V4(l), IpAddr::V4(r)) => b.local(*l).remote(*r),
                        (IpAddr::V6(l), IpAddr::V6(r)) => b.local6(*l).remote6(*r),
                        _ => unreachable!("families are checked when parsed"),
                    },
                    Endpoint::Multicast { group, interface } => {
                        let dev = match interface {
                            Some(i) => i.clone(),
                            None => crate::tunnel::default_route_interface()?,
                        };
                        let b = b.dev(self.index(&dev).await?);
                        match group {
                            IpAddr::V4(g) => b.group(*g),
                            IpAddr::V6(g) => b.group6(*g),
                        }
                    }
                };
                b.build()
            }
        };
        match self.handle.link().add(msg).execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                Err(NetworkError::Exists(format!("interface {}", req.device)))
            }
            Err(e) if matches!(errno(&e), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) => {
                Err(NetworkError::Unsupported(format!(
                    "tunnel {} ({}): this kernel cannot make it ({e})",
                    t.name, t.protocol
                )))
            }
            r => r.map_err(nl_err(format!("creating tunnel {}", req.device))),
        }
    }
    async fn create_vxlan(&self, req: &VxlanRequest) -> Result<()> {
        check_name(&req.device)?;
        let b = LinkVxlan::new(&req.device, req.vni)
            .port(req.port)
            .learning(false)
            .mtu(req.mtu);
        let b = match req.local {
            IpAddr::V4(l) => b.local(l),
            IpAddr::V6(l) => b.local6(l),
        };
        match self.handle.link().add(b.build()).execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                Err(NetworkError::Exists(format!("interface {}", req.device)))
            }
            r => r.map_err(nl_err(format!("creating vxlan {}", req.device))),
        }
    }

    async fn fdb_append(&self, device: &str, dst: IpAddr) -> Result<()> {
        use futures_util::StreamExt;
        use rtnetlink::packet_core::{
            NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST,
        };
        use rtnetlink::packet_route::RouteNetlinkMessage;
        let msg = zero_fdb(&self.handle, self.index(device).await?, dst);
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        let op = format!("adding {dst} to the FDB of {device}");
        let mut handle = self.handle.clone();
        let mut answers = handle.request(req).map_err(nl_err(op.clone()))?;
        while let Some(m) = answers.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                let e = rtnetlink::Error::NetlinkError(e);
                if errno(&e) == Some(libc::EEXIST) {
                    return Ok(());
                }
                return Err(nl_err(op)(e));
            }
        }
        Ok(())
    }

    async fn fdb_delete(&self, device: &str, dst: IpAddr) -> Result<bool> {
        let Some(link) = self.link(device).await? else {
            return Ok(false);
        };
        let msg = zero_fdb(&self.handle, link.index, dst);
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(nl_err(format!("removing {dst} from the FDB of {device}"))(
                e,
            )),
        }
    }
}

/// The all-zero FDB entry of link `index` towards `dst` (`bridge fdb …
/// 00:00:00:00:00:00 dev D dst X self permanent`).
fn zero_fdb(
    handle: &Handle,
    index: u32,
    dst: IpAddr,
) -> rtnetlink::packet_route::neighbour::NeighbourMessage {
    use rtnetlink::packet_route::neighbour::NeighbourFlags;
    let mut req = handle
        .neighbours()
        .add_bridge(index, &[0u8; 6])
        .destination(dst)
        .flags(NeighbourFlags::Own);
    req.message_mut().clone()
}
