//! Instances: their records, their expanded view and their state.

pub mod autosnap;
pub mod backup;
pub mod backup_index;
pub mod backups;
pub mod cloudinit;
pub mod config;
pub mod create;
pub mod exec;
pub mod files;
pub mod host_shutdown;
pub mod idmaps;
pub mod import;
pub mod lifecycle;
pub mod live;
pub mod netstate;
pub mod nics;
mod placement;
pub mod proxy;
pub mod proxy_fwd;
pub mod reconcile;
pub mod refresh;
pub mod requests;
pub mod snapshots;
pub mod templates;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use kante_api::instance::{
    Instance, InstanceFull, InstancePut, InstanceState, InstanceStateCpu, InstanceStateMemory,
    InstanceStatus,
};
use kante_api::{ConfigMap, DevicesMap, Timestamp};
use kante_runtime::Container;
use kante_store::InstanceRow;
use tokio::sync::watch;

use crate::error::{EngineError, Result};
use crate::Engine;

/// A container this daemon is attached to.
pub struct Running {
    pub container: Mutex<Option<Container>>,
    pub pid: i32,
    /// Set when we asked it to stop, so its exit is not a crash or reboot.
    pub stopping: AtomicBool,
    /// Becomes true once it has exited and been cleaned up.
    pub exited: watch::Sender<bool>,
    /// Listeners of its proxy devices, by device name.
    pub proxies: Mutex<std::collections::HashMap<String, proxy::ProxyHandle>>,
    /// Its `nic` devices as made, to take down at exit or hot-unplug.
    pub nics: Mutex<Vec<kante_network::NicPlan>>,
    /// Its file server (started by the first file operation; see
    /// `files.rs`), ended at exit: it holds the guest's mount namespace.
    pub files: Mutex<Option<Box<dyn kante_runtime::fileserver::FileSession>>>,
}

pub(crate) fn lock_nics(r: &Running) -> std::sync::MutexGuard<'_, Vec<kante_network::NicPlan>> {
    crate::lock(&r.nics)
}

fn profile_missing(name: &str) -> EngineError {
    EngineError::NotFound(format!("Profile {name:?} not found"))
}

/// The layers of `profiles`, in order, from a table of every profile's.
pub(crate) fn layers_from(
    table: &HashMap<String, (ConfigMap, DevicesMap)>,
    profiles: &[String],
) -> Result<Vec<(ConfigMap, DevicesMap)>> {
    profiles
        .iter()
        .map(|p| table.get(p).cloned().ok_or_else(|| profile_missing(p)))
        .collect()
}

pub(crate) fn parse_time(s: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| kante_api::zero_time())
}

