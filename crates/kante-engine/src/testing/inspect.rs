//! What tests outside the engine (the CLI's, over `TestDaemon`) read of an
//! engine's state: the verbs are crate-private, these answer from the same
//! records without going through the front door.

use kante_api::image::{Image, ImageAlias};
use kante_api::instance::InstanceStatus;
use kante_store::InstanceRow;

use crate::{Engine, Result};

/// The stored record of instance `name`.
pub async fn instance_row(engine: &Engine, name: &str) -> Result<InstanceRow> {
    engine.instance_row(name).await
}

/// The status of instance `name` (running, stopped, …).
pub fn instance_status(engine: &Engine, name: &str) -> InstanceStatus {
    engine.instance_status(name)
}

/// The names of all instances.
pub async fn instance_names(engine: &Engine) -> Result<Vec<String>> {
    engine.instance_names().await
}

/// The image alias `name`.
pub async fn alias_get(engine: &Engine, name: &str) -> Result<ImageAlias> {
    engine.alias_get(name, true).await
}

/// The image with fingerprint `fp`.
pub async fn image_get(engine: &Engine, fp: &str) -> Result<Image> {
    engine.image_get(fp).await
}
