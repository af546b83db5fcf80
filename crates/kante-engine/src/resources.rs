//! The host's hardware (`GET /1.0/resources`) read from /sys and /proc as
//! LXD's `resources` package does, in LXD's field names: CPU sockets,
//! cores and threads, memory, block disks and network cards. GPUs, USB
//! and PCI devices are not surveyed and are reported as none. And a
//! pool's space and inodes (`GET /1.0/storage-pools/{name}/resources`).

use std::collections::BTreeMap;
use std::path::Path;

use kante_api::resources::{
    Cpu, CpuCache, CpuCore, CpuSocket, CpuThread, Disk, DiskPartition, Disks, Memory, NetworkCard,
    NetworkPort, PoolInodes, PoolResources, PoolSpace, Resources,
};

use kante_api::cluster::{ClusterMemberState, ClusterMemberSysInfo, StoragePoolState};

use crate::error::{EngineError, Result};
use crate::Engine;

/// `sysinfo(2)`'s figures from /proc/loadavg, /proc/meminfo and
/// /proc/uptime text (bytes; what a file lacks reads as 0).
fn sysinfo(loadavg: &str, meminfo: &str, uptime: &str) -> ClusterMemberSysInfo {
    let fields: Vec<&str> = loadavg.split_whitespace().collect();
    let load = |i: usize| fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let processes = fields
        .get(3)
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let up = uptime
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    ClusterMemberSysInfo {
        uptime: up as i64,
        load_averages: vec![load(0), load(1), load(2)],
        total_ram: kib("MemTotal"),
        free_ram: kib("MemFree"),
        shared_ram: kib("Shmem"),
        buffered_ram: kib("Buffers"),
        total_swap: kib("SwapTotal"),
        free_swap: kib("SwapFree"),
        processes,
        logical_cpus: 0,
    }
}

impl Engine {
    /// `GET /1.0/cluster/members/NAME/state` on member NAME (a standalone
    /// server answers for its own `server_name`): load, memory, swap and
    /// processes as `sysinfo(2)` counts them, and each pool's space.
    pub(crate) async fn member_state_get(&self, name: &str) -> Result<ClusterMemberState> {
        let me = match self.cluster.member_name() {
            Some(me) => me,
            None => kante_runtime::host::kernel_names().1,
        };
        if name != me {
            return Err(EngineError::NotFound(format!(
                "Cluster member {name:?} not found"
            )));
        }
        let sysinfo = tokio::task::spawn_blocking(|| {
            sysinfo(
                &std::fs::read_to_string("/proc/loadavg").unwrap_or_default(),
                &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
                &std::fs::read_to_string("/proc/uptime").unwrap_or_default(),
            )
        })
        .await
        .map_err(|e| EngineError::internal(format!("reading sysinfo: {e}")))?;
        let mut storage_pools = BTreeMap::new();
        for pool in self.loaded_pools() {
            match self.pool_resources(&pool.name).await {
                Ok(resources) => {
                    storage_pools.insert(pool.name.clone(), StoragePoolState { resources });
                }
                Err(e) => tracing::warn!(pool = %pool.name, "pool space: {e}"),
            }
        }
        Ok(ClusterMemberState {
            sysinfo: ClusterMemberSysInfo {
                logical_cpus: crate::instance::config::online_cpus() as u64,
                ..sysinfo
            },
            storage_pools,
        })
    }

    /// `GET /1.0/resources`.
    pub(crate) async fn resources(&self) -> Result<Resources> {
        tokio::task::spawn_blocking(|| host_resources(Path::new("/")))
            .await
            .map_err(|e| EngineError::internal(format!("reading resources: {e}")))
    }

