//! LXD's cluster objects (`/1.0/cluster`, `/1.0/cluster/members`), in
//! LXD 5.0.2's shapes so that `lxc cluster list` parses them, plus the
//! join token lxc prints and the request a joining member sends to an
//! existing one (Kante's own, `POST /internal/cluster/accept`).

use serde::{Deserialize, Serialize};

use crate::serde_util::null_default;

/// `GET /1.0/cluster`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Cluster {
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub member_config: Vec<ClusterMemberConfigKey>,
}

/// A config key a joining member must provide (Kante asks for none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterMemberConfigKey {
    #[serde(default)]
    pub entity: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub description: String,
}

/// `PUT /1.0/cluster`: enable (`server_name`, `enabled`) or join (with
/// `cluster_token`, Kante's join token as `kante cluster add` printed it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterPut {
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub member_config: Vec<ClusterMemberConfigKey>,
    #[serde(default)]
    pub cluster_address: String,
    #[serde(default)]
    pub cluster_certificate: String,
    #[serde(default)]
    pub server_address: String,
    #[serde(default)]
    pub cluster_token: String,
}

/// `GET /1.0/cluster/members/NAME`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterMember {
    pub server_name: String,
    pub url: String,
    /// Whether it holds a voting etcd member.
    pub database: bool,
    /// `Online` or `Offline`.
    pub status: String,
    pub message: String,
    pub architecture: String,
    pub failure_domain: String,
    pub description: String,
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// `database` for an etcd voter.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `PUT /1.0/cluster/members/NAME` (LXD's `ClusterMemberPut`): what `lxc
/// cluster group assign` and `lxc cluster edit` change. Kante keeps the
/// groups; the rest must stay as the member shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterMemberPut {
    #[serde(default, deserialize_with = "null_default")]
    pub roles: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub failure_domain: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub config: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
}

/// `GET /1.0/cluster/groups/NAME` (LXD's `ClusterGroup`, API extension
/// `clustering_groups`): a named set of members that `--target @NAME`
/// places among. Every member is in at least one group; `default` holds
/// those put in no other.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterGroup {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub members: Vec<String>,
}

/// `PUT /1.0/cluster/groups/NAME`: the description and the members.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterGroupPut {
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub members: Vec<String>,
}

/// `POST /1.0/cluster/groups/NAME`: a rename.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterGroupPost {
    pub name: String,
}

/// `POST /1.0/cluster/members`: asks for a join token for `server_name`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterMembersPost {
    pub server_name: String,
}

/// `POST /1.0/cluster/members/NAME/state` (LXD 5.0.2's
/// `ClusterMemberStatePost`): `action` is `evacuate` or `restore`; `mode`
/// (lxc's `--action`) forces one evacuation action for every instance
/// (`stop` or `migrate`), empty: each instance's `cluster.evacuate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterMemberStatePost {
    #[serde(default, deserialize_with = "null_default")]
    pub action: String,
    #[serde(default, deserialize_with = "null_default")]
    pub mode: String,
}

/// `GET /1.0/cluster/members/NAME/state` (LXD's `ClusterMemberState`,
/// API extension `cluster_member_state`): the member's load and free
/// memory, and its storage pools' space.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ClusterMemberState {
    pub sysinfo: ClusterMemberSysInfo,
    /// By pool name: `{"resources": {"space": …, "inodes": …}}`.
    #[serde(default)]
    pub storage_pools: std::collections::BTreeMap<String, StoragePoolState>,
}

/// A pool's part of [`ClusterMemberState`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct StoragePoolState {
    pub resources: crate::resources::PoolResources,
}

/// The member's `sysinfo(2)` figures, in LXD's field names (bytes, seconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ClusterMemberSysInfo {
    pub uptime: i64,
    /// 1, 5 and 15 minutes.
    pub load_averages: Vec<f64>,
    pub total_ram: u64,
    pub free_ram: u64,
    pub shared_ram: u64,
    pub buffered_ram: u64,
    pub total_swap: u64,
    pub free_swap: u64,
    pub processes: u64,
    #[serde(default)]
    pub logical_cpus: u64,
}

/// The join token (base64 of this JSON, as LXD's): what a joining host
/// needs to reach the cluster and prove it was invited.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterJoinToken {
    pub server_name: String,
    pub secret: String,
    /// The inviting member's server certificate fingerprint (pinned).
    pub fingerprint: String,
    /// Its HTTPS addresses (`host:port`).
    pub addresses: Vec<String>,
    #[serde(default)]
    pub expires_at: String,
}

/// What a joining member sends the member it joins through.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterAcceptPost {
    pub server_name: String,
    pub secret: String,
    /// Its HTTPS address (`host:port`): the etcd member's host too.
    pub address: String,
    /// Its server certificate (PEM), added to the trust store.
    pub certificate: String,
    pub architecture: String,
    /// Its instances' names: a clash with the cluster's refuses the join.
    pub instances: Vec<String>,
}

/// The answer: everything the new member needs to start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ClusterAcceptReply {
    pub cluster: String,
    /// The cluster CA (PEM) and this member's certificate and key, signed
    /// by it, for etcd's client and peer ports.
    pub ca: String,
    /// The CA's key: every member can sign a new member's certificate.
    pub ca_key: String,
    pub cert: String,
    pub key: String,
    /// The etcd client URLs of the voters.
    pub endpoints: Vec<String>,
    /// Whether the new member runs an etcd voter; then etcd's
    /// `--initial-cluster` (every voter, the new one included).
    pub voter: bool,
    pub initial_cluster: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxc_s_null_lists_read_as_empty() {
        // What lxc 5.0.2 sends for `cluster group create edge`.
        let g: ClusterGroup =
            serde_json::from_str(r#"{"name":"edge","description":"","members":null}"#).unwrap();
        assert_eq!((g.name.as_str(), g.members.len()), ("edge", 0));
        // And a member PUT with nothing but its groups set.
        let p: ClusterMemberPut = serde_json::from_str(
            r#"{"roles":null,"failure_domain":"default","description":"","config":null,"groups":["edge"]}"#,
        )
        .unwrap();
        assert!(p.roles.is_empty() && p.config.is_empty());
        assert_eq!(p.groups, ["edge"]);
    }
}
