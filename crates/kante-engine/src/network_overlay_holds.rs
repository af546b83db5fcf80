//! Overlay-wide address holds: an instance moved between cluster members
//! keeps its overlay address, and no member hands that address to another.
//!
//! A hold is a reservation in the shared state
//! ([`ReservationKind::OverlayAddress`], keyed `<overlay>/<IPv4>`, held by
//! `<instance>/<MAC>`): of concurrent claims one wins each address.
//! - **Taken** when an instance with a NIC on an overlay moves to another
//!   member (`move_instance`: evacuate, restore and `POST
//!   /1.0/instances/NAME?target=M`), before the target gets it: the NIC's
//!   `ipv4.address` if set, else the source member's dnsmasq lease for the
//!   NIC's MAC. A NIC's own `ipv4.address` on an overlay is held too, when
//!   the instance starts and by the keeper (it must be unique overlay-wide,
//!   not only in one member's dnsmasq).
//! - **Served** by every member: the overlay keeper writes every hold of
//!   the overlay into the member's dnsmasq hosts file as
//!   `dhcp-host=<MAC>,<IP>` (kante-network's `overlay_holds.rs`, which
//!   says why dnsmasq then serves it outside the member's slice and never
//!   to another MAC). A starting NIC whose MAC holds an address is planned
//!   with it as its `ipv4.address`, so its own hosts line (written as the
//!   NIC comes up, before the guest's first DHCP request) already carries
//!   it: no window in which the target's dnsmasq would offer a slice
//!   address.
//! - **Given up** when the instance is deleted (on the member that holds
//!   its name: the source's copy deleted after a move keeps it), when the
//!   keeper of the member the instance lives on finds no NIC with that MAC
//!   on that overlay any more (device removed, network changed, a
//!   different `ipv4.address`), and it follows a rename (holder
//!   `<new>/<MAC>`, so a renamed instance moved on keeps it).
//! - **Collected** when its instance is gone but it stayed: a delete
//!   while etcd was away cannot give holds up, and then keeps the
//!   instance's name reserved for its member as well (`drop_record`); that
//!   member's keeper gives both up once etcd is back
//!   (`network_overlay_orphans.rs`: a hold whose name is reserved for this
//!   member, which has no record of it, for 10 s, its lock free; etcd's
//!   compare-and-swap on the name decides). Never a hold of a moved
//!   instance: its name is another member's, or nobody's while the move
//!   is under way (the source still has it then), never the deleting
//!   member's alone. A static hold the keeper took for an instance
//!   deleted meanwhile is given up by the keeper itself (it checks the
//!   record again after taking it).
//!
//! Why not pin the address into the instance's config (LXD's NIC
//! `ipv4.address`) at move time: a NIC that comes from a profile would
//! need an instance-level override the user never asked for, and a pinned
//! key would survive the instance leaving the overlay. The hold alone does
//! the same for dnsmasq and goes with the NIC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use kante_api::{ConfigMap, DevicesMap};
use kante_network::{overlay_holds, MacAddr, NicRequest};
use kante_store::{NetworkRow, ReservationKind, StoreError};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::network::OVERLAY;
use crate::Engine;

const KIND: ReservationKind = ReservationKind::OverlayAddress;

/// One hold, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hold {
    pub network: String,
    pub ip: Ipv4Addr,
    pub instance: String,
    pub mac: MacAddr,
}

impl Hold {
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.network, self.ip)
    }

    pub(crate) fn holder(&self) -> String {
        holder(&self.instance, self.mac)
    }

    fn parse(key: &str, holder: &str) -> Option<Hold> {
        let (network, ip) = key.rsplit_once('/')?;
        let (instance, mac) = holder.rsplit_once('/')?;
        Some(Hold {
            network: network.to_string(),
            ip: ip.parse().ok()?,
            instance: instance.to_string(),
            mac: mac.parse().ok()?,
        })
    }
}

fn holder(instance: &str, mac: MacAddr) -> String {
    format!("{instance}/{mac}")
}

/// The overlay a NIC's config attaches to, if any.
fn nic_overlay<'a>(cfg: &'a ConfigMap, overlays: &BTreeSet<String>) -> Option<&'a str> {
    cfg.get("network")
        .or_else(|| cfg.get("parent"))
        .map(String::as_str)
        .filter(|n| overlays.contains(*n))
}

/// The MAC of NIC `dev`: its `hwaddr`, else `volatile.<dev>.hwaddr`.
fn nic_mac(dev: &str, cfg: &ConfigMap, config: &ConfigMap) -> Option<MacAddr> {
    cfg.get("hwaddr")
        .or_else(|| config.get(&format!("volatile.{dev}.hwaddr")))
        .and_then(|m| m.parse().ok())
}

