//! Host limits that many system containers exhaust. All containers share
//! one host uid range, so per-user limits (inotify instances, keys) are
//! shared by all of them: with Linux's defaults the 13th systemd container
//! fails to boot (LXD's well-known failure), and with 1024 inotify instances
//! the ~100th does (measured here: a Debian guest holds ~9.4, and the 104th
//! launch never became ready). The daemon raises them at start (never
//! lowers) to the values of LXD's production-setup guide, with room for
//! hundreds of instances where the guide's key quota is sized for fewer.

pub use crate::instance::config::{host_memory, online_cpus};
pub use crate::instance::host_shutdown::host_is_stopping;

/// (sysctl path, minimum value).
const LIMITS: &[(&str, u64)] = &[
    ("fs/inotify/max_user_instances", 1_048_576),
    ("fs/inotify/max_user_watches", 1_048_576),
    ("fs/inotify/max_queued_events", 1_048_576),
    // ~10 keyrings per systemd guest: room for 2000 guests per id range.
    ("kernel/keys/maxkeys", 20_000),
    ("kernel/keys/maxbytes", 20_000_000),
    ("vm/max_map_count", 262_144),
    // What systemd's 50-pid-max.conf sets on 64-bit hosts; a kernel without
    // it stops at 32768 tasks, a few thousand guests' worth.
    ("kernel/pid_max", 4_194_304),
];

/// Raises the daemon's soft open-file limit to its hard one (under systemd
/// the soft one is 1024): the daemon keeps a few descriptors per running
/// instance. Returns the new soft limit.
pub fn raise_nofile() -> Option<u64> {
    kante_runtime::host::raise_nofile_limit()
}

/// The daemon's soft open-file limit, if it can be read.
pub fn nofile_limit() -> Option<u64> {
    kante_runtime::host::nofile_limit()
}

/// Raises each limit to its minimum; returns what changed, as (name, old, new).
pub fn raise_limits() -> Vec<(String, u64, u64)> {
    let mut changed = Vec::new();
    for (name, min) in LIMITS {
        let path = format!("/proc/sys/{name}");
        let Some(cur) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            continue;
        };
        if cur < *min {
            match std::fs::write(&path, min.to_string()) {
                Ok(()) => {
                    tracing::info!(sysctl = %name.replace('/', "."), from = cur, to = min, "raised host limit");
                    changed.push((name.replace('/', "."), cur, *min));
                }
                Err(e) => {
                    tracing::warn!(sysctl = %name.replace('/', "."), "could not raise host limit: {e}")
                }
            }
        }
    }
    changed
}
