//! Instances: the objects behind `/1.0/instances`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::{devices_map, lenient_bool, lenient_i64, null_default, string_map};
use crate::{ConfigMap, DevicesMap, StatusCode, Timestamp};

/// Instance power state as clients see it. Only these four ever leave the daemon:
/// Ansible maps Running, Stopped and Frozen and fails on anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InstanceStatus {
    Running,
    Stopped,
    Frozen,
    Error,
}

impl InstanceStatus {
    pub fn code(self) -> StatusCode {
        match self {
            InstanceStatus::Running => StatusCode::Running,
            InstanceStatus::Stopped => StatusCode::Stopped,
            InstanceStatus::Frozen => StatusCode::Frozen,
            InstanceStatus::Error => StatusCode::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.code().name()
    }
}

/// The writable part of an instance (PUT body, and the base of the create body).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstancePut {
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "devices_map")]
    pub devices: DevicesMap,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub ephemeral: bool,
    /// `None` (null or absent) means "the default profile"; `Some([])` means none.
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub stateful: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Restore the named snapshot instead of updating (accepts `snap0` and `c1/snap0`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub restore: String,
}

/// Where a new instance's root filesystem comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceSource {
    /// `image`, `none`, `copy` or `migration`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub alias: String,
    #[serde(default, deserialize_with = "null_default")]
    pub fingerprint: String,
    #[serde(default, deserialize_with = "string_map")]
    pub properties: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub server: String,
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_default")]
    pub mode: String,
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: String,
    #[serde(default, deserialize_with = "null_default")]
    pub secret: String,
    /// For `copy`: the source instance or `instance/snapshot`.
    #[serde(default, deserialize_with = "null_default")]
    pub source: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub instance_only: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub refresh: bool,
    /// For `migration` in `pull` mode: the source's operation URL
    /// (`https://host:port/1.0/operations/<id>`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub operation: String,
    /// For `migration` in `pull` mode: the source operation's websocket
    /// secrets by channel (`control`, `fs`, `criu`).
    #[serde(
        default,
        deserialize_with = "string_map",
        skip_serializing_if = "ConfigMap::is_empty"
    )]
    pub secrets: ConfigMap,
    /// For `migration`: a live (stateful, CRIU) transfer is asked for.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub live: bool,
    /// Older clients' name for `instance_only`.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub container_only: bool,
    /// For `migration`: the source's `volatile.base_image`.
    #[serde(
        rename = "base-image",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub base_image: String,
}

/// `POST /1.0/instances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstancesPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default)]
    pub source: InstanceSource,
    #[serde(default, deserialize_with = "null_default")]
    pub instance_type: String,
    #[serde(flatten)]
    pub put: InstancePut,
}

/// `POST /1.0/instances/{name}`: a rename, or a migration's source side.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstancePost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub migration: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub live: bool,
    /// Migration: leave the snapshots behind.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub instance_only: bool,
    /// Older clients' name for `instance_only`.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub container_only: bool,
    /// Migration in push mode: the target's operation to connect to
    /// (absent or null: pull mode, this server listens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<InstancePostTarget>,
}

/// `POST /1.0/instances/{name}`'s `target`: where a pushing source connects.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstancePostTarget {
    /// The target server's certificate (PEM), pinned by the source.
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: String,
    /// `https://host:port/1.0/operations/<id>`.
    #[serde(default, deserialize_with = "null_default")]
    pub operation: String,
    /// The target operation's websocket secrets by channel.
    #[serde(default, deserialize_with = "string_map")]
    pub secrets: ConfigMap,
}

/// An instance as `GET /1.0/instances/{name}` returns it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Instance {
    pub architecture: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    pub ephemeral: bool,
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub description: String,
    pub created_at: Timestamp,
    pub expanded_config: ConfigMap,
    pub expanded_devices: DevicesMap,
    pub name: String,
    pub status: String,
    pub status_code: u16,
    pub last_used_at: Timestamp,
    pub location: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub project: String,
}

