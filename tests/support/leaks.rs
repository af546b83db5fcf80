//! What a daemon may leave on the host (links, nft tables, mounts,
//! processes, loop devices, cgroups), and what it holds while it runs
//! (`Usage`: its fds, threads and memory beside the host's counts), so
//! tests can show that nothing leaks and nothing grows.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Host interfaces with the prefix of our veths (`kt` + hash).
pub fn kante_links() -> HashSet<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kt"))
        .collect()
}

/// nftables tables of the daemon whose cgroup prefix is `prefix`.
pub fn nft_tables_of(prefix: &str) -> Vec<String> {
    let hash = prefix
        .strip_prefix("kante-")
        .unwrap_or_else(|| panic!("{prefix:?}: test daemons never use the default KANTE_DIR"));
    // nft failing must not pass for "no table left".
    let o = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("run nft (nftables)");
    assert!(
        o.status.success(),
        "nft list tables: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mine = format!("k{hash}_");
    out.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|t| t.starts_with(&mine))
        })
        .map(str::to_string)
        .collect()
}

/// Everything a daemon for `dir` may leave on the host.
pub fn leaks_of(dir: &Path, prefix: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    for t in nft_tables_of(prefix) {
        leaks.push(format!("nftables: {t}"));
    }
    let d = dir.to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains(&d)) {
        leaks.push(format!("mount: {l}"));
    }
    for p in processes_mentioning(&d) {
        leaks.push(format!("process: {p}"));
    }
    for (dev, file) in loop_devices_under(dir) {
        leaks.push(format!("loop device: {dev} backed by {file}"));
    }
    for cg in cgroup_dirs(prefix) {
        let children: Vec<String> = std::fs::read_dir(&cg)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !children.is_empty() {
            leaks.push(format!("cgroup {} still has {children:?}", cg.display()));
        }
    }
    leaks
}

/// Loop devices (device, backing file) whose backing file is under `dir`:
/// what a btrfs pool's loop file leaves when its pool is not torn down.
pub fn loop_devices_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let b = b.trim_end_matches('\n');
        let file = b.strip_suffix(" (deleted)").unwrap_or(b);
        if Path::new(file).starts_with(dir) {
            out.push((format!("/dev/{name}"), b.to_string()));
        }
    }
    out.sort();
    out
}

/// Mount points under `dir`, deepest first (from this process's mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(kante_syntax::mountinfo_path)
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out
}

/// The daemon's cgroup directories, one per mounted hierarchy.
pub(crate) fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return vec![];
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path().join(prefix))
        .filter(|p| p.is_dir())
        .collect();
    let root = Path::new("/sys/fs/cgroup").join(prefix);
    if root.is_dir() {
        out.push(root);
    }
    out
}

/// Live processes whose command line mentions `needle`, except ourselves.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(format!("{pid} {cmd}"));
        }
    }
    out
}

/// What a running daemon holds (`fds`, `threads`, `rss_kib`, read from
/// `/proc/PID`) and what the host carries for it: mounts under its
/// directory, `kt…` links, cgroups below its prefix, processes naming its
/// directory (monitors, dnsmasq), objects in its nftables tables and lines
/// in its networks' dnsmasq hosts and lease files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub fds: u64,
    pub threads: u64,
    pub rss_kib: u64,
    pub mounts: u64,
    pub links: u64,
    pub cgroups: u64,
    pub processes: u64,
    pub nft_objects: u64,
    pub lease_lines: u64,
}

/// How far a figure may sit above its baseline without counting as a leak
/// (caches and pools that are bounded, not growing); every other figure
/// must come back to its baseline exactly.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub fds: u64,
    pub threads: u64,
    pub rss_kib: u64,
}

/// What `tests/cycles.rs` and `kante-bench --only-soak` allow over many
/// cycles: tokio's blocking pool keeps idle threads for 10 s and the
/// allocator keeps freed pages; fds must come back exactly.
pub const CYCLE_ALLOWANCE: Allowance = Allowance {
    fds: 0,
    threads: 8,
    rss_kib: 8 * 1024,
};

