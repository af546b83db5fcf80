//! Unit tests of NIC planning and of `apply`/`remove` against the fake.

use std::sync::Arc;

use super::*;
use crate::{FakeNetOps, NetContext, NetOps, Ovs};

fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn managed(dir: &std::path::Path) -> ResolvedParent {
    ResolvedParent::ManagedBridge {
        network: "ktbr0".into(),
        backend: BridgeBackend::Native,
        mtu: None,
        ipv4: Some("10.20.30.1/24".parse().unwrap()),
        ipv4_dhcp: true,
        ipv6: None,
        state_dir: dir.to_path_buf(),
    }
}

fn req(device: &str, config: ConfigMap, parent: ResolvedParent) -> NicRequest {
    NicRequest {
        device: device.into(),
        config,
        parent,
        default_name: "eth0".into(),
        volatile_hwaddr: None,
    }
}

fn err_text(r: Result<NicPlan>) -> String {
    let e = r.unwrap_err();
    assert!(e.is_user_error(), "{e}");
    e.to_string()
}

#[test]
fn managed_veth_plan() {
    let dir = tempfile::tempdir().unwrap();
    let r = req(
        "eth0",
        cfg(&[
            ("network", "ktbr0"),
            ("hwaddr", "00:16:3e:01:02:03"),
            ("ipv4.address", "10.20.30.40"),
        ]),
        managed(dir.path()),
    );
    let p = NicPlan::compute("d", "c1", &r).unwrap();
    assert_eq!(p.name, "eth0");
    assert_eq!(p.hwaddr.to_string(), "00:16:3e:01:02:03");
    let NicLink::Veth {
        host_name,
        attach,
        reservation,
    } = &p.link
    else {
        panic!("{p:?}")
    };
    assert_eq!(host_name, &host_veth_name("d", "c1", "eth0"));
    assert_eq!(attach, &Attach::LinuxBridge("ktbr0".into()));
    let res = reservation.as_ref().unwrap();
    assert_eq!(res.entry.ipv4, Some("10.20.30.40".parse().unwrap()));
    assert_eq!(res.entry.name.as_deref(), Some("c1"));
}

#[test]
fn volatile_hwaddr_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = req("eth0", cfg(&[("network", "ktbr0")]), managed(dir.path()));
    r.volatile_hwaddr = Some("00:16:3e:aa:bb:cc".into());
    assert_eq!(
        NicPlan::compute("d", "c1", &r).unwrap().hwaddr.to_string(),
        "00:16:3e:aa:bb:cc"
    );
}

#[test]
fn bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let m = || managed(dir.path());
    let lb = || ResolvedParent::LinuxBridge {
        name: "br0".into(),
        mtu: 1500,
    };
    let cases: Vec<(NicRequest, &str)> = vec![
        (
            req("e", cfg(&[("nictype", "p2p"), ("parent", "x")]), lb()),
            "unknown nictype",
        ),
        (
            req(
                "e",
                cfg(&[("nictype", "bridged"), ("parent", "nope0")]),
                ResolvedParent::Missing("nope0".into()),
            ),
            "does not exist",
        ),
        (
            req(
                "e",
                cfg(&[("nictype", "bridged")]),
                ResolvedParent::Missing(String::new()),
            ),
            "parent is required",
        ),
        (
            req(
                "e",
                cfg(&[("nictype", "bridged"), ("parent", "eth9")]),
                ResolvedParent::HostInterface {
                    name: "eth9".into(),
                    mtu: 1500,
                },
            ),
            "not a bridge",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("hwaddr", "01:16:3e:00:00:01")]),
                m(),
            ),
            "multicast",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("hwaddr", "00:16:3e:00:01")]),
                m(),
            ),
            "hwaddr",
        ),
        (
            req("e", cfg(&[("network", "ktbr0"), ("mtu", "67")]), m()),
            "mtu",
        ),
        (
            req("e", cfg(&[("network", "ktbr0"), ("mtu", "65536")]), m()),
            "mtu",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("ipv4.address", "10.20.31.5")]),
                m(),
            ),
            "outside",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("ipv4.address", "10.20.30.1")]),
                m(),
            ),
            "gateway",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("ipv4.address", "10.20.30.255")]),
                m(),
            ),
            "outside",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("ipv6.address", "fd00::5")]),
                m(),
            ),
            "no IPv6",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("name", "way-too-long-name")]),
                m(),
            ),
            "1 to 15",
        ),
        (
            req("e", cfg(&[("network", "ktbr0"), ("colour", "red")]), m()),
            "unknown key",
        ),
        (
            req("e", cfg(&[("network", "ktbr0"), ("parent", "br0")]), m()),
            "together",
        ),
        (
            req(
                "e",
                cfg(&[("network", "ktbr0"), ("nictype", "macvlan")]),
                m(),
            ),
            "does not match",
        ),
        (
            req(
                "e",
                cfg(&[
                    ("nictype", "bridged"),
                    ("parent", "br0"),
                    ("ipv4.address", "10.0.0.2"),
                ]),
                lb(),
            ),
            "managed",
        ),
        (
            req(
                "e",
                cfg(&[("nictype", "bridged"), ("parent", "br0"), ("mode", "vepa")]),
                lb(),
            ),
            "macvlan",
        ),
        (
            req(
                "e",
                cfg(&[("nictype", "macvlan"), ("parent", "x"), ("mode", "weird")]),
                lb(),
            ),
            "mode",
        ),
        (
            req(
                "e",
                cfg(&[("nictype", "macvlan"), ("parent", "x"), ("vlan", "5000")]),
                lb(),
            ),
            "vlan",
        ),
    ];
    for (i, (r, want)) in cases.into_iter().enumerate() {
        let text = err_text(NicPlan::compute("d", "c1", &r));
        assert!(text.contains(want), "case {i}: {text:?} lacks {want:?}");
    }
    let e = NicPlan::compute(
        "d",
        "c1",
        &req(
            "e",
            cfg(&[("nictype", "bridged"), ("parent", "br0"), ("vlan", "5")]),
            lb(),
        ),
    )
    .unwrap_err();
    assert!(matches!(e, NetworkError::Unsupported(_)), "{e}");
}

