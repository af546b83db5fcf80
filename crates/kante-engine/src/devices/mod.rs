//! Instance devices: one [`Device`] trait, a registry from `(type, nictype)`
//! to the kind implementing it (`registry.rs`), and one file per kind.
//!
//! Everything the engine asks of a device goes through the trait: its own
//! keys (`validate`), what it names on this host (`check_refs`), what it
//! needs of its instance's other devices (`check_in_instance`), whether a
//! running instance takes it at once (`can_hot_plug`), whether it can move
//! to another host (`can_migrate`), and what starting it needs (`start`
//! adds to a [`RunPlan`]: bind mounts, NIC requests, proxy listeners) or
//! removing it undoes (`stop` adds to a [`StopPlan`]). The instance start
//! path applies a whole plan (`instance/lifecycle.rs`); a live change
//! applies the plans of the devices a diff found changed
//! (`instance/live.rs`). Adding a kind is a file here plus its registry line.

mod disk;
mod nic;
mod none;
mod proxy;
mod registry;
mod unsupported;

use std::collections::BTreeMap;

use kante_api::{ConfigMap, DevicesMap};
use kante_network::NicRequest;
use kante_runtime::BindMount;

use crate::error::{EngineError, Result};
use crate::instance::proxy::ProxySpec;
use crate::Engine;

/// Why a device is refused (all HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("Invalid device name {0:?}")]
    InvalidName(String),
    #[error("Device {0:?} has no type")]
    NoType(String),
    #[error("Device {device:?}: unknown device type {kind:?}")]
    UnknownType { device: String, kind: String },
    #[error("Device {device:?}: type {kind:?} is not supported by this kanted yet")]
    UnsupportedType { device: String, kind: String },
    #[error(
        "invalid {kind} device: {device}: unknown nictype {nictype:?} (supported: {supported})"
    )]
    UnknownNictype {
        device: String,
        kind: String,
        nictype: String,
        supported: String,
    },
    /// The device's config or what it names is wrong; `reason` says how.
    #[error("Device {device:?}: {reason}")]
    Invalid { device: String, reason: String },
    /// The device is refused because of another failure (a size that
    /// does not parse, a volume that is not there…), kept as the source
    /// (an [`EngineError`]).
    #[error("Device {device:?}: {source}")]
    Cause {
        device: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl DeviceError {
    pub fn invalid(device: &str, reason: impl std::fmt::Display) -> Self {
        DeviceError::Invalid {
            device: device.to_string(),
            reason: reason.to_string(),
        }
    }

    /// For `map_err`: device `device` is refused because of the error.
    pub fn cause<E: Into<EngineError>>(device: &str) -> impl FnOnce(E) -> DeviceError + '_ {
        move |e| DeviceError::Cause {
            device: device.to_string(),
            source: Box::new(e.into() as EngineError),
        }
    }
}

pub(crate) use registry::load;

/// One device's keys (`type`, `path`, `nictype`, …).
pub(crate) type DeviceConfig = BTreeMap<String, String>;

/// What a device is started for: the engine, the instance's whole
/// expanded device set (a NIC's default name is its rank among the NICs)
/// and its own config (the `volatile.<device>.*` keys).
pub(crate) struct StartCx<'a> {
    pub engine: &'a Engine,
    pub devices: &'a DevicesMap,
    pub config: &'a ConfigMap,
    /// `security.privileged`: nothing is idmapped.
    pub privileged: bool,
}

/// What starting devices asks of the runtime, by section, in device order.
/// The start path gives `mounts` to the runtime's spec, plans `nics`
/// together (names, MACs and host names unique across them) and makes them
/// while init waits, then opens `proxies` in the instance's netns; a live
/// change applies the same sections to the running instance.
#[derive(Default)]
pub(crate) struct RunPlan {
    pub mounts: Vec<(String, BindMount)>,
    pub nics: Vec<NicRequest>,
    pub proxies: Vec<(String, ProxySpec)>,
}

/// What removing devices from a running instance undoes.
#[derive(Default)]
pub(crate) struct StopPlan {
    /// Mount points in the instance.
    pub unmounts: Vec<String>,
    /// NIC device names (their made NICs are taken down).
    pub nics: Vec<String>,
    /// Proxy device names (their listeners are closed).
    pub proxies: Vec<String>,
}

/// Host resources the devices of one set have claimed so far, so that two
/// devices cannot take the same one (a custom volume is attached once).
#[derive(Default)]
pub(crate) struct Claims(BTreeMap<String, String>);

