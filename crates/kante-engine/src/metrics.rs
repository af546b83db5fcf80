//! `GET /1.0/metrics`: each running instance's CPU, memory, disk,
//! file-system, network and process figures in OpenMetrics text, under
//! LXD's metric names and labels (`name`, `project`, `type`, and `cpu`,
//! `mode`, `device`, `fstype`, `mountpoint` where they apply), so a
//! Prometheus scrape configuration made for LXD works unchanged. The
//! figures come from where `/state` reads them (the runtime's stats and
//! the instance's cgroup), its root file system and its network
//! namespace (`/proc/<init>/net/dev`). The set is LXD 5.0.2's for a
//! container (`lxd/instance/drivers/driver_lxc.go`'s `Metrics`): CPU
//! seconds by mode on cgroup v2's single `cpu="0"`, the memory gauges
//! from `memory.stat` with `MemTotal` the effective limit, disk I/O per
//! device, the root disk's file system (`device` the mounted device, empty
//! on a `dir` pool, as LXD; other disk devices with a path likewise),
//! network counters per interface, processes.
//!
//! Counter families are declared without their `_total` suffix, as
//! OpenMetrics requires; the series themselves carry LXD's names
//! (`lxd_cpu_seconds_total`, …).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use kante_runtime::cgroup::Cgroup;

use crate::error::Result;
use crate::Engine;

/// The content type of the reply.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    /// The series' name (a counter's ends in `_total`).
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, String)>,
}

/// Metric families in the order they are written.
#[derive(Default)]
pub(crate) struct MetricSet {
    families: Vec<Family>,
}

impl MetricSet {
    fn add(
        &mut self,
        name: &'static str,
        kind: Kind,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: String,
    ) {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name,
                    help,
                    kind,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        self.families[i].samples.push((labels, value));
    }

    fn counter(&mut self, name: &'static str, help: &'static str, l: Labels, v: impl ToString) {
        self.add(name, Kind::Counter, help, l, v.to_string());
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, l: Labels, v: impl ToString) {
        self.add(name, Kind::Gauge, help, l, v.to_string());
    }

