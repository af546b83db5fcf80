//! NAT: a namespace on a managed bridge with ipv4.nat=true reaches a server
//! in another namespace standing for "the outside" (joined to the host by
//! its own veth and route) and is seen from the host's address there. Also
//! DNAT into the bridge, idempotent re-apply, and removal of the table.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use common::*;
use ipnet::{IpNet, Ipv4Net};
use kante_network::driver::NetworkSpec;
use kante_network::nic::{plan_nics, resolve_parent, NicRequest};
use kante_network::{
    driver_for, forward, nft, pick_free_ipv4, NetContext, NetOps, RtNetlink, VethRequest,
};

fn cfg(pairs: &[(&str, &str)]) -> kante_network::ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn host(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

#[tokio::test]
async fn masquerade_dnat_and_reapply() {
    let Some(_serial) = setup() else { return };
    let tag = tag();
    let mut host_names = Vec::new();
    {
        let mut ends = HostEnds::default();
        let _fwd = SysctlGuard::new("/proc/sys/net/ipv4/ip_forward");
        let work = open_tempdir(&tag);
        let ops = Arc::new(RtNetlink::new().unwrap());
        let ctx = NetContext::new(ops.clone(), kante_network::Ovs::system());

        // "The outside": a namespace behind its own veth, with a route.
        let gw = pick_free_ipv4(&[]).unwrap();
        let out_net = pick_free_ipv4(&[gw.trunc()]).unwrap().trunc();
        let outside = Netns::new(&format!("{tag}out"));
        let out_host = format!("{tag}o0");
        let _out_link = LinkGuard(out_host.clone());
        ops.create_veth(&VethRequest {
            host_name: out_host.clone(),
            peer_name: "eth0".into(),
            peer_netns: outside.nsref(),
            peer_hwaddr: None,
            mtu: None,
            master: None,
        })
        .await
        .unwrap();
        let out_host_ip = host(out_net, 1);
        let out_ip = host(out_net, 2);
        ops.add_address(&out_host, IpNet::V4(Ipv4Net::new(out_host_ip, 24).unwrap()))
            .await
            .unwrap();
        outside.must(&["ip", "addr", "add", &format!("{out_ip}/24"), "dev", "eth0"]);
        outside.must(&["ip", "link", "set", "eth0", "up"]);

        let bridge = format!("{tag}n0");
        let spec = NetworkSpec {
            name: bridge.clone(),
            kind: "bridge".into(),
            config: cfg(&[
                ("ipv4.address", &gw.to_string()),
                ("ipv4.nat", "true"),
                ("ipv6.address", "none"),
            ]),
            state_dir: work.path().join(&bridge),
            daemon_prefix: format!("{tag}_"),
        };
        let table = nft::table_name(&spec.daemon_prefix, &bridge).unwrap();
        let _net_guard = NetworkGuard {
            name: bridge.clone(),
            state_dir: spec.state_dir.clone(),
            table: table.clone(),
            ovs_db: None,
        };
        let driver = driver_for("bridge", &ctx).unwrap();
        let status = driver.create(&spec).await.unwrap();
        eprintln!("nft plan: {:?}", status.nft);
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim(),
            "1"
        );
        let listed = nft::list_table(&table)
            .await
            .unwrap()
            .expect("table exists");
        assert!(listed.contains("masquerade"), "{listed}");

        let c1 = Netns::new(&format!("{tag}c1"));
        let c = cfg(&[("network", &bridge)]);
        let parent = resolve_parent(&ctx, &c, std::slice::from_ref(&spec))
            .await
            .unwrap();
        let plan = plan_nics(
            &tag,
            &format!("{tag}c1"),
            &[NicRequest {
                device: "eth0".into(),
                config: c,
                parent,
                default_name: "eth0".into(),
                volatile_hwaddr: None,
            }],
        )
        .unwrap()
        .remove(0);
        let applied = plan.apply(&ctx, &c1.nsref()).await.unwrap();
        host_names.extend(applied.host_name.clone());
        ends.track(&host_names);
        let c1_ip = dhcp(&c1, "eth0", work.path());
        // Only a route to the outside test subnet: nothing can go elsewhere.
        c1.must(&[
            "ip",
            "route",
            "add",
            &out_net.to_string(),
            "via",
            &gw.addr().to_string(),
        ]);

        // Masquerade: the outside sees the host's address on its link.
        let server = tcp_echo_server(&outside.nsref(), SocketAddr::new(IpAddr::V4(out_ip), 7001));
        let secs = tcp_roundtrip(
            Some(&c1.nsref()),
            SocketAddr::new(IpAddr::V4(out_ip), 7001),
            1 << 20,
        );
        let peer = server.recv().unwrap().unwrap();
        eprintln!("c1 {c1_ip} -> outside {out_ip}: seen from {peer}, 1 MiB echoed in {secs:.3}s");
        assert_eq!(peer.ip(), IpAddr::V4(out_host_ip), "source was masqueraded");

        // DNAT (proxy nat=true): outside -> host:8080 -> c1:7002, in a
        // table of its own.
        let fwd_table = forward::forward_table_name(&spec.daemon_prefix, "c1", "web").unwrap();
        let _fwd_guard = TableGuard(fwd_table.clone());
        let ft = forward::ForwardTable {
            table: fwd_table.clone(),
            forwards: vec![forward::PortForward {
                l4: forward::L4::Tcp,
                listen: IpAddr::V4(out_host_ip),
                port: 8080,
                target: IpAddr::V4(c1_ip),
                target_port: 7002,
            }],
            hairpin: vec![IpNet::V4(gw)],
        };
        forward::apply(&ft).await.unwrap();
        // Twice is the same as once.
        forward::apply(&ft).await.unwrap();
        let t = nft::list_table(&fwd_table).await.unwrap().unwrap();
        assert_eq!(t.matches("dnat ip to").count(), 2, "{t}");
        assert_eq!(
            forward::list(&spec.daemon_prefix).await.unwrap(),
            vec![fwd_table.clone()]
        );
        let server = tcp_echo_server(&c1.nsref(), SocketAddr::new(IpAddr::V4(c1_ip), 7002));
        tcp_roundtrip(
            Some(&outside.nsref()),
            SocketAddr::new(IpAddr::V4(out_host_ip), 8080),
            4096,
        );
        let peer = server.recv().unwrap().unwrap();
        assert_eq!(
            peer.ip(),
            IpAddr::V4(out_ip),
            "DNAT keeps the client's address"
        );
        // Hairpin: c1 reaches its own forward through the host's address,
        // masqueraded (from the bridge's address), or the reply would skip
        // the host and the connection would never open. With br_netfilter
        // the DNAT happens on the bridge, which must send the frame back
        // out of c1's port: hairpin mode, as the engine sets it.
        if forward::bridge_netfilter(false) {
            forward::set_hairpin(applied.host_name.as_deref().unwrap()).unwrap();
        }
        let server = tcp_echo_server(&c1.nsref(), SocketAddr::new(IpAddr::V4(c1_ip), 7002));
        tcp_roundtrip(
            Some(&c1.nsref()),
            SocketAddr::new(IpAddr::V4(out_host_ip), 8080),
            4096,
        );
        let peer = server.recv().unwrap().unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(gw.addr()), "hairpin masqueraded");
        // A network re-apply leaves the forward alone.
        driver.start(&spec).await.unwrap();
        assert!(nft::list_table(&fwd_table).await.unwrap().is_some());
        assert!(forward::remove(&fwd_table).await.unwrap());
        assert!(!forward::remove(&fwd_table).await.unwrap());
        assert!(nft::list_table(&fwd_table).await.unwrap().is_none());

        // Re-applying (daemon restart) leaves the table identical.
        let before = nft::list_table(&table).await.unwrap().unwrap();
        driver.start(&spec).await.unwrap();
        driver.start(&spec).await.unwrap();
        assert_eq!(nft::list_table(&table).await.unwrap().unwrap(), before);

        // stop takes the table away; start puts it back.
        driver.stop(&spec).await.unwrap();
        assert!(nft::list_table(&table).await.unwrap().is_none());
        driver.start(&spec).await.unwrap();

        plan.remove(&ctx, true).await.unwrap();
        driver.delete(&spec).await.unwrap();
        assert!(
            nft::list_table(&table).await.unwrap().is_none(),
            "table gone after delete"
        );
        assert!(ops.link(&bridge).await.unwrap().is_none());
    }
    assert_no_leaks(&tag, &host_names);
}
