//! `GET /1.0`: the server and its environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::string_map;
use crate::ConfigMap;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageDriverInfo {
    // LXD's Go struct has no JSON tags, so the keys are capitalised.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Remote")]
    pub remote: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerEnvironment {
    pub addresses: Vec<String>,
    pub architectures: Vec<String>,
    pub certificate: String,
    pub certificate_fingerprint: String,
    pub driver: String,
    pub driver_version: String,
    pub firewall: String,
    pub kernel: String,
    pub kernel_architecture: String,
    pub kernel_features: BTreeMap<String, String>,
    pub kernel_version: String,
    pub lxc_features: BTreeMap<String, String>,
    pub os_name: String,
    pub os_version: String,
    pub project: String,
    pub server: String,
    pub server_clustered: bool,
    pub server_event_mode: String,
    pub server_name: String,
    pub server_pid: i64,
    pub server_version: String,
    pub storage: String,
    pub storage_version: String,
    pub storage_supported_drivers: Vec<StorageDriverInfo>,
}

/// `GET /1.0` for a trusted client.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Server {
    pub config: ConfigMap,
    pub api_extensions: Vec<String>,
    pub api_status: String,
    pub api_version: String,
    pub auth: String,
    pub public: bool,
    pub auth_methods: Vec<String>,
    pub environment: ServerEnvironment,
}

/// `GET /1.0` for an untrusted client: what it needs to authenticate.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerUntrusted {
    pub api_extensions: Vec<String>,
    pub api_status: String,
    pub api_version: String,
    pub auth: String,
    pub public: bool,
    pub auth_methods: Vec<String>,
}

/// `PUT`/`PATCH /1.0`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerPut {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
}
