//! Cluster overlay networks (`kante network create ov1 --type overlay
//! ipv4.address=10.0.9.1/24`): the create, which allocates the overlay's
//! VNI in shared state (a reservation: of concurrent creates one wins
//! each number), gives each member its number (`overlay.slice`: a DHCP
//! slice for the first eight) and brings the network up on every member
//! (all or nothing), and the keeper that holds every overlay's FDB to the
//! cluster's membership, makes the overlay on a member that came later
//! (`network_overlay_join.rs`), keeps the address holds
//! (`network_overlay_holds.rs`) and collects those of gone instances
//! (`network_overlay_orphans.rs`). The data path itself is kante-network's
//! `overlay.rs`; the delete is the cluster's usual one
//! (`network_cluster.rs`), which frees the VNI and the numbers with the
//! record.

use std::time::Duration;

use kante_api::network::NetworksPost;
use kante_api::ConfigMap;
use kante_network::overlay::{
    self, KEY_LOCAL, KEY_PEERS, KEY_SLICE, KEY_VNI, MAX_MEMBERS, VNI_MAX, VNI_MIN,
};
use kante_network::overlay_wg;
use kante_network::{driver_for, NetworkSpec};
use kante_store::{NetworkRow, ReservationKind, StoreError};

use crate::error::{EngineError, Result};
use crate::forward::forward_of;
use crate::network::{member_config, OVERLAY, STATUS_CREATED, STATUS_ERRORED};
use crate::network_overlay_join::JoinBackoff;
use crate::network_overlay_orphans::Orphans;
use crate::Engine;

/// How long a member may take to make (or undo) an overlay.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the keeper compares the FDBs with the membership.
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// How many free-looking VNIs a create tries before giving up (each lost
/// only to a concurrent create).
const VNI_TRIES: u32 = 64;