    /// The OpenMetrics text, `# EOF` last.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut families: Vec<&Family> = self.families.iter().collect();
        families.sort_by_key(|f| f.name);
        for f in families {
            let family = match f.kind {
                Kind::Counter => f.name.strip_suffix("_total").unwrap_or(f.name),
                Kind::Gauge => f.name,
            };
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {family} {}", f.help);
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for (labels, value) in &f.samples {
                let mut sorted = labels.clone();
                sorted.sort_by_key(|(k, _)| *k);
                let l: Vec<String> = sorted
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = writeln!(out, "{}{{{}}} {value}", f.name, l.join(","));
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

type Labels = Vec<(&'static str, String)>;

/// A label value as OpenMetrics quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What is read of one running instance.
pub(crate) struct Sampled {
    pub name: String,
    pub project: String,
    pub kind: String,
    pub stats: kante_runtime::Stats,
    pub cgroup: Cgroup,
    pub pid: i32,
}

impl Engine {
    /// `GET /1.0/metrics`: every running instance's figures.
    pub(crate) async fn metrics_text(&self) -> Result<String> {
        let mut set = MetricSet::default();
        for name in self.instance_names().await? {
            let Some(r) = self.running(&name) else {
                continue;
            };
            let Ok(row) = self.instance_row(&name).await else {
                continue;
            };
            let sampled = {
                let guard = crate::lock(&r.container);
                let Some(c) = guard.as_ref() else { continue };
                Sampled {
                    name: row.name.clone(),
                    project: row.project.clone(),
                    kind: row.kind.clone(),
                    stats: self.runtime.stats(c),
                    cgroup: self.runtime.cgroup(c),
                    pid: c.pid(),
                }
            };
            let disks = self.disk_filesystems(&row).await;
            let s = tokio::task::spawn_blocking(move || {
                let mut one = MetricSet::default();
                instance_metrics(&mut one, &sampled, &disks);
                one
            })
            .await
            .map_err(|e| crate::EngineError::internal(format!("reading metrics: {e}")))?;
            for f in s.families {
                for (l, v) in f.samples {
                    set.add(f.name, f.kind, f.help, l, v);
                }
            }
        }
        Ok(set.render())
    }
}

/// `key value` lines (cpu.stat, memory.stat, memory.events).
fn keyed(text: Option<String>) -> BTreeMap<String, u64> {
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// One instance's figures into `set`.
pub(crate) fn instance_metrics(set: &mut MetricSet, s: &Sampled, disks: &[DiskFs]) {
    let base: Labels = vec![
        ("name", s.name.clone()),
        ("project", s.project.clone()),
        ("type", s.kind.clone()),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut l = base.clone();
        l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        l
    };
    let cg = &s.cgroup;

    // CPU: user and system seconds, from cpu.stat (v2) or cpuacct.stat
    // (v1, in USER_HZ ticks); where no split is known, all is user time.
    let (user, system) = if cg.is_v1("cpuacct") {
        let t = keyed(cg.read("cpuacct", "cpuacct.stat"));
        let tick = |k: &str| t.get(k).copied().unwrap_or(0) as f64 / 100.0;
        (tick("user"), tick("system"))
    } else {
        let t = keyed(cg.read("cpu", "cpu.stat"));
        match (t.get("user_usec"), t.get("system_usec")) {
            (Some(u), Some(y)) => (*u as f64 / 1e6, *y as f64 / 1e6),
            _ => (s.stats.cpu_ns as f64 / 1e9, 0.0),
        }
    };
    const CPU_HELP: &str = "The total number of CPU time used in seconds.";
    for (mode, v) in [("system", system), ("user", user)] {
        set.counter(
            "lxd_cpu_seconds_total",
            CPU_HELP,
            with(&[("cpu", "0"), ("mode", mode)]),
            v,
        );
    }
    memory(set, s, &base);
    disk_io(set, cg, &base);
    for d in disks {
        let device = mounted_device(&d.probe).unwrap_or_else(|| d.source.clone());
        let labels = with(&[("device", &device), ("mountpoint", &d.mountpoint)]);
        filesystem(set, &d.probe[0], &labels);
    }
    network(set, s.pid, &base);
    set.gauge(
        "lxd_procs_total",
        "The number of running processes.",
        base.clone(),
        s.stats.processes,
    );
}

/// A disk device of an instance with a path in it, for its file-system
/// figures.
pub(crate) struct DiskFs {
    /// Host paths to look for a mount at, first the one to measure.
    pub probe: Vec<PathBuf>,
    /// The device's `path` in the instance.
    pub mountpoint: String,
    /// The device's `source`: its `device` label when nothing is mounted
    /// at the probed paths (as LXD labels it).
    pub source: String,
}

impl Engine {
    /// The disk devices of `row` that have a path: the root disk (its
    /// rootfs, or the volume holding it), a custom volume, a host path.
    async fn disk_filesystems(&self, row: &kante_store::InstanceRow) -> Vec<DiskFs> {
        let Ok((_, devices)) = self.expanded(row).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for d in devices.values() {
            let get = |k: &str| d.get(k).cloned().unwrap_or_default();
            let (path, source, pool) = (get("path"), get("source"), get("pool"));
            if get("type") != "disk" || path.is_empty() {
                continue;
            }
            let probe = if path == "/" && source.is_empty() {
                match self.instance_rootfs(row).await {
                    Ok(root) => {
                        let volume = root.parent().map(Path::to_path_buf);
                        std::iter::once(root).chain(volume).collect()
                    }
                    Err(_) => continue,
                }
            } else if !pool.is_empty() {
                match self.pool(&pool) {
                    Ok(p) => vec![p.volume_path(kante_storage::VolumeKind::Custom, &source)],
                    Err(_) => continue,
                }
            } else {
                vec![PathBuf::from(&source)]
            };
            out.push(DiskFs {
                probe,
                mountpoint: path,
                source,
            });
        }
        out
    }
}

/// The device mounted at the first of `paths` that is a mount point,
/// from /proc/mounts.
fn mounted_device(paths: &[PathBuf]) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    paths.iter().find_map(|p| {
        let p = p.to_string_lossy();
        mounts.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, point) = (f.next()?, f.next()?);
            (point == p).then(|| dev.to_string())
        })
    })
}

fn memory(set: &mut MetricSet, s: &Sampled, base: &Labels) {
    let cg = &s.cgroup;
    let v1 = cg.is_v1("memory");
    let st = keyed(cg.read("memory", "memory.stat"));
    let get = |v2: &str, v1name: &str| st.get(if v1 { v1name } else { v2 }).copied().unwrap_or(0);
    let (active_anon, active_file) = (
        get("active_anon", "active_anon"),
        get("active_file", "active_file"),
    );
    let (inactive_anon, inactive_file) = (
        get("inactive_anon", "inactive_anon"),
        get("inactive_file", "inactive_file"),
    );
    let cached = get("file", "cache");
    let usage = s.stats.memory_usage.max(0) as u64;
    let host_total =
        crate::resources::memory(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
            .total;
    let limit = if v1 {
        cg.read("memory", "memory.limit_in_bytes")
    } else {
        cg.read("memory", "memory.max")
    }
    .and_then(|v| v.parse::<u64>().ok())
    .filter(|l| *l > 0 && (host_total == 0 || *l < host_total));
    let total = limit.unwrap_or(host_total);
    let free = total.saturating_sub(usage);
    let gauges: [(&'static str, &'static str, u64); 17] = [
        (
            "lxd_memory_Active_anon_bytes",
            "The amount of anonymous memory on active LRU list.",
            active_anon,
        ),
        (
            "lxd_memory_Active_file_bytes",
            "The amount of file-backed memory on active LRU list.",
            active_file,
        ),
        (
            "lxd_memory_Active_bytes",
            "The amount of memory on active LRU list.",
            active_anon + active_file,
        ),
        (
            "lxd_memory_Cached_bytes",
            "The amount of cached memory.",
            cached,
        ),
        (
            "lxd_memory_Dirty_bytes",
            "The amount of memory waiting to get written back to the disk.",
            get("file_dirty", "dirty"),
        ),
        (
            "lxd_memory_Inactive_anon_bytes",
            "The amount of anonymous memory on inactive LRU list.",
            inactive_anon,
        ),
        (
            "lxd_memory_Inactive_file_bytes",
            "The amount of file-backed memory on inactive LRU list.",
            inactive_file,
        ),
        (
            "lxd_memory_Inactive_bytes",
            "The amount of memory on inactive LRU list.",
            inactive_anon + inactive_file,
        ),
        (
            "lxd_memory_Mapped_bytes",
            "The amount of mapped memory.",
            get("file_mapped", "mapped_file"),
        ),
        (
            "lxd_memory_MemAvailable_bytes",
            "The amount of available memory.",
            free + cached,
        ),
        (
            "lxd_memory_MemFree_bytes",
            "The amount of free memory.",
            free,
        ),
        (
            "lxd_memory_MemTotal_bytes",
            "The amount of used memory.",
            total,
        ),
        (
            "lxd_memory_RSS_bytes",
            "The amount of anonymous and swap cache memory.",
            get("anon", "rss"),
        ),
        (
            "lxd_memory_Shmem_bytes",
            "The amount of cached filesystem data that is swap-backed.",
            get("shmem", "shmem"),
        ),
        (
            "lxd_memory_Swap_bytes",
            "The amount of used swap memory.",
            s.stats.swap_usage.max(0) as u64,
        ),
        (
            "lxd_memory_Unevictable_bytes",
            "The amount of unevictable memory.",
            get("unevictable", "unevictable"),
        ),
        (
            "lxd_memory_Writeback_bytes",
            "The amount of memory queued for syncing to disk.",
            get("file_writeback", "writeback"),
        ),
    ];
    for (name, help, v) in gauges {
        set.gauge(name, help, base.clone(), v);
    }
}

/// Per block device, from io.stat (cgroup v2): bytes and operations.
fn disk_io(set: &mut MetricSet, cg: &Cgroup, base: &Labels) {
    if cg.is_v1("io") {
        return;
    }
    let Some(text) = cg.read("io", "io.stat") else {
        return;
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(dev) = words.next() else { continue };
        let kv: BTreeMap<&str, u64> = words
            .filter_map(|w| {
                let (k, v) = w.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect();
        let name = block_name(dev);
        let mut l = base.clone();
        l.push(("device", name));
        let g = |k: &str| kv.get(k).copied().unwrap_or(0);
        set.counter(
            "lxd_disk_read_bytes_total",
            "The total number of bytes read.",
            l.clone(),
            g("rbytes"),
        );
        set.counter(
            "lxd_disk_reads_completed_total",
            "The total number of completed reads.",
            l.clone(),
            g("rios"),
        );
        set.counter(
            "lxd_disk_written_bytes_total",
            "The total number of bytes written.",
            l.clone(),
            g("wbytes"),
        );
        set.counter(
            "lxd_disk_writes_completed_total",
            "The total number of completed writes.",
            l,
            g("wios"),
        );
    }
}

/// `MAJ:MIN` as the kernel names the device (`vda`), or as given.
fn block_name(dev: &str) -> String {
    std::fs::read_to_string(format!("/sys/dev/block/{dev}/uevent"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string))
        })
        .unwrap_or_else(|| dev.to_string())
}

fn filesystem(set: &mut MetricSet, root: &Path, labels: &Labels) {
    let Ok(st) = kante_runtime::host::fs_space(root) else {
        return;
    };
    let mut l = labels.clone();
    l.push(("fstype", st.fs_type.to_string()));
    set.gauge(
        "lxd_filesystem_avail_bytes",
        "The number of available space in bytes.",
        l.clone(),
        st.available,
    );
    set.gauge(
        "lxd_filesystem_free_bytes",
        "The number of free space in bytes.",
        l.clone(),
        st.free,
    );
    set.gauge(
        "lxd_filesystem_size_bytes",
        "The size of the filesystem in bytes.",
        l,
        st.size,
    );
}

/// Per interface of the instance's network namespace, from
/// `/proc/<init>/net/dev`.
fn network(set: &mut MetricSet, pid: i32, base: &Labels) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return;
    };
    for (dev, f) in parse_net_dev(&text) {
        let mut l = base.clone();
        l.push(("device", dev));
        let names: [(&'static str, &'static str, usize); 8] = [
            (
                "lxd_network_receive_bytes_total",
                "The amount of received bytes on a given interface.",
                0,
            ),
            (
                "lxd_network_receive_drop_total",
                "The amount of received dropped bytes on a given interface.",
                3,
            ),
            (
                "lxd_network_receive_errs_total",
                "The amount of received errors on a given interface.",
                2,
            ),
            (
                "lxd_network_receive_packets_total",
                "The amount of received packets on a given interface.",
                1,
            ),
            (
                "lxd_network_transmit_bytes_total",
                "The amount of transmitted bytes on a given interface.",
                8,
            ),
            (
                "lxd_network_transmit_drop_total",
                "The amount of transmitted dropped bytes on a given interface.",
                11,
            ),
            (
                "lxd_network_transmit_errs_total",
                "The amount of transmitted errors on a given interface.",
                10,
            ),
            (
                "lxd_network_transmit_packets_total",
                "The amount of transmitted packets on a given interface.",
                9,
            ),
        ];
        for (name, help, i) in names {
            set.counter(name, help, l.clone(), f.get(i).copied().unwrap_or(0));
        }
    }
}

