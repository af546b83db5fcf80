//! Kante's engine: the state and behaviour behind the API.
//!
//! The HTTP layer turns each request into one [`front::Request`] value and
//! hands it to [`Engine::handle`], the front door (see [`front`]); the
//! engine checks it, records state in the store, drives the runtime and the
//! storage pools, and reports progress through operations and events. Long
//! work runs in operations; everything that can fail half-way undoes itself
//! with a revert guard.

mod context;
mod deps;
pub mod devices;
pub mod error;
pub mod events;
pub mod front;
pub mod host;
pub mod images;
pub mod instance;
mod lxcfs;
pub mod network;
pub mod operations;
pub mod paths;
pub mod pools;
pub mod profiles;
pub mod schedule;
pub mod server;
mod startup;
#[cfg(feature = "testing")]
pub mod testing;
pub mod units;
pub mod util;
pub mod volumes;
pub mod ws;

pub(crate) use context::lock;
pub use context::{Engine, EngineConfig};
pub use deps::HostDeps;
pub use error::{EngineError, Result};
pub use events::Events;
pub use operations::{Op, Operations};
pub use paths::Paths;
