//! `proxy` devices: a listener on the host forwarding to an address in the
//! instance, served by kanted (`instance/proxy.rs` parses and listens,
//! `instance/proxy_fwd.rs` forwards), or with `nat=true` a forward in the
//! kernel to a NIC's static address (`instance/proxy_nat.rs`).

use super::{Claims, Device, DeviceConfig, RunPlan, StartCx, StopPlan};
use crate::error::Result;
use crate::instance::proxy;
use crate::Engine;
use kante_api::DevicesMap;

struct Proxy {
    name: String,
    config: DeviceConfig,
}

pub(super) fn load(name: &str, config: &DeviceConfig) -> Box<dyn Device> {
    Box::new(Proxy {
        name: name.to_string(),
        config: config.clone(),
    })
}

#[async_trait::async_trait]
impl Device for Proxy {
    fn validate(&self) -> Result<()> {
        proxy::validate(&self.name, &self.config).map(|_| ())
    }

    async fn check_refs(&self, engine: &Engine, _claims: &mut Claims) -> Result<()> {
        let spec = proxy::validate(&self.name, &self.config)?;
        if spec.nat {
            engine.check_nat_listen(&self.name, &spec)?;
        }
        Ok(())
    }

    /// A `nat=true` device needs a NIC of the instance with a static address.
    async fn check_in_instance(&self, engine: &Engine, devices: &DevicesMap) -> Result<()> {
        let spec = proxy::validate(&self.name, &self.config)?;
        if spec.nat {
            engine.nat_target(&self.name, &spec, devices).await?;
        }
        Ok(())
    }

    fn can_hot_plug(&self) -> bool {
        true
    }

    fn can_migrate(&self) -> bool {
        true
    }

    /// A `nat=true` device finds the NIC it forwards to now: an error
    /// (no NIC with a static address) fails the start or the hot-plug.
    async fn start(&self, cx: &StartCx<'_>, plan: &mut RunPlan) -> Result<()> {
        let mut spec = proxy::validate(&self.name, &self.config)?;
        if spec.nat {
            let target = cx.engine.nat_target(&self.name, &spec, cx.devices).await?;
            spec.nat_target = Some(target);
        }
        plan.proxies.push((self.name.clone(), spec));
        Ok(())
    }

    fn stop(&self, plan: &mut StopPlan) {
        plan.proxies.push(self.name.clone());
    }

    fn held_by_daemon(&self) -> bool {
        true
    }
}
