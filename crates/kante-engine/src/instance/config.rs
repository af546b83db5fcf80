//! Instance configuration: which keys exist, what their values may be, and
//! how profiles and local config merge into the expanded view.

use kante_api::{ConfigMap, DevicesMap};
use kante_syntax::SyntaxError;

use crate::error::Result;
use crate::instance::cloudinit::CloudInitError;
use crate::units;

/// Why an instance's config is refused (all HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key this daemon refuses; the text says why.
    #[error("{0}")]
    Refused(&'static str),
    #[error("Unknown configuration key: {0}")]
    UnknownKey(String),
    #[error("Empty environment variable name")]
    EmptyEnvironmentName,
    /// A `service.NAME=PORT[/PROTO]` key that does not parse.
    #[error("{0}")]
    Service(String),
    #[error("Invalid value for {key}: {source}")]
    Value {
        key: String,
        #[source]
        source: SyntaxError,
    },
    #[error("Invalid value for {key}: {source}")]
    CloudInit {
        key: String,
        #[source]
        source: CloudInitError,
    },
    #[error("limits.memory {value} is more than the host has ({host} bytes)")]
    MemoryAboveHost { value: String, host: u64 },
    #[error("limits.cpu {count} is more than the host's {cpus} CPUs")]
    CpusAboveHost { count: u32, cpus: usize },
    #[error("limits.cpu {value} names CPUs the host does not have (0-{last})")]
    CpuSetAboveHost { value: String, last: usize },
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    /// Free text, checked elsewhere or not at all.
    Text,
    MemoryLimit,
    CpuLimit,
    CpuAllowance,
    Expiry,
    /// Comma-separated kernel module names.
    KernelModules,
    /// `snapshots.schedule`: cron or aliases.
    Schedule,
    /// `cluster.evacuate`: auto, migrate or stop.
    Evacuate,
}

/// Keys an instance may carry, with the shape of their value and whether a
/// running instance picks a change up at once (`live`).
const KEYS: &[(&str, Kind, bool)] = &[
    ("boot.autostart", Kind::Bool, true),
    // Cluster placement (`scheduler.rs`): read when the instance is made.
    ("placement.affinity", Kind::Text, true),
    ("placement.anti-affinity", Kind::Text, true),
    // What evacuating its member does with it (`evacuate.rs`).
    ("cluster.evacuate", Kind::Evacuate, true),
    ("boot.autostart.delay", Kind::Int, true),
    ("boot.autostart.priority", Kind::Int, true),
    ("boot.stop.priority", Kind::Int, true),
    ("boot.host_shutdown_timeout", Kind::Int, true),
    ("security.privileged", Kind::Bool, false),
    ("security.protection.delete", Kind::Bool, true),
    // Nesting and interception shape the container itself: next start.
    ("security.nesting", Kind::Bool, false),
    ("security.devlxd", Kind::Bool, false),
    ("security.devlxd.images", Kind::Bool, true),
    ("security.idmap.isolated", Kind::Bool, false),
    ("security.syscalls.intercept.mknod", Kind::Bool, false),
    ("security.syscalls.intercept.setxattr", Kind::Bool, false),
    ("linux.kernel_modules", Kind::KernelModules, false),
    ("limits.memory.swap", Kind::Bool, true),
    ("limits.memory", Kind::MemoryLimit, true),
    ("limits.cpu", Kind::CpuLimit, true),
    ("limits.cpu.allowance", Kind::CpuAllowance, true),
    ("limits.processes", Kind::Int, true),
    ("snapshots.expiry", Kind::Expiry, true),
    ("snapshots.pattern", Kind::Text, true),
    ("snapshots.schedule", Kind::Schedule, true),
    ("snapshots.schedule.stopped", Kind::Bool, true),
    ("cloud-init.user-data", Kind::Text, false),
    ("cloud-init.vendor-data", Kind::Text, false),
    ("cloud-init.network-config", Kind::Text, false),
];

/// Keys refused with an explanation rather than "unknown".
const REFUSED: &[(&str, &str)] = &[
    (
        "raw.lxc",
        "raw.lxc is not supported: Kante does not run liblxc; use the equivalent Kante keys",
    ),
    ("raw.idmap", "raw.idmap is not supported"),
    ("raw.seccomp", "raw.seccomp is not supported"),
    (
        "raw.apparmor",
        "raw.apparmor is not supported (no AppArmor)",
    ),
];

/// Free-form namespaces.
const PREFIXES: &[&str] = &["user.", "environment.", "image.", "volatile."];