impl Claims {
    /// Claims `resource` for `device`; the device that had it, if one did.
    pub fn claim(&mut self, resource: String, device: &str) -> Option<String> {
        self.0.insert(resource, device.to_string())
    }
}

/// One device of an instance or profile, loaded by the registry from its
/// name and config.
#[async_trait::async_trait]
pub(crate) trait Device: Send + Sync {
    /// Checks the device's own keys (no host, no stored state).
    fn validate(&self) -> Result<()>;

    /// Checks that what the device names exists (pools, volumes, networks,
    /// host paths), before anything is stored.
    async fn check_refs(&self, _engine: &Engine, _claims: &mut Claims) -> Result<()> {
        Ok(())
    }

    /// Checks what the device needs of the other devices of its instance
    /// (the whole expanded set), when an instance's devices are set.
    async fn check_in_instance(&self, _engine: &Engine, _devices: &DevicesMap) -> Result<()> {
        Ok(())
    }

    /// Whether a running instance takes the device being added, changed or
    /// removed at once; otherwise the change waits for the next start.
    fn can_hot_plug(&self) -> bool;

    /// Whether the device can follow its instance to another host.
    fn can_migrate(&self) -> bool;

    /// Devices of a lower order start first (disks before the rest, so
    /// their errors come first; within an order, by name).
    fn start_order(&self) -> u8 {
        1
    }

