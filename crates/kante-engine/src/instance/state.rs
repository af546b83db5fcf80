//! Reading an instance beyond its record: its runtime state
//! (`/state`), the full view with state and snapshots (`recursion=2`),
//! and its console log.

use std::collections::{BTreeMap, HashMap};

use kante_api::instance::{
    Instance, InstanceFull, InstanceState, InstanceStateCpu, InstanceStateMemory,
};

use kante_store::SnapshotRow;

use crate::error::Result;
use crate::instance::{lock_nics, netstate};
use crate::Engine;

impl Engine {
    pub(crate) async fn instance_get_full(&self, name: &str) -> Result<InstanceFull> {
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

    /// Every instance with its state and snapshots: the state is read
    /// once for the whole list (records, profiles, snapshots), not per
    /// instance.
    pub(crate) async fn instance_list_full(&self) -> Result<Vec<InstanceFull>> {
        let table = self.profile_table().await?;
        let mut snapshots: HashMap<String, Vec<SnapshotRow>> = HashMap::new();
        for r in self.node.snapshot_list_all().await? {
            snapshots.entry(r.instance.clone()).or_default().push(r);
        }
        let mut out = Vec::new();
        for instance in self.instance_list().await? {
            let snaps = snapshots.remove(&instance.name).unwrap_or_default();
            out.push(InstanceFull {
                state: Some(self.state_of(&instance.name)),
                snapshots: Some(
                    snaps
                        .iter()
                        .map(|r| self.render_snapshot_from(r, &table))
                        .collect(),
                ),
                backups: None,
                instance,
            });
        }
        Ok(out)
    }

    /// `GET /1.0/instances/{name}/state`.
    pub(crate) async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        self.instance_row(name).await?;
        Ok(self.state_of(name))
    }

    /// The runtime state of an instance known to exist.
    fn state_of(&self, name: &str) -> InstanceState {
        let status = self.instance_status(name);
        let Some(r) = self.running(name) else {
            return InstanceState::stopped();
        };
        let guard = crate::lock(&r.container);
        let Some(c) = guard.as_ref() else {
            return InstanceState::stopped();
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
        InstanceState {
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
        }
    }

    /// The console log (what init and its services wrote to /dev/console).
    pub(crate) async fn instance_console_log(&self, name: &str) -> Result<Vec<u8>> {
        self.instance_row(name).await?;
        let path = self.paths.instance_logs(name).join("console.log");
        Ok(kante_runtime::console::read_log(&path)?)
    }

    pub(crate) async fn instance_console_clear(&self, name: &str) -> Result<()> {
        self.instance_row(name).await?;
        let path = self.paths.instance_logs(name).join("console.log");
        let _ = std::fs::remove_file(kante_runtime::console::rotated_path(&path));
        if path.exists() {
            std::fs::write(&path, b"")?;
        }
        Ok(())
    }
}
