//! Networks (`/1.0/networks`): managed ones and the host's own interfaces.

use serde::{Deserialize, Serialize};

use crate::serde_util::{null_default, string_map};
use crate::ConfigMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Network {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub managed: bool,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Kante's view of an overlay's members and tunnels (absent for other
    /// networks; LXD's clients ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayView>,
}

/// An overlay's members and tunnels, as one member sees them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OverlayView {
    pub vni: u32,
    /// `none` or `wireguard`.
    pub encryption: String,
    /// The UDP port between members: VXLAN's, or WireGuard's when encrypted.
    pub port: u16,
    /// The member that answered (whose peers' state this is).
    pub seen_from: String,
    /// The MTU of the overlay's bridge on that member.
    #[serde(default)]
    pub mtu: u32,
    pub members: Vec<OverlayMember>,
}

/// One member of an overlay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OverlayMember {
    pub name: String,
    /// Its underlay address (the tunnel endpoint).
    pub underlay: String,
    /// Its inner transport address (encrypted overlays).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inner: String,
    /// Its published WireGuard public key (encrypted overlays).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_key: String,
    /// Whether its heartbeat lives.
    pub online: bool,
    /// As a peer of the answering member (encrypted overlays): its
    /// WireGuard endpoint, seconds since the last handshake (none yet:
    /// absent) and bytes received from and sent to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<OverlayPeerState>,
}

/// A WireGuard peer's live state (`wg show … dump`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OverlayPeerState {
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_age: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `POST /1.0/networks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworksPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
}

/// `PUT`/`PATCH /1.0/networks/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkPut {
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkStateAddress {
    pub family: String,
    pub address: String,
    pub netmask: String,
    pub scope: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkStateCounters {
    pub bytes_received: i64,
    pub bytes_sent: i64,
    pub packets_received: i64,
    pub packets_sent: i64,
}

/// `GET /1.0/networks/{name}/state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkState {
    pub addresses: Vec<NetworkStateAddress>,
    pub counters: NetworkStateCounters,
    pub hwaddr: String,
    pub mtu: i64,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// An overlay's members and tunnels as this member sees them (absent
    /// for other networks; LXD's clients ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayView>,
}

/// One entry of `GET /1.0/networks/{name}/leases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkLease {
    pub hostname: String,
    pub hwaddr: String,
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub location: String,
}
