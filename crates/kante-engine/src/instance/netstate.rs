//! The network part of an instance's state, read from inside its network
//! namespace: addresses with getifaddrs (netlink in the container's netns,
//! entered by a throw-away thread), counters from /proc/<pid>/net/dev.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kante_api::instance::{InstanceStateNetwork, NetworkAddress, NetworkCounters};
use kante_network::ifaddrs::{interface_addresses, Addr};
use kante_network::NetnsRef;

/// Interfaces of the container whose init is `pid`; empty if unreadable.
pub fn read(pid: i32) -> BTreeMap<String, InstanceStateNetwork> {
    let mut out = BTreeMap::new();
    // Read by a throw-away thread that joined the namespace.
    let Ok(addrs) = interface_addresses(&NetnsRef::Pid(pid as u32)) else {
        return out;
    };
    let counters = read_counters(pid);
    for a in addrs {
        let e = out.entry(a.name.clone()).or_insert_with(|| {
            let sys = format!("/proc/{pid}/root/sys/class/net/{}", a.name);
            let read = |f: &str| {
                std::fs::read_to_string(format!("{sys}/{f}"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            };
            InstanceStateNetwork {
                addresses: Vec::new(),
                counters: counters.get(&a.name).cloned().unwrap_or_default(),
                hwaddr: String::new(),
                host_name: String::new(),
                mtu: read("mtu").parse().unwrap_or(0),
                state: if a.up { "up".into() } else { "down".into() },
                kind: if a.loopback {
                    "loopback".into()
                } else {
                    "broadcast".into()
                },
            }
        });
        match a.addr {
            Addr::Mac(m) if !a.loopback => e.hwaddr = m,
            Addr::Ip(ip, prefix) => e.addresses.push(NetworkAddress {
                family: if ip.is_ipv4() {
                    "inet".into()
                } else {
                    "inet6".into()
                },
                address: ip.to_string(),
                netmask: prefix.to_string(),
                scope: scope_of(&ip, a.loopback).into(),
            }),
            _ => {}
        }
    }
    out
}

fn scope_of(ip: &IpAddr, loopback: bool) -> &'static str {
    if loopback || ip.is_loopback() {
        return "local";
    }
    match ip {
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "link",
        IpAddr::V4(v4) if v4.is_link_local() => "link",
        _ => "global",
    }
}

fn read_counters(pid: i32) -> BTreeMap<String, NetworkCounters> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

/// Parses /proc/net/dev (receive columns first, then transmit).
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetworkCounters> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<i64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 16 {
            continue;
        }
        out.insert(
            name.trim().to_string(),
            NetworkCounters {
                bytes_received: v[0],
                packets_received: v[1],
                errors_received: v[2],
                packets_dropped_inbound: v[3],
                bytes_sent: v[8],
                packets_sent: v[9],
                errors_sent: v[10],
                packets_dropped_outbound: v[11],
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:    1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0\n  \
eth0:  738       3    0    1    0     0          0         0     2072      20    0    2    0     0       0          0\n";
        let m = parse_net_dev(t);
        assert_eq!(m["eth0"].bytes_received, 738);
        assert_eq!(m["eth0"].packets_sent, 20);
        assert_eq!(m["eth0"].packets_dropped_outbound, 2);
        assert_eq!(m["lo"].bytes_sent, 1234);
    }

    #[test]
    fn scopes() {
        assert_eq!(scope_of(&"fe80::1".parse().unwrap(), false), "link");
        assert_eq!(scope_of(&"10.0.3.5".parse().unwrap(), false), "global");
        assert_eq!(scope_of(&"127.0.0.1".parse().unwrap(), true), "local");
    }

    #[test]
    fn reads_own_namespace() {
        // Our own pid: at least a loopback interface must show up.
        let m = read(std::process::id() as i32);
        assert!(
            m.values().any(|n| n.kind == "loopback"),
            "{:?}",
            m.keys().collect::<Vec<_>>()
        );
    }
}