fn check_value(key: &str, kind: Kind, value: &str) -> std::result::Result<(), ConfigError> {
    let checked = match kind {
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "false" | "1" | "0" | "yes" | "no" | "on" | "off" | "" => Ok(()),
            _ => Err(SyntaxError(format!("{value:?} is not a boolean"))),
        },
        Kind::Int => value
            .trim()
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| SyntaxError(format!("{value:?} is not an integer"))),
        Kind::Text => Ok(()),
        Kind::MemoryLimit => units::parse_memory_limit(value, host_memory()).map(|_| ()),
        Kind::CpuLimit => units::parse_cpu_limit(value).map(|_| ()),
        Kind::CpuAllowance => units::parse_cpu_allowance(value).map(|_| ()),
        Kind::Schedule => crate::schedule::Schedule::parse(value).map(|_| ()),
        Kind::KernelModules => kante_runtime::kmod::parse_list(value).map(|_| ()),
        Kind::Expiry => crate::units::parse_expiry(value).map(|_| ()),
        Kind::Evacuate => match value {
            "" | "auto" | "migrate" | "stop" => Ok(()),
            other => Err(SyntaxError(format!(
                "{other:?} is not one of auto, migrate, stop"
            ))),
        },
    };
    checked.map_err(|source| ConfigError::Value {
        key: key.to_string(),
        source,
    })
}

/// Total host memory in bytes (for `%` limits).
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
                .flatten()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Validates one config map (local or expanded). Empty values mean "unset".
pub fn validate_config(config: &ConfigMap) -> Result<()> {
    for (key, value) in config {
        if let Some((_, why)) = REFUSED.iter().find(|(k, _)| k == key) {
            return Err(ConfigError::Refused(why).into());
        }
        if key.starts_with(kante_api::service::PREFIX) {
            if !value.is_empty() {
                kante_api::service::parse_service(key, value).map_err(ConfigError::Service)?;
            }
            continue;
        }
        if PREFIXES.iter().any(|p| key.starts_with(p)) {
            if key.starts_with("environment.") && key.len() == "environment.".len() {
                return Err(ConfigError::EmptyEnvironmentName.into());
            }
            continue;
        }
        match KEYS.iter().find(|(k, _, _)| k == key) {
            Some((_, kind, _)) => {
                if !value.is_empty() {
                    check_value(key, *kind, value)?;
                }
            }
            None => return Err(ConfigError::UnknownKey(key.clone()).into()),
        }
    }
    if let Some(v) = config.get("limits.memory").filter(|v| !v.is_empty()) {
        let bytes = units::parse_memory_limit(v, host_memory())?;
        let host = host_memory();
        if host > 0 && bytes > host {
            return Err(ConfigError::MemoryAboveHost {
                value: v.clone(),
                host,
            }
            .into());
        }
    }
    if let Some(v) = config.get("limits.cpu").filter(|v| !v.is_empty()) {
        let n = online_cpus();
        match units::parse_cpu_limit(v)? {
            units::CpuLimit::Count(count) if count as usize > n => {
                return Err(ConfigError::CpusAboveHost { count, cpus: n }.into())
            }
            units::CpuLimit::Set(set) if set.iter().any(|c| *c as usize >= n) => {
                return Err(ConfigError::CpuSetAboveHost {
                    value: v.clone(),
                    last: n - 1,
                }
                .into())
            }
            _ => {}
        }
    }
    crate::instance::cloudinit::validate(config)?;
    Ok(())
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Whether changing `key` takes effect on a running instance without restart.
pub fn is_live(key: &str) -> bool {
    if key.starts_with(kante_api::service::PREFIX) {
        return true;
    }
    if PREFIXES.iter().any(|p| key.starts_with(p)) {
        return !key.starts_with("environment.");
    }
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, live)| *live)
        .unwrap_or(false)
}

/// Validates devices. Only device types this daemon can honour are
/// accepted (the device registry, `devices/registry.rs`, says which).
pub fn validate_devices(devices: &DevicesMap) -> Result<()> {
    crate::devices::validate(devices)
}

