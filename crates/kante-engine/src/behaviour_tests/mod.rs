//! Engine behaviour over fakes of the host (`crate::testing`): a
//! real `Engine` creates, starts, stops, updates and deletes instances in a
//! temporary directory, with no root and no host state touched. Each test
//! checks a state transition, a stored record, an emitted event or an
//! error status.

mod backups;
mod cluster;
mod create;
mod devices;
mod devlxd;
mod front;
mod idmaps;
mod image_pull;
mod image_server;
mod lifecycle;
mod migration;
mod operations;
mod overlay_join;
mod profiles;
mod publish_streams;
mod registry;
mod remote;
mod server_api;
mod state;
mod storage;
mod uniqueness;
mod uploads;
mod volume_migration;

use crate::Engine;
use kante_api::event::Event;
use tokio::sync::broadcast::Receiver;

/// The stored config of instance `name`.
pub async fn config(engine: &Engine, name: &str) -> kante_api::ConfigMap {
    engine
        .instance_row(name)
        .await
        .expect("the instance")
        .config
}

/// The lifecycle actions received so far (`instance-started`, …), with
/// their sources, in order.
pub fn lifecycle_events(rx: &mut Receiver<Event>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if e.kind == "lifecycle" {
            out.push((
                e.metadata["action"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e.metadata["source"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    out
}

/// Just the actions of [`lifecycle_events`].
pub fn actions(rx: &mut Receiver<Event>) -> Vec<String> {
    lifecycle_events(rx).into_iter().map(|(a, _)| a).collect()
}

/// Reads a cgroup file the engine wrote for instance `name`.
pub fn cgroup_file(
    host: &crate::testing::TestHost,
    engine: &Engine,
    name: &str,
    file: &str,
) -> String {
    let dir = host.runtime.cgroup_dir(&engine.paths.instance_cgroup(name));
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_string()
}
