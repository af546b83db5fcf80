//! The interfaces of another network namespace and their addresses, as
//! getifaddrs(3) lists them there (netlink, from a throw-away thread that
//! joined the namespace).

use std::net::IpAddr;

use crate::netns::NetnsRef;
use crate::{NetworkError, Result};

/// One getifaddrs entry: an interface and one of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub name: String,
    pub up: bool,
    pub loopback: bool,
    pub addr: Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// The link-layer address, as `aa:bb:cc:dd:ee:ff`.
    Mac(String),
    /// An IP address with its prefix length.
    Ip(IpAddr, u32),
    Other,
}

/// Every address of every interface inside `netns`.
pub fn interface_addresses(netns: &NetnsRef) -> Result<Vec<IfAddr>> {
    netns.run(|| {
        nix::ifaddrs::getifaddrs()
            .map(|list| list.map(entry).collect())
            .map_err(|e| NetworkError::io("getifaddrs")(e.into()))
    })
}

/// The IP addresses of the host's own interfaces (this thread's network
/// namespace) that are up, without link-local ones: what the daemon's
/// certificate names and `GET /1.0` lists for a wildcard listener.
pub fn host_ip_addresses() -> Vec<IpAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return vec![];
    };
    let mut out: Vec<IpAddr> = list
        .map(entry)
        .filter(|a| a.up)
        .filter_map(|a| match a.addr {
            Addr::Ip(ip, _) => Some(ip),
            _ => None,
        })
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn entry(ifa: nix::ifaddrs::InterfaceAddress) -> IfAddr {
    use nix::net::if_::InterfaceFlags;
    let up = ifa.flags.contains(InterfaceFlags::IFF_UP);
    let loopback = ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK);
    let addr = match ifa.address {
        Some(a) => {
            if let Some(l) = a.as_link_addr() {
                l.addr()
                    .map(|m| {
                        Addr::Mac(
                            m.iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<Vec<_>>()
                                .join(":"),
                        )
                    })
                    .unwrap_or(Addr::Other)
            } else if let Some(v4) = a.as_sockaddr_in() {
                let prefix = ifa
                    .netmask
                    .and_then(|m| m.as_sockaddr_in().map(|n| u32::from(n.ip()).count_ones()))
                    .unwrap_or(32);
                Addr::Ip(IpAddr::V4(v4.ip()), prefix)
            } else if let Some(v6) = a.as_sockaddr_in6() {
                let prefix = ifa
                    .netmask
                    .and_then(|m| m.as_sockaddr_in6().map(|n| u128::from(n.ip()).count_ones()))
                    .unwrap_or(128);
                Addr::Ip(IpAddr::V6(v6.ip()), prefix)
            } else {
                Addr::Other
            }
        }
        None => Addr::Other,
    };
    IfAddr {
        name: ifa.interface_name,
        up,
        loopback,
        addr,
    }
}
