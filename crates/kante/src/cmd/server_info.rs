//! `kante info [REMOTE:]` (the server, as YAML) and `kante info
//! --resources` (the host's hardware from `GET /1.0/resources`, in
//! `lxc info --resources`' layout), and `kante storage show --resources`.

use std::fmt::Write;

use anyhow::Result;
use kante_api::resources::{CpuSocket, Disk, NetworkCard, Resources};
use kante_client::Client;

use super::to_yaml;
use crate::format::{size_decimal, size_iec};

/// `kante info` without an instance: the server's `GET /1.0` as YAML, or
/// with `--resources` its hardware.
pub async fn server_info(c: &Client, resources: bool) -> Result<i32> {
    if resources {
        let res: Resources = c.get_json("/1.0/resources").await?;
        print!("{}", render_resources(&res));
    } else {
        let server: serde_json::Value = c.get_json("/1.0").await?;
        print!("{}", to_yaml(&server)?);
    }
    Ok(0)
}

/// `kante storage show POOL --resources`: the pool's space and inodes as
/// YAML, as lxc prints them.
pub async fn pool_resources(c: &Client, pool: &str) -> Result<i32> {
    let res = c.storage_pool_resources(pool).await?;
    print!("{}", to_yaml(&res)?);
    Ok(0)
}

/// lxc's `GetByteSizeStringIEC(size, 0)`: binary units, no decimals (`32KiB`).
fn size_iec_whole(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    for unit in ["KiB", "MiB", "GiB", "TiB", "PiB"] {
        value /= 1024.0;
        if value < 1024.0 {
            return format!("{value:.0}{unit}");
        }
    }
    format!("{value:.0}PiB")
}

fn cpu(out: &mut String, s: &CpuSocket, prefix: &str) {
    if !s.vendor.is_empty() {
        let _ = writeln!(out, "{prefix}Vendor: {}", s.vendor);
    }
    if !s.name.is_empty() {
        let _ = writeln!(out, "{prefix}Name: {}", s.name);
    }
    if !s.cache.is_empty() {
        let _ = writeln!(out, "{prefix}Caches:");
        for c in &s.cache {
            let _ = writeln!(
                out,
                "{prefix}  - Level {} (type: {}): {}",
                c.level,
                c.kind,
                size_iec_whole(c.size)
            );
        }
    }
    let _ = writeln!(out, "{prefix}Cores:");
    for core in &s.cores {
        let _ = writeln!(out, "{prefix}  - Core {}", core.core);
        let _ = writeln!(out, "{prefix}    Frequency: {}Mhz", core.frequency);
        let _ = writeln!(out, "{prefix}    Threads:");
        for t in &core.threads {
            let _ = writeln!(
                out,
                "{prefix}      - {} (id: {}, online: {}, NUMA node: {})",
                t.thread, t.id, t.online, t.numa_node
            );
        }
    }
    if s.frequency > 0 {
        if s.frequency_turbo > 0 && s.frequency_minimum > 0 {
            let _ = writeln!(
                out,
                "{prefix}Frequency: {}Mhz (min: {}Mhz, max: {}Mhz)",
                s.frequency, s.frequency_minimum, s.frequency_turbo
            );
        } else {
            let _ = writeln!(out, "{prefix}Frequency: {}Mhz", s.frequency);
        }
    }
}

fn nic(out: &mut String, n: &NetworkCard, prefix: &str) {
    let _ = writeln!(out, "{prefix}NUMA node: {}", n.numa_node);
    if !n.vendor_id.is_empty() {
        let _ = writeln!(out, "{prefix}Vendor ID: {}", n.vendor_id);
    }
    if !n.product_id.is_empty() {
        let _ = writeln!(out, "{prefix}Product ID: {}", n.product_id);
    }
    if !n.pci_address.is_empty() {
        let _ = writeln!(out, "{prefix}PCI address: {}", n.pci_address);
    }
    if !n.driver.is_empty() {
        let _ = writeln!(out, "{prefix}Driver: {} ({})", n.driver, n.driver_version);
    }
    if !n.ports.is_empty() {
        let _ = writeln!(out, "{prefix}Ports:");
        for p in &n.ports {
            let _ = writeln!(out, "{prefix}  - Port {} ({})", p.port, p.protocol);
            let _ = writeln!(out, "{prefix}    ID: {}", p.id);
            if !p.address.is_empty() {
                let _ = writeln!(out, "{prefix}    Address: {}", p.address);
            }
            let _ = writeln!(out, "{prefix}    Auto negotiation: {}", p.auto_negotiation);
            let _ = writeln!(out, "{prefix}    Link detected: {}", p.link_detected);
            if p.link_speed > 0 {
                let _ = writeln!(
                    out,
                    "{prefix}    Link speed: {}Mbit/s ({} duplex)",
                    p.link_speed, p.link_duplex
                );
            }
        }
    }
}

