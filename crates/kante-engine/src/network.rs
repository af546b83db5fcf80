//! Networks as the engine manages them: records in the store, drivers from
//! kante-network, and the `nic` devices of instances.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kante_api::network::{
    Network, NetworkLease, NetworkState, NetworkStateAddress, NetworkStateCounters, NetworksPost,
};
use kante_api::{ConfigMap, DevicesMap};
use kante_network::{driver_for, NetworkSpec, NicPlan, NicRequest};
use kante_store::NetworkRow;

use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// Prefix of this daemon's nftables tables (empty for the default directory).
    pub(crate) fn nft_prefix(&self) -> String {
        match self.paths.cgroup_prefix().strip_prefix("kante-") {
            Some(hash) => format!("k{hash}_"),
            None => String::new(),
        }
    }

    /// A network as made on this member: `config` as given (an overlay's
    /// with this member's underlay address and its peers' added).
    pub(crate) fn spec_of(&self, name: &str, kind: &str, mut config: ConfigMap) -> NetworkSpec {
        if kind == OVERLAY {
            self.overlay_keys(&mut config);
        }
        NetworkSpec {
            name: name.to_string(),
            kind: kind.to_string(),
            config,
            state_dir: self.paths.root.join("networks").join(name),
            daemon_prefix: self.nft_prefix(),
        }
    }

    /// Adds an overlay's computed keys: this member's underlay address
    /// (the host of its cluster address) and the other online members',
    /// from the cached membership (so they stay while etcd is away).
    fn overlay_keys(&self, config: &mut ConfigMap) {
        use kante_network::overlay::{KEY_LOCAL, KEY_PEERS};
        let me = self.cluster.member_name().unwrap_or_default();
        let host = |address: &str| -> Option<IpAddr> {
            address
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip())
                .or_else(|_| address.parse::<IpAddr>())
                .ok()
        };
        let mut peers = Vec::new();
        for p in self.cluster.peers() {
            match host(&p.address) {
                Some(ip) if p.name == me => {
                    config.insert(KEY_LOCAL.into(), ip.to_string());
                }
                Some(ip) if p.online => peers.push(ip.to_string()),
                _ => {}
            }
        }
        config.insert(KEY_PEERS.into(), peers.join(","));
        if kante_network::overlay_wg::encrypted(config).unwrap_or(false) {
            crate::network_overlay_wg::inner_keys(config);
        }
    }

    /// A network as made on this member: its global keys with this
    /// member's own merged over them (none standalone).
    pub(crate) fn network_spec(&self, row: &NetworkRow) -> NetworkSpec {
        let me = self.cluster.member_name().unwrap_or_default();
        self.spec_of(&row.name, &row.kind, member_config(row, &me))
    }

    /// The networks made on this member (a cluster's pending ones are not).
    pub(crate) async fn network_specs(&self) -> Result<Vec<NetworkSpec>> {
        Ok(self
            .shared
            .network_list()
            .await?
            .iter()
            .filter(|r| r.status != STATUS_PENDING)
            .map(|r| self.network_spec(r))
            .collect())
    }

    /// Brings every managed network up (at daemon start); idempotent.
    pub(crate) async fn start_networks(&self) {
        for spec in self.network_specs().await.unwrap_or_default() {
            let result = match driver_for(&spec.kind, &self.net) {
                Ok(d) => d.start(&spec).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => tracing::info!(network = %spec.name, "network up"),
                Err(e) => {
                    tracing::error!(network = %spec.name, "network could not be started: {e}")
                }
            }
        }
    }

    pub(crate) async fn network_create(&self, req: NetworksPost) -> Result<()> {
        let kind = if req.kind.is_empty() {
            "bridge".to_string()
        } else {
            req.kind.clone()
        };
        if self.shared.network_get(&req.name).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Network {:?} already exists",
                req.name
            )));
        }
        if kind == OVERLAY {
            return Err(EngineError::bad(
                "Overlay networks span a cluster: this server is not clustered (kante cluster enable first)",
            ));
        }
        let driver = driver_for(&kind, &self.net)?;
        driver.validate(&req.name, &req.config)?;
        let others = self.network_specs().await?;
        let config = driver.fill_defaults(&req.config, &others)?;
        if kind == "bridge" {
            kante_network::driver::check_no_overlap(&req.name, &config, &others)?;
        }
        if kind == "bridge" {
            if let Some(l) = self.net.ops.link(&req.name).await? {
                return Err(EngineError::Conflict(format!(
                    "An interface named {:?} already exists on the host ({})",
                    req.name,
                    l.kind.unwrap_or_else(|| "device".into())
                )));
            }
        }
        let row = NetworkRow {
            name: req.name.clone(),
            kind,
            description: req.description,
            config,
            ..Default::default()
        };
        self.shared.network_create(&row).await?;
        let spec = self.network_spec(&row);
        if let Err(e) = driver.create(&spec).await {
            let _ = driver.delete(&spec).await;
            let _ = self.shared.network_delete(&row.name).await;
            return Err(e.into());
        }
        self.announce_created(&row.name);
        Ok(())
    }

    /// A cluster-wide network made on every member: its record says
    /// `Created`, and the event goes out.
    pub(crate) async fn network_created(&self, row: &mut NetworkRow) -> Result<()> {
        row.status = STATUS_CREATED.into();
        self.shared.network_update(row).await?;
        self.announce_created(&row.name);
        Ok(())
    }

    fn announce_created(&self, name: &str) {
        self.events.lifecycle(
            "network-created",
            &format!("/1.0/networks/{name}"),
            serde_json::json!({}),
        );
    }

    /// Instances and profiles whose NICs use `name`.
    pub(crate) async fn network_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .network_users_all()
            .await?
            .remove(name)
            .unwrap_or_default())
    }

    /// For every network or parent named by a NIC: the profiles and
    /// instances using it (one pass over the store, however many networks).
    async fn network_users_all(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut note = |devices: &DevicesMap, user: String| {
            for n in crate::devices::networks(devices) {
                out.entry(n).or_default().push(user.clone());
            }
        };
        for p in self.shared.profile_list().await? {
            note(&p.devices, format!("/1.0/profiles/{}", p.name));
        }
        for (i, expanded) in self.instances_expanded().await? {
            let devices = expanded.map(|(_, d)| d).unwrap_or_default();
            note(&devices, format!("/1.0/instances/{}", i.name));
        }
        Ok(out)
    }

    pub(crate) async fn network_delete(&self, name: &str) -> Result<()> {
        let row = self
            .shared
            .network_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        let users = self.network_users(name).await?;
        if !users.is_empty() {
            return Err(EngineError::bad(format!(
                "The network is currently in use by {}",
                users.join(", ")
            )));
        }
        if row.status != STATUS_PENDING {
            let driver = driver_for(&row.kind, &self.net)?;
            driver.delete(&self.network_spec(&row)).await?;
        }
        self.shared.network_delete(name).await?;
        if row.kind == OVERLAY {
            self.overlay_wg_forget(name).await;
            crate::network_overlay_slices::forget_slices(&*self.shared, name).await;
        }
        if let Some(vni) = row.config.get(kante_network::overlay::KEY_VNI) {
            if row.kind == OVERLAY {
                let kind = kante_store::ReservationKind::Vni;
                if let Err(e) = self.shared.release(kind, vni, name).await {
                    tracing::warn!(network = %name, "releasing VNI {vni}: {e}");
                }
            }
        }
        self.events.lifecycle(
            "network-deleted",
            &format!("/1.0/networks/{name}"),
            serde_json::json!({}),
        );
        Ok(())
    }

    /// Renames a managed network, as LXD does: on a standalone server and
    /// while no instance or profile uses it. The network is taken down under
    /// its old name and made under the new one (its bridge is named after
    /// it); if that fails, the old one is made again and nothing changes.
    pub(crate) async fn network_rename(&self, name: &str, new_name: &str) -> Result<()> {
        let row = self
            .shared
            .network_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        if self.cluster.member_name().is_some() {
            return Err(EngineError::bad(
                "Renaming a network of a cluster is not supported",
            ));
        }
        if new_name.is_empty() {
            return Err(EngineError::bad("No name provided"));
        }
        if new_name == name {
            return Err(EngineError::bad(format!(
                "The network is already named {name:?}"
            )));
        }
        if self.shared.network_get(new_name).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Network {new_name:?} already exists"
            )));
        }
        let driver = driver_for(&row.kind, &self.net)?;
        driver.validate(new_name, &row.config)?;
        let users = self.network_users(name).await?;
        if !users.is_empty() {
            return Err(EngineError::bad(format!(
                "The network is currently in use by {}",
                users.join(", ")
            )));
        }
        if row.kind == "bridge" {
            if let Some(l) = self.net.ops.link(new_name).await? {
                return Err(EngineError::Conflict(format!(
                    "An interface named {new_name:?} already exists on the host ({})",
                    l.kind.unwrap_or_else(|| "device".into())
                )));
            }
        }
        let renamed = NetworkRow {
            name: new_name.to_string(),
            ..row.clone()
        };
        let old_spec = self.network_spec(&row);
        let new_spec = self.network_spec(&renamed);
        let live = row.status != STATUS_PENDING;
        if live {
            driver.delete(&old_spec).await?;
        }
        self.shared.network_create(&renamed).await?;
        let made = match live {
            true => driver.create(&new_spec).await.map(|_| ()),
            false => Ok(()),
        };
        if let Err(e) = made {
            let _ = driver.delete(&new_spec).await;
            let _ = self.shared.network_delete(new_name).await;
            if let Err(back) = driver.create(&old_spec).await {
                tracing::warn!(network = %name, "making it again after a failed rename: {back}");
            }
            return Err(e.into());
        }
        self.shared.network_delete(name).await?;
        self.events.lifecycle(
            "network-renamed",
            &format!("/1.0/networks/{new_name}"),
            serde_json::json!({ "old_name": name }),
        );
        Ok(())
    }

    /// Changes a network's config; address and driver changes only while
    /// nothing uses it. Re-applied at once (bridge, dnsmasq, nftables).
    pub(crate) async fn network_update(
        &self,
        name: &str,
        description: String,
        config: ConfigMap,
        merge: bool,
    ) -> Result<()> {
        let (old, new) = self
            .network_update_plan(name, description, config, merge)
            .await?;
        self.network_apply(&old, &new, true).await
    }

    /// The record before and after a change of its global keys, checked
    /// (see [`Engine::network_update`]); nothing is changed yet.
    pub(crate) async fn network_update_plan(
        &self,
        name: &str,
        description: String,
        config: ConfigMap,
        merge: bool,
    ) -> Result<(NetworkRow, NetworkRow)> {
        let mut row = self
            .shared
            .network_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        let mut new = if merge {
            row.config.clone()
        } else {
            ConfigMap::new()
        };
        for (k, v) in config {
            if v.is_empty() {
                new.remove(&k);
            } else {
                new.insert(k, v);
            }
        }
        if row.status == STATUS_PENDING {
            return Err(EngineError::bad(
                "The network is pending: create it without --target first",
            ));
        }
        let driver = driver_for(&row.kind, &self.net)?;
        let me = self.cluster.member_name().unwrap_or_default();
        let own = row.members.get(&me).cloned().unwrap_or_default();
        let mut merged = new.clone();
        merged.extend(own.clone());
        driver.validate(name, &merged)?;
        let others: Vec<NetworkSpec> = self
            .network_specs()
            .await?
            .into_iter()
            .filter(|s| s.name != name)
            .collect();
        let mut new = driver.fill_defaults(&new, &others)?;
        if row.kind == OVERLAY {
            // The VNI is the cluster's allocation: kept, never changed.
            let key = kante_network::overlay::KEY_VNI;
            match (row.config.get(key), new.get(key)) {
                (Some(v), None) => {
                    new.insert(key.into(), v.clone());
                }
                (old, Some(v)) if old != Some(v) => {
                    return Err(EngineError::bad(format!("{key} cannot be changed")));
                }
                _ => {}
            }
        }
        if row.kind == "bridge" {
            let mut merged = new.clone();
            merged.extend(own);
            kante_network::driver::check_no_overlap(name, &merged, &others)?;
        }
        let fixed = ["ipv4.address", "ipv6.address", "bridge.driver", "parent"];
        if fixed.iter().any(|k| row.config.get(*k) != new.get(*k))
            && !self.network_users(name).await?.is_empty()
        {
            return Err(EngineError::bad(
                "Addresses, bridge.driver and parent cannot change while the network is in use",
            ));
        }
        let old = row.clone();
        row.config = new;
        if !merge || !description.is_empty() {
            row.description = description;
        }
        Ok((old, row))
    }

    /// Makes this member's network what `new` says where it was `old`'s
    /// (stopped, re-made if its address or driver changed, started); with
    /// `record`, `new` is written to the state too.
    pub(crate) async fn network_apply(
        &self,
        old: &NetworkRow,
        new: &NetworkRow,
        record: bool,
    ) -> Result<()> {
        let driver = driver_for(&new.kind, &self.net)?;
        let old_spec = self.network_spec(old);
        let new_spec = self.network_spec(new);
        driver.stop(&old_spec).await?;
        if new_spec.config.get("bridge.driver") != old_spec.config.get("bridge.driver")
            || new_spec.config.get("ipv4.address") != old_spec.config.get("ipv4.address")
        {
            driver.delete(&old_spec).await?;
            driver.create(&new_spec).await?;
        }
        if record {
            self.shared.network_update(new).await?;
        }
        driver.start(&new_spec).await?;
        Ok(())
    }

    pub(crate) async fn network_list(&self) -> Result<Vec<Network>> {
        let mut users = self.network_users_all().await?;
        let mut out: Vec<Network> = self
            .shared
            .network_list()
            .await?
            .into_iter()
            .map(|row| {
                let used_by = users.remove(&row.name).unwrap_or_default();
                managed_network(row, used_by, &self.location.get())
            })
            .collect();
        for hi in kante_network::list_host_interfaces(self.net.ops.as_ref()).await? {
            if out.iter().any(|n| n.name == hi.name) || hi.name.starts_with("kt") {
                continue;
            }
            let used_by = users.remove(&hi.name).unwrap_or_default();
            out.push(host_network(hi, used_by, &self.location.get()));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) async fn network_get(&self, name: &str) -> Result<Network> {
        if let Some(row) = self.shared.network_get(name).await? {
            let used_by = self.network_users(name).await?;
            let view = self.overlay_view(&row).await;
            let mut net = managed_network(row, used_by, &self.location.get());
            net.overlay = view;
            return Ok(net);
        }
        let hi = kante_network::list_host_interfaces(self.net.ops.as_ref())
            .await?
            .into_iter()
            .find(|hi| hi.name == name && !hi.name.starts_with("kt"))
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        let used_by = self.network_users(name).await?;
        Ok(host_network(hi, used_by, &self.location.get()))
    }

    pub(crate) async fn network_state(&self, name: &str) -> Result<NetworkState> {
        let link = self
            .net
            .ops
            .link(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        let addresses = self
            .net
            .ops
            .addresses(name)
            .await?
            .into_iter()
            .map(|a| {
                let ip = a.addr();
                let scope = match ip {
                    IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "link",
                    _ if ip.is_loopback() => "local",
                    _ => "global",
                };
                NetworkStateAddress {
                    family: if ip.is_ipv4() {
                        "inet".into()
                    } else {
                        "inet6".into()
                    },
                    address: ip.to_string(),
                    netmask: a.prefix_len().to_string(),
                    scope: scope.into(),
                }
            })
            .collect();
        Ok(NetworkState {
            addresses,
            counters: NetworkStateCounters {
                bytes_received: link.stats.rx_bytes as i64,
                bytes_sent: link.stats.tx_bytes as i64,
                packets_received: link.stats.rx_packets as i64,
                packets_sent: link.stats.tx_packets as i64,
            },
            hwaddr: link.hwaddr.unwrap_or_default(),
            mtu: link.mtu as i64,
            state: if link.up { "up".into() } else { "down".into() },
            kind: if link.loopback {
                "loopback".into()
            } else {
                "broadcast".into()
            },
            overlay: self.overlay_view_of(name).await,
        })
    }

    pub(crate) async fn network_leases(&self, name: &str) -> Result<Vec<NetworkLease>> {
        let row = self
            .shared
            .network_get(name)
            .await?
            .ok_or_else(|| EngineError::NotFound("Network not found".into()))?;
        let driver = driver_for(&row.kind, &self.net)?;
        let leases = driver.leases(&self.network_spec(&row))?;
        // Instances with a static address on this network are listed as such.
        let mut statics: BTreeMap<String, String> = BTreeMap::new();
        for (i, expanded) in self.instances_expanded().await? {
            let devices = expanded.map(|(_, d)| d).unwrap_or_default();
            for (dev, d) in crate::devices::nics(&devices)
                .filter(|(_, d)| d.get("network").map(String::as_str) == Some(name))
            {
                if d.contains_key("ipv4.address") {
                    if let Some(mac) = d
                        .get("hwaddr")
                        .or_else(|| i.config.get(&format!("volatile.{dev}.hwaddr")))
                    {
                        statics.insert(mac.to_lowercase(), i.name.clone());
                    }
                }
            }
        }
        Ok(leases
            .into_iter()
            .map(|l| {
                let hwaddr = l.hwaddr.map(|m| m.to_string()).unwrap_or_default();
                let kind = if statics.contains_key(&hwaddr.to_lowercase()) {
                    "static"
                } else {
                    "dynamic"
                };
                NetworkLease {
                    hostname: l.hostname.unwrap_or_default(),
                    hwaddr,
                    address: l.address.to_string(),
                    kind: kind.into(),
                    location: self.location.get(),
                }
            })
            .collect())
    }

    /// Plans the `nic` devices of an instance: resolves each parent and
    /// checks names, MACs and addresses. Nothing is made.
    pub(crate) async fn plan_instance_nics(
        &self,
        instance: &str,
        devices: &DevicesMap,
        config: &ConfigMap,
    ) -> Result<Vec<NicPlan>> {
        let cx = crate::devices::StartCx {
            engine: self,
            devices,
            config,
            privileged: false,
        };
        let mut plan = self.start_devices(&cx, |_, d| d.nic().is_some()).await?;
        self.overlay_nic_holds(instance, &mut plan.nics, false)
            .await?;
        self.plan_nic_requests(instance, &plan.nics)
    }

    /// Plans NICs together: names, MACs and host names unique across them.
    pub(crate) fn plan_nic_requests(
        &self,
        instance: &str,
        requests: &[NicRequest],
    ) -> Result<Vec<NicPlan>> {
        Ok(kante_network::plan_nics(
            &self.paths.cgroup_prefix(),
            instance,
            requests,
        )?)
    }

    /// Gives every NIC without a MAC a stable `volatile.<dev>.hwaddr` (LXD's
    /// 00:16:3e range), so re-creations and restarts keep their leases.
    pub(crate) fn assign_hwaddrs(devices: &DevicesMap, config: &mut ConfigMap) {
        for (dev, d) in crate::devices::nics(devices) {
            let key = format!("volatile.{dev}.hwaddr");
            if !d.contains_key("hwaddr") && !config.contains_key(&key) {
                config.insert(key, crate::util::random_hwaddr());
            }
        }
    }
}

/// The type of cluster overlay networks (kante-network's `overlay.rs`).
pub(crate) const OVERLAY: &str = "overlay";

/// A cluster network defined on some members only (`create --target`).
pub(crate) const STATUS_PENDING: &str = "Pending";
/// A cluster network whose create did not reach every member.
pub(crate) const STATUS_ERRORED: &str = "Errored";
/// A network made (standalone networks are always).
pub(crate) const STATUS_CREATED: &str = "Created";

/// The keys that differ per member in a cluster (LXD's
/// `NodeSpecificNetworkConfig`): given with `--target`, never globally.
pub(crate) const MEMBER_KEYS: &[&str] = &[
    "bgp.ipv4.nexthop",
    "bgp.ipv6.nexthop",
    "bridge.external_interfaces",
    "parent",
];

/// `row`'s global keys with `member`'s own merged over them.
pub(crate) fn member_config(row: &NetworkRow, member: &str) -> ConfigMap {
    let mut config = row.config.clone();
    if let Some(own) = row.members.get(member) {
        config.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    config
}

/// A managed network as the API shows it: its global keys (`config`, the
/// record's; a member's view merges that member's keys over them).
pub(crate) fn managed_network(row: NetworkRow, used_by: Vec<String>, location: &str) -> Network {
    let locations = if row.members.is_empty() {
        vec![location.into()]
    } else {
        row.members.keys().cloned().collect()
    };
    Network {
        used_by,
        name: row.name,
        description: row.description,
        kind: row.kind,
        managed: true,
        status: if row.status.is_empty() {
            STATUS_CREATED.into()
        } else {
            row.status
        },
        config: row.config,
        locations,
        overlay: None,
    }
}

/// A host interface as LXD lists it: unmanaged, typed by its kind.
fn host_network(hi: kante_network::HostInterface, used_by: Vec<String>, location: &str) -> Network {
    Network {
        used_by,
        kind: format!("{:?}", hi.kind).to_lowercase(),
        name: hi.name,
        managed: false,
        locations: vec![location.into()],
        ..Default::default()
    }
}