/// Profiles in order, then the instance's own keys; a local device of type
/// `none` removes an inherited one.
pub fn expand(
    profiles: &[(ConfigMap, DevicesMap)],
    config: &ConfigMap,
    devices: &DevicesMap,
) -> (ConfigMap, DevicesMap) {
    let mut c = ConfigMap::new();
    let mut d = DevicesMap::new();
    for (pc, pd) in profiles {
        c.extend(pc.iter().map(|(k, v)| (k.clone(), v.clone())));
        d.extend(pd.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    c.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
    d.extend(devices.iter().map(|(k, v)| (k.clone(), v.clone())));
    d.retain(|name, dev| !crate::devices::masks_inherited(name, dev));
    c.retain(|_, v| !v.is_empty());
    (c, d)
}

/// The root disk of an expanded device set.
pub fn root_disk(
    devices: &DevicesMap,
) -> Option<(&String, &std::collections::BTreeMap<String, String>)> {
    devices
        .iter()
        .find(|(name, d)| crate::devices::is_root_disk(name, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_prefixed_and_refused_keys() {
        assert!(validate_config(&map(&[
            ("user.x", "1"),
            ("environment.FOO", "bar"),
            ("limits.memory", "64MiB")
        ]))
        .is_ok());
        assert!(validate_config(&map(&[("volatile.eth0.hwaddr", "00:16:3e:00:00:01")])).is_ok());
        for ok in ["auto", "migrate", "stop"] {
            assert!(validate_config(&map(&[("cluster.evacuate", ok)])).is_ok());
        }
        let e = validate_config(&map(&[("cluster.evacuate", "live")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.evacuate"), "{e}");
        let e = validate_config(&map(&[("bogus.key", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Unknown configuration key"), "{e}");
        let e = validate_config(&map(&[("raw.lxc", "lxc.x=1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("raw.lxc"), "{e}");
        assert!(validate_config(&map(&[("security.privileged", "maybe")])).is_err());
        assert!(validate_config(&map(&[("limits.memory", "12XB")])).is_err());
        assert!(validate_config(&map(&[("limits.memory", "100000TiB")])).is_err());
        assert!(validate_config(&map(&[("limits.cpu", "4096")])).is_err());
        assert!(validate_config(&map(&[("limits.cpu", "0-1")])).is_ok() || online_cpus() < 2);
        assert!(validate_config(&map(&[("environment.", "x")])).is_err());
    }

    #[test]
    fn nesting_interception_and_module_keys() {
        let docker = map(&[
            ("security.nesting", "true"),
            ("security.syscalls.intercept.mknod", "true"),
            ("security.syscalls.intercept.setxattr", "true"),
            (
                "linux.kernel_modules",
                "ip_tables,ip6_tables,xt_MASQUERADE,overlay",
            ),
            ("limits.memory.swap", "false"),
            ("security.idmap.isolated", "false"),
        ]);
        assert!(validate_config(&docker).is_ok());
        for (k, v) in [
            ("security.nesting", "sometimes"),
            ("security.syscalls.intercept.mknod", "2"),
            ("linux.kernel_modules", "ip_tables;reboot"),
            ("linux.kernel_modules", "../x"),
            ("limits.memory.swap", "50%"),
        ] {
            assert!(validate_config(&map(&[(k, v)])).is_err(), "{k}={v}");
        }
        assert!(validate_config(&map(&[("security.idmap.isolated", "true")])).is_ok());
        assert!(validate_config(&map(&[("security.idmap.isolated", "maybe")])).is_err());
        assert!(!is_live("security.nesting"));
        assert!(!is_live("security.syscalls.intercept.mknod"));
        assert!(!is_live("linux.kernel_modules"));
        assert!(is_live("limits.memory.swap"));
    }

    #[test]
    fn devices_are_checked() {
        let mut d = DevicesMap::new();
        d.insert(
            "root".into(),
            map(&[("type", "disk"), ("path", "/"), ("pool", "default")]),
        );
        assert!(validate_devices(&d).is_ok());
        d.insert(
            "data".into(),
            map(&[("type", "disk"), ("path", "/mnt/x"), ("source", "/srv/x")]),
        );
        assert!(validate_devices(&d).is_ok());
        d.insert(
            "bad".into(),
            map(&[("type", "disk"), ("path", "relative"), ("source", "/srv")]),
        );
        assert!(validate_devices(&d).is_err());
        d.remove("bad");
        d.insert(
            "up".into(),
            map(&[("type", "disk"), ("path", "/a/../b"), ("source", "/srv")]),
        );
        assert!(validate_devices(&d).is_err());
        d.remove("up");
        d.insert("x".into(), map(&[("type", "frobnicator")]));
        assert!(validate_devices(&d).is_err());
    }

    #[test]
    fn expansion_order_and_none_masking() {
        let p1 = (map(&[("limits.memory", "1GiB"), ("user.a", "1")]), {
            let mut d = DevicesMap::new();
            d.insert(
                "root".into(),
                map(&[("type", "disk"), ("path", "/"), ("pool", "default")]),
            );
            d.insert(
                "data".into(),
                map(&[("type", "disk"), ("path", "/d"), ("source", "/srv")]),
            );
            d
        });
        let p2 = (map(&[("limits.memory", "2GiB")]), DevicesMap::new());
        let local = map(&[("user.a", "2")]);
        let mut ldev = DevicesMap::new();
        ldev.insert("data".into(), map(&[("type", "none")]));
        let (c, d) = expand(&[p1, p2], &local, &ldev);
        assert_eq!(c["limits.memory"], "2GiB");
        assert_eq!(c["user.a"], "2");
        assert!(d.contains_key("root") && !d.contains_key("data"));
        assert!(root_disk(&d).is_some());
    }
}
