//! The host side of an overlay on a member, kept apart from other
//! overlays that share its subnet: the main table then holds one
//! connected route per overlay bridge for the same prefix, and the host's
//! own packets to a guest (the gateway's answers to pings, dnsmasq's DNS
//! answers, NAT's returns) would all follow the first one. So each overlay
//! has a routing table of its own ([`table_id`]: its subnet on its
//! bridge) and two rules (preference [`RULE_PREF`]) that send there what
//! belongs to it: packets from its gateway address, and packets of
//! connections that came in on its bridge, whose conntrack mark ([`mark`])
//! an `ip`-family nftables table sets and copies to the packets of the
//! connection (prerouting for NAT returns, output for local answers).
//! Rules and routes are made with iproute2's `ip`; everything is
//! idempotent and removed with the overlay.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::nft;
use crate::ovs::{find_program, run};
use crate::{NetworkError, Result};

/// The preference of an overlay's rules (before `main`'s 32766).
pub const RULE_PREF: u32 = 1000;

/// The routing table of the overlay with `vni` (above every VNI, so
/// never `main`, `local` or `default`).
pub fn table_id(vni: u32) -> u32 {
    0x0100_0000 + vni
}

/// The conntrack and packet mark of the overlay with `vni`.
pub fn mark(vni: u32) -> u32 {
    0x0100_0000 + vni
}

async fn ip(args: &[String]) -> Result<String> {
    let prog = find_program("ip").ok_or(NetworkError::MissingTool("ip", "iproute2"))?;
    run(&prog, args).await
}

fn args(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The rules of an overlay, as `ip rule` takes them after `add`/`del`.
fn rules(vni: u32, gateway: Ipv4Addr) -> [String; 2] {
    let (t, m) = (table_id(vni), mark(vni));
    [
        format!("pref {RULE_PREF} from {gateway}/32 table {t}"),
        format!("pref {RULE_PREF} fwmark {m:#x} table {t}"),
    ]
}

/// The `ip` table that marks the overlay's connections.
pub fn render_mark_table(table: &str, bridge: &str, vni: u32) -> String {
    let m = mark(vni);
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n  \
         chain mark_in {{\n    type filter hook prerouting priority -150; policy accept;\n    \
         iifname \"{bridge}\" ct mark set {m:#x}\n    ct mark {m:#x} meta mark set ct mark\n  }}\n  \
         chain mark_out {{\n    type route hook output priority -150; policy accept;\n    \
         ct mark {m:#x} meta mark set ct mark\n  }}\n}}\n"
    )
}

/// Makes the overlay's table, rules and marks (again: nothing doubles).
pub async fn ensure(nft_table: &str, bridge: &str, vni: u32, net: Ipv4Net) -> Result<()> {
    let t = table_id(vni);
    ip(&args(&format!(
        "-4 route replace {} dev {bridge} proto kernel scope link src {} table {t}",
        net.trunc(),
        net.addr()
    )))
    .await?;
    for r in rules(vni, net.addr()) {
        // A rule added twice is there twice: delete first.
        while ip(&args(&format!("-4 rule del {r}"))).await.is_ok() {}
        ip(&args(&format!("-4 rule add {r}"))).await?;
    }
    nft::nft(
        &["-f", "-"],
        Some(&render_mark_table(nft_table, bridge, vni)),
    )
    .await?;
    Ok(())
}

/// Removes what [`ensure`] made; what is already gone is skipped.
pub async fn remove(nft_table: &str, vni: u32, gateway: Ipv4Addr) -> Result<()> {
    for r in rules(vni, gateway) {
        while ip(&args(&format!("-4 rule del {r}"))).await.is_ok() {}
    }
    let _ = ip(&args(&format!("-4 route flush table {}", table_id(vni)))).await;
    let out = nft::nft(&["list", "tables", "ip"], None).await?;
    if out
        .lines()
        .any(|l| l.trim() == format!("table ip {nft_table}"))
    {
        nft::nft(&["delete", "table", "ip", nft_table], None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_overlay_has_its_table_rules_and_mark() {
        assert_eq!(table_id(4096), 16_781_312);
        assert_ne!(table_id(4096), table_id(4097));
        let r = rules(4096, "10.0.9.254".parse().unwrap());
        assert_eq!(r[0], "pref 1000 from 10.0.9.254/32 table 16781312");
        assert_eq!(r[1], "pref 1000 fwmark 0x1001000 table 16781312");
        let t = render_mark_table("kante_ov2", "ov2", 4096);
        assert!(t.contains("iifname \"ov2\" ct mark set 0x1001000"), "{t}");
        assert!(t.contains("ct mark 0x1001000 meta mark set ct mark"), "{t}");
        assert!(t.contains("type route hook output"), "{t}");
    }
}
