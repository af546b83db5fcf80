//! The claim of a member's number in an overlay (`network_overlay_join.rs`)
//! over the engine's own shared state: a joiner takes the first free
//! number and records it, a second call finds it, a number another
//! claimer reserved but has not recorded yet is skipped (and that claimer
//! records its own), concurrent claimers never share a number, past the
//! eight DHCP slices a member gets a number without DHCP, a removed
//! member's number is free again, and an overlay's delete drops its
//! reservations.

use std::collections::BTreeSet;

use kante_api::ConfigMap;
use kante_store::{NetworkRow, ReservationKind, SharedState};

use crate::network_overlay_slices::{claim_slice, forget_slices, release_member, Claim};
use crate::testing::TestHost;

const KIND: ReservationKind = ReservationKind::OverlaySlice;

fn slice(n: u32) -> ConfigMap {
    [("overlay.slice".to_string(), n.to_string())].into()
}

/// Overlay `ov1` recorded with `members` (name, number), as a create
/// leaves it.
async fn overlay(shared: &dyn SharedState, members: &[(&str, u32)]) {
    let row = NetworkRow {
        name: "ov1".into(),
        kind: "overlay".into(),
        config: [
            ("ipv4.address".to_string(), "10.0.9.1/24".to_string()),
            ("overlay.vni".into(), "4096".into()),
        ]
        .into(),
        members: members
            .iter()
            .map(|(m, n)| (m.to_string(), slice(*n)))
            .collect(),
        status: "Created".into(),
        ..Default::default()
    };
    shared.network_create(&row).await.unwrap();
}

async fn recorded(shared: &dyn SharedState, member: &str) -> Option<String> {
    let row = shared.network_get("ov1").await.unwrap().unwrap();
    row.members.get(member)?.get("overlay.slice").cloned()
}

async fn claim(shared: &dyn SharedState, member: &str) -> Claim {
    claim_slice(shared, "ov1", member).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_joiner_claims_the_first_free_number_once() {
    let host = TestHost::new();
    let engine = host.open().await;
    let shared = &*engine.shared;
    assert_eq!(claim_slice(shared, "ov1", "h3").await.unwrap(), None);
    overlay(shared, &[("h1", 0), ("h2", 2)]).await;
    let c = claim(shared, "h3").await;
    assert_eq!((c.slice, c.written, c.dhcp()), (1, true, true));
    assert_eq!(recorded(shared, "h3").await.as_deref(), Some("1"));
    let held = shared.reservations(KIND).await.unwrap();
    assert_eq!(held.get("ov1/1").map(String::as_str), Some("h3"));
    // Again: found in the record, nothing new taken.
    let again = claim(shared, "h3").await;
    assert_eq!((again.slice, again.written), (1, false));
    assert_eq!(shared.reservations(KIND).await.unwrap().len(), 1);
    assert_eq!(claim(shared, "h4").await.slice, 3);
}

#[tokio::test]
async fn a_number_reserved_by_another_claimer_is_skipped() {
    let host = TestHost::new();
    let engine = host.open().await;
    let shared = &*engine.shared;
    overlay(shared, &[("h1", 0)]).await;
    // h5 won number 1 but stopped before recording it.
    shared.reserve(KIND, "ov1/1", "h5").await.unwrap();
    assert_eq!(claim(shared, "h6").await.slice, 2);
    // h5's next pass records the number it holds, takes no other.
    let c = claim(shared, "h5").await;
    assert_eq!((c.slice, c.written), (1, true));
    assert_eq!(recorded(shared, "h5").await.as_deref(), Some("1"));
    let held = shared.reservations(KIND).await.unwrap();
    assert_eq!(held.values().filter(|h| *h == "h5").count(), 1, "{held:?}");
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_number() {
    let host = TestHost::new();
    let engine = host.open().await;
    let shared = &*engine.shared;
    overlay(shared, &[("h1", 0), ("h2", 1)]).await;
    let names = ["j1", "j2", "j3", "j4"];
    let got =
        futures_util::future::join_all(names.iter().map(|m| claim_slice(shared, "ov1", m))).await;
    let numbers: BTreeSet<u32> = got.into_iter().map(|c| c.unwrap().unwrap().slice).collect();
    assert_eq!(numbers, BTreeSet::from([2, 3, 4, 5]));
    // Every claimer's reservation names its own number; each one's
    // record entry, lost or not to another's write, is made good by its
    // next pass.
    let held = shared.reservations(KIND).await.unwrap();
    for m in names {
        let c = claim(shared, m).await;
        assert_eq!(
            held.get(&format!("ov1/{}", c.slice)).map(String::as_str),
            Some(m)
        );
    }
    for m in names {
        assert!(recorded(shared, m).await.is_some(), "{m} not recorded");
    }
}

#[tokio::test]
async fn past_the_dhcp_slices_a_member_gets_a_number_without_dhcp() {
    let host = TestHost::new();
    let engine = host.open().await;
    let shared = &*engine.shared;
    let full: Vec<(String, u32)> = (0..8).map(|i| (format!("h{i}"), i)).collect();
    let full: Vec<(&str, u32)> = full.iter().map(|(m, n)| (m.as_str(), *n)).collect();
    overlay(shared, &full).await;
    let c = claim(shared, "h9").await;
    assert_eq!((c.slice, c.dhcp()), (8, false));
    // A removed member's number is free again (its entry, its
    // reservation, its published WireGuard key), and taken by the next.
    shared
        .reserve(ReservationKind::WgKey, "ov1/h3", "key-of-h3")
        .await
        .unwrap();
    assert_eq!(release_member(shared, "h3").await, 1);
    assert_eq!(recorded(shared, "h3").await, None);
    let keys = shared.reservations(ReservationKind::WgKey).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let c = claim(shared, "h10").await;
    assert_eq!((c.slice, c.dhcp()), (3, true));
    // h9 leaves too: its reservation goes.
    release_member(shared, "h9").await;
    let held = shared.reservations(KIND).await.unwrap();
    assert_eq!(held.keys().collect::<Vec<_>>(), vec!["ov1/3"]);
    // The overlay's delete drops the rest.
    forget_slices(shared, "ov1").await;
    assert!(shared.reservations(KIND).await.unwrap().is_empty());
}