/// `recursion=2` of the list, and `recursion=1` of one instance.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceFull {
    #[serde(flatten)]
    pub instance: Instance,
    pub backups: Option<Vec<serde_json::Value>>,
    pub state: Option<InstanceState>,
    pub snapshots: Option<Vec<InstanceSnapshot>>,
}

/// A snapshot of an instance.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceSnapshot {
    pub architecture: String,
    pub config: ConfigMap,
    pub created_at: Timestamp,
    pub devices: DevicesMap,
    pub ephemeral: bool,
    pub expanded_config: ConfigMap,
    pub expanded_devices: DevicesMap,
    pub last_used_at: Timestamp,
    pub name: String,
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub expires_at: Timestamp,
    pub size: i64,
}

/// `PUT /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceStatePut {
    #[serde(default, deserialize_with = "null_default")]
    pub action: String,
    /// Seconds; -1 waits forever; 0 with stop means "kill now".
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timeout: i64,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub force: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub stateful: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceStateMemory {
    pub usage: i64,
    pub usage_peak: i64,
    pub swap_usage: i64,
    pub swap_usage_peak: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceStateCpu {
    pub usage: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceStateDisk {
    pub usage: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkAddress {
    pub family: String,
    pub address: String,
    pub netmask: String,
    pub scope: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkCounters {
    pub bytes_received: i64,
    pub bytes_sent: i64,
    pub packets_received: i64,
    pub packets_sent: i64,
    #[serde(default)]
    pub errors_received: i64,
    #[serde(default)]
    pub errors_sent: i64,
    #[serde(default)]
    pub packets_dropped_outbound: i64,
    #[serde(default)]
    pub packets_dropped_inbound: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceStateNetwork {
    pub addresses: Vec<NetworkAddress>,
    pub counters: NetworkCounters,
    pub hwaddr: String,
    pub host_name: String,
    pub mtu: i64,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceState {
    pub status: String,
    pub status_code: u16,
    pub disk: BTreeMap<String, InstanceStateDisk>,
    pub memory: InstanceStateMemory,
    pub network: Option<BTreeMap<String, InstanceStateNetwork>>,
    pub pid: i64,
    pub processes: i64,
    pub cpu: InstanceStateCpu,
}

impl InstanceState {
    /// The state of an instance that is not running.
    pub fn stopped() -> Self {
        InstanceState {
            status: InstanceStatus::Stopped.as_str().into(),
            status_code: StatusCode::Stopped as u16,
            disk: BTreeMap::new(),
            memory: InstanceStateMemory::default(),
            network: None,
            pid: 0,
            processes: 0,
            cpu: InstanceStateCpu::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_null_differs_from_empty() {
        let p: InstancePut = serde_json::from_str(r#"{"profiles":null}"#).unwrap();
        assert!(p.profiles.is_none());
        let p: InstancePut = serde_json::from_str(r#"{"profiles":[]}"#).unwrap();
        assert_eq!(p.profiles, Some(vec![]));
        let p: InstancePut = serde_json::from_str(r#"{}"#).unwrap();
        assert!(p.profiles.is_none());
    }

    #[test]
    fn create_body_as_lxc_sends_it() {
        let body = r#"{"architecture":"","config":{},"devices":{},"ephemeral":false,"profiles":null,
            "stateful":false,"description":"","name":"trc-c1","source":{"type":"image","certificate":"",
            "fingerprint":"e8b1265d","allow_inconsistent":false},"instance_type":"","type":"container",
            "start":false}"#;
        let p: InstancesPost = serde_json::from_str(body).unwrap();
        assert_eq!(p.name, "trc-c1");
        assert_eq!(p.source.kind, "image");
        assert_eq!(p.source.fingerprint, "e8b1265d");
        assert!(p.put.profiles.is_none());
    }

    #[test]
    fn state_put_accepts_lxc_and_pylxd_bodies() {
        let s: InstanceStatePut = serde_json::from_str(
            r#"{"action":"stop","timeout":-1,"force":false,"stateful":false}"#,
        )
        .unwrap();
        assert_eq!(s.timeout, -1);
        let s: InstanceStatePut =
            serde_json::from_str(r#"{"action":"start","timeout":30,"force":true}"#).unwrap();
        assert!(s.force);
    }
}