/// `/proc/net/dev`'s rows: interface and its 16 counters.
fn parse_net_dev(text: &str) -> Vec<(String, Vec<u64>)> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (dev, rest) = l.split_once(':')?;
            let nums = rest
                .split_whitespace()
                .map(|w| w.parse().unwrap_or(0))
                .collect();
            Some((dev.trim().to_string(), nums))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_declared_without_total_and_end_with_eof() {
        let mut set = MetricSet::default();
        let l = vec![("type", "container".to_string()), ("name", "c\"1".into())];
        set.counter("lxd_cpu_seconds_total", "CPU.", l.clone(), 1.5);
        set.gauge("lxd_procs_total", "Procs.", l, 3);
        let text = set.render();
        assert_eq!(
            text,
            "# HELP lxd_cpu_seconds CPU.\n# TYPE lxd_cpu_seconds counter\n\
             lxd_cpu_seconds_total{name=\"c\\\"1\",type=\"container\"} 1.5\n\
             # HELP lxd_procs_total Procs.\n# TYPE lxd_procs_total gauge\n\
             lxd_procs_total{name=\"c\\\"1\",type=\"container\"} 3\n# EOF\n"
        );
    }

    #[test]
    fn net_dev_rows_parse() {
        let t = "Inter-|   Receive\n face |bytes\n  eth0: 100 2 0 1 0 0 0 0 200 3 0 0 0 0 0 0\n    lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let rows = parse_net_dev(t);
        assert_eq!(rows[0].0, "eth0");
        assert_eq!((rows[0].1[0], rows[0].1[3], rows[0].1[8]), (100, 1, 200));
        assert_eq!(rows[1].0, "lo");
    }
}
