//! Opening and closing the engine: `Engine::open` builds the context and
//! runs each service's start-up routine in order (pools, networks,
//! crash recovery, re-attaching containers, housekeeping); `shutdown`
//! leaves containers running. The top layer: nothing else calls it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kante_store::{NodeState, SharedState, SqliteState, SwitchState};

use crate::error::{EngineError, Result};
use crate::{lock, profiles, util, Engine, EngineConfig, Events, HostDeps, Operations, Paths};

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
        let remote = crate::remote::Remote::open(&paths.root)?;
        // The shared state: this database, switched to the cluster's etcd
        // when this member is (or becomes) clustered.
        let shared = Arc::new(SwitchState::new(state.clone()));
        let cluster = kante_cluster::Manager::open(
            &paths.root,
            shared.clone(),
            state.clone() as Arc<dyn NodeState>,
            kante_cluster::Identity {
                cert_pem: remote.identity.cert_pem.clone(),
                key_pem: remote.identity.key_pem.clone(),
                fingerprint: remote.fingerprint.clone(),
            },
        )
        .await
        .map_err(|e| EngineError::internal(format!("opening the cluster membership: {e}")))?;
        let location = shared.local_member().await?.name;
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
            node: state,
            shared,
            location: events.location_handle(),
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
            host_stopping: std::sync::atomic::AtomicBool::new(false),
            remote,
            cluster,
            forwarding: Default::default(),
            me: me.clone(),
        });
        engine.init_defaults().await?;
        engine.note_missing_controllers();
        engine.load_pools().await?;
        engine.import_volume_sidecars().await;
        // The service names (`svc.kante`), answered by kanted, forwarded
        // to by every managed network's dnsmasq.
        let domain = kante_cluster::dns::DEFAULT_DOMAIN;
        match engine.cluster.serve_dns(domain).await {
            Ok(addr) => engine.net.set_dns_forward(&format!("svc.{domain}"), addr),
            Err(e) => tracing::warn!("no DNS for the cluster's services: {e}"),
        }
        engine.start_networks().await;
        // Before any instance runs: finish or undo what a crash interrupted.
        engine.reconcile_at_start().await;
        engine.reattach_instances().await;
        engine.start_snapshot_housekeeping();
        engine.start_service_publisher();
        engine.start_overlay_keeper();
        engine.start_image_auto_update();
        engine.start_lxcfs_supervision();
        engine.clean_backups_at_start().await;
        Ok(engine)
    }

    /// Says once, at start, which limit controllers this host's cgroups
    /// do not offer (as LXD warns): a nested host's cgroup2 may have none,
    /// and then the `limits.*` keys needing them refuse a start.
    fn note_missing_controllers(&self) {
        let root = self.runtime.cgroup_at("");
        let missing: Vec<&str> = ["memory", "cpu", "cpuset", "pids"]
            .into_iter()
            .filter(|c| !root.offers(c))
            .collect();
        if !missing.is_empty() {
            tracing::warn!(
                "the host's cgroups do not offer the {} controller(s): instances start without those limits, and a limits.* key that needs one refuses the start",
                missing.join(", ")
            );
        }
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
