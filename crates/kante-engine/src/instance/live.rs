//! Changes to a running instance: devices plugged and unplugged, limits
//! rewritten, and what a device set refers to checked before anything is
//! stored (pools, volumes, networks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kante_api::{ConfigMap, DevicesMap};
use kante_runtime::BindMount;

use crate::error::{EngineError, Result};
use crate::instance::{config, proxy, Running};
use crate::util::is_true;
use crate::Engine;

fn is_type(d: &BTreeMap<String, String>, kind: &str) -> bool {
    d.get("type").map(String::as_str) == Some(kind)
}

/// `required=false`: a missing source is skipped rather than an error.
fn is_optional(d: &BTreeMap<String, String>) -> bool {
    d.get("required").is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        )
    })
}

/// A disk other than the root: mounted into the instance.
fn is_extra_disk(d: &BTreeMap<String, String>) -> bool {
    is_type(d, "disk") && d.get("path").map(String::as_str) != Some("/")
}

/// The keys and devices a change touches, split by whether a running
/// instance takes them at once or on its next start (what the API reports).
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeReport {
    pub live: Vec<String>,
    pub next_start: Vec<String>,
}

impl ChangeReport {
    pub fn between(old: &(ConfigMap, DevicesMap), new: &(ConfigMap, DevicesMap)) -> Self {
        let mut r = ChangeReport::default();
        let keys: std::collections::BTreeSet<&String> = old.0.keys().chain(new.0.keys()).collect();
        for k in keys {
            if k.starts_with("volatile.") || old.0.get(k) == new.0.get(k) {
                continue;
            }
            if config::is_live(k) {
                r.live.push(k.clone());
            } else {
                r.next_start.push(k.clone());
            }
        }
        let devs: std::collections::BTreeSet<&String> = old.1.keys().chain(new.1.keys()).collect();
        for d in devs {
            let (o, n) = (old.1.get(d), new.1.get(d));
            if o == n {
                continue;
            }
            let root = |x: Option<&BTreeMap<String, String>>| {
                x.is_some_and(|x| is_type(x, "disk") && !is_extra_disk(x))
            };
            let hotpluggable = |x: Option<&BTreeMap<String, String>>| {
                x.is_none_or(|x| ["nic", "proxy", "disk"].iter().any(|t| is_type(x, t)))
            };
            let entry = format!("devices.{d}");
            if !root(o) && !root(n) && hotpluggable(o) && hotpluggable(n) {
                r.live.push(entry);
            } else {
                r.next_start.push(entry);
            }
        }
        r
    }
}

impl Engine {
    /// The bind mounts of an instance's non-root disks, by device name.
    pub(crate) fn disk_mounts(
        &self,
        edevices: &DevicesMap,
        privileged: bool,
    ) -> Result<Vec<(String, BindMount)>> {
        let mut mounts = Vec::new();
        for (dname, dev) in edevices.iter().filter(|(_, d)| is_extra_disk(d)) {
            let optional = is_optional(dev);
            let raw = dev.get("source").cloned().unwrap_or_default();
            let source = match dev.get("pool") {
                // A custom volume: its directory in the pool is the bind source.
                Some(pool) => match self.custom_volume_path(pool, &raw) {
                    Ok(p) => p,
                    Err(_) if optional => continue,
                    Err(e) => return Err(EngineError::bad(format!("Device {dname:?}: {e}"))),
                },
                None => self.host_disk_source(dname, Path::new(&raw))?,
            };
            if !source.exists() {
                if optional {
                    continue;
                }
                return Err(EngineError::bad(format!(
                    "Device {dname:?}: source {} does not exist",
                    source.display()
                )));
            }
            // A custom volume is shifted like the rootfs (on-disk ids =
            // container ids) unless it opts out with shift=false. A host
            // path is not, as in LXD (audit F5): shifted, its root-owned
            // files would be the guest root's to rewrite and to make
            // setuid; `shift=true` asks for exactly that.
            let shift = match dev.get("shift").filter(|v| !v.is_empty()) {
                Some(v) => is_true(Some(v)),
                None => dev.contains_key("pool"),
            };
            mounts.push((
                dname.clone(),
                BindMount {
                    source,
                    target: dev.get("path").cloned().unwrap_or_default(),
                    readonly: is_true(dev.get("readonly")),
                    idmapped: shift && !privileged,
                },
            ));
        }
        Ok(mounts)
    }

    /// A host directory or file for a disk device, resolved (symlinks
    /// followed). Refuses what would hand the guest the host: the root, the
    /// system's top directories, and Kante's own state (any path inside
    /// KANTE_DIR, or above it). A path that does not exist (yet) is left
    /// to the start, which refuses it unless the disk is optional.
    pub(crate) fn host_disk_source(&self, dname: &str, source: &Path) -> Result<PathBuf> {
        const SYSTEM: [&str; 17] = [
            "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
            "/root", "/run", "/sbin", "/sys", "/usr", "/var", "/var/lib",
        ];
        let Ok(real) = std::fs::canonicalize(source) else {
            return Ok(source.to_path_buf());
        };
        let state = std::fs::canonicalize(&self.paths.root).unwrap_or(self.paths.root.clone());
        let refused = SYSTEM.iter().any(|s| real == Path::new(s))
            || real.starts_with(&state)
            || state.starts_with(&real);
        if refused {
            return Err(EngineError::bad(format!(
                "Device {dname:?}: source {} cannot be shared with an instance (it is a system directory or holds Kante's own state)",
                real.display()
            )));
        }
        Ok(real)
    }

