//! `GET /1.0`: what this server is and can do; the server config.

use std::collections::BTreeMap;

use kante_api::server::{Server, ServerEnvironment, StorageDriverInfo};
use kante_api::ConfigMap;

use crate::error::{EngineError, Result};
use crate::Engine;

/// Only what is implemented is advertised: clients switch behaviour on these.
pub const API_EXTENSIONS: &[&str] = &[
    "patch",
    "profile_usedby",
    "storage",
    "container_last_used_at",
    "entity_description",
    "operation_description",
    "event_lifecycle",
    "id_map",
    "instances",
    "api_filtering",
    "container_full",
    "instance_get_full",
    "directory_manipulation",
    "file_delete",
    "file_append",
    "file_symlinks",
    "container_exec_signal_handling",
    "container_exec_recording",
    "container_exec_user_group_cwd",
    "image_create_aliases",
    "console",
    "network",
    "network_state",
    "network_leases",
    "instance_nic_network",
    "storage_api_volume_rename",
    "storage_api_volume_snapshots",
    "storage_api_local_volume_handling",
    "container_backup",
    "container_backup_override_pool",
    "backup_override_name",
    "backup_compression",
    "snapshot_scheduling",
    "snapshot_schedule_aliases",
    "snapshot_expiry",
    "snapshot_expiry_creation",
    "container_incremental_copy",
];

/// Server config keys this daemon honours.
const SERVER_KEYS: &[&str] = &[
    "images.auto_update_interval",
    "images.auto_update_cached",
    "images.remote_cache_expiry",
];

fn uname() -> (String, String) {
    kante_runtime::host::kernel_names()
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("NAME"), get("VERSION_ID"))
}

impl Engine {
    pub(crate) async fn server_info(&self) -> Result<Server> {
        let (kernel_version, hostname) = uname();
        let (os_name, os_version) = os_release();
        let drivers: Vec<StorageDriverInfo> = self
            .storage_drivers
            .names()
            .into_iter()
            .filter_map(|n| self.storage_drivers.get(n).ok())
            .map(|d| {
                let i = d.info();
                StorageDriverInfo {
                    name: i.name.into(),
                    version: i.version,
                    remote: i.remote,
                }
            })
            .collect();
        let storage = self
            .node
            .pool_list()
            .await?
            .into_iter()
            .map(|p| p.driver)
            .collect::<Vec<_>>()
            .join(" | ");
        let mut kernel_features = BTreeMap::new();
        kernel_features.insert("idmapped_mounts".into(), "true".into());
        kernel_features.insert("pidfd".into(), "true".into());
        Ok(Server {
            config: self.shared.config_all().await?,
            api_extensions: API_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            api_status: "stable".into(),
            api_version: "1.0".into(),
            auth: "trusted".into(),
            public: false,
            auth_methods: vec!["tls".into()],
            environment: ServerEnvironment {
                addresses: vec![],
                architectures: vec![kante_api::image::normalise_architecture(
                    std::env::consts::ARCH,
                )],
                certificate: String::new(),
                certificate_fingerprint: String::new(),
                driver: "kante".into(),
                driver_version: env!("CARGO_PKG_VERSION").into(),
                firewall: "nftables".into(),
                kernel: "Linux".into(),
                kernel_architecture: std::env::consts::ARCH.into(),
                kernel_features,
                kernel_version,
                lxc_features: BTreeMap::new(),
                os_name,
                os_version,
                project: kante_store::PROJECT.into(),
                server: "kante".into(),
                server_clustered: false,
                server_event_mode: "full-mesh".into(),
                server_name: hostname,
                server_pid: std::process::id() as i64,
                server_version: env!("CARGO_PKG_VERSION").into(),
                storage: if storage.is_empty() {
                    "dir".into()
                } else {
                    storage
                },
                storage_version: "1".into(),
                storage_supported_drivers: drivers,
            },
        })
    }

    /// `PUT /1.0` (replace) or `PATCH /1.0` (merge).
    pub(crate) async fn server_update(&self, config: ConfigMap, merge: bool) -> Result<()> {
        let mut new = if merge {
            self.shared.config_all().await?
        } else {
            ConfigMap::new()
        };
        for (k, v) in config {
            if !(SERVER_KEYS.contains(&k.as_str()) || k.starts_with("user.")) {
                if k.starts_with("core.") {
                    return Err(EngineError::bad(format!(
                        "Server key {k:?} is not supported by this kanted yet"
                    )));
                }
                return Err(EngineError::bad(format!(
                    "Unknown server configuration key: {k}"
                )));
            }
            if v.is_empty() {
                new.remove(&k);
            } else {
                new.insert(k, v);
            }
        }
        self.shared.config_replace(&new).await?;
        Ok(())
    }
}
