//! Overlays on members that were not there when the overlay was created
//! (a member that joined the cluster later, or one left without a number):
//! the member claims a number in the overlay
//! (`network_overlay_slices.rs`) and makes the overlay itself.
//!
//! Where: in the overlay keeper on that member (`network_overlay.rs`),
//! not in the join. The keeper already runs on every member every second,
//! is idempotent and survives etcd being away (a pass that cannot read or
//! write shared state changes nothing and the next one tries again); the
//! join, by contrast, runs once, on a member whose shared state is only
//! being switched to etcd, and a failure there would either fail the join
//! or be forgotten. The keeper also covers a member whose claim or make
//! failed half-way (a crash, an underlay without the needed interface, a
//! missing `wireguard-go`): it is retried, with a growing pause
//! ([`JoinBackoff`]), until it holds. With every DHCP slice taken the
//! member still gets the overlay, with DHCP off on its bridge (its guests
//! need static addresses), which is logged.
//!
//! The other members need nothing new: their keepers put every online
//! member in the FDB (plain overlays) or, once its WireGuard key is
//! published and its number recorded, in their WireGuard peers
//! (encrypted ones).
//!
//! A delete marks the record `Errored` before the members delete their
//! parts (`network_cluster.rs`): the keeper makes only `Created`
//! overlays, so it never makes one again that is being deleted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kante_network::overlay::{KEY_SLICE, SLICES};
use kante_network::{driver_for, overlay_wg};
use kante_store::NetworkRow;

use crate::error::{EngineError, Result};
use crate::network::OVERLAY;
use crate::network_overlay_slices::claim_slice;
use crate::Engine;

/// The first pause after a failed join, doubled on each failure up to
/// [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// When each overlay's join may be tried again after a failure.
#[derive(Default)]
pub(crate) struct JoinBackoff(HashMap<String, (Instant, Duration)>);

impl JoinBackoff {
    fn due(&self, network: &str) -> bool {
        self.0
            .get(network)
            .is_none_or(|(at, pause)| at.elapsed() >= *pause)
    }

    /// Records a failure; the pause until the next try.
    fn failed(&mut self, network: &str) -> Duration {
        let pause = match self.0.get(network) {
            Some((_, p)) => (*p * 2).min(BACKOFF_MAX),
            None => BACKOFF_MIN,
        };
        self.0.insert(network.to_string(), (Instant::now(), pause));
        pause
    }

    fn done(&mut self, network: &str) {
        self.0.remove(network);
    }
}

impl Engine {
    /// For the keeper: overlay `row` (`Created`) is not made here or this
    /// member has no number in it: claims one and makes the overlay (see
    /// the module's doc). A member not (or no longer) in the membership
    /// claims nothing.
    pub(crate) async fn overlay_join(&self, row: &NetworkRow, backoff: &mut JoinBackoff) {
        let Some(me) = self.cluster.member_name() else {
            return;
        };
        if !self.cluster.peers().iter().any(|p| p.name == me) {
            return;
        }
        if !backoff.due(&row.name) {
            return;
        }
        match self.overlay_join_once(row, &me).await {
            Ok(()) => backoff.done(&row.name),
            Err(e) => {
                let pause = backoff.failed(&row.name);
                tracing::warn!(
                    network = %row.name,
                    "making the overlay on this member: {e} (tried again in {pause:?})"
                );
            }
        }
    }

    async fn overlay_join_once(&self, row: &NetworkRow, me: &str) -> Result<()> {
        if overlay_wg::encrypted(&row.config)? {
            overlay_wg::check_tools()?;
        }
        let Some(claim) = claim_slice(&*self.shared, &row.name, me).await? else {
            return Ok(());
        };
        if claim.written {
            if claim.dhcp() {
                tracing::info!(network = %row.name, "claimed DHCP slice {}", claim.slice);
            } else {
                tracing::warn!(
                    network = %row.name,
                    "all {SLICES} DHCP slices of the overlay are taken: it is made on this member \
                     with DHCP off (its guests need static addresses); member number {}",
                    claim.slice
                );
            }
        }
        let mut row = row.clone();
        row.members
            .entry(me.to_string())
            .or_default()
            .insert(KEY_SLICE.into(), claim.slice.to_string());
        if let Some(l) = self.net.ops.link(&row.name).await? {
            if l.kind.as_deref() != Some("bridge") {
                return Err(EngineError::Conflict(format!(
                    "An interface named {:?} already exists on the host ({})",
                    row.name,
                    l.kind.unwrap_or_else(|| "device".into())
                )));
            }
        }
        // Start is idempotent: it makes what is missing and applies the
        // slice to a bridge made without one.
        let driver = driver_for(OVERLAY, &self.net)?;
        driver.start(&self.network_spec(&row)).await?;
        tracing::info!(network = %row.name, slice = claim.slice, "overlay made on this member");
        Ok(())
    }
}
