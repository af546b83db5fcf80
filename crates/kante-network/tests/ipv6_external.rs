//! IPv6 on a managed bridge (dnsmasq router advertisements, SLAAC in the
//! instance) and `bridge.external_interfaces` (a veth standing for a LAN
//! port, whose far end in a namespace gets DHCP through the bridge).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kante_network::driver::NetworkSpec;
use kante_network::nic::{plan_nics, resolve_parent, NicRequest};
use kante_network::subnet::random_ipv6_ula;
use kante_network::{driver_for, nft, pick_free_ipv4, NetContext, NetOps, RtNetlink};

fn cfg(pairs: &[(&str, &str)]) -> kante_network::ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn ipv6_slaac_and_external_interface() {
    let Some(_serial) = setup() else { return };
    let tag = tag();
    let mut host_names = Vec::new();
    {
        let mut ends = HostEnds::default();
        let work = open_tempdir(&tag);
        let ops = Arc::new(RtNetlink::new().unwrap());
        let ctx = NetContext::new(ops.clone(), kante_network::Ovs::system());
        // The "LAN": a namespace behind a veth whose host end joins the bridge.
        let lan = Netns::new(&format!("{tag}lan"));
        let ext = format!("{tag}x0");
        let _ext_guard = LinkGuard(ext.clone());
        must(&[
            "ip", "link", "add", &ext, "type", "veth", "peer", "name", "eth0", "netns", &lan.name,
        ]);

        let v4 = pick_free_ipv4(&[]).unwrap();
        let v6 = random_ipv6_ula();
        let name = format!("{tag}v6");
        let spec = NetworkSpec {
            name: name.clone(),
            kind: "bridge".into(),
            config: cfg(&[
                ("ipv4.address", &v4.to_string()),
                ("ipv6.address", &v6.to_string()),
                ("bridge.external_interfaces", &ext),
            ]),
            state_dir: work.path().join(&name),
            daemon_prefix: format!("{tag}_"),
        };
        let _net_guard = NetworkGuard {
            name: name.clone(),
            state_dir: spec.state_dir.clone(),
            table: nft::table_name(&spec.daemon_prefix, &name).unwrap(),
            ovs_db: None,
        };
        let driver = driver_for("bridge", &ctx).unwrap();
        driver.create(&spec).await.unwrap();
        let br = ops.link(&name).await.unwrap().unwrap();
        let x = ops.link(&ext).await.unwrap().unwrap();
        assert_eq!(x.master, Some(br.index), "external interface enslaved");
        assert!(x.up);
        assert!(ops
            .addresses(&name)
            .await
            .unwrap()
            .contains(&ipnet::IpNet::V6(v6)));
        // Idempotent with the external interface already attached.
        driver.start(&spec).await.unwrap();

        let lan_ip = dhcp(&lan, "eth0", work.path());
        assert!(v4.contains(&lan_ip), "DHCP through the external interface");

        let c1 = Netns::new(&format!("{tag}c1"));
        let c = cfg(&[("network", &name)]);
        let req = NicRequest {
            device: "eth0".into(),
            config: c.clone(),
            parent: resolve_parent(&ctx, &c, std::slice::from_ref(&spec))
                .await
                .unwrap(),
            default_name: "eth0".into(),
            volatile_hwaddr: None,
        };
        let plan = plan_nics(&tag, &c1.name, &[req]).unwrap().remove(0);
        let a = plan.apply(&ctx, &c1.nsref()).await.unwrap();
        host_names.extend(a.host_name);
        ends.track(&host_names);
        c1.must(&["ip", "link", "set", "eth0", "up"]);
        let t0 = Instant::now();
        let prefix = v6.trunc().addr().segments();
        let slaac = loop {
            // Past duplicate address detection: a tentative address cannot
            // yet be a ping's source.
            let out = c1.must(&[
                "ip",
                "-6",
                "-br",
                "addr",
                "show",
                "dev",
                "eth0",
                "scope",
                "global",
                "-tentative",
            ]);
            let found = out
                .split_whitespace()
                .filter_map(|w| w.split('/').next())
                .find_map(|a| {
                    let a: std::net::Ipv6Addr = a.parse().ok()?;
                    (a.segments()[..4] == prefix[..4]).then_some(a)
                });
            if let Some(a) = found {
                break a;
            }
            // A deadline against a hang, not a speed check: on a loaded
            // 2-core host the router advertisement took over 20 s once.
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "no SLAAC address: {out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!(
            "SLAAC address {slaac} from dnsmasq's RA after {:?}",
            t0.elapsed()
        );
        assert!(c1.ping(&v6.addr().to_string()), "ping6 the gateway");

        plan.remove(&ctx, true).await.unwrap();
        driver.delete(&spec).await.unwrap();
        let x = ops.link(&ext).await.unwrap().unwrap();
        assert_eq!(
            x.master, None,
            "external interface released with the bridge"
        );
    }
    assert_no_leaks(&tag, &host_names);
}
