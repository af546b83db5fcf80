//! Device types LXD has and this kanted does not implement yet (`unix-char`,
//! `gpu`, …): refused with a clear message rather than as unknown. One
//! implementing such a type replaces its line in the registry.

use super::DeviceError;
use super::{Device, DeviceConfig, RunPlan, StartCx};
use crate::error::{EngineError, Result};

struct Unsupported {
    name: String,
    kind: String,
}

pub(super) fn load(name: &str, config: &DeviceConfig) -> Box<dyn Device> {
    Box::new(Unsupported {
        name: name.to_string(),
        kind: config.get("type").cloned().unwrap_or_default(),
    })
}

impl Unsupported {
    fn refusal(&self) -> EngineError {
        DeviceError::UnsupportedType {
            device: self.name.clone(),
            kind: self.kind.clone(),
        }
        .into()
    }
}

#[async_trait::async_trait]
impl Device for Unsupported {
    fn validate(&self) -> Result<()> {
        Err(self.refusal())
    }

    fn can_hot_plug(&self) -> bool {
        false
    }

    fn can_migrate(&self) -> bool {
        false
    }

    async fn start(&self, _cx: &StartCx<'_>, _plan: &mut RunPlan) -> Result<()> {
        Err(self.refusal())
    }
}