fn disk(out: &mut String, d: &Disk, prefix: &str) {
    let _ = writeln!(out, "{prefix}NUMA node: {}", d.numa_node);
    let _ = writeln!(out, "{prefix}ID: {}", d.id);
    let _ = writeln!(out, "{prefix}Device: {}", d.device);
    if !d.model.is_empty() {
        let _ = writeln!(out, "{prefix}Model: {}", d.model);
    }
    if !d.kind.is_empty() {
        let _ = writeln!(out, "{prefix}Type: {}", d.kind);
    }
    let _ = writeln!(out, "{prefix}Size: {}", size_decimal(d.size as i64));
    let _ = writeln!(out, "{prefix}Read-Only: {}", d.read_only);
    let _ = writeln!(out, "{prefix}Removable: {}", d.removable);
    if !d.partitions.is_empty() {
        let _ = writeln!(out, "{prefix}Partitions:");
        for p in &d.partitions {
            let _ = writeln!(out, "{prefix}  - Partition {}", p.partition);
            let _ = writeln!(out, "{prefix}    ID: {}", p.id);
            let _ = writeln!(out, "{prefix}    Device: {}", p.device);
            let _ = writeln!(out, "{prefix}    Read-Only: {}", p.read_only);
            let _ = writeln!(out, "{prefix}    Size: {}", size_decimal(p.size as i64));
        }
    }
}

/// One section of cards: `TITLE:` for one (no number), `TITLEs:` with
/// `  LABEL N:` per card for several, nothing for none.
fn cards<T>(
    out: &mut String,
    items: &[T],
    title: &str,
    label: &str,
    each: impl Fn(&mut String, &T, &str),
) {
    match items {
        [] => {}
        [one] => {
            let _ = writeln!(out, "\n{title}:");
            each(out, one, "  ");
        }
        many => {
            let _ = writeln!(out, "\n{title}s:");
            for (i, item) in many.iter().enumerate() {
                let _ = writeln!(out, "  {label} {i}:");
                each(out, item, "    ");
            }
        }
    }
}

/// The text `lxc info --resources` prints (CPU, memory, NICs, disks).
pub fn render_resources(r: &Resources) -> String {
    let mut out = String::new();
    match r.cpu.sockets.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(out, "CPU ({}):", r.cpu.architecture);
            cpu(&mut out, one, "  ");
        }
        many => {
            let _ = writeln!(out, "CPUs ({}):", r.cpu.architecture);
            for s in many {
                let _ = writeln!(out, "  Socket {}:", s.socket);
                cpu(&mut out, s, "    ");
            }
        }
    }
    let m = &r.memory;
    out.push_str("\nMemory:\n");
    if m.hugepages_total > 0 {
        out.push_str("  Hugepages:\n");
        let free = m.hugepages_total.saturating_sub(m.hugepages_used);
        let _ = writeln!(out, "    Free: {}", size_iec(free as i64));
        let _ = writeln!(out, "    Used: {}", size_iec(m.hugepages_used as i64));
        let _ = writeln!(out, "    Total: {}", size_iec(m.hugepages_total as i64));
    }
    let _ = writeln!(
        out,
        "  Free: {}",
        size_iec(m.total.saturating_sub(m.used) as i64)
    );
    let _ = writeln!(out, "  Used: {}", size_iec(m.used as i64));
    let _ = writeln!(out, "  Total: {}", size_iec(m.total as i64));
    cards(&mut out, &r.network.cards, "NIC", "Card", nic);
    cards(&mut out, &r.storage.disks, "Disk", "Disk", disk);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_like_lxc() {
        let r: Resources = serde_json::from_value(serde_json::json!({
            "cpu": {"architecture": "x86_64", "total": 2, "sockets": [{
                "name": "Intel(R) Xeon(R)", "vendor": "GenuineIntel", "socket": 0,
                "cache": [{"level": 1, "type": "Data", "size": 32768}],
                "cores": [{"core": 0, "die": 0, "frequency": 2200, "threads": [
                    {"id": 0, "numa_node": 0, "thread": 0, "online": true, "isolated": false},
                    {"id": 1, "numa_node": 0, "thread": 1, "online": true, "isolated": false}]}],
                "frequency": 2200}]},
            "memory": {"hugepages_total": 0, "hugepages_used": 0, "hugepages_size": 2097152,
                "used": 1073741824, "total": 4294967296u64},
            "gpu": {"cards": [], "total": 0},
            "network": {"cards": [], "total": 0},
            "storage": {"disks": [{"id": "vda", "device": "254:0", "type": "virtio", "read_only": false,
                "size": 21474836480u64, "removable": false, "numa_node": 0, "block_size": 512, "rpm": 0,
                "device_id": "", "partitions": [{"id": "vda1", "device": "254:1", "read_only": false,
                "size": 21473787904u64, "partition": 1}]}], "total": 1},
            "usb": {"devices": [], "total": 0},
            "pci": {"devices": [], "total": 0}
        }))
        .unwrap();
        let expected = "\
CPU (x86_64):
  Vendor: GenuineIntel
  Name: Intel(R) Xeon(R)
  Caches:
    - Level 1 (type: Data): 32KiB
  Cores:
    - Core 0
      Frequency: 2200Mhz
      Threads:
        - 0 (id: 0, online: true, NUMA node: 0)
        - 1 (id: 1, online: true, NUMA node: 0)
  Frequency: 2200Mhz

Memory:
  Free: 3.00GiB
  Used: 1.00GiB
  Total: 4.00GiB

Disk:
  NUMA node: 0
  ID: vda
  Device: 254:0
  Type: virtio
  Size: 21.47GB
  Read-Only: false
  Removable: false
  Partitions:
    - Partition 1
      ID: vda1
      Device: 254:1
      Read-Only: false
      Size: 21.47GB
";
        assert_eq!(render_resources(&r), expected);
        assert_eq!(size_iec_whole(32768), "32KiB");
        assert_eq!(size_iec_whole(1000), "1000B");
        assert_eq!(size_iec_whole(6 << 20), "6MiB");
    }
}
