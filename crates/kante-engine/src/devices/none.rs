//! `none` devices: a local device of this type removes an inherited one of
//! its name from the expanded set; it is never started.

use super::{Device, DeviceConfig, RunPlan, StartCx};
use crate::error::Result;

struct NoDevice;

pub(super) fn load(_name: &str, _config: &DeviceConfig) -> Box<dyn Device> {
    Box::new(NoDevice)
}

#[async_trait::async_trait]
impl Device for NoDevice {
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    fn can_hot_plug(&self) -> bool {
        false
    }

    fn can_migrate(&self) -> bool {
        true
    }

    async fn start(&self, _cx: &StartCx<'_>, _plan: &mut RunPlan) -> Result<()> {
        Ok(())
    }

    fn masks_inherited(&self) -> bool {
        true
    }
}
