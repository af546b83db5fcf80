//! Open vSwitch with the userspace (netdev) datapath, in a private OVS:
//! a managed network with bridge.driver=openvswitch (gateway on the
//! bridge's internal port, dnsmasq, nft), a namespace plugged in by a NIC
//! plan (TX offload turned off automatically) that gets a lease and serves
//! TCP to the host; a second NIC on an unmanaged OVS bridge; del-port on
//! remove.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use kante_network::driver::NetworkSpec;
use kante_network::nic::{plan_nics, resolve_parent, NicRequest, ResolvedParent};
use kante_network::ovs::tx_offload_in_netns;
use kante_network::{
    driver_for, nft, pick_free_ipv4, Datapath, NetContext, NetOps, PrivateOvs, RtNetlink,
};

fn cfg(pairs: &[(&str, &str)]) -> kante_network::ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn ovs_netdev_bridge_serves_tcp() {
    let Some(_serial) = setup() else { return };
    if !common::prerequisite(
        have("ovs-vswitchd") && have("ovsdb-server"),
        "Open vSwitch (openvswitch-switch)",
    ) {
        return;
    }
    let tag = tag();
    let mut host_names = Vec::new();
    {
        let mut ends = HostEnds::default();
        let work = open_tempdir(&tag);
        let t = Instant::now();
        let mut private = PrivateOvs::start(&work.path().join("ovs")).unwrap();
        eprintln!("private OVS up in {:?}", t.elapsed());
        let ovs = private.ovs();
        let ops = Arc::new(RtNetlink::new().unwrap());
        let ctx = NetContext::new(ops.clone(), ovs.clone());

        let gw = pick_free_ipv4(&[]).unwrap();
        let name = format!("{tag}ov");
        let spec = NetworkSpec {
            name: name.clone(),
            kind: "bridge".into(),
            config: cfg(&[
                ("bridge.driver", "openvswitch"),
                ("ipv4.address", &gw.to_string()),
                ("ipv6.address", "none"),
            ]),
            state_dir: work.path().join(&name),
            daemon_prefix: format!("{tag}_"),
        };
        let _net_guard = NetworkGuard {
            name: name.clone(),
            state_dir: spec.state_dir.clone(),
            table: nft::table_name(&spec.daemon_prefix, &name).unwrap(),
            ovs_db: ovs.db.clone(),
        };
        let driver = driver_for("bridge", &ctx).unwrap();
        driver.create(&spec).await.unwrap();
        assert!(ovs.is_ovs_bridge(&name).await);
        assert!(
            !kante_network::Ovs::with_db(work.path().join("none.sock"))
                .is_ovs_bridge(&name)
                .await
        );
        assert_eq!(ovs.datapath_type(&name).await.unwrap(), Datapath::Netdev);
        let internal = ops
            .link(&name)
            .await
            .unwrap()
            .expect("bridge's internal port");
        eprintln!("OVS internal port {name}: kind {:?}", internal.kind);
        // Starting again changes nothing.
        driver.start(&spec).await.unwrap();

        // An unmanaged netdev OVS bridge too.
        let plain = format!("{tag}op");
        ovs.add_bridge(&plain, Datapath::Netdev).await.unwrap();

        let ns = Netns::new(&format!("{tag}c1"));
        let ns2 = Netns::new(&format!("{tag}c2"));
        let inst = format!("{tag}c1");
        let devs = [
            ("eth0", cfg(&[("network", &name)])),
            (
                "eth1",
                cfg(&[("nictype", "bridged"), ("parent", &plain), ("vlan", "10")]),
            ),
        ];
        let mut reqs = Vec::new();
        for (i, (dev, c)) in devs.iter().enumerate() {
            let parent = resolve_parent(&ctx, c, std::slice::from_ref(&spec))
                .await
                .unwrap();
            if i == 1 {
                assert!(
                    matches!(
                        parent,
                        ResolvedParent::OvsBridge {
                            datapath: Datapath::Netdev,
                            ..
                        }
                    ),
                    "{parent:?}"
                );
            }
            reqs.push(NicRequest {
                device: dev.to_string(),
                config: c.clone(),
                parent,
                default_name: dev.to_string(),
                volatile_hwaddr: None,
            });
        }
        let mut plans = plan_nics(&tag, &inst, &reqs).unwrap();
        let t0 = Instant::now();
        for p in &plans {
            let a = p.apply(&ctx, &ns.nsref()).await.unwrap();
            assert!(a.tx_offload_disabled);
            assert!(
                !tx_offload_in_netns(&ns.nsref(), &p.name).unwrap(),
                "tx off on {}",
                p.name
            );
            host_names.extend(a.host_name);
            ends.track(&host_names);
        }
        let ip = dhcp(&ns, "eth0", work.path());
        eprintln!(
            "OVS netdev: veth creation -> DHCP lease {ip} in {:?}",
            t0.elapsed()
        );
        assert!(gw.contains(&ip));
        // A second instance on the same OVS network.
        let plan2 = plan_nics(&tag, &format!("{tag}c2"), &reqs[..1])
            .unwrap()
            .remove(0);
        let a2 = plan2.apply(&ctx, &ns2.nsref()).await.unwrap();
        host_names.extend(a2.host_name);
        ends.track(&host_names);
        plans.push(plan2);
        let ip2 = dhcp(&ns2, "eth0", work.path());
        let mut ports = ovs.list_ports(&name).await.unwrap();
        ports.sort();
        let mut want = vec![host_names[0].clone(), host_names[2].clone()];
        want.sort();
        assert_eq!(ports, want);
        assert_eq!(
            ovs.list_ports(&plain).await.unwrap(),
            vec![host_names[1].clone()]
        );

        // TCP from the host to an instance over the userspace datapath.
        let to = SocketAddr::new(IpAddr::V4(ip), 7003);
        let server = tcp_echo_server(&ns.nsref(), to);
        let len = 8 << 20;
        let secs = tcp_roundtrip(None, to, len);
        let peer = server.recv().unwrap().unwrap();
        assert_eq!(
            peer.ip(),
            IpAddr::V4(gw.addr()),
            "host reached it from the gateway"
        );
        eprintln!(
            "host <-> netns TCP over OVS netdev: {} MiB echoed in {secs:.3}s",
            len >> 20
        );
        // Instance to instance (veth to veth through OVS): the path that
        // stalls when TX checksum offload stays on.
        let to = SocketAddr::new(IpAddr::V4(ip), 7004);
        let server = tcp_echo_server(&ns.nsref(), to);
        let secs = tcp_roundtrip(Some(&ns2.nsref()), to, len);
        assert_eq!(server.recv().unwrap().unwrap().ip(), IpAddr::V4(ip2));
        eprintln!(
            "netns <-> netns TCP over OVS netdev: {} MiB echoed in {secs:.3}s",
            len >> 20
        );

        for p in &plans {
            p.remove(&ctx, true).await.unwrap();
        }
        assert!(
            ovs.list_ports(&name).await.unwrap().is_empty(),
            "del-port done"
        );
        assert!(ovs.list_ports(&plain).await.unwrap().is_empty());
        for h in &host_names {
            assert!(ops.link(h).await.unwrap().is_none(), "{h} removed");
        }
        ovs.del_bridge(&plain).await.unwrap();
        driver.delete(&spec).await.unwrap();
        assert!(!ovs.is_ovs_bridge(&name).await);
        let pids = private.pids();
        private.stop();
        for pid in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
                    || std::fs::read(format!("/proc/{pid}/cmdline"))
                        .unwrap()
                        .is_empty()
            );
        }
    }
    assert_no_leaks(&tag, &host_names);
}