impl Engine {
    /// The create of an overlay on every member (see the module's doc).
    /// Refused before anything is made when a key is the cluster's, the
    /// config is wrong, the name or an interface is taken, the gateway
    /// address or asked VNI clashes with another overlay, the subnet
    /// overlaps a bridge network, or a member is offline; if any member
    /// fails, every member's part is undone and the VNI freed.
    pub(crate) async fn overlay_create(&self, post: NetworksPost, me: &str) -> Result<()> {
        for k in [KEY_SLICE, KEY_LOCAL, KEY_PEERS] {
            if post.config.contains_key(k) {
                return Err(EngineError::bad(format!(
                    "Config key {k:?} is worked out by the cluster, not given"
                )));
            }
        }
        let driver = driver_for(OVERLAY, &self.net)?;
        driver.validate(&post.name, &post.config)?;
        if overlay_wg::encrypted(&post.config)? {
            overlay_wg::check_tools()?;
        }
        if self.shared.network_get(&post.name).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "Network {:?} already exists",
                post.name
            )));
        }
        if let Some(l) = self.net.ops.link(&post.name).await? {
            return Err(EngineError::Conflict(format!(
                "An interface named {:?} already exists on the host ({})",
                post.name,
                l.kind.unwrap_or_else(|| "device".into())
            )));
        }
        self.overlay_check_clashes(&post).await?;
        let peers = self.cluster.peers();
        if let Some(p) = peers.iter().find(|p| !p.online && p.name != me) {
            return Err(EngineError::Unavailable(format!(
                "Cluster member {:?} is offline",
                p.name
            )));
        }
        let asked = post.config.get(KEY_VNI).map(|v| v.parse::<u32>());
        let asked = asked
            .transpose()
            .map_err(|_| EngineError::bad("Bad overlay.vni"))?;
        let vni = self.overlay_reserve_vni(&post.name, asked).await?;
        let mut config = post.config.clone();
        config.insert(KEY_VNI.into(), vni.to_string());
        let mut names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
        names.sort();
        let members = names
            .into_iter()
            .take(MAX_MEMBERS as usize)
            .enumerate()
            .map(|(i, n)| (n, ConfigMap::from([(KEY_SLICE.to_string(), i.to_string())])))
            .collect();
        let mut row = NetworkRow {
            name: post.name.clone(),
            kind: OVERLAY.into(),
            description: post.description,
            config,
            members,
            status: STATUS_ERRORED.into(),
        };
        if let Err(e) = self.shared.network_create(&row).await {
            self.overlay_release_vni(&row.name, vni).await;
            return Err(e.into());
        }
        let spec = self.network_spec(&row);
        if let Err(e) = driver.create(&spec).await {
            let _ = driver.delete(&spec).await;
            self.overlay_forget(&row, vni).await;
            return Err(EngineError::bad(format!(
                "Failed creating the network on: {me}: {e}"
            )));
        }
        let others: Vec<_> = peers.into_iter().filter(|p| p.name != me).collect();
        let link = self
            .forwarding
            .link()
            .ok_or_else(|| EngineError::Unavailable("No link to the other members".into()))?;
        let asks = others.iter().map(|p| {
            let body = NetworksPost {
                name: row.name.clone(),
                kind: row.kind.clone(),
                description: row.description.clone(),
                config: member_config(&row, &p.name),
            };
            let link = link.clone();
            async move {
                let body = serde_json::to_value(&body).map_err(|e| e.to_string())?;
                link.send(
                    &forward_of(p),
                    "POST",
                    "/1.0/networks",
                    Some(body),
                    MEMBER_TIMEOUT,
                )
                .await
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", p.name))
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let failed: Vec<String> = answers.iter().filter_map(|r| r.clone().err()).collect();
        if !failed.is_empty() {
            // All or nothing: the members that made it undo it.
            let path = format!("/1.0/networks/{}", row.name);
            for (p, _) in others.iter().zip(&answers).filter(|(_, r)| r.is_ok()) {
                let to = forward_of(p);
                if let Err(e) = link.send(&to, "DELETE", &path, None, MEMBER_TIMEOUT).await {
                    tracing::warn!(network = %row.name, "undoing the overlay on {}: {e}", p.name);
                }
            }
            let _ = driver.delete(&spec).await;
            self.overlay_forget(&row, vni).await;
            return Err(EngineError::bad(format!(
                "Failed creating the network on: {}",
                failed.join("; ")
            )));
        }
        self.network_created(&mut row).await
    }

    /// Another overlay with the same gateway address (a member cannot hold
    /// it on two bridges), or a bridge network whose subnet overlaps (its
    /// routes would mix with the overlay's): a 400.
    async fn overlay_check_clashes(&self, post: &NetworksPost) -> Result<()> {
        let rows = self.shared.network_list().await?;
        for o in rows
            .iter()
            .filter(|o| o.kind == OVERLAY && o.name != post.name)
        {
            let why = overlay::clash(&post.config, &o.config)
                .or_else(|| overlay_wg::clash(&post.config, &o.config));
            if let Some(why) = why {
                return Err(EngineError::bad(format!(
                    "The overlay clashes with overlay {:?}: {why}",
                    o.name
                )));
            }
        }
        let bridges: Vec<NetworkSpec> = self
            .network_specs()
            .await?
            .into_iter()
            .filter(|s| s.kind == "bridge")
            .collect();
        let gateway: ConfigMap = post
            .config
            .iter()
            .filter(|(k, _)| k.as_str() == "ipv4.address")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        kante_network::driver::check_no_overlap(&post.name, &gateway, &bridges)?;
        Ok(())
    }

    /// Takes `asked` (a 400 naming its holder if taken) or the lowest free
    /// VNI from [`VNI_MIN`] for overlay `name`, in shared state.
    async fn overlay_reserve_vni(&self, name: &str, asked: Option<u32>) -> Result<u32> {
        let kind = ReservationKind::Vni;
        if let Some(v) = asked {
            return match self.shared.reserve(kind, &v.to_string(), name).await {
                Ok(()) => Ok(v),
                Err(StoreError::Conflict(_)) => {
                    let holder = self.shared.reservations(kind).await?.remove(&v.to_string());
                    Err(EngineError::bad(format!(
                        "VNI {v} is already used by overlay {:?}",
                        holder.unwrap_or_default()
                    )))
                }
                Err(e) => Err(e.into()),
            };
        }
        let taken = self.shared.reservations(kind).await?;
        let free = (VNI_MIN..=VNI_MAX).filter(|v| !taken.contains_key(&v.to_string()));
        for v in free.take(VNI_TRIES as usize) {
            match self.shared.reserve(kind, &v.to_string(), name).await {
                Ok(()) => return Ok(v),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Unavailable(
            "No free VNI could be reserved (too many concurrent creates)".into(),
        ))
    }

    async fn overlay_release_vni(&self, name: &str, vni: u32) {
        let kind = ReservationKind::Vni;
        if let Err(e) = self.shared.release(kind, &vni.to_string(), name).await {
            tracing::warn!(network = %name, "releasing VNI {vni}: {e}");
        }
    }

    /// Drops a failed create's record and VNI.
    async fn overlay_forget(&self, row: &NetworkRow, vni: u32) {
        if let Err(e) = self.shared.network_delete(&row.name).await {
            tracing::warn!(network = %row.name, "dropping the failed overlay's record: {e}");
        }
        self.overlay_wg_forget(&row.name).await;
        self.overlay_release_vni(&row.name, vni).await;
    }

    /// Starts the task that keeps every overlay's FDB to the membership:
    /// each second, the other online members' underlay addresses (from
    /// the cached membership: a member that joins is added, one that
    /// leaves or whose lease expires is removed; while etcd is away the
    /// last view stays, and with it the data path). Its first pass
    /// rewrites every entry (the kernel's FDB may have changed while no
    /// daemon ran); later ones touch the kernel only on a change.
    pub(crate) fn start_overlay_keeper(&self) {
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut full = true;
            let mut backoff = JoinBackoff::default();
            let mut orphans = Orphans::default();
            loop {
                tokio::time::sleep(KEEP_EVERY).await;
                let Some(engine) = me.upgrade() else { return };
                let Some(name) = engine.cluster.member_name() else {
                    continue;
                };
                engine
                    .overlay_keep(full, &name, &mut backoff, &mut orphans)
                    .await;
                full = false;
            }
        });
    }

    async fn overlay_keep(
        &self,
        full: bool,
        me: &str,
        backoff: &mut JoinBackoff,
        orphans: &mut Orphans,
    ) {
        let Ok(rows) = self.shared.network_list().await else {
            return;
        };
        let encrypted = |r: &NetworkRow| overlay_wg::encrypted(&r.config).unwrap_or(false);
        let keys = if rows.iter().any(|r| r.kind == OVERLAY && encrypted(r)) {
            self.overlay_wg_keys().await
        } else {
            None
        };
        for row in rows.iter().filter(|r| r.kind == OVERLAY) {
            if row.status != STATUS_CREATED && row.status != STATUS_ERRORED {
                continue;
            }
            let mut spec = self.network_spec(row);
            let Ok(vni) = row.config.get(KEY_VNI).map_or(Ok(0), |v| v.parse::<u32>()) else {
                continue;
            };
            let made = match self.net.ops.link(&overlay::device_name(vni)).await {
                Ok(l) => l.is_some(),
                Err(_) => continue,
            };
            // Not made here yet, or made without a number (a member that
            // came later): it joins (`network_overlay_join.rs`). One
            // being created or deleted (not `Created`) is left alone.
            if row.status == STATUS_CREATED && (!made || !row.members.contains_key(me)) {
                self.overlay_join(row, backoff).await;
                continue;
            }
            if !made {
                continue;
            }
            if encrypted(row) {
                // Keys unreadable (etcd away): everything stays as it is.
                let Some(keys) = &keys else { continue };
                self.overlay_wg_prepare(row, &mut spec, keys).await;
            }
            match overlay::sync_peers(&self.net, &spec, full).await {
                Ok((added, removed)) => {
                    for p in added {
                        tracing::info!(network = %row.name, "overlay peer {p} added");
                    }
                    for p in removed {
                        tracing::info!(network = %row.name, "overlay peer {p} removed");
                    }
                }
                Err(e) => tracing::warn!(network = %row.name, "keeping the overlay's FDB: {e}"),
            }
        }
        // Names of gone instances and their holds first (overlays or not:
        // a name whose release failed is collected as well): this pass's
        // hosts files then already lose the holds.
        self.overlay_orphans_collect(orphans).await;
        self.overlay_holds_keep(&self.overlay_dirs(&rows)).await;
    }

    /// Every overlay's name and state directory on this member.
    fn overlay_dirs(&self, rows: &[NetworkRow]) -> Vec<(String, std::path::PathBuf)> {
        rows.iter()
            .filter(|r| r.kind == OVERLAY)
            .map(|r| (r.name.clone(), self.network_spec(r).state_dir))
            .collect()
    }

    /// The keeper's pass over held addresses, now (a NIC's hosts line
    /// just went: a hold on it comes back at once).
    pub(crate) async fn overlay_holds_now(&self) {
        if let Ok(rows) = self.shared.network_list().await {
            self.overlay_holds_keep(&self.overlay_dirs(&rows)).await;
        }
    }
}