    /// `GET /1.0/storage-pools/{name}/resources`: the file system the
    /// pool lives on.
    pub(crate) async fn pool_resources(&self, name: &str) -> Result<PoolResources> {
        let pool = self.pool(name)?;
        let st = kante_runtime::host::fs_space(&pool.base)
            .map_err(|e| EngineError::internal(format!("statvfs {}: {e}", pool.base.display())))?;
        Ok(PoolResources {
            space: PoolSpace {
                used: st.size.saturating_sub(st.free),
                total: st.size,
            },
            inodes: PoolInodes {
                used: st.inodes.saturating_sub(st.inodes_free),
                total: st.inodes,
            },
        })
    }
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn read_u64(p: impl AsRef<Path>) -> Option<u64> {
    read(p).parse().ok()
}

/// The hardware under `root` (`/` on a host; a fixture tree in tests).
pub(crate) fn host_resources(root: &Path) -> Resources {
    let cpu = cpu(root, std::env::consts::ARCH.to_string());
    let memory = memory(&read(root.join("proc/meminfo")));
    let disks = disks(root);
    let cards = network_cards(root);
    Resources {
        cpu,
        memory,
        storage: Disks {
            total: disks.len() as u64,
            disks,
        },
        network: kante_api::resources::Cards {
            total: cards.len() as u64,
            cards,
        },
        ..Default::default()
    }
}

/// Per physical package, its `model name` and `vendor_id` from /proc/cpuinfo.
fn cpuinfo_names(text: &str) -> BTreeMap<u64, (String, String)> {
    let mut out = BTreeMap::new();
    let (mut name, mut vendor) = (String::new(), String::new());
    for block in text.split("\n\n") {
        let mut package = 0;
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim() {
                "model name" => name = v.trim().to_string(),
                "vendor_id" => vendor = v.trim().to_string(),
                "physical id" => package = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        if !block.trim().is_empty() {
            out.entry(package)
                .or_insert_with(|| (name.clone(), vendor.clone()));
        }
    }
    out
}

/// Per processor number, its `cpu MHz` from /proc/cpuinfo.
fn cpuinfo_mhz(text: &str) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let (key, v) = l.split_once(':')?;
                (key.trim() == k).then(|| v.trim().to_string())
            })
        };
        if let (Some(p), Some(m)) = (field("processor"), field("cpu MHz")) {
            if let (Ok(p), Ok(m)) = (p.parse::<u64>(), m.parse::<f64>()) {
                out.insert(p, m.round() as u64);
            }
        }
    }
    out
}

fn cpu(root: &Path, architecture: String) -> Cpu {
    let base = root.join("sys/devices/system/cpu");
    let cpuinfo = read(root.join("proc/cpuinfo"));
    let names = cpuinfo_names(&cpuinfo);
    let mhz = cpuinfo_mhz(&cpuinfo);
    let isolated = parse_list(&read(base.join("isolated")));
    let mut ids: Vec<i64> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("cpu")?.parse().ok()
        })
        .collect();
    ids.sort();
    // socket -> (core id -> core)
    let mut sockets: BTreeMap<u64, BTreeMap<(u64, u64), CpuCore>> = BTreeMap::new();
    let mut freq: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for id in &ids {
        let dir = base.join(format!("cpu{id}"));
        let topo = dir.join("topology");
        let online = read(dir.join("online")) != "0";
        let socket = read_u64(topo.join("physical_package_id")).unwrap_or(0);
        let core = read_u64(topo.join("core_id")).unwrap_or(*id as u64);
        let die = read_u64(topo.join("die_id")).unwrap_or(0);
        let numa_node = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix("node")?.parse().ok()
            })
            .unwrap_or(0);
        let khz = |f: &str| read_u64(dir.join("cpufreq").join(f)).unwrap_or(0) / 1000;
        // The current frequency: cpufreq's, else /proc/cpuinfo's.
        let cur = match khz("scaling_cur_freq") {
            0 => mhz.get(&(*id as u64)).copied().unwrap_or(0),
            f => f,
        };
        let f = freq.entry(socket).or_default();
        f.0 = f.0.max(cur);
        f.1 = match (f.1, khz("cpuinfo_min_freq")) {
            (0, m) | (m, 0) => m,
            (a, m) => a.min(m),
        };
        f.2 = f.2.max(khz("cpuinfo_max_freq"));
        let entry = sockets
            .entry(socket)
            .or_default()
            .entry((die, core))
            .or_insert_with(|| CpuCore {
                core,
                die,
                ..Default::default()
            });
        entry.frequency = entry.frequency.max(cur);
        entry.threads.push(CpuThread {
            id: *id,
            numa_node,
            thread: entry.threads.len() as u64,
            online,
            isolated: isolated.contains(&(*id as u64)),
        });
    }
    let cache = caches(&base.join("cpu0/cache"));
    let sockets: Vec<CpuSocket> = sockets
        .into_iter()
        .map(|(socket, cores)| {
            let (name, vendor) = names.get(&socket).cloned().unwrap_or_default();
            let (cur, min, max) = freq.get(&socket).copied().unwrap_or_default();
            CpuSocket {
                name,
                vendor,
                socket,
                cache: cache.clone(),
                cores: cores.into_values().collect(),
                frequency: cur,
                frequency_minimum: min,
                frequency_turbo: max,
            }
        })
        .collect();
    Cpu {
        architecture,
        sockets,
        total: ids.len() as u64,
    }
}

