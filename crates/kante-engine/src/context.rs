//! The shared context every engine service works over: the `Engine`
//! value (state handles, host dependencies, the running table, pools),
//! its locks and its lookups of loaded pools. The bottom layer: it calls
//! no other part of the engine (see ARCHITECTURE.md, "Engine layers").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use kante_runtime::{IdMap, Runtime};
use kante_storage::Pool;
use kante_store::{NodeState, SharedState};

use crate::error::{EngineError, Result};
use crate::instance::Running;
use crate::{instance, Events, Operations, Paths};

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub kante_dir: std::path::PathBuf,
}

pub struct Engine {
    pub paths: Paths,
    /// This member's records: its instances, snapshots and pools.
    pub(crate) node: Arc<dyn NodeState>,
    /// Records every member shares: profiles, networks, images, config,
    /// reservations (see kante-store's `state.rs`).
    pub(crate) shared: Arc<dyn SharedState>,
    /// This member's name (LXD's `location` of what it holds), the
    /// event bus's handle: set when the member enables or joins a cluster.
    pub(crate) location: crate::events::Location,
    pub(crate) ops: Operations,
    pub(crate) events: Events,
    pub(crate) runtime: Arc<dyn Runtime>,
    /// Kernel links, Open vSwitch and the dnsmasq children of managed networks.
    pub(crate) net: Arc<kante_network::NetContext>,
    pub(crate) pools: RwLock<HashMap<String, kante_storage::Pool>>,
    pub(crate) running: Mutex<HashMap<String, Arc<Running>>>,
    pub(crate) instance_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) image_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Local locks of other objects (custom volumes, profile updates).
    pub(crate) object_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The host id range containers map to (shared by default, like LXD).
    pub(crate) idmap: IdMap,
    /// Root's subordinate ids, cut into per-instance blocks for isolation.
    pub(crate) id_range: instance::idmaps::HostIdRange,
    /// The host's lxcfs, bound over the guests' /proc files.
    pub(crate) lxcfs: Arc<kante_runtime::lxcfs::Lxcfs>,
    /// The storage drivers pools can be made with.
    pub(crate) storage_drivers: kante_storage::Registry,
    /// Set when the host is going down: stopped instances keep
    /// `volatile.last_state.power=RUNNING`, to start again at boot.
    pub(crate) host_stopping: std::sync::atomic::AtomicBool,
    /// The daemon's certificate, HTTPS listeners, tokens and failed
    /// trust attempts (`remote/`).
    pub(crate) remote: crate::remote::Remote,
    /// This member's part in a cluster (`cluster.rs`, kante-cluster).
    pub(crate) cluster: Arc<kante_cluster::Manager>,
    /// Forwarding's memory: operations on other members, placement
    /// reasons, the link to other members (`forward.rs`).
    pub(crate) forwarding: crate::forward::Forwarding,
    pub(crate) me: Weak<Engine>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// A strong reference to self, for background tasks.
    pub(crate) fn arc(&self) -> Arc<Engine> {
        self.me
            .upgrade()
            .expect("engine is alive while its methods run")
    }

    /// The per-instance lock that serialises lifecycle changes.
    pub(crate) fn instance_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.instance_locks)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn image_lock(&self, fp: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.image_locks)
            .entry(fp.to_string())
            .or_default()
            .clone()
    }

    /// The local lock of an object (`volume/<pool>/<name>`, `profiles`):
    /// serialises work on it in this daemon; uniqueness is the state's.
    pub(crate) fn object_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.object_locks)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn pool(&self, name: &str) -> Result<Pool> {
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("Storage pool {name:?} not found")))
    }

    pub(crate) fn loaded_pools(&self) -> Vec<Pool> {
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
