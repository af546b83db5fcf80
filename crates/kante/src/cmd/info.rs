//! `kante info` and `kante console --show-log`.

use std::fmt::Write;
use std::io::Write as _;

use anyhow::Result;
use kante_api::instance::InstanceFull;
use kante_api::StatusCode;
use kante_client::Client;

use crate::format::{date_short, size_decimal, size_iec};
use crate::table::render_table;

/// The text `lxc info` prints for an instance.
pub fn render_info(f: &InstanceFull) -> String {
    let i = &f.instance;
    let mut out = String::new();
    let _ = writeln!(out, "Name: {}", i.name);
    if !i.description.is_empty() {
        let _ = writeln!(out, "Description: {}", i.description);
    }
    let _ = writeln!(out, "Status: {}", i.status.to_uppercase());
    let kind = if i.ephemeral {
        format!("{} (ephemeral)", i.kind)
    } else {
        i.kind.clone()
    };
    let _ = writeln!(out, "Type: {kind}");
    let _ = writeln!(out, "Architecture: {}", i.architecture);
    if !matches!(i.location.as_str(), "" | "none") {
        let _ = writeln!(out, "Location: {}", i.location);
    }
    // Where the cluster's placement put it, and why.
    if let Some(why) = i.config.get("volatile.placement.reason") {
        let _ = writeln!(out, "Placement: {why}");
    }
    let running =
        i.status_code == StatusCode::Running as u16 || i.status_code == StatusCode::Frozen as u16;
    let state = f.state.as_ref().filter(|_| running);
    if let Some(s) = state.filter(|s| s.pid > 0) {
        let _ = writeln!(out, "PID: {}", s.pid);
    }
    let _ = writeln!(out, "Created: {}", date_short(&i.created_at));
    let last = date_short(&i.last_used_at);
    if !last.is_empty() {
        let _ = writeln!(out, "Last Used: {last}");
    }
    if let Some(s) = state {
        out.push_str("\nResources:\n");
        let _ = writeln!(out, "  Processes: {}", s.processes);
        let disks: Vec<_> = s.disk.iter().filter(|(_, d)| d.usage > 0).collect();
        if !disks.is_empty() {
            out.push_str("  Disk usage:\n");
            for (name, d) in disks {
                let _ = writeln!(out, "    {name}: {}", size_decimal(d.usage));
            }
        }
        if s.cpu.usage > 0 {
            out.push_str("  CPU usage:\n");
            let _ = writeln!(
                out,
                "    CPU usage (in seconds): {}",
                s.cpu.usage / 1_000_000_000
            );
        }
        if s.memory.usage > 0 {
            out.push_str("  Memory usage:\n");
            let _ = writeln!(out, "    Memory (current): {}", size_iec(s.memory.usage));
            if s.memory.usage_peak > 0 {
                let _ = writeln!(out, "    Memory (peak): {}", size_iec(s.memory.usage_peak));
            }
            if s.memory.swap_usage > 0 {
                let _ = writeln!(out, "    Swap (current): {}", size_iec(s.memory.swap_usage));
            }
        }
        if let Some(net) = s.network.as_ref().filter(|n| !n.is_empty()) {
            out.push_str("  Network usage:\n");
            for (name, n) in net {
                let _ = writeln!(out, "    {name}:");
                let _ = writeln!(out, "      Type: {}", n.kind);
                let _ = writeln!(out, "      State: {}", n.state.to_uppercase());
                if !n.host_name.is_empty() {
                    let _ = writeln!(out, "      Host interface: {}", n.host_name);
                }
                if !n.hwaddr.is_empty() {
                    let _ = writeln!(out, "      MAC address: {}", n.hwaddr);
                }
                let _ = writeln!(out, "      MTU: {}", n.mtu);
                let _ = writeln!(
                    out,
                    "      Bytes received: {}",
                    size_decimal(n.counters.bytes_received)
                );
                let _ = writeln!(
                    out,
                    "      Bytes sent: {}",
                    size_decimal(n.counters.bytes_sent)
                );
                let _ = writeln!(
                    out,
                    "      Packets received: {}",
                    n.counters.packets_received
                );
                let _ = writeln!(out, "      Packets sent: {}", n.counters.packets_sent);
                if !n.addresses.is_empty() {
                    out.push_str("      IP addresses:\n");
                    for a in &n.addresses {
                        let label = format!("{}:", a.family);
                        let _ = writeln!(
                            out,
                            "        {label:<6} {}/{} ({})",
                            a.address, a.netmask, a.scope
                        );
                    }
                }
            }
        }
    }
    if let Some(snaps) = f.snapshots.as_ref().filter(|s| !s.is_empty()) {
        out.push_str("\nSnapshots:\n");
        let rows: Vec<Vec<String>> = snaps
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    date_short(&s.created_at),
                    date_short(&s.expires_at),
                    if s.stateful { "YES" } else { "NO" }.to_string(),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"],
            &rows,
        ));
    }
    out
}

