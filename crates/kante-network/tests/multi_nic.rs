//! Several NICs in one namespace, on three bridges (one managed network, two
//! plain Linux bridges), and macvlan NICs between two namespaces.

mod common;

use std::sync::Arc;

use common::*;
use kante_network::driver::NetworkSpec;
use kante_network::nic::{plan_nics, resolve_parent, NicRequest};
use kante_network::{driver_for, nft, pick_free_ipv4, NetContext, NetOps, NetworkError, RtNetlink};

fn cfg(pairs: &[(&str, &str)]) -> kante_network::ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn three_named_nics_on_three_bridges() {
    let Some(_serial) = setup() else { return };
    let tag = tag();
    let mut host_names = Vec::new();
    {
        let mut ends = HostEnds::default();
        let work = open_tempdir(&tag);
        let ops = Arc::new(RtNetlink::new().unwrap());
        let ctx = NetContext::new(ops.clone(), kante_network::Ovs::system());
        let mgmt = format!("{tag}m0");
        let spec = NetworkSpec {
            name: mgmt.clone(),
            kind: "bridge".into(),
            config: cfg(&[("ipv4.address", &pick_free_ipv4(&[]).unwrap().to_string())]),
            state_dir: work.path().join(&mgmt),
            daemon_prefix: format!("{tag}_"),
        };
        let _net_guard = NetworkGuard {
            name: mgmt.clone(),
            state_dir: spec.state_dir.clone(),
            table: nft::table_name(&spec.daemon_prefix, &mgmt).unwrap(),
            ovs_db: None,
        };
        let driver = driver_for("bridge", &ctx).unwrap();
        driver.create(&spec).await.unwrap();
        let (public, sip) = (format!("{tag}p0"), format!("{tag}s0"));
        let _g1 = LinkGuard(public.clone());
        let _g2 = LinkGuard(sip.clone());
        ops.create_bridge(&public, None).await.unwrap();
        ops.create_bridge(&sip, Some(1400)).await.unwrap();

        let ns = Netns::new(&format!("{tag}c1"));
        let inst = format!("{tag}c1");
        let devices = [
            ("mgmt", cfg(&[("network", &mgmt), ("name", "if-mgmt")])),
            (
                "public",
                cfg(&[
                    ("nictype", "bridged"),
                    ("parent", &public),
                    ("name", "if-public"),
                ]),
            ),
            (
                "sip",
                cfg(&[("nictype", "bridged"), ("parent", &sip), ("name", "if-sip")]),
            ),
        ];
        let mut reqs = Vec::new();
        for (i, (dev, c)) in devices.iter().enumerate() {
            reqs.push(NicRequest {
                device: dev.to_string(),
                config: c.clone(),
                parent: resolve_parent(&ctx, c, std::slice::from_ref(&spec))
                    .await
                    .unwrap(),
                default_name: format!("eth{i}"),
                volatile_hwaddr: None,
            });
        }
        let plans = plan_nics(&tag, &inst, &reqs).unwrap();
        for p in &plans {
            let a = p.apply(&ctx, &ns.nsref()).await.unwrap();
            host_names.extend(a.host_name);
            ends.track(&host_names);
        }
        assert_eq!(ns.links(), vec!["if-mgmt", "if-public", "if-sip", "lo"]);
        // The MTU of a plain bridge is inherited when the NIC sets none.
        let sip_link = ns.must(&["ip", "link", "show", "if-sip"]);
        assert!(sip_link.contains("mtu 1400"), "{sip_link}");
        for ((p, br), host) in plans.iter().zip([&mgmt, &public, &sip]).zip(&host_names) {
            let host = ops.link(host).await.unwrap().unwrap();
            let bridge = ops.link(br).await.unwrap().unwrap();
            assert_eq!(host.master, Some(bridge.index), "{} on {br}", p.name);
            let shown = ns.must(&["ip", "link", "show", &p.name]);
            assert!(shown.contains(&p.hwaddr.to_string()), "{shown}");
        }

        // A fourth NIC reusing a name is refused before anything is made.
        let mut dup = reqs.clone();
        dup.push(NicRequest {
            device: "dup".into(),
            config: cfg(&[
                ("nictype", "bridged"),
                ("parent", &public),
                ("name", "if-sip"),
            ]),
            parent: reqs[1].parent.clone(),
            default_name: "eth3".into(),
            volatile_hwaddr: None,
        });
        assert!(matches!(
            plan_nics(&tag, &inst, &dup),
            Err(NetworkError::InvalidDevice(_))
        ));

        for p in &plans {
            p.remove(&ctx, true).await.unwrap();
        }
        assert_eq!(
            ns.links(),
            vec!["lo"],
            "removing the host ends took the NICs away"
        );
        driver.delete(&spec).await.unwrap();
    }
    assert_no_leaks(&tag, &host_names);
}