impl Usage {
    /// Each figure, named, in a fixed order (for tables and messages).
    pub fn figures(&self) -> [(&'static str, u64); 9] {
        [
            ("daemon fds", self.fds),
            ("daemon threads", self.threads),
            ("daemon RSS (KiB)", self.rss_kib),
            ("host mounts", self.mounts),
            ("host links", self.links),
            ("cgroups", self.cgroups),
            ("processes", self.processes),
            ("nftables objects", self.nft_objects),
            ("dnsmasq host/lease lines", self.lease_lines),
        ]
    }

    /// The figures that grew past `base` plus `allow`, as messages.
    pub fn grown_since(&self, base: &Usage, allow: Allowance) -> Vec<String> {
        let slack = |name: &str| match name {
            "daemon fds" => allow.fds,
            "daemon threads" => allow.threads,
            "daemon RSS (KiB)" => allow.rss_kib,
            _ => 0,
        };
        self.figures()
            .iter()
            .zip(base.figures())
            .filter(|((name, now), (_, was))| *now > was + slack(name))
            .map(|((name, now), (_, was))| {
                format!(
                    "{name}: {was} at the baseline, {now} now (allowed +{})",
                    slack(name)
                )
            })
            .collect()
    }
}

/// The usage of the daemon `pid` serving `dir`, whose cgroup prefix is `prefix`.
pub fn usage(pid: i32, dir: &Path, prefix: &str) -> Usage {
    let mut cgroups = 0;
    for root in cgroup_dirs(prefix) {
        cgroups += subdirs(&root);
    }
    let mut lease_lines = 0;
    for net in std::fs::read_dir(dir.join("networks"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in ["dnsmasq.hosts", "dnsmasq.leases"] {
            let text = std::fs::read_to_string(net.path().join(f)).unwrap_or_default();
            lease_lines += text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        }
    }
    Usage {
        fds: fd_count(pid),
        threads: proc_status_number(pid, "Threads"),
        rss_kib: proc_status_number(pid, "VmRSS"),
        mounts: mounts_under(dir).len() as u64,
        links: kante_links().len() as u64,
        cgroups,
        processes: processes_mentioning(&dir.to_string_lossy()).len() as u64,
        nft_objects: nft_objects_of(prefix),
        lease_lines,
    }
}

/// A number from `/proc/PID/status` (`Threads`, `VmRSS` in KiB, …); 0 if
/// the process or the field is gone.
pub fn proc_status_number(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The open fds of process `pid`.
pub fn fd_count(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Directories below `root`, at any depth.
fn subdirs(root: &Path) -> u64 {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| 1 + subdirs(&e.path()))
        .sum()
}

/// Chains, rules, sets and elements with a handle in the daemon's tables.
fn nft_objects_of(prefix: &str) -> u64 {
    let mut n = 0;
    for t in nft_tables_of(prefix) {
        let args: Vec<&str> = t.split_whitespace().collect();
        let o = Command::new("nft")
            .args(["-a", "list", "table", args[1], args[2]])
            .output()
            .expect("run nft (nftables)");
        assert!(o.status.success(), "nft list table {t}");
        n += String::from_utf8_lossy(&o.stdout)
            .matches("# handle")
            .count() as u64;
    }
    n
}

/// The daemon's usage once bounded pools have settled: measured again for
/// up to 20 s while it is above `base` plus `allow`; returns the last
/// figures and what still grew.
pub async fn settled_usage(
    pid: i32,
    dir: &Path,
    prefix: &str,
    base: &Usage,
    allow: Allowance,
) -> (Usage, Vec<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = usage(pid, dir, prefix);
        let grown = now.grown_since(base, allow);
        if grown.is_empty() || std::time::Instant::now() > deadline {
            return (now, grown);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
