//! One nftables table per managed network (`inet` family), applied with
//! `nft -f -` in one transaction that deletes and recreates it, so applying
//! again (daemon restart) never duplicates rules.

use std::path::PathBuf;
use std::process::Stdio;

use ipnet::{Ipv4Net, Ipv6Net};
use tokio::io::AsyncWriteExt;

use crate::ovs::find_program;
use crate::{NetworkError, Result};

/// What a network's table filters and translates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftNetwork {
    pub table: String,
    pub bridge: String,
    pub ipv4: Option<Ipv4Net>,
    pub ipv4_nat: bool,
    pub ipv6: Option<Ipv6Net>,
    pub ipv6_nat: bool,
}

/// What [`apply`] did beyond the table: host settings changed, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftPlan {
    pub table: String,
    pub changes: Vec<String>,
}

/// `<daemon_prefix>kante_<network>`, with anything but `[A-Za-z0-9_]` turned
/// into `_`. The prefix keeps two daemons (tests) apart; it must start with
/// a letter when not empty.
pub fn table_name(daemon_prefix: &str, network: &str) -> Result<String> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    if let Some(c) = daemon_prefix.chars().next() {
        if !c.is_ascii_alphabetic() {
            return Err(NetworkError::InvalidConfig(format!(
                "nftables prefix {daemon_prefix:?} must start with a letter"
            )));
        }
    }
    Ok(format!("{}kante_{}", clean(daemon_prefix), clean(network)))
}

fn nft_program() -> Result<PathBuf> {
    find_program("nft").ok_or(NetworkError::MissingTool("nft", "nftables"))
}

/// The table's full text, preceded by the delete-if-present dance.
pub fn render(n: &NftNetwork) -> String {
    let t = &n.table;
    let br = &n.bridge;
    let mut s = String::new();
    // `table` first makes the table exist, so `delete` cannot fail.
    s.push_str(&format!(
        "table inet {t}\ndelete table inet {t}\ntable inet {t} {{\n"
    ));
    s.push_str(&format!(
        "  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    \
         iifname \"{br}\" accept\n    oifname \"{br}\" accept\n  }}\n"
    ));
    s.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
    s.push_str(&format!(
        "    iifname \"{br}\" udp dport {{ 53, 67 }} accept\n"
    ));
    s.push_str(&format!("    iifname \"{br}\" tcp dport 53 accept\n"));
    if n.ipv6.is_some() {
        s.push_str(&format!("    iifname \"{br}\" udp dport 547 accept\n"));
        s.push_str(&format!(
            "    iifname \"{br}\" meta l4proto ipv6-icmp accept\n"
        ));
    }
    s.push_str("  }\n");
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n",
    );
    if let (Some(v4), true) = (n.ipv4, n.ipv4_nat) {
        let net = v4.trunc();
        s.push_str(&format!(
            "    ip saddr {net} ip daddr != {net} masquerade\n"
        ));
    }
    if let (Some(v6), true) = (n.ipv6, n.ipv6_nat) {
        let net = v6.trunc();
        s.push_str(&format!(
            "    ip6 saddr {net} ip6 daddr != {net} masquerade\n"
        ));
    }
    s.push_str("  }\n");
    s.push_str("}\n");
    s
}

pub(crate) async fn nft(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let prog = nft_program()?;
    let mut child = tokio::process::Command::new(&prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetworkError::io("running nft"))?;
    if let Some(text) = stdin {
        let mut i = child.stdin.take().expect("piped");
        i.write_all(text.as_bytes())
            .await
            .map_err(NetworkError::io("writing to nft"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(NetworkError::io("waiting for nft"))?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            program: format!("nft {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sets a sysctl file to "1" if it is not already; says so when it did.
fn enable_sysctl(path: &str, changes: &mut Vec<String>) -> Result<()> {
    let cur = std::fs::read_to_string(path).map_err(NetworkError::io(format!("reading {path}")))?;
    if cur.trim() != "1" {
        std::fs::write(path, "1").map_err(NetworkError::io(format!("writing {path}")))?;
        let name = path.trim_start_matches("/proc/sys/").replace('/', ".");
        changes.push(format!("{name} set to 1 (was {})", cur.trim()));
    }
    Ok(())
}

/// Applies the network's table atomically, and turns on forwarding for the
/// families that NAT. Port forwards live in tables of their own
/// (`forward.rs`), which this leaves alone.
pub async fn apply(n: &NftNetwork) -> Result<NftPlan> {
    nft(&["-f", "-"], Some(&render(n))).await?;
    let mut plan = NftPlan {
        table: n.table.clone(),
        changes: Vec::new(),
    };
    if n.ipv4.is_some() && n.ipv4_nat {
        enable_sysctl("/proc/sys/net/ipv4/ip_forward", &mut plan.changes)?;
    }
    if n.ipv6.is_some() && n.ipv6_nat {
        enable_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", &mut plan.changes)?;
    }
    Ok(plan)
}

/// Names of the `inet` tables that exist.
pub async fn list_tables() -> Result<Vec<String>> {
    let out = nft(&["list", "tables", "inet"], None).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table inet "))
        .map(str::to_string)
        .collect())
}

/// The table as `nft list table` prints it, or `None` if it does not exist.
pub async fn list_table(table: &str) -> Result<Option<String>> {
    if !list_tables().await?.iter().any(|t| t == table) {
        return Ok(None);
    }
    nft(&["list", "table", "inet", table], None).await.map(Some)
}

/// Deletes the table; `false` if there was none.
pub async fn remove_table(table: &str) -> Result<bool> {
    if !list_tables().await?.iter().any(|t| t == table) {
        return Ok(false);
    }
    nft(&["delete", "table", "inet", table], None).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(table_name("", "lxdbr0").unwrap(), "kante_lxdbr0");
        assert_eq!(
            table_name("kt1_", "my-net.0").unwrap(),
            "kt1_kante_my_net_0"
        );
        assert!(table_name("1x", "n").is_err());
    }

    #[test]
    fn text() {
        let n = NftNetwork {
            table: "kante_br0".into(),
            bridge: "br0".into(),
            ipv4: Some("10.1.2.1/24".parse().unwrap()),
            ipv4_nat: true,
            ipv6: None,
            ipv6_nat: false,
        };
        let t = render(&n);
        assert!(t.starts_with("table inet kante_br0\ndelete table inet kante_br0\n"));
        assert!(t.contains("ip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24 masquerade"));
        assert!(t.contains("iifname \"br0\" udp dport { 53, 67 } accept"));
        assert!(!t.contains("ip6 saddr"));
        let no_nat = NftNetwork {
            ipv4_nat: false,
            ..n
        };
        assert!(!render(&no_nat).contains("masquerade"));
    }
}
