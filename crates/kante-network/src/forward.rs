//! Port forwards done by the kernel (proxy devices with `nat=true`): one
//! nftables table per forwarding device, holding DNAT rules for traffic
//! that arrives from outside (prerouting) or starts on the host (output),
//! and a masquerade for hairpin traffic (a guest on the target's own
//! network reaching the forward). A table of its own keeps the rules apart
//! from the network's table (which a network change rewrites) and makes
//! removal one `delete table`; it stays in the kernel while the daemon is
//! away, so forwarded traffic never depends on kanted running.

use std::net::IpAddr;

pub use ipnet::IpNet;

use crate::nft::{list_tables, nft, remove_table, table_name};
use crate::{NetworkError, Result};

/// The transport a forward applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// `listen:port` on the host goes to `target:target_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    pub l4: L4,
    pub listen: IpAddr,
    pub port: u16,
    pub target: IpAddr,
    pub target_port: u16,
}

/// One device's forwards and the table that holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTable {
    pub table: String,
    pub forwards: Vec<PortForward>,
    /// Sources on the target's own network: their forwarded connections
    /// are masqueraded, or the target would answer them directly (from an
    /// address they did not call) and the connection would never open.
    pub hairpin: Vec<IpNet>,
}

/// The table of `device` of `instance` for a daemon: `<prefix>kante_px_`,
/// the names made safe, and a hash of both so that two pairs the
/// replacement of characters makes equal still get two tables.
pub fn forward_table_name(daemon_prefix: &str, instance: &str, device: &str) -> Result<String> {
    // FNV-1a: stable across builds and runs (the name outlives the daemon).
    let mut h: u32 = 0x811c_9dc5;
    for b in instance.bytes().chain([0]).chain(device.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let short = |s: &str| s.chars().take(40).collect::<String>();
    table_name(
        daemon_prefix,
        &format!("px_{}_{}_{h:08x}", short(instance), short(device)),
    )
}

/// Whether `table` is one of this daemon's forward tables.
pub fn is_forward_table(daemon_prefix: &str, table: &str) -> bool {
    table_name(daemon_prefix, "px_").is_ok_and(|p| table.starts_with(&p))
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn check(t: &ForwardTable) -> Result<()> {
    if t.forwards.is_empty() {
        return Err(NetworkError::InvalidDevice("a forward needs a port".into()));
    }
    for f in &t.forwards {
        if f.listen.is_ipv4() != f.target.is_ipv4() {
            return Err(NetworkError::InvalidDevice(format!(
                "listen address {} and target {} are of different families",
                f.listen, f.target
            )));
        }
        if f.listen.is_unspecified() || f.listen.is_loopback() {
            return Err(NetworkError::InvalidDevice(format!(
                "the kernel cannot forward {}: listen on an address of a host interface",
                f.listen
            )));
        }
    }
    Ok(())
}

/// The table's full text, preceded by the delete-if-present dance (so an
/// apply replaces the table in one transaction).
pub fn render(t: &ForwardTable) -> Result<String> {
    check(t)?;
    let name = &t.table;
    let mut dnat = String::new();
    let mut masq = String::new();
    for f in &t.forwards {
        let (fam, l4) = (family(f.listen), f.l4.as_str());
        let to = match f.target {
            IpAddr::V4(a) => format!("{a}:{}", f.target_port),
            IpAddr::V6(a) => format!("[{a}]:{}", f.target_port),
        };
        dnat.push_str(&format!(
            "    {fam} daddr {} {l4} dport {} dnat {fam} to {to}\n",
            f.listen, f.port
        ));
        for net in t
            .hairpin
            .iter()
            .filter(|n| n.addr().is_ipv4() == f.target.is_ipv4())
        {
            masq.push_str(&format!(
                "    {fam} saddr {} {fam} daddr {} {l4} dport {} ct status dnat masquerade\n",
                net.trunc(),
                f.target,
                f.target_port
            ));
        }
    }
    let mut s = format!("table inet {name}\ndelete table inet {name}\ntable inet {name} {{\n");
    s.push_str(&format!(
        "  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n{dnat}  }}\n"
    ));
    s.push_str(&format!(
        "  chain output {{\n    type nat hook output priority -100; policy accept;\n{dnat}  }}\n"
    ));
    s.push_str(&format!(
        "  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n{masq}  }}\n"
    ));
    s.push_str("}\n");
    Ok(s)
}

/// Puts the table in place (replacing one of the same name at once).
pub async fn apply(t: &ForwardTable) -> Result<()> {
    nft(&["-f", "-"], Some(&render(t)?)).await?;
    Ok(())
}

/// Removes a forward table; `false` if there was none.
pub async fn remove(table: &str) -> Result<bool> {
    remove_table(table).await
}

/// Whether bridged frames of the family pass through the IP hooks
/// (`br_netfilter` loaded, `bridge-nf-call-ip[6]tables` on). Then a guest
/// reaching its own forward is DNATed on the bridge and sent back out of
/// the port it came in by, which a bridge does only in hairpin mode.
pub fn bridge_netfilter(v6: bool) -> bool {
    let f = if v6 { "ip6tables" } else { "iptables" };
    std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{f}"))
        .is_ok_and(|v| v.trim() == "1")
}

/// Turns hairpin mode on for `port`, a Linux bridge port (a guest's host
/// side veth), as LXD does for the targets of its NAT forwards.
pub fn set_hairpin(port: &str) -> Result<()> {
    if port.is_empty() || port.contains('/') || port.starts_with('.') {
        return Err(NetworkError::InvalidDevice(format!(
            "invalid interface name {port:?}"
        )));
    }
    let path = format!("/sys/class/net/{port}/brport/hairpin_mode");
    std::fs::write(&path, "1").map_err(NetworkError::io(format!("writing {path}")))
}

/// This daemon's forward tables in the kernel.
pub async fn list(daemon_prefix: &str) -> Result<Vec<String>> {
    Ok(list_tables()
        .await?
        .into_iter()
        .filter(|t| is_forward_table(daemon_prefix, t))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(listen: &str, port: u16, target: &str, tp: u16) -> PortForward {
        PortForward {
            l4: L4::Tcp,
            listen: listen.parse().unwrap(),
            port,
            target: target.parse().unwrap(),
            target_port: tp,
        }
    }

    #[test]
    fn names_are_distinct_and_recognised() {
        let a = forward_table_name("k1_", "web-1", "http").unwrap();
        let b = forward_table_name("k1_", "web", "1_http").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("k1_kante_px_web_1_http_"), "{a}");
        assert!(is_forward_table("k1_", &a));
        assert!(!is_forward_table("", &a));
        assert!(!is_forward_table("k1_", "k1_kante_lxdbr0"));
        assert!(is_forward_table(
            "",
            &forward_table_name("", "c", "d").unwrap()
        ));
    }

    #[test]
    fn text() {
        let t = ForwardTable {
            table: "kante_px_c_d_0".into(),
            forwards: vec![fwd("192.0.2.1", 8080, "10.1.2.5", 80)],
            hairpin: vec!["10.1.2.1/24".parse().unwrap()],
        };
        let s = render(&t).unwrap();
        assert!(s.starts_with("table inet kante_px_c_d_0\ndelete table inet kante_px_c_d_0\n"));
        assert_eq!(
            s.matches("ip daddr 192.0.2.1 tcp dport 8080 dnat ip to 10.1.2.5:80")
                .count(),
            2,
            "{s}"
        );
        assert!(s.contains(
            "ip saddr 10.1.2.0/24 ip daddr 10.1.2.5 tcp dport 80 ct status dnat masquerade"
        ));
        let v6 = ForwardTable {
            forwards: vec![fwd("2001:db8::1", 53, "fd00::5", 5353)],
            hairpin: vec!["10.1.2.1/24".parse().unwrap()],
            ..t.clone()
        };
        let s = render(&v6).unwrap();
        assert!(s.contains("ip6 daddr 2001:db8::1 tcp dport 53 dnat ip6 to [fd00::5]:5353"));
        assert!(
            !s.contains("masquerade"),
            "no IPv4 hairpin for an IPv6 target"
        );
    }

    #[test]
    fn refused() {
        let t = |f| ForwardTable {
            table: "x".into(),
            forwards: vec![f],
            hairpin: vec![],
        };
        assert!(render(&t(fwd("0.0.0.0", 1, "10.0.0.2", 1))).is_err());
        assert!(render(&t(fwd("127.0.0.1", 1, "10.0.0.2", 1))).is_err());
        assert!(render(&t(fwd("192.0.2.1", 1, "fd00::2", 1))).is_err());
        assert!(render(&ForwardTable {
            table: "x".into(),
            forwards: vec![],
            hairpin: vec![]
        })
        .is_err());
    }
}