pub(crate) fn fmt_time(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Engine {
    pub(crate) fn running(&self, name: &str) -> Option<std::sync::Arc<Running>> {
        crate::lock(&self.running).get(name).cloned()
    }

    pub async fn instance_row(&self, name: &str) -> Result<InstanceRow> {
        self.node
            .instance_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Instance not found".into()))
    }

    /// The instance's profiles' config and devices, in order.
    pub(crate) async fn profile_layers(
        &self,
        profiles: &[String],
    ) -> Result<Vec<(ConfigMap, DevicesMap)>> {
        let mut layers = Vec::new();
        for p in profiles {
            let row = self
                .shared
                .profile_get(p)
                .await?
                .ok_or_else(|| profile_missing(p))?;
            layers.push((row.config, row.devices));
        }
        Ok(layers)
    }

    /// Every profile's layer, by name.
    pub(crate) async fn profile_table(&self) -> Result<HashMap<String, (ConfigMap, DevicesMap)>> {
        Ok(self
            .shared
            .profile_list()
            .await?
            .into_iter()
            .map(|p| (p.name, (p.config, p.devices)))
            .collect())
    }

    pub(crate) async fn expanded(&self, row: &InstanceRow) -> Result<(ConfigMap, DevicesMap)> {
        Ok(config::expand(
            &self.profile_layers(&row.profiles).await?,
            &row.config,
            &row.devices,
        ))
    }

    /// The pool holding the instance's root disk.
    pub(crate) async fn instance_pool_name(&self, row: &InstanceRow) -> String {
        self.expanded(row)
            .await
            .ok()
            .and_then(|(_, d)| config::root_disk(&d).and_then(|(_, r)| r.get("pool").cloned()))
            .unwrap_or_else(|| "default".into())
    }

    pub(crate) async fn instance_volume(&self, row: &InstanceRow) -> Result<PathBuf> {
        let pool = self.pool(&self.instance_pool_name(row).await)?;
        Ok(pool.volume_path(kante_storage::VolumeKind::Container, &row.name))
    }

    pub(crate) async fn instance_rootfs(&self, row: &InstanceRow) -> Result<PathBuf> {
        Ok(self.instance_volume(row).await?.join("rootfs"))
    }

    pub fn instance_status(&self, name: &str) -> InstanceStatus {
        match self.running(name) {
            Some(r) => {
                let guard = crate::lock(&r.container);
                match guard.as_ref() {
                    Some(c) if self.runtime.is_frozen(c) => InstanceStatus::Frozen,
                    Some(_) => InstanceStatus::Running,
                    None => InstanceStatus::Stopped,
                }
            }
            None => InstanceStatus::Stopped,
        }
    }

    pub(crate) async fn render(&self, row: &InstanceRow) -> Result<Instance> {
        let expanded = self.expanded(row).await?;
        Ok(self.render_expanded(row.clone(), expanded))
    }

    /// The API view of a row whose expansion is already known; takes the row
    /// so that its maps move rather than copy.
    fn render_expanded(&self, row: InstanceRow, expanded: (ConfigMap, DevicesMap)) -> Instance {
        let (expanded_config, expanded_devices) = expanded;
        let status = self.instance_status(&row.name);
        Instance {
            architecture: row.architecture,
            config: row.config,
            devices: row.devices,
            ephemeral: row.ephemeral,
            profiles: row.profiles,
            stateful: row.stateful,
            description: row.description,
            created_at: parse_time(&row.created_at),
            expanded_config,
            expanded_devices,
            name: row.name,
            status: status.as_str().into(),
            status_code: status.code() as u16,
            last_used_at: parse_time(&row.last_used_at),
            location: self.location.clone(),
            kind: row.kind,
            project: row.project,
        }
    }

    pub async fn instance_get(&self, name: &str) -> Result<Instance> {
        self.render(&self.instance_row(name).await?).await
    }

    pub async fn instance_get_full(&self, name: &str) -> Result<InstanceFull> {
        let row = self.instance_row(name).await?;
        self.with_state(self.render(&row).await?).await
    }

    /// An instance with its state and snapshots (`recursion=2`).
    async fn with_state(&self, instance: Instance) -> Result<InstanceFull> {
        Ok(InstanceFull {
            state: Some(self.instance_state(&instance.name).await?),
            snapshots: Some(self.snapshot_list(&instance.name).await?),
            backups: None,
            instance,
        })
    }

    pub async fn instance_names(&self) -> Result<Vec<String>> {
        Ok(self.node.instance_names().await?)
    }

    /// Every instance, its profiles read once for the whole list rather than
    /// once per instance and profile.
    pub async fn instance_list(&self) -> Result<Vec<Instance>> {
        let table = self.profile_table().await?;
        self.node
            .instance_list()
            .await?
            .into_iter()
            .map(|row| {
                let layers = row
                    .profiles
                    .iter()
                    .map(|p| table.get(p).cloned().ok_or_else(|| profile_missing(p)))
                    .collect::<Result<Vec<_>>>()?;
                let expanded = config::expand(&layers, &row.config, &row.devices);
                Ok(self.render_expanded(row, expanded))
            })
            .collect()
    }

    pub async fn instance_list_full(&self) -> Result<Vec<InstanceFull>> {
        let mut out = Vec::new();
        for i in self.instance_list().await? {
            out.push(self.with_state(i).await?);
        }
        Ok(out)
    }

    /// `GET /1.0/instances/{name}/state`.
    pub async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        self.instance_row(name).await?;
        let status = self.instance_status(name);
        let Some(r) = self.running(name) else {
            return Ok(InstanceState::stopped());
        };
        let guard = crate::lock(&r.container);
        let Some(c) = guard.as_ref() else {
            return Ok(InstanceState::stopped());
        };
        let stats = self.runtime.stats(c);
        let mut network = netstate::read(c.pid());
        for p in lock_nics(&r).iter() {
            if let (Some(n), kante_network::nic::NicLink::Veth { host_name, .. }) =
                (network.get_mut(&p.name), &p.link)
            {
                n.host_name = host_name.clone();
            }
        }
        Ok(InstanceState {
            status: status.as_str().into(),
            status_code: status.code() as u16,
            disk: BTreeMap::new(),
            memory: InstanceStateMemory {
                usage: stats.memory_usage,
                usage_peak: stats.memory_peak,
                swap_usage: stats.swap_usage,
                swap_usage_peak: 0,
            },
            network: Some(network),
            pid: c.pid() as i64,
            processes: stats.processes,
            cpu: InstanceStateCpu {
                usage: stats.cpu_ns,
            },
        })
    }

    /// `PUT /1.0/instances/{name}` (full replace of the writable fields) or
    /// `PATCH` (merge) — `merge` selects which.
    pub async fn instance_update(
        &self,
        name: &str,
        req: InstancePut,
        merge: bool,
    ) -> Result<live::ChangeReport> {
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let mut row = self.instance_row(name).await?;
        let mut config = if merge {
            row.config.clone()
        } else {
            ConfigMap::new()
        };
        // Server-owned volatile keys keep their values whatever the client sends
        // back (lxc and Ansible echo them); only volatile.<dev>.hwaddr is the user's.
        let volatile: ConfigMap = row
            .config
            .iter()
            .filter(|(k, _)| k.starts_with("volatile."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in req.config {
            if k.starts_with("volatile.") && !k.ends_with(".hwaddr") {
                continue;
            }
            config.insert(k, v);
        }
        for (k, v) in volatile {
            config.entry(k).or_insert(v);
        }
        config.retain(|_, v| !v.is_empty());
        let devices = if merge {
            let mut d = row.devices.clone();
            d.extend(req.devices);
            d
        } else {
            req.devices
        };
        let profiles = match req.profiles {
            Some(p) => p,
            None if merge => row.profiles.clone(),
            None => row.profiles.clone(),
        };
        config::validate_config(&config)?;
        config::validate_devices(&devices)?;
        let layers = self.profile_layers(&profiles).await?;
        let (econfig, edevices) = config::expand(&layers, &config, &devices);
        config::validate_config(&econfig)?;
        if config::root_disk(&edevices).is_none() {
            return Err(EngineError::bad("Failed getting root disk: no root disk device (path \"/\") in the instance or its profiles"));
        }
        Engine::assign_hwaddrs(&edevices, &mut config);
        self.plan_instance_nics(name, &edevices, &config).await?;
        self.check_device_refs(&edevices).await?;
        let old = self.expanded(&row).await?;
        let new = (econfig, edevices);
        let report = live::ChangeReport::between(&old, &new);
        // New cloud-init data gets a new instance-id, so cloud-init runs again (as in LXD).
        if cloudinit::data_changed(&old.0, &new.0) {
            config.insert(
                "volatile.cloud-init.instance-id".into(),
                uuid::Uuid::new_v4().to_string(),
            );
        }
        if let Some(r) = self.running(name) {
            // Devices change live; if that fails, the stored config stays as it was.
            self.apply_live(&r, name, &old, &new, &mut config).await?;
        }
        let (econfig, _) = new;
        row.config = config;
        row.devices = devices;
        row.profiles = profiles;
        if !merge || !req.description.is_empty() {
            row.description = req.description;
        }
        row.ephemeral = req.ephemeral;
        self.node.instance_update(&row).await?;
        self.write_backup_file(&row).await;
        if let Some(r) = self.running(name) {
            let guard = crate::lock(&r.container);
            if let Some(c) = guard.as_ref() {
                self.apply_limits(c, &econfig)?;
            }
        }
        self.events.lifecycle(
            "instance-updated",
            &format!("/1.0/instances/{name}"),
            serde_json::json!({}),
        );
        Ok(report)
    }

    /// `DELETE /1.0/instances/{name}`: only a stopped instance.
    pub async fn instance_delete(&self, name: &str) -> Result<()> {
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let row = self.instance_row(name).await?;
        if self.running(name).is_some() {
            return Err(EngineError::bad("Instance is running"));
        }
        let (econfig, _) = self.expanded(&row).await?;
        if crate::util::is_true(econfig.get("security.protection.delete")) {
            return Err(EngineError::bad(
                "Instance is protected from being deleted (security.protection.delete)",
            ));
        }
        let nics = self.stored_nic_plans(&row).await;
        // Volume set aside, record, files: all or nothing at any crash.
        self.remove_instance(&row).await?;
        self.backups_remove_all(name);
        // Its DHCP reservations go with it.
        self.remove_nics(name, &nics, true).await;
        crate::lock(&self.instance_locks).remove(name);
        self.events.lifecycle(
            "instance-deleted",
            &format!("/1.0/instances/{name}"),
            serde_json::json!({}),
        );
        Ok(())
    }

    /// `POST /1.0/instances/{name}` with a new name: only a stopped instance.
    pub async fn instance_rename(&self, name: &str, new: &str) -> Result<()> {
        kante_api::names::validate_instance_name(new)?;
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        let row = self.instance_row(name).await?;
        if self.running(name).is_some() {
            return Err(EngineError::bad("Renaming of running instance not allowed"));
        }
        if self.node.instance_get(new).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Name {new:?} already in use"
            )));
        }
        let pool = self.pool(&self.instance_pool_name(&row).await)?;
        let old_nics = self.stored_nic_plans(&row).await;
        // The volume moves first: a crash before the record follows leaves a
        // volume whose backup.yaml names a record without a volume, and the
        // next start finishes the rename (`recover_from_disk`).
        pool.rename_volume(kante_storage::VolumeKind::Container, name, new)?;
        if let Err(e) = self.rename_record(name, new).await {
            let _ = pool.rename_volume(kante_storage::VolumeKind::Container, new, name);
            return Err(e);
        }
        // DHCP reservations carry the old name; the next start makes new ones.
        self.remove_nics(name, &old_nics, true).await;
        self.renamed_files(name, new).await;
        self.events.lifecycle(
            "instance-renamed",
            &format!("/1.0/instances/{new}"),
            serde_json::json!({"old_name": name}),
        );
        Ok(())
    }

    /// What follows an instance's record to its new name: its logs, its
    /// backups, its hostname and its backup.yaml.
    pub(crate) async fn renamed_files(&self, old: &str, new: &str) {
        let (old_logs, new_logs) = (self.paths.instance_logs(old), self.paths.instance_logs(new));
        if old_logs.exists() {
            let _ = std::fs::rename(old_logs, new_logs);
        }
        self.backups_rename_instance(old, new);
        if let Ok(renamed) = self.instance_row(new).await {
            // The hostname follows the name, as LXD's templates do on rename.
            if let Ok(rootfs) = self.instance_rootfs(&renamed).await {
                let _ = files::write_hostname(&rootfs, new);
            }
            self.write_backup_file(&renamed).await;
        }
    }

    /// The console log (what init and its services wrote to /dev/console).
    pub async fn instance_console_log(&self, name: &str) -> Result<Vec<u8>> {
        self.instance_row(name).await?;
        let path = self.paths.instance_logs(name).join("console.log");
        Ok(kante_runtime::console::read_log(&path)?)
    }

    pub async fn instance_console_clear(&self, name: &str) -> Result<()> {
        self.instance_row(name).await?;
        let path = self.paths.instance_logs(name).join("console.log");
        let _ = std::fs::remove_file(kante_runtime::console::rotated_path(&path));
        if path.exists() {
            std::fs::write(&path, b"")?;
        }
        Ok(())
    }
}