    /// Adds what starting the device needs to `plan`.
    async fn start(&self, cx: &StartCx<'_>, plan: &mut RunPlan) -> Result<()>;

    /// Adds what taking the device out of a running instance undoes.
    fn stop(&self, _plan: &mut StopPlan) {}

    /// A changed device of a running instance, updated in place if its kind
    /// can; `Ok(false)` (the default) has the old one stopped and the new
    /// one started instead.
    async fn update(
        &self,
        _old: &dyn Device,
        _cx: &StartCx<'_>,
        _plan: &mut RunPlan,
    ) -> Result<bool> {
        Ok(false)
    }

    /// Whether kanted itself serves the device (a proxy's listeners), so a
    /// restarted daemon opens it again for instances that kept running.
    fn held_by_daemon(&self) -> bool {
        false
    }

    /// The root disk (path `/`): the instance's volume, never hot-plugged.
    fn is_root_disk(&self) -> bool {
        false
    }

    /// Whether, as a local device, it removes an inherited one of its name
    /// from the expanded set (type `none`).
    fn masks_inherited(&self) -> bool {
        false
    }

    /// A network interface of the guest: its config (it gets a
    /// `volatile.<device>.hwaddr`, a DHCP lease, a cloud-init entry).
    fn nic(&self) -> Option<&DeviceConfig> {
        None
    }

    /// Whether it attaches custom volume `volume` of `pool`.
    fn uses_volume(&self, _pool: &str, _volume: &str) -> bool {
        false
    }

    /// The networks or host interfaces it attaches to.
    fn networks(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Loads every device of a set, refusing bad names and unknown kinds.
fn load_all(devices: &DevicesMap) -> Result<Vec<(&String, Box<dyn Device>)>> {
    devices
        .iter()
        .map(|(name, cfg)| Ok((name, load(name, cfg)?)))
        .collect()
}

/// The devices of a set the registry knows, skipping the others (stored
/// sets were validated; for queries only).
fn loaded(devices: &DevicesMap) -> impl Iterator<Item = (&String, Box<dyn Device>)> {
    devices
        .iter()
        .filter_map(|(name, cfg)| load(name, cfg).ok().map(|d| (name, d)))
}

/// Validates a device set (local or a profile's): names, known kinds, and
/// each device's own keys. Only kinds this daemon can honour are accepted.
pub(crate) fn validate(devices: &DevicesMap) -> Result<()> {
    for (name, cfg) in devices {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(DeviceError::InvalidName(name.clone()).into());
        }
        load(name, cfg)?.validate()?;
    }
    Ok(())
}

/// Whether a device (loaded by the registry) masks an inherited one.
pub(crate) fn masks_inherited(name: &str, cfg: &DeviceConfig) -> bool {
    load(name, cfg).is_ok_and(|d| d.masks_inherited())
}

/// Whether a device is the root disk.
pub(crate) fn is_root_disk(name: &str, cfg: &DeviceConfig) -> bool {
    load(name, cfg).is_ok_and(|d| d.is_root_disk())
}

/// The guest's network interfaces of a set, in device-name order.
pub(crate) fn nics(devices: &DevicesMap) -> impl Iterator<Item = (&String, &DeviceConfig)> {
    devices
        .iter()
        .filter(|(name, cfg)| load(name, cfg).is_ok_and(|d| d.nic().is_some()))
}

/// Whether any device of a set attaches custom volume `volume` of `pool`.
pub(crate) fn uses_volume(devices: &DevicesMap, pool: &str, volume: &str) -> bool {
    loaded(devices).any(|(_, d)| d.uses_volume(pool, volume))
}

/// The networks and host interfaces the devices of a set attach to,
/// sorted, once each.
pub(crate) fn networks(devices: &DevicesMap) -> Vec<String> {
    let mut out: Vec<String> = loaded(devices)
        .flat_map(|(_, d)| {
            d.networks()
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether changing device `old` into `new` (either may be absent) is taken
/// by a running instance at once: both sides must be hot-pluggable. A device
/// the registry does not know waits for the next start.
pub(crate) fn is_live_change(
    name: &str,
    old: Option<&DeviceConfig>,
    new: Option<&DeviceConfig>,
) -> bool {
    let hot = |x: Option<&DeviceConfig>| {
        x.is_none_or(|cfg| load(name, cfg).is_ok_and(|d| d.can_hot_plug()))
    };
    hot(old) && hot(new)
}

/// The devices of an instance's expanded set that could not follow it to
/// another host (a host path, a host interface's NIC, a kind not supported).
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the move between hosts (cluster issue) is its first caller"
    )
)]
pub(crate) fn unmigratable(devices: &DevicesMap) -> Vec<String> {
    devices
        .iter()
        .filter(|(name, cfg)| !load(name, cfg).is_ok_and(|d| d.can_migrate()))
        .map(|(name, _)| name.clone())
        .collect()
}

impl Engine {
    /// Refuses devices that name a pool, volume or network that does not
    /// exist, or take one volume twice, before anything is stored.
    pub(crate) async fn check_device_refs(&self, devices: &DevicesMap) -> Result<()> {
        let mut claims = Claims::default();
        for (_, dev) in load_all(devices)? {
            dev.check_refs(self, &mut claims).await?;
        }
        Ok(())
    }

    /// Refuses devices of an instance's expanded set that its other
    /// devices cannot serve (a `nat=true` proxy without a static NIC
    /// address), when the instance is created or changed.
    pub(crate) async fn check_instance_devices(&self, devices: &DevicesMap) -> Result<()> {
        for (_, dev) in load_all(devices)? {
            dev.check_in_instance(self, devices).await?;
        }
        Ok(())
    }

    /// Starts the devices `which` selects out of an expanded set, in start
    /// order, into one run plan.
    pub(crate) async fn start_devices(
        &self,
        cx: &StartCx<'_>,
        which: impl Fn(&str, &dyn Device) -> bool,
    ) -> Result<RunPlan> {
        let mut devs = load_all(cx.devices)?;
        devs.retain(|(name, d)| which(name, d.as_ref()));
        devs.sort_by_key(|(name, d)| (d.start_order(), (*name).clone()));
        let mut plan = RunPlan::default();
        for (_, d) in devs {
            d.start(cx, &mut plan).await?;
        }
        Ok(plan)
    }

    /// The run plan of a whole expanded device set (an instance start).
    pub(crate) async fn device_run_plan(&self, cx: &StartCx<'_>) -> Result<RunPlan> {
        self.start_devices(cx, |_, _| true).await
    }

    /// What a running instance does about the change from device set `old`
    /// to `new`: devices that changed are stopped on the old side and
    /// started on the new side, each side only if it can be hot-plugged
    /// (the rest waits for the next start).
    pub(crate) async fn diff_devices(
        &self,
        cx: &StartCx<'_>,
        old: &DevicesMap,
    ) -> Result<(StopPlan, RunPlan)> {
        let new = cx.devices;
        let mut stop = StopPlan::default();
        let mut plan = RunPlan::default();
        let hot = |name: &str, cfg: Option<&DeviceConfig>| {
            cfg.and_then(|c| load(name, c).ok())
                .filter(|d| d.can_hot_plug())
        };
        let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        let mut starts = Vec::new();
        for name in names {
            let (o, n) = (old.get(name), new.get(name));
            if o == n {
                continue;
            }
            match (hot(name, o), hot(name, n)) {
                (Some(o), Some(n)) => {
                    if !n.update(o.as_ref(), cx, &mut plan).await? {
                        o.stop(&mut stop);
                        starts.push(n);
                    }
                }
                (Some(o), None) => o.stop(&mut stop),
                (None, Some(n)) => starts.push(n),
                (None, None) => {}
            }
        }
        starts.sort_by_key(|d| d.start_order());
        for n in starts {
            n.start(cx, &mut plan).await?;
        }
        Ok((stop, plan))
    }
}
