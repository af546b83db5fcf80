//! Encrypted overlays (`security.encryption=wireguard`) as the engine
//! keeps them: each member's WireGuard public key is published in shared
//! state (reservation kind `wgkey`, keyed `<network>/<member>`, the key
//! its holder; the private key stays in the member's state dir), and the
//! overlay keeper hands the driver the peers (online members with a
//! published key and a DHCP slice: their inner addresses for the VXLAN's
//! FDB, their underlay endpoints and keys for WireGuard). Also the
//! overlay's view in `GET /1.0/networks/NAME` and `…/state`: members,
//! tunnel endpoints and, seen from the answering member, each WireGuard
//! peer's state. The data path is kante-network's `overlay_wg.rs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use kante_api::network::{OverlayMember, OverlayPeerState, OverlayView};
use kante_api::ConfigMap;
use kante_network::overlay::{KEY_LOCAL, KEY_PEERS, KEY_SLICE, KEY_VNI, VXLAN_PORT};
use kante_network::overlay_wg::{
    self, inner_addr, listen_port, render_peers, WgPeer, KEY_WG_PEERS, KEY_WG_UNDERLAY,
};
use kante_network::NetworkSpec;
use kante_store::{NetworkRow, ReservationKind};

use crate::network::OVERLAY;
use crate::Engine;

/// The host of a member's cluster address (`host:port` or a bare IP).
fn host_of(address: &str) -> Option<IpAddr> {
    address
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| address.parse::<IpAddr>())
        .ok()
}

fn slice_of(config: &ConfigMap) -> Option<u32> {
    config.get(KEY_SLICE)?.parse().ok()
}

/// An encrypted overlay's computed keys for this member, over the plain
/// overlay's: `overlay.local` becomes the inner address (from the
/// member's slice; none without one, which the driver refuses), the
/// underlay address moves to `overlay.wg.underlay`, and the peers are
/// left unknown (no `overlay.peers`, no `overlay.wg.peers`: the driver
/// then leaves FDB and WireGuard peers as they are) until the keeper,
/// which has the published keys, fills them in ([`Engine::overlay_wg_prepare`]).
pub(crate) fn inner_keys(config: &mut ConfigMap) {
    if let Some(local) = config.remove(KEY_LOCAL) {
        config.insert(KEY_WG_UNDERLAY.into(), local);
    }
    config.remove(KEY_PEERS);
    let vni = config.get(KEY_VNI).and_then(|v| v.parse::<u32>().ok());
    if let (Some(vni), Some(slice)) = (vni, slice_of(config)) {
        config.insert(KEY_LOCAL.into(), inner_addr(vni, slice).to_string());
    }
}

fn key_of(network: &str, member: &str) -> String {
    format!("{network}/{member}")
}

impl Engine {
    /// Every published WireGuard key (`<network>/<member>` to key); `None`
    /// while shared state cannot be read.
    pub(crate) async fn overlay_wg_keys(&self) -> Option<BTreeMap<String, String>> {
        self.shared.reservations(ReservationKind::WgKey).await.ok()
    }