fn caches(dir: &Path) -> Vec<CpuCache> {
    let mut out = Vec::new();
    for i in 0.. {
        let d = dir.join(format!("index{i}"));
        if !d.exists() {
            break;
        }
        out.push(CpuCache {
            level: read_u64(d.join("level")).unwrap_or(0),
            kind: read(d.join("type")),
            size: parse_size(&read(d.join("size"))),
        });
    }
    out
}

/// `32K`, `1024K`, `8M` as bytes.
fn parse_size(s: &str) -> u64 {
    let (num, mult) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1024),
        Some('M') => (&s[..s.len() - 1], 1024 * 1024),
        Some('G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().unwrap_or(0) * mult
}

/// A CPU list (`0-3,8`).
fn parse_list(s: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u64>().ok()),
        }
    }
    out
}

/// Memory from /proc/meminfo (kB values as bytes); used is total less
/// what is available.
pub(crate) fn memory(meminfo: &str) -> Memory {
    let get = |k: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = get("MemTotal") * 1024;
    let available = get("MemAvailable") * 1024;
    let page = get("Hugepagesize") * 1024;
    let (ht, hf) = (get("HugePages_Total"), get("HugePages_Free"));
    Memory {
        hugepages_total: ht * page,
        hugepages_used: ht.saturating_sub(hf) * page,
        hugepages_size: page,
        used: total.saturating_sub(available),
        total,
    }
}

/// Block devices backed by hardware (those with a `device` link: not
/// loop, ram, zram or device-mapper devices), with their partitions.
fn disks(root: &Path) -> Vec<Disk> {
    let base = root.join("sys/class/block");
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let dir = base.join(&name);
        if dir.join("partition").exists() || !dir.join("device").exists() {
            continue;
        }
        let q = dir.join("queue");
        let rotational = read(q.join("rotational")) == "1";
        let mut partitions: Vec<DiskPartition> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("partition").exists())
            .map(|e| {
                let p = e.path();
                DiskPartition {
                    id: e.file_name().to_string_lossy().into_owned(),
                    device: read(p.join("dev")),
                    read_only: read(p.join("ro")) == "1",
                    size: read_u64(p.join("size")).unwrap_or(0) * 512,
                    partition: read_u64(p.join("partition")).unwrap_or(0),
                }
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        let kind = if name.starts_with("nvme") {
            "nvme"
        } else if name.starts_with("vd") {
            "virtio"
        } else if name.starts_with("sr") {
            "cdrom"
        } else {
            "scsi"
        };
        out.push(Disk {
            device: read(dir.join("dev")),
            model: read(dir.join("device/model")),
            kind: kind.into(),
            read_only: read(dir.join("ro")) == "1",
            size: read_u64(dir.join("size")).unwrap_or(0) * 512,
            removable: read(dir.join("removable")) == "1",
            numa_node: read(dir.join("device/numa_node")).parse().unwrap_or(0),
            block_size: read_u64(q.join("logical_block_size")).unwrap_or(0),
            rpm: if rotational { 1 } else { 0 },
            serial: read(dir.join("device/serial")),
            device_id: String::new(),
            partitions,
            id: name,
        });
    }
    out
}

