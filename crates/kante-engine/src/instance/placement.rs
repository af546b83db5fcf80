//! Instance records and their shared reservations, kept in step: an
//! instance's name is reserved in the shared state for the member it is
//! placed on before its record is made here, follows a rename and is given
//! up with the record; the id blocks it holds follow and go with it. The
//! uniqueness of names thus comes from the state (a compare-and-swap), not
//! from a lock of this process.

use kante_store::{InstanceRow, ReservationKind};

use crate::error::Result;
use crate::Engine;

impl Engine {
    /// Reserves `row`'s name for this member, then records it as a pending
    /// creation (see `reconcile.rs`); a taken name is a conflict.
    pub(crate) async fn record_pending(&self, row: &InstanceRow) -> Result<()> {
        self.record(row, true).await
    }

    /// Reserves `row`'s name and records it, complete.
    pub(crate) async fn record_instance(&self, row: &InstanceRow) -> Result<()> {
        self.record(row, false).await
    }

    async fn record(&self, row: &InstanceRow, pending: bool) -> Result<()> {
        let name = &row.name;
        self.shared
            .reserve(ReservationKind::InstanceName, name, &self.location.get())
            .await?;
        let made = if pending {
            self.node.instance_create_pending(row).await
        } else {
            self.node.instance_create(row).await
        };
        if let Err(e) = made {
            self.release_name(name).await;
            return Err(e.into());
        }
        if !pending {
            // Listed here now: the scheduler's claim has done its work.
            self.release_placement_claim(name, &row.config, &self.location.get())
                .await;
        }
        Ok(())
    }

    /// Marks the pending record of `row` complete. Only now is it listed
    /// (listings leave pending records out), so only now may the
    /// scheduler's anti-affinity claim go: given up at the pending record,
    /// a concurrent creation with the same tag saw neither the claim nor
    /// the instance and could pick the same member (the suite saw
    /// `[h1, h2, h2]` for three launches at once).
    pub(crate) async fn record_complete(&self, row: &InstanceRow) -> Result<()> {
        self.node.instance_created(&row.name).await?;
        self.release_placement_claim(&row.name, &row.config, &self.location.get())
            .await;
        Ok(())
    }

    /// Deletes the record of `name` and gives up what it held: its name and
    /// id blocks. False if there was no record.
    pub(crate) async fn drop_record(&self, name: &str) -> Result<bool> {
        let found = self.node.instance_delete(name).await?;
        // Before the name: a copy left by a move (its name held by
        // another member) keeps the moved instance's addresses. Holds not
        // given up (etcd away) keep the name reserved here with them, so
        // the overlay keeper collects both once etcd is back
        // (`network_overlay_orphans.rs`): a hold never outlives its name.
        if self.overlay_holds_release(name).await {
            self.release_name(name).await;
        }
        self.release_id_blocks(name, None).await?;
        Ok(found)
    }

    /// Deletes the record a failed migration left here and gives up the
    /// name it reserved, nothing else: the instance's overlay holds and id
    /// blocks (held by its name, cluster-wide) are its source's, which
    /// still has it. [`Engine::drop_record`] here gave them up, so that a
    /// move within a cluster that failed on the receiving member lost
    /// the moved instance's overlay addresses and id range.
    pub(crate) async fn drop_received_record(&self, name: &str) -> Result<bool> {
        let found = self.node.instance_delete(name).await?;
        self.release_name(name).await;
        Ok(found)
    }

    /// Renames the record of `old`: the new name is reserved first (a
    /// conflict if taken), the old one given up after, id blocks follow.
    pub(crate) async fn rename_record(&self, old: &str, new: &str) -> Result<()> {
        let kind = ReservationKind::InstanceName;
        self.shared.reserve(kind, new, &self.location.get()).await?;
        if let Err(e) = self.node.instance_rename(old, new).await {
            self.release_name(new).await;
            return Err(e.into());
        }
        self.release_name(old).await;
        self.overlay_holds_rename(old, new).await?;
        for (key, holder) in self.shared.reservations(ReservationKind::IdBlock).await? {
            if holder == old {
                self.shared
                    .transfer(ReservationKind::IdBlock, &key, old, new)
                    .await?;
            }
        }
        Ok(())
    }

    /// Gives up what this member reserved for instances that have no record
    /// (a crash between a reservation and its record): names placed here
    /// (but those with overlay address holds), id blocks held by instances
    /// not recorded here. At start, before records are recovered from disk.
    pub(crate) async fn release_orphaned_reservations(&self) {
        let recorded = match self.node.instance_names().await {
            Ok(names) => names,
            Err(e) => {
                tracing::error!("listing instances: {e}");
                return;
            }
        };
        let names = self
            .shared
            .reservations(ReservationKind::InstanceName)
            .await
            .unwrap_or_else(|e| {
                tracing::error!("listing instance names: {e}");
                Default::default()
            });
        let blocks = self
            .shared
            .reservations(ReservationKind::IdBlock)
            .await
            .unwrap_or_else(|e| {
                tracing::error!("listing id blocks: {e}");
                Default::default()
            });
        // A name with overlay address holds is the overlay keeper's to
        // collect with them (`network_overlay_orphans.rs`), once records
        // are recovered: given up here, its holds would outlive it.
        let held: std::collections::BTreeSet<String> = self
            .overlay_holds()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.instance)
            .collect();
        let unrecorded = |name: &String| !recorded.contains(name);
        let mut stale = Vec::new();
        let me = self.location.get();
        for (key, holder) in names.iter() {
            if *holder == me && unrecorded(key) && !held.contains(key) {
                stale.push((ReservationKind::InstanceName, key.clone(), holder.clone()));
            }
        }
        for (key, holder) in blocks {
            // Blocks of instances placed on other members are theirs to mind.
            let elsewhere = names.get(&holder).is_some_and(|m| *m != me);
            if unrecorded(&holder) && !elsewhere {
                stale.push((ReservationKind::IdBlock, key, holder));
            }
        }
        for (kind, key, holder) in stale {
            tracing::warn!(
                kind = kind.as_str(),
                key,
                holder,
                "giving up a reservation with no instance"
            );
            if let Err(e) = self.shared.release(kind, &key, &holder).await {
                tracing::error!(kind = kind.as_str(), key, "giving it up: {e}");
            }
        }
    }

    async fn release_name(&self, name: &str) {
        let kind = ReservationKind::InstanceName;
        if let Err(e) = self.shared.release(kind, name, &self.location.get()).await {
            tracing::warn!(instance = name, "giving up its name's reservation: {e}");
        }
    }

    /// Gives up the id blocks `name` holds, but `keep`.
    pub(crate) async fn release_id_blocks(&self, name: &str, keep: Option<u32>) -> Result<()> {
        let keep = keep.map(|k| k.to_string());
        for (key, holder) in self.shared.reservations(ReservationKind::IdBlock).await? {
            if holder == name && Some(&key) != keep.as_ref() {
                self.shared
                    .release(ReservationKind::IdBlock, &key, name)
                    .await?;
            }
        }
        Ok(())
    }
}
