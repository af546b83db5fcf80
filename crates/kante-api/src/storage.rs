//! Storage pools and volumes (`/1.0/storage-pools/...`): one set of types for
//! the daemon, the client and the CLI's YAML (fields in lxc's YAML order).

use serde::{Deserialize, Serialize};

use crate::serde_util::{lenient_bool, null_default, string_map};
use crate::{ConfigMap, Timestamp};

/// A pool as `GET /1.0/storage-pools/{name}` returns it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoragePool {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub driver: String,
    #[serde(default, deserialize_with = "null_default")]
    pub used_by: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    #[serde(default, deserialize_with = "null_default")]
    pub locations: Vec<String>,
}

/// `POST /1.0/storage-pools`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoragePoolsPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub driver: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
}

/// `PUT`/`PATCH /1.0/storage-pools/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoragePoolPut {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
}

impl From<&StoragePool> for StoragePoolPut {
    fn from(p: &StoragePool) -> Self {
        StoragePoolPut {
            config: p.config.clone(),
            description: p.description.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceUsage {
    #[serde(default)]
    pub used: u64,
    #[serde(default)]
    pub total: u64,
}

/// `GET /1.0/storage-pools/{name}/resources`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoragePoolResources {
    #[serde(default)]
    pub space: ResourceUsage,
    #[serde(default)]
    pub inodes: ResourceUsage,
}

/// `POST /1.0/storage-pools/{pool}/volumes[/custom]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageVolumesPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub content_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub source: VolumeSource,
}

/// Where a new volume's content comes from: nothing, a copy (`copy`,
/// from this server or, in a cluster, another member), or another
/// server's migration operation (`migration`, LXD's
/// `storage_api_remote_volume_handling`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VolumeSource {
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// `vol` or `vol/snap`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Defaults to the target pool.
    #[serde(default, deserialize_with = "null_default")]
    pub pool: String,
    /// `migration`: `pull` (the default: this server dials the source's
    /// operation) or `push` (this server's operation waits for the source).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub mode: String,
    /// `migration`, `pull`: the source's operation URL
    /// (`https://host:port/1.0/operations/<id>`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub operation: String,
    /// `migration`, `pull`: the source server's certificate (PEM), pinned.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub certificate: String,
    /// `migration`, `pull`: the source operation's websocket secrets.
    #[serde(
        default,
        deserialize_with = "string_map",
        skip_serializing_if = "ConfigMap::is_empty"
    )]
    pub secrets: ConfigMap,
    /// Leave the source's snapshots behind.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub volume_only: bool,
    /// Update an existing copy (refused: not supported).
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub refresh: bool,
    /// `copy` in a cluster: the member holding the source (found by
    /// asking the members when empty).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub location: String,
}

/// `PUT`/`PATCH /1.0/storage-pools/{pool}/volumes/custom/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageVolumePut {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// A snapshot to restore instead of changing anything.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub restore: String,
}

/// `POST /1.0/storage-pools/{pool}/volumes/custom/{name}`: a rename, or
/// with `migration` the source side of a copy to another server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageVolumePost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Another pool to move to (refused: copy instead).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub pool: String,
    /// Offer the volume to another server (an operation with websocket
    /// secrets, or with `target` one that connects to the target).
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub migration: bool,
    /// `migration` in push mode: the target's operation to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::instance::InstancePostTarget>,
    /// `migration`: leave the snapshots behind.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub volume_only: bool,
}

/// A volume as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageVolume {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub used_by: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub location: String,
    #[serde(default, deserialize_with = "null_default")]
    pub content_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub project: String,
    #[serde(default = "crate::zero_time")]
    pub created_at: Timestamp,
}

impl From<&StorageVolume> for StorageVolumePut {
    fn from(v: &StorageVolume) -> Self {
        StorageVolumePut {
            config: v.config.clone(),
            description: v.description.clone(),
            restore: String::new(),
        }
    }
}

/// A custom volume's snapshot as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageVolumeSnapshot {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub content_type: String,
    #[serde(default = "crate::zero_time")]
    pub created_at: Timestamp,
}

/// `POST .../volumes/custom/{name}/snapshots`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VolumeSnapshotsPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}
