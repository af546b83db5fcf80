//! Instance names, and the overlay address holds that go with them, whose
//! instance is gone, collected by the overlay keeper's pass (issues 17,
//! 18): an instance deleted while etcd was away could not give its name
//! (`release_name` fails with the writes) nor its holds up
//! (`overlay_holds_release` fails likewise), and nothing else would: the
//! keeper gives up only holds of instances it has a record of, and a name
//! stayed reserved until the next start.
//!
//! **The rule.** A name is an orphan when it is reserved in the shared
//! state for *this* member (the name's reservation says where an instance
//! is placed: `instance/placement.rs`) and this member has no record of
//! it, complete or pending. Such a name, and every hold of its instance,
//! is given up by this member's keeper once it has looked so on every
//! pass for [`ORPHAN_AFTER`] with a current view of the shared state (not
//! while etcd is away: the cache is then the last view), with the
//! instance's lock free (a creation, a received migration, an import or a
//! rename of that name holds it while its name is reserved ahead of its
//! record), re-checked under that lock (a busy lock or etcd away: tried
//! again [`ORPHAN_AFTER`] later). The name's reservation is given up
//! first, as a compare-and-swap in etcd (not the cache): only if etcd
//! still says the name is this member's are its holds given up after it.
//! (A delete while etcd is away leaves both: `drop_record` gives the name
//! up only after the holds, and at start `release_orphaned_reservations`
//! leaves a name with holds to this collector, so a hold never outlives
//! its name's reservation and the rule finds it.) It runs on every pass of
//! a cluster member, overlays or not.
//!
//! **What it never takes.** A name reserved for another member (the
//! instance lives there, or a moved instance's copy here was deleted
//! after the move), nor a hold whose name is reserved for another member
//! or for nobody. The latter is a move under way: `move_instance` holds
//! the addresses, gives the name up, and the target reserves it again
//! when it records the copy; in between the source still has the instance
//! and no member's name reservation says so, so a member's listing alone
//! could not tell a move from a delete. A target that has reserved the
//! name has a (pending) record of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kante_store::ReservationKind;

use crate::Engine;

const KIND: ReservationKind = ReservationKind::OverlayAddress;

/// How long a name must look orphaned, pass after pass, before it goes.
const ORPHAN_AFTER: Duration = Duration::from_secs(10);

/// The keeper's own memory (not shared): the instances whose names
/// looked orphaned on its last pass, and since when; the holds (key,
/// holder) of instances whose name it gave up that are still to go.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    seen: BTreeMap<String, Instant>,
    left: Vec<(String, String)>,
}

/// The names `names` reserves for member `me` that `recorded` (this
/// member's records) lacks.
fn suspects(
    names: &BTreeMap<String, String>,
    me: &str,
    recorded: &BTreeSet<String>,
) -> BTreeSet<String> {
    names
        .iter()
        .filter(|(n, m)| *m == me && !recorded.contains(*n))
        .map(|(n, _)| n.clone())
        .collect()
}

impl Engine {
    /// The keeper's collection of orphaned names and their holds (see the
    /// module's doc); `seen`: what looked orphaned on its earlier passes.
    pub(crate) async fn overlay_orphans_collect(&self, seen: &mut Orphans) {
        // Only what a current view shows counts: while etcd is away the
        // cache is the last view, and nothing could be given up anyway.
        if self.cluster.view_age().is_some() {
            seen.seen.clear();
            return;
        }
        // Holds of a name given up on an earlier pass: exactly those.
        let left = std::mem::take(&mut seen.left);
        self.overlay_orphans_release(left, &mut seen.left).await;
        let me = self.location.get();
        let kind = ReservationKind::InstanceName;
        let Ok(names) = self.shared.reservations(kind).await else {
            return;
        };
        let Ok(recorded) = self.node.instance_names().await else {
            return;
        };
        let recorded: BTreeSet<String> = recorded.into_iter().collect();
        let now = suspects(&names, &me, &recorded);
        seen.seen.retain(|n, _| now.contains(n));
        for name in now {
            let since = *seen.seen.entry(name.clone()).or_insert_with(Instant::now);
            if since.elapsed() < ORPHAN_AFTER {
                continue;
            }
            match self.overlay_orphan_name(&name, &me).await {
                Some(holds) => {
                    seen.seen.remove(&name);
                    self.overlay_orphans_release(holds, &mut seen.left).await;
                }
                // Not now (a busy lock, etcd away: a frozen etcd may not
                // show in the view): again after ORPHAN_AFTER, not at
                // every pass.
                None => {
                    seen.seen.insert(name, Instant::now());
                }
            }
        }
    }

    /// Gives up the holds (key, holder) `holds`; those that could not be
    /// given up go to `left`.
    async fn overlay_orphans_release(
        &self,
        holds: Vec<(String, String)>,
        left: &mut Vec<(String, String)>,
    ) {
        for (key, holder) in holds {
            match self.shared.release(KIND, &key, &holder).await {
                Ok(true) => tracing::info!(%holder, "address {key} given up: no such instance"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%holder, "giving up {key}: {e}");
                    left.push((key, holder));
                }
            }
        }
    }

    /// Gives up instance `name`'s name if it is still gone (under its
    /// lock) and etcd says the name is `me`'s: then its holds, (key,
    /// holder), to give up; an empty list when there is nothing to do.
    /// `None`: tried again later (a busy lock, an unreachable store).
    async fn overlay_orphan_name(&self, name: &str, me: &str) -> Option<Vec<(String, String)>> {
        let lock = self.instance_lock(name);
        let Ok(_g) = lock.try_lock() else {
            return None;
        };
        match self.node.instance_get(name).await {
            Ok(None) => {}
            Ok(Some(_)) => return Some(Vec::new()),
            Err(_) => return None,
        }
        // Read before the name goes: a new instance may take it after.
        let holds: Vec<(String, String)> = self
            .overlay_holds()
            .await
            .ok()?
            .into_iter()
            .filter(|h| h.instance == name)
            .map(|h| (h.key(), h.holder()))
            .collect();
        // etcd decides: the name is this member's, or nothing is taken.
        match self
            .shared
            .release(ReservationKind::InstanceName, name, me)
            .await
        {
            Ok(true) => {
                tracing::warn!(
                    instance = name,
                    "no such instance here: its name and overlay addresses are given up"
                );
                Some(holds)
            }
            Ok(false) => Some(Vec::new()),
            Err(e) => {
                tracing::warn!(
                    instance = name,
                    "giving up the name of a gone instance: {e}"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_reserved_here_without_a_record_are_orphans() {
        // `moving` (a move under way, its name reserved by nobody) is no
        // name at all here; `bare` has no holds (a delete while etcd was
        // away on a cluster without overlays): its name goes all the same.
        let names = BTreeMap::from([
            ("gone".to_string(), "h1".to_string()),
            ("bare".to_string(), "h1".to_string()),
            ("here".to_string(), "h1".to_string()),
            ("elsewhere".to_string(), "h2".to_string()),
        ]);
        let recorded = BTreeSet::from(["here".to_string()]);
        assert_eq!(
            suspects(&names, "h1", &recorded),
            BTreeSet::from(["bare".to_string(), "gone".to_string()])
        );
        // On h2, `elsewhere` is recorded: nothing.
        let recorded = BTreeSet::from(["elsewhere".to_string()]);
        assert!(suspects(&names, "h2", &recorded).is_empty());
        // A moved instance's copy deleted on h1 after its move to h2
        // (`elsewhere`'s name is h2's): not h1's to take.
        assert!(!suspects(&names, "h1", &BTreeSet::new()).contains("elsewhere"));
    }
}
