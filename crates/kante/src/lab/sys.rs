//! The machine side of the lab: `ip` for links, addresses and namespaces,
//! processes (by pid and start time, by network namespace, by cgroup),
//! mounts and loop devices under a directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::addr::Net;

/// Runs `ip ARGS`; its stdout, or its stderr as the error.
pub fn ip(args: &[&str]) -> Result<String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("Failed to run ip (iproute2)")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Whether link `name` exists in the caller's network namespace.
pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Addresses and routes of the caller's namespace that overlap `net`, as
/// `ip` shows them.
pub fn in_use(net: &Net) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let addrs: serde_json::Value = serde_json::from_str(&ip(&["-4", "-j", "addr", "show"])?)
        .context("Unexpected output of ip -j addr")?;
    for link in addrs.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            if let Some(n) = net_of(local, len) {
                if n.overlaps(net) {
                    found.push(format!(
                        "address {local}/{len} on {}",
                        link["ifname"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    let routes: serde_json::Value =
        serde_json::from_str(&ip(&["-4", "-j", "route", "show", "table", "all"])?)
            .context("Unexpected output of ip -j route")?;
    for r in routes.as_array().into_iter().flatten() {
        let Some(dst) = r["dst"].as_str() else {
            continue;
        };
        let (a, len) = match dst.split_once('/') {
            Some((a, l)) => (a, l.parse().unwrap_or(32)),
            None if dst == "default" => continue,
            None => (dst, 32),
        };
        if net_of(a, len).is_some_and(|n| n.overlaps(net)) {
            found.push(format!(
                "route {dst} via {}",
                r["dev"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(found)
}

/// The network of `addr/len`.
fn net_of(addr: &str, len: u64) -> Option<Net> {
    let ip: std::net::Ipv4Addr = addr.parse().ok()?;
    let len = u8::try_from(len).ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(Net {
        base: (u32::from(ip) & mask).into(),
        prefix: len,
    })
}

/// A process's start time (field 22 of `/proc/PID/stat`); `None` when it
/// is gone or a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// Whether `pid` is still the process started at `start`.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    match (start_time(pid), start) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid, sig) };
}

/// SIGTERM, then SIGKILL once `grace` passed; waits for it to be gone.
pub fn terminate(pid: i32, start: Option<u64>, grace: Duration) {
    if !alive(pid, start) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while alive(pid, start) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid, start) {
        signal(pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid, start) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every process whose network namespace is the named one.
pub fn pids_in_netns(name: &str) -> Vec<i32> {
    let Ok(ns) = std::fs::metadata(netns_path(name)) else {
        return vec![];
    };
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
        })
        .collect()
}

/// The cgroup directories of a daemon's prefix, one per hierarchy.
pub fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(prefix))
        .filter(|p| p.is_dir())
        .collect();
    if root.join(prefix).is_dir() {
        out.push(root.join(prefix));
    }
    out
}

/// Kills every process in the cgroup tree, then removes it, deepest first.
pub fn kill_cgroup(cg: &Path) {
    for _ in 0..50 {
        let pids = cgroup_pids(cg);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    remove_tree(cg);
}

fn cgroup_pids(cg: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for f in ["cgroup.procs", "tasks"] {
        if let Ok(t) = std::fs::read_to_string(cg.join(f)) {
            out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    for e in std::fs::read_dir(cg).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(cgroup_pids(&e.path()));
        }
    }
    out
}

fn remove_tree(cg: &Path) {
    for e in std::fs::read_dir(cg).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            remove_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(cg);
}

/// Mount points at or under `dir`, deepest first (this process's mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

/// mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Unmounts everything under `dir`, deepest first; a lazy unmount only for
/// what stays busy after retries. What could not be unmounted is returned.
pub fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    use nix::mount::{umount2, MntFlags};
    for round in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return vec![];
        }
        for m in &mounts {
            if umount2(m, MntFlags::empty()).is_err() && round == 9 {
                let _ = umount2(m, MntFlags::MNT_DETACH);
            }
        }
        if round > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    mounts_under(dir)
}

/// Detaches loop devices whose backing file is under `dir`.
pub fn release_loops_under(dir: &Path) {
    for e in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let b = b.trim_end_matches('\n');
        if Path::new(b.strip_suffix(" (deleted)").unwrap_or(b)).starts_with(dir) {
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(format!("/dev/{name}"))
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape("/x\\\\y"), PathBuf::from("/x\\\\y"));
        assert_eq!(unescape("/t\\011"), PathBuf::from("/t\t"));
    }

    #[test]
    fn networks_of_addresses() {
        let n = net_of("10.248.0.7", 24).unwrap();
        assert_eq!(n.to_string(), "10.248.0.0/24");
        assert_eq!(net_of("10.0.0.1", 0).unwrap().to_string(), "0.0.0.0/0");
        assert!(net_of("::1", 64).is_none() && net_of("10.0.0.1", 40).is_none());
    }

    #[test]
    fn loopback_is_in_use() {
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("no iproute2 here: skipped");
            return;
        }
        let used = in_use(&Net::parse("127.0.0.0/8").unwrap()).unwrap();
        assert!(
            used.iter()
                .any(|u| u.contains("127.0.0.1") && u.contains("lo")),
            "{used:?}"
        );
        // A range inside loopback's is in use too.
        assert!(!in_use(&Net::parse("127.0.0.0/24").unwrap())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("our own stat");
        assert!(alive(me, Some(t)) && alive(me, None));
        assert!(!alive(me, Some(t + 1)));
    }
}