/// The instance log for `--show-log`: `logs/lxc.log` like lxc, else the console log.
async fn instance_log(c: &Client, name: &str) -> Result<Vec<u8>> {
    match c.instance_log(name, "lxc.log").await {
        Ok(log) => Ok(log),
        Err(e) if e.is_not_found() => Ok(c.console_log(name).await?),
        Err(e) => Err(e.into()),
    }
}

pub async fn info(c: &Client, name: &str, show_log: bool) -> Result<i32> {
    let full = c.instance_full(name).await?;
    print!("{}", render_info(&full));
    if show_log {
        let log = instance_log(c, name).await?;
        println!("\nLog:\n");
        std::io::stdout().write_all(&log)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_like_lxc() {
        let f: InstanceFull = serde_json::from_value(serde_json::json!({
            "architecture": "x86_64", "config": {}, "devices": {}, "ephemeral": false, "profiles": ["default"],
            "stateful": false, "description": "", "created_at": "2026-11-22T13:15:04Z", "expanded_config": {},
            "expanded_devices": {}, "name": "trc-c1", "status": "Running", "status_code": 103,
            "last_used_at": "2026-11-22T13:15:09Z", "location": "none", "type": "container", "project": "default",
            "state": {"status": "Running", "status_code": 103, "disk": {}, "pid": 21512, "processes": 9,
                "cpu": {"usage": 2_100_000_000i64},
                "memory": {"usage": 28_008_448, "usage_peak": 68_200_000, "swap_usage": 0, "swap_usage_peak": 0},
                "network": {"eth0": {"addresses": [{"family": "inet", "address": "10.147.83.246", "netmask": "24", "scope": "global"},
                    {"family": "inet6", "address": "fe80::216:3eff:fead:785a", "netmask": "64", "scope": "link"}],
                    "counters": {"bytes_received": 736, "bytes_sent": 2130, "packets_received": 3, "packets_sent": 21},
                    "hwaddr": "00:16:3e:ad:78:5a", "host_name": "vethb3e51d78", "mtu": 1500, "state": "up", "type": "broadcast"}}},
            "snapshots": [{"architecture": "x86_64", "config": {}, "created_at": "2026-11-22T13:15:30Z", "devices": {},
                "ephemeral": false, "expanded_config": {}, "expanded_devices": {}, "last_used_at": "1970-01-01T00:00:00Z",
                "name": "s0", "profiles": [], "stateful": false, "expires_at": "0001-01-01T00:00:00Z", "size": -1}],
            "backups": null
        }))
        .unwrap();
        let expected = "\
Name: trc-c1
Status: RUNNING
Type: container
Architecture: x86_64
PID: 21512
Created: 2026/11/22 13:15 UTC
Last Used: 2026/11/22 13:15 UTC

Resources:
  Processes: 9
  CPU usage:
    CPU usage (in seconds): 2
  Memory usage:
    Memory (current): 26.71MiB
    Memory (peak): 65.04MiB
  Network usage:
    eth0:
      Type: broadcast
      State: UP
      Host interface: vethb3e51d78
      MAC address: 00:16:3e:ad:78:5a
      MTU: 1500
      Bytes received: 736B
      Bytes sent: 2.13kB
      Packets received: 3
      Packets sent: 21
      IP addresses:
        inet:  10.147.83.246/24 (global)
        inet6: fe80::216:3eff:fead:785a/64 (link)

Snapshots:
+------+----------------------+------------+----------+
| NAME |       TAKEN AT       | EXPIRES AT | STATEFUL |
+------+----------------------+------------+----------+
| s0   | 2026/11/22 13:15 UTC |            | NO       |
+------+----------------------+------------+----------+
";
        assert_eq!(render_info(&f), expected);
    }
}
