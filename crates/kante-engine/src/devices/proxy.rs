//! `proxy` devices: a listener on the host forwarding to an address in the
//! instance, served by kanted (`instance/proxy.rs` parses and listens,
//! `instance/proxy_fwd.rs` forwards).

use super::{Device, DeviceConfig, RunPlan, StartCx, StopPlan};
use crate::error::Result;
use crate::instance::proxy;

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

    fn can_hot_plug(&self) -> bool {
        true
    }

    fn can_migrate(&self) -> bool {
        true
    }

    async fn start(&self, _cx: &StartCx<'_>, plan: &mut RunPlan) -> Result<()> {
        let spec = proxy::validate(&self.name, &self.config)?;
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
