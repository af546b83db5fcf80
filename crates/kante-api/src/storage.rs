//! Storage pools and volumes (`/1.0/storage-pools/...`): one set of types for
//! the daemon, the client and the CLI's YAML (fields in lxc's YAML order).

use serde::{Deserialize, Serialize};

use crate::serde_util::{null_default, string_map};
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

/// Where a new volume's content comes from (nothing, or a copy).
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

/// `POST /1.0/storage-pools/{pool}/volumes/custom/{name}` (rename).
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
