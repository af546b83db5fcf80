//! Kante's engine: the state and behaviour behind the API.
//!
//! The HTTP layer turns each request into one [`front::Request`] value and
//! hands it to [`Engine::handle`], the front door (see [`front`]); the
//! engine checks it, records state in the store, drives the runtime and the
//! storage pools, and reports progress through operations and events. Long
//! work runs in operations; everything that can fail half-way undoes itself
//! with a revert guard.

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
#[cfg(feature = "testing")]
pub mod testing;
pub mod units;
pub mod util;
pub mod volumes;
pub mod ws;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use kante_runtime::{IdMap, Runtime};
use kante_store::{NodeState, SharedState, SqliteState};

pub use deps::HostDeps;
pub use error::{EngineError, Result};
pub use events::Events;
pub use operations::{Op, Operations};
pub use paths::Paths;

use instance::Running;

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub kante_dir: std::path::PathBuf,
}

pub struct Engine {
    pub paths: Paths,
    /// This member's records: its instances, snapshots and pools.
    pub node: Arc<dyn NodeState>,
    /// Records every member shares: profiles, networks, images, config,
    /// reservations (see kante-store's `state.rs`).
    pub shared: Arc<dyn SharedState>,
    /// This member's name (LXD's `location` of what it holds).
    pub location: String,
    pub ops: Operations,
    pub events: Events,
    pub runtime: Arc<dyn Runtime>,
    /// Kernel links, Open vSwitch and the dnsmasq children of managed networks.
    pub net: Arc<kante_network::NetContext>,
    pools: RwLock<HashMap<String, kante_storage::Pool>>,
    running: Mutex<HashMap<String, Arc<Running>>>,
    instance_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    image_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Local locks of other objects (custom volumes, profile updates).
    object_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The host id range containers map to (shared by default, like LXD).
    pub idmap: IdMap,
    /// Root's subordinate ids, cut into per-instance blocks for isolation.
    pub id_range: instance::idmaps::HostIdRange,
    /// The host's lxcfs, bound over the guests' /proc files.
    pub lxcfs: Arc<kante_runtime::lxcfs::Lxcfs>,
    /// The storage drivers pools can be made with.
    pub storage_drivers: kante_storage::Registry,
    pub started_at: kante_api::Timestamp,
    /// Set when the host is going down: stopped instances keep
    /// `volatile.last_state.power=RUNNING`, to start again at boot.
    host_stopping: std::sync::atomic::AtomicBool,
    me: Weak<Engine>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Opens the state under `config.kante_dir`, makes the default pool and
    /// profile on first start, and re-attaches to containers that kept
    /// running while the daemon was away. Everything of the host it uses
    /// comes from `host`.
    pub async fn open(config: EngineConfig, host: HostDeps) -> Result<Arc<Engine>> {
        let paths = Paths::new(&config.kante_dir);
        // Closed to other host users (audit F1): guests' files are on disk
        // with their own ids, so a setuid file a guest made would be host
        // root's to anyone who could reach it. Only KANTE_DIR, the pools'
        // directory and the networks' (dnsmasq reads its hosts file as its
        // own user) can be passed through; nothing can be listed.
        for (d, mode) in [
            (paths.root.clone(), 0o711),
            (paths.images(), 0o700),
            (paths.pools(), 0o711),
            (paths.root.join("logs"), 0o700),
            (paths.root.join("database"), 0o700),
            (paths.root.join("backups"), 0o700),
            (paths.root.join("disks"), 0o700),
        ] {
            util::ensure_dir_mode(&d, mode)
                .map_err(|e| EngineError::internal(format!("creating {}: {e}", d.display())))?;
        }
        let state = Arc::new(SqliteState::open(&paths.database())?);
        let location = state.local_member().await?.name;
        let events = Events::at(&location);
        let HostDeps {
            runtime,
            net,
            lxcfs,
            id_range,
            storage,
        } = host;
        let engine = Arc::new_cyclic(|me| Engine {
            paths,
            node: state.clone(),
            shared: state,
            location,
            ops: Operations::new(events.clone()),
            events,
            runtime,
            net,
            pools: RwLock::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            instance_locks: Mutex::new(HashMap::new()),
            image_locks: Mutex::new(HashMap::new()),
            object_locks: Mutex::new(HashMap::new()),
            idmap: id_range.shared(),
            id_range,
            lxcfs,
            storage_drivers: storage,
            started_at: kante_api::now(),
            host_stopping: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
        });
        engine.init_defaults().await?;
        engine.load_pools().await?;
        engine.import_volume_sidecars().await;
        engine.start_networks().await;
        // Before any instance runs: finish or undo what a crash interrupted.
        engine.reconcile_at_start().await;
        engine.reattach_instances().await;
        engine.start_snapshot_housekeeping();
        engine.start_lxcfs_supervision();
        engine.clean_backups_at_start().await;
        Ok(engine)
    }

    /// A strong reference to self, for background tasks.
    pub fn arc(&self) -> Arc<Engine> {
        self.me
            .upgrade()
            .expect("engine is alive while its methods run")
    }

    async fn init_defaults(&self) -> Result<()> {
        if self.node.pool_list().await?.is_empty() {
            self.create_default_pool().await?;
        }
        if self.shared.profile_get("default").await?.is_none() {
            self.shared
                .profile_create(&profiles::default_profile())
                .await?;
        }
        Ok(())
    }

    /// The per-instance lock that serialises lifecycle changes.
    fn instance_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.instance_locks)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The local lock of an object (`volume/<pool>/<name>`, `profiles`):
    /// serialises work on it in this daemon; uniqueness is the state's.
    fn object_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.object_locks)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    fn image_lock(&self, fp: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.image_locks)
            .entry(fp.to_string())
            .or_default()
            .clone()
    }

    /// Stops nothing: containers outlive the daemon. Called on shutdown.
    pub fn shutdown(&self) {
        let running = lock(&self.running).len();
        tracing::info!("kanted shutting down; {running} containers keep running");
        if running == 0 {
            // Leave no empty `kante-…` cgroup behind on the host.
            self.runtime
                .cgroup_at(&self.paths.cgroup_prefix())
                .remove_if_empty();
        }
    }
}
