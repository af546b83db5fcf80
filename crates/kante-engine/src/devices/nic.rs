//! `nic` devices, `bridged` and `macvlan` (set, or taken from the managed
//! network they name): a start resolves the parent and asks for a NIC;
//! kante-network plans the NICs of an instance together and makes them in
//! its network namespace (`instance/nics.rs` applies the plans).

use kante_network::NicRequest;

use super::DeviceError;
use super::{Claims, Device, DeviceConfig, RunPlan, StartCx, StopPlan};
use crate::error::Result;
use crate::Engine;

struct Nic {
    name: String,
    config: DeviceConfig,
}

pub(super) fn load(name: &str, config: &DeviceConfig) -> Box<dyn Device> {
    Box::new(Nic {
        name: name.to_string(),
        config: config.clone(),
    })
}

#[async_trait::async_trait]
impl Device for Nic {
    /// Checked against the host and the networks when planned (see `start`).
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    async fn check_refs(&self, engine: &Engine, _claims: &mut Claims) -> Result<()> {
        if let Some(net) = self.config.get("network") {
            if engine.shared.network_get(net).await?.is_none() {
                return Err(
                    DeviceError::invalid(&self.name, format!("network {net:?} not found")).into(),
                );
            }
        }
        Ok(())
    }

    fn can_hot_plug(&self) -> bool {
        true
    }

    /// A NIC on a managed network finds it on the next host; one on a host
    /// interface (`parent`) names this host's.
    fn can_migrate(&self) -> bool {
        self.config.contains_key("network")
    }

    async fn start(&self, cx: &StartCx<'_>, plan: &mut RunPlan) -> Result<()> {
        let networks = cx.engine.network_specs().await?;
        let mut cfg = self.config.clone();
        cfg.remove("type");
        let parent = kante_network::resolve_parent(&cx.engine.net, &cfg, &networks).await?;
        // Unnamed NICs are eth0, eth1, … by rank among the instance's NICs.
        let rank = super::nics(cx.devices)
            .position(|(d, _)| *d == self.name)
            .unwrap_or_default();
        plan.nics.push(NicRequest {
            device: self.name.clone(),
            config: cfg,
            parent,
            default_name: format!("eth{rank}"),
            volatile_hwaddr: cx
                .config
                .get(&format!("volatile.{}.hwaddr", self.name))
                .cloned(),
        });
        Ok(())
    }

    fn stop(&self, plan: &mut StopPlan) {
        plan.nics.push(self.name.clone());
    }

    fn nic(&self) -> Option<&DeviceConfig> {
        Some(&self.config)
    }

    fn networks(&self) -> Vec<&str> {
        [self.config.get("network"), self.config.get("parent")]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}
