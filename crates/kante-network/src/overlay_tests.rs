//! Unit tests of the overlay driver (`overlay.rs`): DHCP slices, keys,
//! the L2 table and the FDB kept to the membership.

use super::*;
use crate::{FakeNetOps, Ovs};
use std::path::PathBuf;

fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn slices_cut_the_ranges_without_overlap() {
    let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let r = vec![(a("10.0.9.2"), a("10.0.9.254"))];
    // 253 addresses in 8 slices: 5 of 32, 3 of 31.
    assert_eq!(
        slice_ranges(&r, 0, 8),
        vec![(a("10.0.9.2"), a("10.0.9.33"))]
    );
    assert_eq!(
        slice_ranges(&r, 1, 8),
        vec![(a("10.0.9.34"), a("10.0.9.65"))]
    );
    assert_eq!(
        slice_ranges(&r, 2, 8),
        vec![(a("10.0.9.66"), a("10.0.9.97"))]
    );
    assert_eq!(
        slice_ranges(&r, 7, 8),
        vec![(a("10.0.9.224"), a("10.0.9.254"))]
    );
    assert!(slice_ranges(&r, 8, 8).is_empty());
    let mut seen = std::collections::BTreeSet::new();
    let two = vec![
        (a("10.0.0.10"), a("10.0.0.12")),
        (a("10.0.0.20"), a("10.0.0.24")),
    ];
    for s in 0..3 {
        for (lo, hi) in slice_ranges(&two, s, 3) {
            for x in u32::from(lo)..=u32::from(hi) {
                assert!(seen.insert(x), "address {x} in two slices");
            }
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(
        slice_ranges(&two, 1, 3),
        vec![(a("10.0.0.20"), a("10.0.0.22"))]
    );
}

#[test]
fn keys_are_checked() {
    OverlayConfig::parse(&cfg(&[("ipv4.address", "10.0.9.1/24")])).unwrap();
    for (bad, want) in [
        (cfg(&[]), "needs ipv4.address"),
        (cfg(&[("ipv4.address", "auto")]), "explicit gateway"),
        (
            cfg(&[("ipv4.address", "10.0.9.1/24"), ("bridge.mtu", "1400")]),
            "unknown key",
        ),
        (
            cfg(&[("ipv4.address", "10.0.9.1/24"), ("overlay.vni", "0")]),
            "overlay.vni",
        ),
        (
            cfg(&[("ipv4.address", "10.0.9.1/24"), ("overlay.vni", "16777216")]),
            "overlay.vni",
        ),
        (
            cfg(&[("ipv4.address", "10.0.9.1/24"), ("overlay.peers", "h2")]),
            "not an IP",
        ),
    ] {
        let e = OverlayConfig::parse(&bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad:?}: {e}");
    }
}

/// A member numbered past the DHCP slices (all 8 taken) runs its bridge
/// with DHCP off; the number is bounded by the inner /24's hosts.
#[test]
fn members_past_the_slices_have_no_dhcp() {
    let with = |slice: &str| {
        OverlayConfig::parse(&cfg(&[
            ("ipv4.address", "10.0.9.1/24"),
            ("overlay.slice", slice),
        ]))
    };
    let dhcp = |slice: &str| with(slice).unwrap().bridge_config(1450);
    let seven = dhcp("7");
    assert_eq!(
        seven.get("ipv4.dhcp.ranges").unwrap(),
        "10.0.9.224-10.0.9.254"
    );
    assert!(!seven.contains_key("ipv4.dhcp"), "{seven:?}");
    for past in ["8", "253"] {
        let c = dhcp(past);
        assert_eq!(
            c.get("ipv4.dhcp").map(String::as_str),
            Some("false"),
            "{c:?}"
        );
        assert!(!c.contains_key("ipv4.dhcp.ranges"), "{c:?}");
    }
    let e = with("254").unwrap_err().to_string();
    assert!(e.contains("overlay.slice"), "{e}");
}

#[test]
fn the_l2_table_keeps_gateway_and_dhcp_local() {
    let t = render_l2_table("kante_ov1", "kov4096", "10.0.9.1".parse().unwrap());
    assert!(t.contains("arp saddr ip 10.0.9.1 drop"), "{t}");
    assert!(t.contains("arp daddr ip 10.0.9.1 drop"), "{t}");
    assert!(t.contains("udp dport { 67, 68 } drop"), "{t}");
    assert!(t.contains("oifname \"kov4096\" jump keep_local"), "{t}");
    assert!(t.contains("iifname \"kov4096\" jump keep_local"), "{t}");
}

#[tokio::test]
async fn peers_follow_the_membership() {
    let fake = Arc::new(FakeNetOps::new());
    fake.add_link("kov4096", Some("vxlan"));
    let ctx = NetContext::new(fake.clone(), Ovs::system());
    let dir = tempfile::tempdir().unwrap();
    let spec = |peers: &str| NetworkSpec {
        name: "ov1".into(),
        kind: "overlay".into(),
        config: cfg(&[
            ("ipv4.address", "10.0.9.1/24"),
            ("overlay.vni", "4096"),
            ("overlay.local", "192.0.2.1"),
            ("overlay.peers", peers),
        ]),
        state_dir: PathBuf::from(dir.path()),
        daemon_prefix: String::new(),
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (added, removed) = sync_peers(&ctx, &spec("192.0.2.2,192.0.2.3"), false)
        .await
        .unwrap();
    assert_eq!(
        (added, removed),
        (vec![ip("192.0.2.2"), ip("192.0.2.3")], vec![])
    );
    let (added, removed) = sync_peers(&ctx, &spec("192.0.2.3,192.0.2.4"), false)
        .await
        .unwrap();
    assert_eq!(
        (added, removed),
        (vec![ip("192.0.2.4")], vec![ip("192.0.2.2")])
    );
    assert_eq!(
        fake.fdb(),
        vec![
            ("kov4096".to_string(), ip("192.0.2.3")),
            ("kov4096".to_string(), ip("192.0.2.4"))
        ]
    );
    // Unchanged membership: nothing is asked of the kernel.
    let before = fake.calls().len();
    sync_peers(&ctx, &spec("192.0.2.3,192.0.2.4"), false)
        .await
        .unwrap();
    assert_eq!(fake.calls().len(), before);
}