    /// Refuses devices that name a pool, volume or network that does not
    /// exist, or mount one volume twice, before anything is stored.
    pub(crate) async fn check_device_refs(&self, devices: &DevicesMap) -> Result<()> {
        let mut volumes = BTreeMap::new();
        for (name, dev) in devices {
            if is_type(dev, "disk") {
                let Some(pool) = dev.get("pool") else {
                    if is_extra_disk(dev) {
                        let source = dev.get("source").map(String::as_str).unwrap_or("");
                        self.host_disk_source(name, Path::new(source))?;
                    }
                    continue;
                };
                self.pool(pool).map_err(|_| {
                    EngineError::bad(format!("Device {name:?}: storage pool {pool:?} not found"))
                })?;
                if !is_extra_disk(dev) {
                    continue;
                }
                let source = dev.get("source").map(String::as_str).unwrap_or("");
                if let Err(e) = self.custom_volume_path(pool, source) {
                    if !is_optional(dev) {
                        return Err(EngineError::bad(format!("Device {name:?}: {e}")));
                    }
                }
                if let Some(other) = volumes.insert((pool.clone(), source.to_string()), name) {
                    return Err(EngineError::bad(format!(
                        "Device {name:?}: storage volume {source:?} is already attached as device {other:?}"
                    )));
                }
            } else if is_type(dev, "nic") {
                if let Some(net) = dev.get("network") {
                    if self.shared.network_get(net).await?.is_none() {
                        return Err(EngineError::bad(format!(
                            "Device {name:?}: network {net:?} not found"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a change of expanded config and devices to a running
    /// instance; `config` (its own keys) receives the volatile keys of NICs.
    /// Keys that are not live (say `security.privileged`) wait for the next start.
    /// If a device fails, the error is returned before anything is stored.
    pub(crate) async fn apply_live(
        &self,
        r: &Arc<Running>,
        name: &str,
        old: &(ConfigMap, DevicesMap),
        new: &(ConfigMap, DevicesMap),
        config: &mut ConfigMap,
    ) -> Result<()> {
        self.hotplug_proxies(r, &old.1, &new.1).await?;
        self.hotplug_nics(r, name, &old.1, &new.1, config).await?;
        let privileged = is_true(new.0.get("security.privileged"));
        self.hotplug_disks(r, &old.1, &new.1, privileged).await?;
        Ok(())
    }

    /// Applies added, changed and removed proxy devices to a running instance.
    pub(crate) async fn hotplug_proxies(
        &self,
        r: &Running,
        old: &DevicesMap,
        new: &DevicesMap,
    ) -> Result<()> {
        for (name, dev) in old.iter().filter(|(_, d)| is_type(d, "proxy")) {
            if new.get(name) != Some(dev) {
                crate::lock(&r.proxies).remove(name);
            }
        }
        for (name, dev) in new.iter().filter(|(_, d)| is_type(d, "proxy")) {
            if old.get(name) != Some(dev) {
                let spec = proxy::validate(name, dev)?;
                let handle = proxy::start(&spec, r.pid).await?;
                crate::lock(&r.proxies).insert(name.clone(), handle);
            }
        }
        Ok(())
    }

    /// Mounts added disks into a running instance and unmounts removed ones
    /// (a changed disk is unmounted, then mounted again).
    pub(crate) async fn hotplug_disks(
        &self,
        r: &Arc<Running>,
        old: &DevicesMap,
        new: &DevicesMap,
        privileged: bool,
    ) -> Result<()> {
        let changed = |d: &String| old.get(d) != new.get(d);
        let removed: Vec<String> = old
            .iter()
            .filter(|(d, dev)| is_extra_disk(dev) && changed(d))
            .filter_map(|(_, dev)| dev.get("path").cloned())
            .collect();
        let added: DevicesMap = new
            .iter()
            .filter(|(d, dev)| is_extra_disk(dev) && changed(d))
            .map(|(d, dev)| (d.clone(), dev.clone()))
            .collect();
        let mounts = self.disk_mounts(&added, privileged)?;
        if removed.is_empty() && mounts.is_empty() {
            return Ok(());
        }
        let (r, rt) = (r.clone(), self.runtime.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let guard = crate::lock(&r.container);
            let c = guard
                .as_ref()
                .ok_or_else(|| EngineError::bad("The instance isn't running"))?;
            for path in &removed {
                rt.unmount_from(c, path)
                    .map_err(|e| EngineError::bad(format!("Unmounting {path}: {e}")))?;
            }
            for (dname, m) in &mounts {
                rt.mount_into(c, m).map_err(|e| {
                    EngineError::bad(format!("Device {dname:?}: mounting {}: {e}", m.target))
                })?;
            }
            Ok(())
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reports_what_a_running_instance_takes_at_once() {
        let old = (
            ConfigMap::from([("limits.memory".into(), "1GiB".into())]),
            DevicesMap::from([(
                "root".into(),
                dev(&[("type", "disk"), ("path", "/"), ("pool", "a")]),
            )]),
        );
        let mut new = old.clone();
        new.0.insert("limits.memory".into(), "2GiB".into());
        new.0.insert("security.privileged".into(), "true".into());
        new.0
            .insert("volatile.eth0.hwaddr".into(), "00:16:3e:00:00:01".into());
        new.1.insert(
            "data".into(),
            dev(&[("type", "disk"), ("path", "/d"), ("source", "/srv")]),
        );
        new.1.insert(
            "root".into(),
            dev(&[("type", "disk"), ("path", "/"), ("pool", "b")]),
        );
        let r = ChangeReport::between(&old, &new);
        assert_eq!(r.live, vec!["limits.memory", "devices.data"]);
        assert_eq!(r.next_start, vec!["security.privileged", "devices.root"]);
    }
}