/// The (overlay, MAC, `ipv4.address`) of each NIC of `devices` on an overlay.
fn overlay_nics(
    devices: &DevicesMap,
    config: &ConfigMap,
    overlays: &BTreeSet<String>,
) -> Vec<(String, MacAddr, Option<Ipv4Addr>)> {
    crate::devices::nics(devices)
        .filter_map(|(dev, d)| {
            let ov = nic_overlay(d, overlays)?;
            let mac = nic_mac(dev, d, config)?;
            let ip = d.get("ipv4.address").and_then(|a| a.parse().ok());
            Some((ov.to_string(), mac, ip))
        })
        .collect()
}

/// The overlays among `rows`.
fn overlays_of(rows: &[NetworkRow]) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| r.kind == OVERLAY)
        .map(|r| r.name.clone())
        .collect()
}

impl Engine {
    /// Every hold in the shared state.
    pub(crate) async fn overlay_holds(&self) -> Result<Vec<Hold>> {
        Ok(self
            .shared
            .reservations(KIND)
            .await?
            .iter()
            .filter_map(|(k, h)| Hold::parse(k, h))
            .collect())
    }

    /// Takes `hold` (already this holder's: nothing to do); an address
    /// held for another instance or MAC is a 400 naming the holder.
    async fn overlay_hold_take(&self, hold: &Hold) -> Result<()> {
        match self.shared.reserve(KIND, &hold.key(), &hold.holder()).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => {
                let now = self.shared.reservations(KIND).await?;
                match now.get(&hold.key()) {
                    Some(h) if *h == hold.holder() => Ok(()),
                    Some(h) => Err(held_by(hold, h)),
                    // Given up meanwhile: try once more.
                    None => Ok(self
                        .shared
                        .reserve(KIND, &hold.key(), &hold.holder())
                        .await?),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Before the NICs of `instance` are planned: a NIC on an overlay with
    /// an `ipv4.address` another instance (or MAC) holds is a 400; with
    /// `take`, that address is held for it now (an instance starting). A
    /// NIC without `ipv4.address` whose MAC holds an address on its
    /// overlay is planned with it. Without the shared state (etcd away)
    /// NICs are planned as they are: the hosts files keep the last holds.
    pub(crate) async fn overlay_nic_holds(
        &self,
        instance: &str,
        requests: &mut [NicRequest],
        take: bool,
    ) -> Result<()> {
        let named =
            |r: &NicRequest| r.config.contains_key("network") || r.config.contains_key("parent");
        if !requests.iter().any(named) {
            return Ok(());
        }
        let overlays = match self.shared.network_list().await {
            Ok(rows) => overlays_of(&rows),
            Err(e) => {
                tracing::warn!(%instance, "networks unreadable, overlay holds not applied: {e}");
                return Ok(());
            }
        };
        if !requests
            .iter()
            .any(|r| nic_overlay(&r.config, &overlays).is_some())
        {
            return Ok(());
        }
        let holds = match self.overlay_holds().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(%instance, "overlay address holds unreadable: {e}");
                return Ok(());
            }
        };
        for r in requests.iter_mut() {
            let Some(ov) = nic_overlay(&r.config, &overlays).map(str::to_string) else {
                continue;
            };
            let mac = r.config.get("hwaddr").or(r.volatile_hwaddr.as_ref());
            let Some(mac) = mac.and_then(|m| m.parse::<MacAddr>().ok()) else {
                continue;
            };
            match r.config.get("ipv4.address").map(|a| a.parse::<Ipv4Addr>()) {
                Some(Ok(ip)) => {
                    let hold = Hold {
                        network: ov.clone(),
                        ip,
                        instance: instance.to_string(),
                        mac,
                    };
                    if let Some(h) = holds.iter().find(|h| h.key() == hold.key()) {
                        if h.holder() != hold.holder() {
                            return Err(held_by(&hold, &h.holder()));
                        }
                    } else if take {
                        match self.overlay_hold_take(&hold).await {
                            Ok(()) => {}
                            Err(e @ EngineError::BadRequest(_)) => return Err(e),
                            // etcd away: the keeper holds it once back.
                            Err(e) => tracing::warn!(%instance, "holding {}: {e}", hold.key()),
                        }
                    }
                }
                // Not an address: the NIC's own check says so.
                Some(Err(_)) => {}
                None => {
                    if let Some(h) = holds
                        .iter()
                        .find(|h| h.network == ov && h.instance == instance && h.mac == mac)
                    {
                        r.config.insert("ipv4.address".into(), h.ip.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// The NICs of `inst` (an instance as the API shows it) on overlays:
    /// (overlay, MAC, its `ipv4.address`).
    async fn overlay_nics_of(
        &self,
        inst: &Value,
    ) -> Result<Vec<(String, MacAddr, Option<Ipv4Addr>)>> {
        let devices: DevicesMap =
            serde_json::from_value(inst.get("expanded_devices").cloned().unwrap_or_default())
                .unwrap_or_default();
        let config: ConfigMap =
            serde_json::from_value(inst.get("config").cloned().unwrap_or_default())
                .unwrap_or_default();
        let overlays = overlays_of(&self.shared.network_list().await?);
        Ok(overlay_nics(&devices, &config, &overlays))
    }

    /// The overlays whose leases a move of `inst` needs from its source
    /// (those of its NICs without `ipv4.address`).
    pub(crate) async fn overlay_leases_needed(&self, inst: &Value) -> Result<BTreeSet<String>> {
        Ok(self
            .overlay_nics_of(inst)
            .await?
            .into_iter()
            .filter(|(_, _, ip)| ip.is_none())
            .map(|(ov, _, _)| ov)
            .collect())
    }

    /// At a move of `name` (`inst`: its record as the API shows it) to
    /// another member: holds the overlay address of each of its NICs on
    /// an overlay, the NIC's `ipv4.address` or the source's lease for its
    /// MAC (`leases`: the source's `GET /1.0/networks/NAME/leases` by
    /// overlay). A NIC with no address known moves without a hold (it
    /// gets a new one there); an address held by another instance fails
    /// the move.
    pub(crate) async fn overlay_hold_for_move(
        &self,
        name: &str,
        inst: &Value,
        leases: &BTreeMap<String, Vec<Value>>,
    ) -> Result<()> {
        for (ov, mac, ip) in self.overlay_nics_of(inst).await? {
            let leased = || {
                leases.get(&ov)?.iter().find_map(|l| {
                    let m: MacAddr = l.get("hwaddr")?.as_str()?.parse().ok()?;
                    let a: Ipv4Addr = l.get("address")?.as_str()?.parse().ok()?;
                    (m == mac).then_some(a)
                })
            };
            let Some(ip) = ip.or_else(leased) else {
                tracing::info!(instance = name, network = %ov, "no address to keep for {mac}");
                continue;
            };
            let hold = Hold {
                network: ov,
                ip,
                instance: name.to_string(),
                mac,
            };
            self.overlay_hold_take(&hold).await?;
            tracing::info!(instance = name, network = %hold.network, "address {ip} held for {mac}");
        }
        Ok(())
    }

    /// Gives up every hold of instance `name`, unless another member holds
    /// its name now (a moved instance's copy left on the source). False
    /// if they could not be given up (etcd away): its name must then stay
    /// reserved, for the keeper to collect both (`network_overlay_orphans.rs`).
    pub(crate) async fn overlay_holds_release(&self, name: &str) -> bool {
        let run = async {
            let names = self
                .shared
                .reservations(ReservationKind::InstanceName)
                .await?;
            if names.get(name).is_some_and(|m| *m != self.location.get()) {
                return Ok(());
            }
            for h in self.overlay_holds().await? {
                if h.instance == name {
                    self.shared.release(KIND, &h.key(), &h.holder()).await?;
                }
            }
            Ok::<_, EngineError>(())
        };
        match run.await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(instance = name, "giving up its overlay addresses: {e}");
                false
            }
        }
    }

    /// The holds of `old` follow its rename to `new`.
    pub(crate) async fn overlay_holds_rename(&self, old: &str, new: &str) -> Result<()> {
        for h in self.overlay_holds().await? {
            if h.instance == old {
                let to = holder(new, h.mac);
                self.shared
                    .transfer(KIND, &h.key(), &h.holder(), &to)
                    .await?;
            }
        }
        Ok(())
    }

    /// The keeper's pass over holds (each second, with every overlay's
    /// name and state directory here): holds of the instances on this
    /// member that no NIC needs any more are given up, each static
    /// `ipv4.address` of theirs on an overlay is held, then every overlay
    /// made here gets its holds in its dnsmasq's hosts file.
    pub(crate) async fn overlay_holds_keep(&self, dirs: &[(String, PathBuf)]) {
        let overlays: BTreeSet<String> = dirs.iter().map(|(n, _)| n.clone()).collect();
        if overlays.is_empty() {
            return;
        }
        let Ok(mut holds) = self.overlay_holds().await else {
            return;
        };
        if let Ok(instances) = self.instances_expanded().await {
            // Whether a hold was given up or taken: the list is read again.
            let mut changed = false;
            for (row, expanded) in instances {
                let Ok((_, devices)) = expanded else { continue };
                let nics = overlay_nics(&devices, &row.config, &overlays);
                for h in holds.iter().filter(|h| h.instance == row.name) {
                    let needed = nics.iter().any(|(ov, mac, ip)| {
                        *ov == h.network && *mac == h.mac && ip.is_none_or(|ip| ip == h.ip)
                    });
                    if !needed {
                        changed = true;
                        match self.shared.release(KIND, &h.key(), &h.holder()).await {
                            Ok(_) => {
                                tracing::info!(instance = %row.name, network = %h.network, "address {} given up", h.ip)
                            }
                            Err(e) => {
                                tracing::warn!(instance = %row.name, "giving up {}: {e}", h.key())
                            }
                        }
                    }
                }
                for (ov, mac, ip) in nics {
                    let Some(ip) = ip else { continue };
                    let hold = Hold {
                        network: ov,
                        ip,
                        instance: row.name.clone(),
                        mac,
                    };
                    if !holds.iter().any(|h| h.key() == hold.key()) {
                        changed = true;
                        if let Err(e) = self.overlay_hold_take(&hold).await {
                            tracing::warn!(instance = %row.name, "holding {}: {e}", hold.key());
                        } else if let Ok(None) = self.node.instance_get(&row.name).await {
                            // Deleted (or renamed) since it was listed, its
                            // holds given up before this one was taken:
                            // nobody else would give this one up.
                            let _ = self.shared.release(KIND, &hold.key(), &hold.holder()).await;
                        }
                    }
                }
            }
            if changed {
                match self.overlay_holds().await {
                    Ok(h) => holds = h,
                    Err(_) => return,
                }
            }
        }
        for (name, dir) in dirs {
            let want: BTreeMap<MacAddr, Ipv4Addr> = holds
                .iter()
                .filter(|h| h.network == *name)
                .map(|h| (h.mac, h.ip))
                .collect();
            match overlay_holds::apply(dir, &want) {
                Ok(a) => {
                    for (mac, ip, other) in a.clashes {
                        tracing::warn!(network = %name, "{ip} held for {mac} is {other}'s here");
                    }
                }
                Err(e) => tracing::warn!(network = %name, "writing the held addresses: {e}"),
            }
        }
    }
}

fn held_by(hold: &Hold, holder: &str) -> EngineError {
    let who = holder.rsplit_once('/').map_or(holder, |(i, _)| i);
    EngineError::bad(format!(
        "Address {} on overlay {:?} is held by instance {who:?}",
        hold.ip, hold.network
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_parse_back() {
        let h = Hold {
            network: "ov1".into(),
            ip: "10.0.9.23".parse().unwrap(),
            instance: "c1".into(),
            mac: "00:16:3e:aa:bb:cc".parse().unwrap(),
        };
        assert_eq!(h.key(), "ov1/10.0.9.23");
        assert_eq!(h.holder(), "c1/00:16:3e:aa:bb:cc");
        assert_eq!(Hold::parse(&h.key(), &h.holder()), Some(h));
        assert_eq!(Hold::parse("ov1/x", "c1/00:16:3e:aa:bb:cc"), None);
    }

    #[test]
    fn nics_on_overlays() {
        let overlays = BTreeSet::from(["ov1".to_string()]);
        let nic = |kv: &[(&str, &str)]| -> ConfigMap {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let devices = DevicesMap::from([
            ("eth0".into(), nic(&[("type", "nic"), ("network", "ov1")])),
            (
                "eth1".into(),
                nic(&[
                    ("type", "nic"),
                    ("network", "ov1"),
                    ("hwaddr", "00:16:3e:00:00:02"),
                    ("ipv4.address", "10.0.9.7"),
                ]),
            ),
            ("eth2".into(), nic(&[("type", "nic"), ("network", "br0")])),
        ]);
        let config = nic(&[
            ("volatile.eth0.hwaddr", "00:16:3e:00:00:01"),
            ("volatile.eth2.hwaddr", "00:16:3e:00:00:03"),
        ]);
        let got = overlay_nics(&devices, &config, &overlays);
        assert_eq!(
            got,
            vec![
                ("ov1".into(), "00:16:3e:00:00:01".parse().unwrap(), None),
                (
                    "ov1".into(),
                    "00:16:3e:00:00:02".parse().unwrap(),
                    Some("10.0.9.7".parse().unwrap())
                ),
            ]
        );
    }
}
