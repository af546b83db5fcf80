//! Changes to a running instance: the generic diff of its devices (each
//! added, changed or removed one hot-plugged or left for the next start, as
//! the device registry says) applied by run-plan section (proxies, NICs,
//! mounts), and the report of what was taken at once.

use std::collections::HashMap;
use std::sync::Arc;

use kante_api::{ConfigMap, DevicesMap};
use kante_runtime::BindMount;

use crate::devices::{DeviceError, StartCx};
use crate::error::{EngineError, Result};
use crate::instance::proxy::{self, ProxyHandle, ProxySpec};
use crate::instance::{config, Running};
use crate::util::is_true;
use crate::Engine;

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
            let entry = format!("devices.{d}");
            if crate::devices::is_live_change(d, o, n) {
                r.live.push(entry);
            } else {
                r.next_start.push(entry);
            }
        }
        r
    }
}

impl Engine {
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
        let (stop, plan) = {
            let cx = StartCx {
                engine: self,
                devices: &new.1,
                config,
                privileged: is_true(new.0.get("security.privileged")),
            };
            self.diff_devices(&cx, &old.1).await?
        };
        self.hotplug_proxies(r, name, config, &stop.proxies, &plan.proxies)
            .await?;
        self.hotplug_nics(r, name, &new.1, &stop.nics, &plan.nics, config)
            .await?;
        self.hotplug_disks(r, stop.unmounts, plan.mounts).await?;
        Ok(())
    }

    /// Opens one proxy device of `instance` (running as `pid`; `config`
    /// holds its NICs' volatile keys): listeners in kanted, or forwards in
    /// the kernel for `nat=true`.
    async fn open_proxy(
        &self,
        instance: &str,
        pid: i32,
        config: &ConfigMap,
        device: &str,
        spec: &ProxySpec,
    ) -> Result<ProxyHandle> {
        match spec.nat {
            true => self.open_nat(instance, device, spec, config).await,
            false => proxy::start(spec, pid).await,
        }
    }

    /// Opens the proxy devices of `instance` (errors such as an address in
    /// use abort, and close the ones opened before).
    pub(crate) async fn open_proxies(
        &self,
        instance: &str,
        pid: i32,
        config: &ConfigMap,
        specs: &[(String, ProxySpec)],
    ) -> Result<HashMap<String, ProxyHandle>> {
        let mut out = HashMap::new();
        for (name, spec) in specs {
            match self.open_proxy(instance, pid, config, name, spec).await {
                Ok(h) => {
                    out.insert(name.clone(), h);
                }
                Err(e) => {
                    close_all(out).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// After a daemon restart: re-opens what the daemon itself held for a
    /// running instance's devices (its proxies' listeners and forwards).
    pub(crate) async fn restore_proxies(
        &self,
        instance: &str,
        pid: i32,
        devices: &DevicesMap,
        config: &ConfigMap,
    ) -> Result<HashMap<String, ProxyHandle>> {
        let cx = StartCx {
            engine: self,
            devices,
            config,
            privileged: false,
        };
        let plan = self.start_devices(&cx, |_, d| d.held_by_daemon()).await?;
        self.open_proxies(instance, pid, config, &plan.proxies)
            .await
    }

    /// Closes the listeners of removed or changed proxy devices and opens
    /// those of added or changed ones.
    pub(crate) async fn hotplug_proxies(
        &self,
        r: &Running,
        instance: &str,
        config: &ConfigMap,
        stop: &[String],
        start: &[(String, ProxySpec)],
    ) -> Result<()> {
        for name in stop {
            let handle = crate::lock(&r.proxies).remove(name);
            if let Some(h) = handle {
                h.close().await;
            }
        }
        for (name, spec) in start {
            let handle = self.open_proxy(instance, r.pid, config, name, spec).await?;
            crate::lock(&r.proxies).insert(name.clone(), handle);
        }
        Ok(())
    }

    /// Unmounts removed disks from a running instance and mounts added
    /// ones (a changed disk is unmounted, then mounted again).
    pub(crate) async fn hotplug_disks(
        &self,
        r: &Arc<Running>,
        removed: Vec<String>,
        mounts: Vec<(String, BindMount)>,
    ) -> Result<()> {
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
                    DeviceError::cause(dname)(EngineError::io(format!("mounting {}", m.target), e))
                })?;
            }
            Ok(())
        })
        .await?
    }
}

/// Closes proxy handles (a drop would leave `nat=true` forwards in place).
pub(crate) async fn close_all(handles: HashMap<String, ProxyHandle>) {
    for (_, h) in handles {
        h.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
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
