//! Kante's engine: the state and behaviour behind the API.
//!
//! The HTTP layer turns each request into one [`front::Request`] value and
//! hands it to [`Engine::handle`], the front door (see [`front`]); the
//! engine checks it, records state in the store, drives the runtime and the
//! storage pools, and reports progress through operations and events. Long
//! work runs in operations; everything that can fail half-way undoes itself
//! with a revert guard.

#[cfg(test)]
mod behaviour_tests;
mod cluster;
mod cluster_list;
mod context;
mod deps;
mod devices;
mod devlxd;
pub mod error;
mod evacuate;
mod events;
pub mod forward;
pub mod front;
pub mod fuzzing;
pub mod host;
mod image_member;
mod image_publish;
mod image_pull;
mod image_refresh;
mod image_remote;
mod image_secret;
mod images;
mod instance;
mod lxcfs;
pub mod metrics;
mod migration;
mod network;
mod network_cluster;
mod network_overlay;
mod network_overlay_holds;
mod network_overlay_join;
mod network_overlay_orphans;
mod network_overlay_slices;
mod network_overlay_wg;
mod operations;
mod paths;
mod pools;
mod profiles;
pub mod projects;
pub mod remote;
mod resources;
mod schedule;
mod scheduler;
mod server;
mod services;
mod simplestreams;
mod startup;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod units;
mod util;
mod volume_member;
mod volumes;
mod ws;

pub(crate) use context::lock;
pub use context::{Engine, EngineConfig};
pub use deps::HostDeps;
pub use error::{EngineError, Result};
pub(crate) use events::Events;
pub(crate) use operations::{Op, Operations};
pub use paths::Paths;