#[tokio::test]
async fn macvlan_bridge_mode_between_namespaces() {
    let Some(_serial) = setup() else { return };
    let tag = tag();
    {
        let ops = Arc::new(RtNetlink::new().unwrap());
        let ctx = NetContext::new(ops.clone(), kante_network::Ovs::system());
        // A dummy parent if the kernel has one, else one end of a veth pair
        // (macvlan needs an Ethernet parent with carrier; nothing leaves it).
        let parent = format!("{tag}d0");
        let _g = LinkGuard(parent.clone());
        if sh(&["ip", "link", "add", &parent, "type", "dummy"])
            .status
            .success()
        {
            eprintln!("macvlan parent: dummy {parent}");
        } else {
            let peer = format!("{tag}d1");
            must(&[
                "ip", "link", "add", &parent, "type", "veth", "peer", "name", &peer,
            ]);
            must(&["ip", "link", "set", &peer, "up"]);
            eprintln!("no dummy links in this kernel: macvlan parent is veth {parent}");
        }
        must(&["ip", "link", "set", &parent, "up"]);

        // Through a managed macvlan network for one, a plain parent for the other.
        let net = NetworkSpec {
            name: format!("{tag}mv"),
            kind: "macvlan".into(),
            config: cfg(&[("parent", &parent)]),
            state_dir: std::env::temp_dir().join(format!("kante-net-{tag}-mv")),
            daemon_prefix: format!("{tag}_"),
        };
        driver_for("macvlan", &ctx)
            .unwrap()
            .create(&net)
            .await
            .unwrap();
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        let ca = cfg(&[("network", &net.name)]);
        let cb = cfg(&[
            ("nictype", "macvlan"),
            ("parent", &parent),
            ("mode", "bridge"),
        ]);
        for (ns, c) in [(&a, &ca), (&b, &cb)] {
            let req = NicRequest {
                device: "eth0".into(),
                config: c.clone(),
                parent: resolve_parent(&ctx, c, std::slice::from_ref(&net))
                    .await
                    .unwrap(),
                default_name: "eth0".into(),
                volatile_hwaddr: None,
            };
            let plan = plan_nics(&tag, &ns.name, &[req]).unwrap().remove(0);
            let applied = plan.apply(&ctx, &ns.nsref()).await.unwrap();
            assert_eq!(applied.host_name, None);
            let shown = ns.must(&["ip", "-d", "link", "show", "eth0"]);
            assert!(shown.contains("macvlan mode bridge"), "{shown}");
            assert!(shown.contains(&plan.hwaddr.to_string()), "{shown}");
        }
        // Addresses from the documentation range exist only in these namespaces.
        a.must(&["ip", "addr", "add", "198.51.100.1/24", "dev", "eth0"]);
        b.must(&["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"]);
        a.must(&["ip", "link", "set", "eth0", "up"]);
        b.must(&["ip", "link", "set", "eth0", "up"]);
        assert!(a.ping("198.51.100.2"), "macvlan a -> b");
        assert!(b.ping("198.51.100.1"), "macvlan b -> a");

        // vlan=N needs 802.1Q in the kernel: made, or refused clearly.
        let cv = cfg(&[
            ("nictype", "macvlan"),
            ("parent", &parent),
            ("vlan", "7"),
            ("name", "eth1"),
        ]);
        let req = NicRequest {
            device: "eth1".into(),
            config: cv.clone(),
            parent: resolve_parent(&ctx, &cv, &[]).await.unwrap(),
            default_name: "eth1".into(),
            volatile_hwaddr: None,
        };
        let plan = plan_nics(&tag, &a.name, &[req]).unwrap().remove(0);
        let _vg = LinkGuard(format!("{parent}.7"));
        match plan.apply(&ctx, &a.nsref()).await {
            Ok(applied) => {
                assert_eq!(
                    applied.vlan_parent.as_deref(),
                    Some(format!("{parent}.7").as_str())
                );
                eprintln!("VLAN sub-interface {parent}.7 made");
            }
            Err(NetworkError::Unsupported(m)) => eprintln!("vlan refused as expected here: {m}"),
            Err(e) => panic!("unexpected vlan error: {e}"),
        }
        // Missing parents are refused before anything is made.
        let cm = cfg(&[("nictype", "macvlan"), ("parent", "ktnoparent0")]);
        let req = NicRequest {
            device: "eth0".into(),
            config: cm.clone(),
            parent: resolve_parent(&ctx, &cm, &[]).await.unwrap(),
            default_name: "eth0".into(),
            volatile_hwaddr: None,
        };
        let e = plan_nics(&tag, &a.name, &[req]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        driver_for("macvlan", &ctx)
            .unwrap()
            .delete(&net)
            .await
            .unwrap();
    }
    assert_no_leaks(&tag, &[]);
}
