//! Instance backups (`/1.0/instances/{name}/backups`), as LXD shapes them.

use serde::{Deserialize, Serialize};

use crate::serde_util::{lenient_bool, null_default};
use crate::Timestamp;

/// A backup of an instance kept by the server.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceBackup {
    pub name: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub instance_only: bool,
    /// The pre-`instances` name of `instance_only`.
    pub container_only: bool,
    pub optimized_storage: bool,
}

/// `POST /1.0/instances/{name}/backups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceBackupsPost {
    /// Empty: the server picks `backupN`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub instance_only: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub container_only: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub optimized_storage: bool,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default, deserialize_with = "null_default")]
    pub compression_algorithm: String,
}

/// `POST /1.0/instances/{name}/backups/{backup}`: rename.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceBackupPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}
