//! A member's number in an overlay (its `overlay.slice` in the record's
//! `members` map), for members that come after the create
//! (`network_overlay_join.rs`), over shared state alone.
//!
//! The claim ([`claim_slice`]): a claimer takes the lowest number nobody's
//! entry shows by a reservation in shared state (kind `ovslice`, key
//! `<network>/<number>`, holder the member): a compare-and-swap on
//! absence, so of two concurrent claimers of one number exactly one wins
//! and the other goes on to the next. Only then is the entry written into
//! the record (a claimer that finds a reservation of its own, from a pass
//! that stopped before that write or whose write a concurrent rewrite of
//! `members` undid, writes that number). The create's members hold their
//! numbers by the record alone: nobody claims before the overlay is
//! `Created`. Numbers below [`SLICES`] carry a DHCP slice; past them (all
//! slices taken) the member's bridge has DHCP off.
//!
//! A member removed from the cluster gives its numbers back
//! ([`release_member`], from `cluster remove`): its entry in each
//! overlay's record, its slice reservations and its published keys go,
//! so a later joiner can reuse the number. An overlay's delete drops its
//! reservations ([`forget_slices`]).

use kante_network::overlay::{KEY_SLICE, MAX_MEMBERS, SLICES};
use kante_store::{NetworkRow, ReservationKind, SharedState, StoreError};

use crate::error::{EngineError, Result};
use crate::network::OVERLAY;

const KIND: ReservationKind = ReservationKind::OverlaySlice;

/// A member's number in an overlay, as [`claim_slice`] found or took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    pub slice: u32,
    /// Whether this call wrote it into the record (false: it was there).
    pub written: bool,
}

impl Claim {
    /// Whether the number carries a DHCP slice.
    pub fn dhcp(&self) -> bool {
        self.slice < SLICES
    }
}

fn key_of(network: &str, slice: u32) -> String {
    format!("{network}/{slice}")
}

fn slice_of(row: &NetworkRow, member: &str) -> Option<u32> {
    row.members.get(member)?.get(KEY_SLICE)?.parse().ok()
}

/// Finds or takes `member`'s number in overlay `network` (see the
/// module's doc): `None` when there is no such network. A number taken
/// here is reserved before it is recorded; when every number below
/// [`MAX_MEMBERS`] is held, a 503.
pub(crate) async fn claim_slice(
    shared: &dyn SharedState,
    network: &str,
    member: &str,
) -> Result<Option<Claim>> {
    let Some(row) = shared.network_get(network).await? else {
        return Ok(None);
    };
    if let Some(slice) = slice_of(&row, member) {
        return Ok(Some(Claim {
            slice,
            written: false,
        }));
    }
    let prefix = format!("{network}/");
    let reserved = shared.reservations(KIND).await?;
    let mine = reserved
        .iter()
        .filter(|(k, holder)| k.starts_with(&prefix) && holder.as_str() == member)
        .filter_map(|(k, _)| k[prefix.len()..].parse::<u32>().ok())
        .min();
    let slice = match mine {
        Some(s) => s,
        None => take_free(shared, network, member, &row).await?,
    };
    record(shared, network, member, slice).await?;
    Ok(Some(Claim {
        slice,
        written: true,
    }))
}

/// Reserves the lowest number no entry of `row` shows for `member`.
async fn take_free(
    shared: &dyn SharedState,
    network: &str,
    member: &str,
    row: &NetworkRow,
) -> Result<u32> {
    let recorded: Vec<u32> = row
        .members
        .keys()
        .filter_map(|m| slice_of(row, m))
        .collect();
    for s in (0..MAX_MEMBERS).filter(|s| !recorded.contains(s)) {
        match shared.reserve(KIND, &key_of(network, s), member).await {
            Ok(()) => return Ok(s),
            // Another claimer has it (not yet in the record): the next.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Unavailable(format!(
        "Overlay {network:?} has no free member number (at most {MAX_MEMBERS} members)"
    )))
}

/// Writes `member`'s `overlay.slice` into `network`'s record (on a fresh
/// read; a record gone meanwhile gives the number back).
async fn record(shared: &dyn SharedState, network: &str, member: &str, slice: u32) -> Result<()> {
    let Some(mut row) = shared.network_get(network).await? else {
        let _ = shared.release(KIND, &key_of(network, slice), member).await;
        return Ok(());
    };
    row.members
        .entry(member.to_string())
        .or_default()
        .insert(KEY_SLICE.into(), slice.to_string());
    shared.network_update(&row).await?;
    Ok(())
}

/// Gives back everything removed member `member` held in overlays: its
/// entry in each overlay's record, its slice reservations, its published
/// WireGuard keys. Best effort (the member is gone either way): what
/// fails is logged, and the number of overlays whose entry went.
pub(crate) async fn release_member(shared: &dyn SharedState, member: &str) -> usize {
    let mut released = 0;
    match shared.network_list().await {
        Ok(rows) => {
            for mut row in rows.into_iter().filter(|r| r.kind == OVERLAY) {
                if row.members.remove(member).is_none() {
                    continue;
                }
                match shared.network_update(&row).await {
                    Ok(()) => released += 1,
                    Err(e) => {
                        tracing::warn!(network = %row.name, "releasing {member}'s number: {e}")
                    }
                }
            }
        }
        Err(e) => tracing::warn!("releasing {member}'s overlay numbers: {e}"),
    }
    for (kind, holds) in [(KIND, true), (ReservationKind::WgKey, false)] {
        let Ok(all) = shared.reservations(kind).await else {
            tracing::warn!("releasing {member}'s {}s: shared state away", kind.as_str());
            continue;
        };
        let suffix = format!("/{member}");
        for (k, holder) in all {
            // Slices are held by the member; keys are keyed by it.
            let its = if holds {
                holder == member
            } else {
                k.ends_with(&suffix)
            };
            if its {
                if let Err(e) = shared.release(kind, &k, &holder).await {
                    tracing::warn!("releasing {} {k}: {e}", kind.as_str());
                }
            }
        }
    }
    released
}

/// Drops every slice reservation of overlay `name` (its delete).
pub(crate) async fn forget_slices(shared: &dyn SharedState, name: &str) {
    let Ok(all) = shared.reservations(KIND).await else {
        tracing::warn!(network = %name, "slice reservations not released: shared state away");
        return;
    };
    let prefix = format!("{name}/");
    for (k, holder) in all.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        if let Err(e) = shared.release(KIND, k, holder).await {
            tracing::warn!(network = %name, "releasing {k}: {e}");
        }
    }
}