/// Network interfaces backed by a device (not bridges, veths or other
/// virtual ones), one port each.
fn network_cards(root: &Path) -> Vec<NetworkCard> {
    let base = root.join("sys/class/net");
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // What ethtool reports as an in-tree driver's version.
    let (kernel_release, _) = kante_runtime::host::kernel_names();
    let mut out = Vec::new();
    for name in names {
        let dir = base.join(&name);
        let Ok(device) = std::fs::canonicalize(dir.join("device")) else {
            continue;
        };
        let link_name = |p: &Path| {
            std::fs::read_link(p)
                .ok()
                .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()))
                .unwrap_or_default()
        };
        let bus = link_name(&device.join("subsystem"));
        let strip = |s: String| s.trim_start_matches("0x").to_string();
        let speed = read(dir.join("speed")).parse::<i64>().unwrap_or(0);
        out.push(NetworkCard {
            driver: link_name(&device.join("driver")),
            driver_version: match read(device.join("driver/module/version")) {
                v if v.is_empty() => kernel_release.clone(),
                v => v,
            },
            ports: vec![NetworkPort {
                id: name.clone(),
                address: read(dir.join("address")),
                port: read_u64(dir.join("dev_port")).unwrap_or(0),
                protocol: "ethernet".into(),
                auto_negotiation: false,
                link_detected: read(dir.join("carrier")) == "1",
                link_speed: speed.max(0) as u64,
                link_duplex: read(dir.join("duplex")),
            }],
            numa_node: read(device.join("numa_node")).parse().unwrap_or(0),
            pci_address: match bus.as_str() {
                "pci" => device
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                _ => String::new(),
            },
            vendor_id: strip(read(device.join("vendor"))),
            product_id: strip(read(device.join("device"))),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysinfo_reads_load_memory_processes_and_uptime() {
        let s = sysinfo(
            "0.52 0.31 0.12 2/345 6789\n",
            "MemTotal: 2048 kB\nMemFree: 512 kB\nBuffers: 16 kB\nShmem: 8 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
            "12345.67 2000.00\n",
        );
        assert_eq!(s.load_averages, vec![0.52, 0.31, 0.12]);
        assert_eq!((s.total_ram, s.free_ram), (2048 * 1024, 512 * 1024));
        assert_eq!((s.buffered_ram, s.shared_ram), (16 * 1024, 8 * 1024));
        assert_eq!((s.processes, s.uptime), (345, 12345));
        let empty = sysinfo("", "", "");
        assert_eq!(empty.load_averages, vec![0.0, 0.0, 0.0]);
        assert_eq!(empty.total_ram, 0);
    }

    #[test]
    fn memory_is_read_in_bytes() {
        let m = memory(
            "MemTotal:  2048 kB\nMemFree: 100 kB\nMemAvailable:  1024 kB\nHugePages_Total: 4\nHugePages_Free: 1\nHugepagesize: 2048 kB\n",
        );
        assert_eq!((m.total, m.used), (2048 * 1024, 1024 * 1024));
        assert_eq!(m.hugepages_size, 2 * 1024 * 1024);
        assert_eq!(m.hugepages_total, 4 * 2 * 1024 * 1024);
        assert_eq!(m.hugepages_used, 3 * 2 * 1024 * 1024);
    }

    #[test]
    fn cpu_lists_and_sizes_parse() {
        assert_eq!(parse_list("0-2,5"), [0, 1, 2, 5]);
        assert_eq!(parse_list(""), Vec::<u64>::new());
        assert_eq!(parse_size("32K"), 32 * 1024);
        assert_eq!(parse_size("8M"), 8 * 1024 * 1024);
        let info = "processor\t: 0\ncpu MHz\t\t: 2399.6\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.0\n";
        assert_eq!(
            cpuinfo_mhz(info).into_iter().collect::<Vec<_>>(),
            [(0, 2400), (1, 1200)]
        );
    }

    #[test]
    fn the_host_has_a_cpu_and_memory() {
        let r = host_resources(Path::new("/"));
        assert!(r.cpu.total >= 1);
        let threads: usize = r
            .cpu
            .sockets
            .iter()
            .flat_map(|s| &s.cores)
            .map(|c| c.threads.len())
            .sum();
        assert_eq!(threads as u64, r.cpu.total);
        assert!(r.memory.total > 0 && r.memory.used <= r.memory.total);
    }
}
