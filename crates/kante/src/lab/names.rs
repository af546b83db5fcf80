//! What the lab names: the uplink bridge (`k<name>-up`), each host's
//! network namespace (`<name>-h<i>`), the root end of its veth
//! (`k<name>-h<i>`), the remotes added to the caller's configuration
//! (`h<i>` for the default lab, `<name>-h<i>` for any other), and the
//! cgroup prefix each host's kanted uses.

use std::path::Path;

use anyhow::{bail, Result};

/// The lab made when `--name` is not given; its remotes are plain `h<i>`.
pub const DEFAULT_NAME: &str = "lab";
/// Interface names are at most 15 bytes: `k` + name + `-h16`.
pub const MAX_NAME: usize = 10;
/// At most this many hosts.
pub const MAX_HOSTS: u32 = 16;
/// The bridge in each host's namespace the uplink is plugged into.
pub const HOST_UPLINK: &str = "uplink0";
/// The host's end of its veth, a port of `uplink0`.
pub const HOST_PORT: &str = "uplink0p";
/// The managed bridge made on every host.
pub const HOST_BRIDGE: &str = "kantebr0";

pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        bail!("Invalid lab name {name:?}: 1 to {MAX_NAME} characters (interface names are at most 15)");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!(
            "Invalid lab name {name:?}: a lowercase letter, then lowercase letters, digits and '-'"
        );
    }
    Ok(())
}

pub fn check_hosts(hosts: u32) -> Result<()> {
    if hosts == 0 || hosts > MAX_HOSTS {
        bail!("Invalid host count {hosts}: 1 to {MAX_HOSTS}");
    }
    Ok(())
}

/// The uplink bridge in the caller's namespace.
pub fn uplink_bridge(name: &str) -> String {
    format!("k{name}-up")
}

/// Host `i`'s network namespace (`/run/netns/<name>-h<i>`).
pub fn netns(name: &str, i: u32) -> String {
    format!("{name}-h{i}")
}

/// The root end of host `i`'s veth.
pub fn root_port(name: &str, i: u32) -> String {
    format!("k{name}-h{i}")
}

/// Host `i` as the lab's own commands name it.
pub fn host(i: u32) -> String {
    format!("h{i}")
}

/// `h<i>` back to `i`.
pub fn host_index(host: &str, hosts: u32) -> Result<u32> {
    match host.strip_prefix('h').and_then(|n| n.parse::<u32>().ok()) {
        Some(i) if (1..=hosts).contains(&i) && host == self::host(i) => Ok(i),
        _ => bail!("No host {host:?} in this lab: h1 to h{hosts}"),
    }
}

/// Host `i`'s remote in the caller's configuration.
pub fn caller_remote(name: &str, i: u32) -> String {
    if name == DEFAULT_NAME {
        host(i)
    } else {
        format!("{name}-h{i}")
    }
}

/// The cgroup prefix of a kanted whose `KANTE_DIR` is `dir`: the daemon's
/// own rule (`kante-` and the FNV-1a hash of the path as given).
pub fn cgroup_prefix(dir: &Path) -> String {
    if dir == Path::new("/var/lib/kante") {
        return "kante".into();
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in dir.to_string_lossy().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("kante-{:08x}", h as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_names() {
        let longest = "abcdefghij";
        check_name(longest).unwrap();
        for i in [1, MAX_HOSTS] {
            assert!(
                root_port(longest, i).len() <= 15,
                "{}",
                root_port(longest, i)
            );
        }
        assert!(uplink_bridge(longest).len() <= 15);
        assert_eq!(uplink_bridge("lab"), "klab-up");
        assert_eq!(root_port("lab", 2), "klab-h2");
        assert_eq!(netns("lab", 2), "lab-h2");
        for bad in [
            "",
            "abcdefghijk",
            "Lab",
            "1lab",
            "la b",
            "la_b",
            "-lab",
            "lab/x",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_counts_and_host_names() {
        assert!(check_hosts(0).is_err() && check_hosts(17).is_err());
        check_hosts(1).unwrap();
        check_hosts(16).unwrap();
        assert_eq!(host_index("h3", 3).unwrap(), 3);
        for bad in ["h0", "h4", "3", "h03", "hx", "h"] {
            assert!(host_index(bad, 3).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_other_labs_prefix_their_remotes() {
        assert_eq!(caller_remote(DEFAULT_NAME, 2), "h2");
        assert_eq!(caller_remote("lt7", 2), "lt7-h2");
        crate::remote::check_remote_name(&caller_remote("abcdefghij", 16)).unwrap();
    }

    #[test]
    fn the_cgroup_prefix_is_the_daemons() {
        for d in [
            "/var/lib/kante",
            "/tmp/x/h1/state",
            "/var/lib/kante-lab/lab/h2/state",
        ] {
            assert_eq!(
                cgroup_prefix(Path::new(d)),
                kante_engine::Paths::new(d).cgroup_prefix(),
                "{d}"
            );
        }
    }
}
