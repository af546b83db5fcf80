//! `GET /1.0`: what this server is and can do; the server config.

use std::collections::BTreeMap;

use kante_api::server::{Server, ServerEnvironment, ServerUntrusted, StorageDriverInfo};
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
    "image_force_refresh",
    "console",
    "network",
    "network_state",
    "network_leases",
    "instance_nic_network",
    "storage_api_volume_rename",
    "storage_api_volume_snapshots",
    "storage_api_local_volume_handling",
    // Custom volumes copied and moved between servers and members
    // (`migration/volume.rs`, `volume_member.rs`).
    "storage_api_remote_volume_handling",
    "container_backup",
    "container_backup_override_pool",
    "backup_override_name",
    "backup_compression",
    "snapshot_scheduling",
    "snapshot_schedule_aliases",
    "snapshot_expiry",
    "snapshot_expiry_creation",
    "container_incremental_copy",
    "container_only_migration",
    "container_push",
    "container_push_target",
    "certificate_update",
    "certificate_token",
    "clustering",
    // POST /1.0/cluster/members/NAME/state (`evacuate.rs`).
    "clustering_evacuation",
    // GET /1.0/cluster/members/NAME/state (`resources.rs`).
    "cluster_member_state",
    // PUT /1.0/cluster/members/NAME, which lxc needs for `cluster group
    // assign`: Kante changes a member's groups there and refuses a change
    // of its roles (`cluster.rs`).
    "clustering_edit_roles",
    // Each member's failure domain (always `default` in Kante; a PUT that
    // changes it is refused).
    "clustering_failure_domains",
    // /1.0/cluster/groups, `--target @GROUP` (kante-cluster `groups.rs`).
    "clustering_groups",
    "certificate_self_trust",
    "etag",
    "projects",
    "resources",
    "resources_v2",
    "warnings",
    "metrics",
    "metrics_cpu_seconds",
];

/// Server config keys this daemon honours.
const SERVER_KEYS: &[&str] = &[
    "core.https_address",
    "core.trust_password",
    "core.remote_token_expiry",
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

/// How `GET /1.0` shows a hidden key that is set (LXD's `true`).
const HIDDEN: &str = "true";

impl Engine {
    /// `GET /1.0` for an untrusted caller (LXD's `ServerUntrusted`).
    pub(crate) fn server_info_untrusted(&self) -> ServerUntrusted {
        ServerUntrusted {
            api_extensions: API_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            api_status: "stable".into(),
            api_version: "1.0".into(),
            auth: "untrusted".into(),
            public: false,
            auth_methods: vec!["tls".into()],
        }
    }

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
            config: self
                .shared
                .config_all()
                .await?
                .into_iter()
                .map(|(k, v)| {
                    // Never readable back: only whether one is set.
                    if k == "core.trust_password" {
                        (k, HIDDEN.to_string())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            api_extensions: API_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            api_status: "stable".into(),
            api_version: "1.0".into(),
            auth: "trusted".into(),
            public: false,
            auth_methods: vec!["tls".into()],
            environment: ServerEnvironment {
                addresses: self.remote.addresses(),
                architectures: vec![kante_api::image::normalise_architecture(
                    std::env::consts::ARCH,
                )],
                certificate: self.remote.identity.cert_pem.clone(),
                certificate_fingerprint: self.remote.fingerprint.clone(),
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
                server_clustered: self.cluster.member_name().is_some(),
                server_event_mode: "full-mesh".into(),
                server_name: self.cluster.member_name().unwrap_or(hostname),
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

    /// `PUT /1.0` (replace) or `PATCH /1.0` (merge). A new
    /// `core.https_address` is bound before anything is committed: one
    /// that cannot be bound changes nothing. `core.trust_password` is
    /// stored as a salted hash; the hidden value `GET /1.0` shows (`true`)
    /// keeps the current one, as in LXD.
    pub(crate) async fn server_update(&self, config: ConfigMap, merge: bool) -> Result<()> {
        let _guard = self.remote.config_lock.lock().await;
        let old = self.shared.config_all().await?;
        let mut new = if merge { old.clone() } else { ConfigMap::new() };
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
                continue;
            }
            let v = match k.as_str() {
                "core.trust_password" if v == HIDDEN => match old.get(&k) {
                    Some(hash) => hash.clone(),
                    None => continue,
                },
                "core.trust_password" => {
                    let salt = crate::util::random_hex(16);
                    kante_tls::hash_password(&v, salt.as_bytes())
                }
                "core.https_address" => {
                    crate::remote::parse_https_address(&v)?;
                    v
                }
                "core.remote_token_expiry" => {
                    crate::units::parse_expiry(&v)?;
                    v
                }
                _ => v,
            };
            new.insert(k, v);
        }
        let key = "core.https_address";
        self.rebind_https(
            old.get(key).map(String::as_str),
            new.get(key).map(String::as_str),
            self.shared.config_replace(&new),
        )
        .await
    }
}
