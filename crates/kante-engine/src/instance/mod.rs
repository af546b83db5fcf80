//! Instances: their records, their expanded view and their state.

pub mod autosnap;
pub mod backup;
pub mod backup_index;
pub mod backups;
pub mod cloudinit;
pub mod config;
pub mod console;
pub mod create;
pub mod delete;
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
pub mod proxy_nat;
mod proxy_splice;
pub mod reconcile;
pub mod refresh;
pub mod rename;
pub mod requests;
pub mod restore;
pub mod snapshots;
pub mod state;
pub mod templates;
mod types;
pub mod update;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use kante_api::instance::{Instance, InstanceStatus};
use kante_api::{ConfigMap, DevicesMap};
use kante_runtime::Container;
use kante_store::InstanceRow;
use tokio::sync::watch;

use crate::error::{EngineError, Result};
use crate::util::parse_time;
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
    /// Its guest API socket (`security.devlxd`), closed at exit.
    pub devlxd: Mutex<Option<crate::devlxd::DevlxdHandle>>,
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

impl Engine {
    pub(crate) fn running(&self, name: &str) -> Option<std::sync::Arc<Running>> {
        crate::lock(&self.running).get(name).cloned()
    }

    pub(crate) async fn instance_row(&self, name: &str) -> Result<InstanceRow> {
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
        root_pool(self.expanded(row).await.ok().map(|(_, d)| d).as_ref())
    }

    pub(crate) async fn instance_volume(&self, row: &InstanceRow) -> Result<PathBuf> {
        let pool = self.pool(&self.instance_pool_name(row).await)?;
        Ok(pool.volume_path(kante_storage::VolumeKind::Container, &row.name))
    }

    pub(crate) async fn instance_rootfs(&self, row: &InstanceRow) -> Result<PathBuf> {
        Ok(self.instance_volume(row).await?.join("rootfs"))
    }

    pub(crate) fn instance_status(&self, name: &str) -> InstanceStatus {
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
            location: self.location.get(),
            kind: row.kind,
            project: row.project,
        }
    }

    pub(crate) async fn instance_get(&self, name: &str) -> Result<Instance> {
        self.render(&self.instance_row(name).await?).await
    }

    pub(crate) async fn instance_names(&self) -> Result<Vec<String>> {
        Ok(self.node.instance_names().await?)
    }

    /// Every instance, rendered.
    pub(crate) async fn instance_list(&self) -> Result<Vec<Instance>> {
        self.instances_expanded()
            .await?
            .into_iter()
            .map(|(row, expanded)| Ok(self.render_expanded(row, expanded?)))
            .collect()
    }

    /// Every instance's record with its expanded config and devices, the
    /// profiles read once for the whole list rather than once per instance
    /// and profile (both reads are asked for at once). An instance whose
    /// profile is missing carries that error; the caller decides.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn instances_expanded(
        &self,
    ) -> Result<Vec<(InstanceRow, Result<(ConfigMap, DevicesMap)>)>> {
        let (table, rows) = tokio::join!(self.profile_table(), self.node.instance_list());
        let (table, rows) = (table?, rows?);
        Ok(rows
            .into_iter()
            .map(|row| {
                let layers = row
                    .profiles
                    .iter()
                    .map(|p| table.get(p).cloned().ok_or_else(|| profile_missing(p)))
                    .collect::<Result<Vec<_>>>();
                let expanded = layers.map(|l| config::expand(&l, &row.config, &row.devices));
                (row, expanded)
            })
            .collect())
    }
}

/// The pool of the root disk among expanded `devices` (`default` when
/// there is none, or the devices could not be expanded).
pub(crate) fn root_pool(devices: Option<&DevicesMap>) -> String {
    devices
        .and_then(|d| config::root_disk(d).and_then(|(_, r)| r.get("pool").cloned()))
        .unwrap_or_else(|| "default".into())
}