    /// For the keeper: publishes this member's key of `row` (again if it
    /// changed) and fills `spec`'s peers from the membership and `keys`.
    pub(crate) async fn overlay_wg_prepare(
        &self,
        row: &NetworkRow,
        spec: &mut NetworkSpec,
        keys: &BTreeMap<String, String>,
    ) {
        let me = self.cluster.member_name().unwrap_or_default();
        let kind = ReservationKind::WgKey;
        match overlay_wg::public_key(spec).await {
            Ok(public) => {
                let k = key_of(&row.name, &me);
                let have = keys.get(&k);
                if have != Some(&public) {
                    if let Some(old) = have {
                        let _ = self.shared.release(kind, &k, old).await;
                    }
                    match self.shared.reserve(kind, &k, &public).await {
                        Ok(()) => tracing::info!(network = %row.name, "WireGuard key published"),
                        Err(e) => {
                            tracing::warn!(network = %row.name, "publishing the WireGuard key: {e}")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(network = %row.name, "the WireGuard key: {e}"),
        }
        let Some(vni) = row.config.get(KEY_VNI).and_then(|v| v.parse::<u32>().ok()) else {
            return;
        };
        let mut inner = Vec::new();
        let mut peers = Vec::new();
        for p in self.cluster.peers() {
            if p.name == me || !p.online {
                continue;
            }
            let (Some(public), Some(slice), Some(ip)) = (
                keys.get(&key_of(&row.name, &p.name)),
                row.members.get(&p.name).and_then(slice_of),
                host_of(&p.address),
            ) else {
                continue;
            };
            let a = inner_addr(vni, slice);
            inner.push(a.to_string());
            peers.push(WgPeer {
                inner: a,
                public_key: public.clone(),
                endpoint: SocketAddr::new(ip, listen_port(vni)),
            });
        }
        spec.config.insert(KEY_PEERS.into(), inner.join(","));
        spec.config
            .insert(KEY_WG_PEERS.into(), render_peers(&peers));
    }

    /// Drops every member's published key of overlay `name` (its delete,
    /// or a failed create).
    pub(crate) async fn overlay_wg_forget(&self, name: &str) {
        let kind = ReservationKind::WgKey;
        let Some(keys) = self.overlay_wg_keys().await else {
            tracing::warn!(network = %name, "WireGuard keys not released: shared state away");
            return;
        };
        let prefix = format!("{name}/");
        for (k, v) in keys.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            if let Err(e) = self.shared.release(kind, k, v).await {
                tracing::warn!(network = %name, "releasing {k}: {e}");
            }
        }
    }

    /// The overlay view of network `name` if it is an overlay.
    pub(crate) async fn overlay_view_of(&self, name: &str) -> Option<OverlayView> {
        let row = self.shared.network_get(name).await.ok()??;
        self.overlay_view(&row).await
    }

    /// An overlay's members (underlay address, inner address and public
    /// key when encrypted) and, for the encrypted, this member's view of
    /// each WireGuard peer (`wg show … dump`).
    pub(crate) async fn overlay_view(&self, row: &NetworkRow) -> Option<OverlayView> {
        if row.kind != OVERLAY {
            return None;
        }
        let vni: u32 = row.config.get(KEY_VNI)?.parse().ok()?;
        let encrypted = overlay_wg::encrypted(&row.config).unwrap_or(false);
        let me = self.cluster.member_name().unwrap_or_default();
        let keys = if encrypted {
            self.overlay_wg_keys().await.unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let live = if encrypted {
            let dir = self.paths.root.join("networks").join(&row.name);
            overlay_wg::state(&dir, vni).await.ok().flatten()
        } else {
            None
        };
        let mtu = match self.net.ops.link(&row.name).await {
            Ok(Some(l)) => l.mtu,
            _ => 0,
        };
        let mut members = Vec::new();
        for p in self.cluster.peers() {
            if !row.members.contains_key(&p.name) {
                continue;
            }
            let public_key = keys
                .get(&key_of(&row.name, &p.name))
                .cloned()
                .unwrap_or_default();
            let inner = match (encrypted, row.members.get(&p.name).and_then(slice_of)) {
                (true, Some(s)) => inner_addr(vni, s).to_string(),
                _ => String::new(),
            };
            let peer = live.as_ref().filter(|_| p.name != me).and_then(|d| {
                d.peers
                    .iter()
                    .find(|s| !public_key.is_empty() && s.public_key == public_key)
                    .map(|s| OverlayPeerState {
                        endpoint: s.endpoint.map(|e| e.to_string()).unwrap_or_default(),
                        handshake_age: s.handshake_age,
                        rx_bytes: s.rx_bytes,
                        tx_bytes: s.tx_bytes,
                    })
            });
            members.push(OverlayMember {
                name: p.name.clone(),
                underlay: host_of(&p.address)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                inner,
                public_key,
                online: p.online,
                peer,
            });
        }
        Some(OverlayView {
            vni,
            encryption: if encrypted {
                overlay_wg::WIREGUARD.into()
            } else {
                "none".into()
            },
            port: if encrypted {
                listen_port(vni)
            } else {
                VXLAN_PORT
            },
            seen_from: me,
            mtu,
            members,
        })
    }
}