#[test]
fn duplicates_between_nics() {
    let dir = tempfile::tempdir().unwrap();
    let a = req(
        "a",
        cfg(&[("network", "ktbr0"), ("name", "if-mgmt")]),
        managed(dir.path()),
    );
    let b = req(
        "b",
        cfg(&[("network", "ktbr0"), ("name", "if-mgmt")]),
        managed(dir.path()),
    );
    let e = plan_nics("d", "c1", &[a.clone(), b]).unwrap_err();
    assert!(e.to_string().contains("used twice"), "{e}");
    let c = req(
        "c",
        cfg(&[
            ("network", "ktbr0"),
            ("name", "if-sip"),
            ("host_name", "ktsame"),
        ]),
        managed(dir.path()),
    );
    let d = req(
        "d",
        cfg(&[
            ("network", "ktbr0"),
            ("name", "if-pub"),
            ("host_name", "ktsame"),
        ]),
        managed(dir.path()),
    );
    assert!(plan_nics("d", "c1", &[c.clone(), d]).is_err());
    let mac = |n: &str, d: &str| {
        req(
            d,
            cfg(&[
                ("network", "ktbr0"),
                ("name", n),
                ("hwaddr", "00:16:3e:00:00:09"),
            ]),
            managed(dir.path()),
        )
    };
    assert!(plan_nics("d", "c1", &[mac("x1", "x1"), mac("x2", "x2")]).is_err());
    assert_eq!(plan_nics("d", "c1", &[a, c]).unwrap().len(), 2);
}

#[test]
fn macvlan_plan() {
    let r = req(
        "eth1",
        cfg(&[
            ("nictype", "macvlan"),
            ("parent", "enp1"),
            ("mode", "vepa"),
            ("vlan", "12"),
        ]),
        ResolvedParent::HostInterface {
            name: "enp1".into(),
            mtu: 1500,
        },
    );
    let p = NicPlan::compute("d", "c1", &r).unwrap();
    assert_eq!(
        p.link,
        NicLink::Macvlan {
            parent: "enp1".into(),
            mode: MacvlanMode::Vepa,
            vlan: Some(12)
        }
    );
    let host = req(
        "eth1",
        cfg(&[
            ("nictype", "macvlan"),
            ("parent", "enp1"),
            ("host_name", "x"),
        ]),
        r.parent.clone(),
    );
    assert!(NicPlan::compute("d", "c1", &host).is_err());
}

#[tokio::test]
async fn resolve_and_apply_with_fake() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeNetOps::new());
    fake.add_link("br0", Some("bridge"));
    fake.add_link("enp1", None);
    // No database at this path: OVS answers "not an OVS bridge".
    let ctx = NetContext::new(fake.clone(), Ovs::with_db(dir.path().join("no.sock")));
    let nets = vec![NetworkSpec {
        name: "ktbr0".into(),
        kind: "bridge".into(),
        config: cfg(&[("ipv4.address", "10.20.30.1/24")]),
        state_dir: dir.path().join("ktbr0"),
        daemon_prefix: String::new(),
    }];
    let bridged = cfg(&[("nictype", "bridged"), ("parent", "br0")]);
    let p = resolve_parent(&ctx, &bridged, &nets).await.unwrap();
    assert_eq!(
        p,
        ResolvedParent::LinuxBridge {
            name: "br0".into(),
            mtu: 1500
        }
    );
    let missing = cfg(&[("nictype", "bridged"), ("parent", "nope0")]);
    assert_eq!(
        resolve_parent(&ctx, &missing, &nets).await.unwrap(),
        ResolvedParent::Missing("nope0".into())
    );
    let unknown_net = cfg(&[("network", "nonet")]);
    assert!(resolve_parent(&ctx, &unknown_net, &nets).await.is_err());

    let net_cfg = cfg(&[("network", "ktbr0"), ("ipv4.address", "10.20.30.9")]);
    let parent = resolve_parent(&ctx, &net_cfg, &nets).await.unwrap();
    fake.add_link("ktbr0", Some("bridge"));
    let plan = NicPlan::compute("d", "c1", &req("eth0", net_cfg, parent)).unwrap();
    let ns = NetnsRef::Pid(4242);
    let applied = plan.apply(&ctx, &ns).await.unwrap();
    let host = applied.host_name.clone().unwrap();
    assert!(host.starts_with("kt") && host.len() == 10);
    assert_eq!(
        fake.foreign(),
        vec![("/proc/4242/ns/net".to_string(), "eth0".to_string())]
    );
    let hosts = std::fs::read_to_string(dir.path().join("ktbr0/dnsmasq.hosts")).unwrap();
    assert_eq!(hosts, format!("{},10.20.30.9,c1\n", plan.hwaddr));
    // Applying again replaces a leftover host end instead of failing.
    plan.apply(&ctx, &ns).await.unwrap();
    assert!(fake
        .calls()
        .iter()
        .any(|c| c == &format!("delete_link {host}")));

    plan.remove(&ctx, false).await.unwrap();
    assert!(fake.link(&host).await.unwrap().is_none());
    assert!(
        std::fs::read_to_string(dir.path().join("ktbr0/dnsmasq.hosts"))
            .unwrap()
            .contains("10.20.30.9")
    );
    plan.remove(&ctx, true).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ktbr0/dnsmasq.hosts")).unwrap(),
        ""
    );
}
