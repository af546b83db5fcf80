//! Managed native bridge with dnsmasq: DHCP leases in two namespaces
//! standing for containers, a static reservation, lease persistence across
//! namespace re-creation, DNS names, daemon-restart adoption, and cleanup.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use common::*;
use kante_network::driver::NetworkSpec;
use kante_network::nic::{plan_nics, resolve_parent, NicRequest};
use kante_network::{dnsmasq, driver_for, nft, pick_free_ipv4, NetContext, NetOps, RtNetlink};

fn cfg(pairs: &[(&str, &str)]) -> kante_network::ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn managed_bridge_dhcp_dns_and_persistence() {
    let Some(_serial) = setup() else { return };
    let tag = tag();
    let mut host_names = Vec::new();
    {
        let mut ends = HostEnds::default();
        let work = open_tempdir(&tag);
        let ops = Arc::new(RtNetlink::new().unwrap());
        let ctx = NetContext::new(ops.clone(), kante_network::Ovs::system());
        let gw = pick_free_ipv4(&[]).unwrap();
        let bridge = format!("{tag}b0");
        let spec = NetworkSpec {
            name: bridge.clone(),
            kind: "bridge".into(),
            config: cfg(&[
                ("ipv4.address", &gw.to_string()),
                ("ipv6.address", "none"),
                ("dns.domain", "kante"),
            ]),
            state_dir: work.path().join("networks").join(&bridge),
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
        driver.validate(&spec.name, &spec.config).unwrap();
        let status = driver.create(&spec).await.unwrap();
        let first_pid = status.dnsmasq_pid.expect("dnsmasq runs");
        let br = ops.link(&bridge).await.unwrap().expect("bridge exists");
        assert!(br.is_bridge() && br.up);
        assert!(ops
            .addresses(&bridge)
            .await
            .unwrap()
            .contains(&ipnet::IpNet::V4(gw)));
        // dnsmasq dropped to its own user (the state dir is reachable).
        let status_file = std::fs::read_to_string(format!("/proc/{first_pid}/status")).unwrap();
        let uid_line = status_file
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .to_string();
        eprintln!("dnsmasq pid {first_pid} {uid_line}");

        let c1 = Netns::new(&format!("{tag}c1"));
        let c2 = Netns::new(&format!("{tag}c2"));
        let static_ip = Ipv4Addr::from(u32::from(gw.network()) + 50);
        let mac1 = "00:16:3e:6b:74:01";
        let mac2 = "00:16:3e:6b:74:02";
        let networks = vec![spec.clone()];
        let mut plans = Vec::new();
        for (inst, mac, extra) in [
            (format!("{tag}c1"), mac1, Some(static_ip.to_string())),
            (format!("{tag}c2"), mac2, None),
        ] {
            let mut c = cfg(&[("network", &bridge), ("hwaddr", mac)]);
            if let Some(ip) = extra {
                c.insert("ipv4.address".into(), ip);
            }
            let parent = resolve_parent(&ctx, &c, &networks).await.unwrap();
            let req = NicRequest {
                device: "eth0".into(),
                config: c,
                parent,
                default_name: "eth0".into(),
                volatile_hwaddr: None,
            };
            let p = plan_nics(&tag, &inst, &[req]).unwrap().remove(0);
            plans.push(p);
        }
        let t0 = Instant::now();
        let a1 = plans[0].apply(&ctx, &c1.nsref()).await.unwrap();
        let a2 = plans[1].apply(&ctx, &c2.nsref()).await.unwrap();
        host_names.extend(a1.host_name.clone());
        ends.track(&host_names);
        host_names.extend(a2.host_name.clone());
        ends.track(&host_names);
        let created = t0.elapsed();
        // The container ends exist in their namespaces with the planned MACs.
        assert_eq!(c1.links(), vec!["eth0".to_string(), "lo".to_string()]);
        let show = c1.must(&["ip", "-br", "link", "show", "eth0"]);
        assert!(show.contains(mac1), "{show}");
        let host1 = ops
            .link(a1.host_name.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            host1.master,
            Some(br.index),
            "host end enslaved to the bridge"
        );

        let ip1 = dhcp(&c1, "eth0", work.path());
        let lease_time = t0.elapsed();
        let ip2 = dhcp(&c2, "eth0", work.path());
        eprintln!(
            "veth pair creation for 2 NICs: {:?}; first veth -> DHCP lease bound: {:?}",
            created, lease_time
        );
        assert_eq!(ip1, static_ip, "static reservation honoured");
        let range = kante_network::subnet::default_dhcp_range(gw);
        assert!(u32::from(ip2) >= u32::from(range.0) && u32::from(ip2) <= u32::from(range.1));
        assert!(gw.contains(&ip2));

        let leases = driver.leases(&spec).unwrap();
        let find = |mac: &str| {
            leases
                .iter()
                .find(|l| l.hwaddr.map(|m| m.to_string()).as_deref() == Some(mac))
                .cloned()
                .unwrap_or_else(|| panic!("no lease for {mac} in {leases:?}"))
        };
        assert_eq!(find(mac1).address, std::net::IpAddr::V4(ip1));
        assert_eq!(
            find(mac2).hostname.as_deref(),
            Some(format!("{tag}c2").as_str())
        );

        assert!(c1.ping(&ip2.to_string()), "c1 -> c2");
        assert!(c2.ping(&ip1.to_string()), "c2 -> c1");
        assert!(c1.ping(&gw.addr().to_string()), "c1 -> gateway");

        // DNS through dnsmasq at the gateway: <name>.<domain> -> lease.
        let q = c1.exec(&[
            "busybox",
            "nslookup",
            &format!("{tag}c2.kante"),
            &gw.addr().to_string(),
        ]);
        let text = String::from_utf8_lossy(&q.stdout);
        assert!(
            text.contains(&ip2.to_string()),
            "nslookup: {text} {}",
            String::from_utf8_lossy(&q.stderr)
        );
        // Unknown names in the instance domain are answered locally (never
        // forwarded upstream): NXDOMAIN, no address.
        let q = c1.exec(&[
            "busybox",
            "nslookup",
            &format!("{tag}nosuch.kante"),
            &gw.addr().to_string(),
        ]);
        let text =
            String::from_utf8_lossy(&q.stdout).to_string() + &String::from_utf8_lossy(&q.stderr);
        assert!(
            !q.status.success() && text.contains("NXDOMAIN"),
            "local domain stays local: {text}"
        );

        // Same MAC after the namespace is deleted and made again: same address.
        plans[1].remove(&ctx, false).await.unwrap();
        assert!(ops
            .link(a2.host_name.as_deref().unwrap())
            .await
            .unwrap()
            .is_none());
        drop(c2);
        let c2 = Netns::new(&format!("{tag}c2"));
        plans[1].apply(&ctx, &c2.nsref()).await.unwrap();
        assert_eq!(
            dhcp(&c2, "eth0", work.path()),
            ip2,
            "lease persisted for the MAC"
        );

        // Daemon restart: the context (and its dnsmasq handle) is lost while
        // dnsmasq keeps running; a new context's start replaces it.
        drop(driver);
        drop(ctx);
        assert!(dnsmasq::running_pid(&spec.state_dir) == Some(first_pid));
        let before = nft::list_table(&table).await.unwrap().expect("table");
        let ctx = NetContext::new(ops.clone(), kante_network::Ovs::system());
        let driver = driver_for("bridge", &ctx).unwrap();
        let status = driver.start(&spec).await.unwrap();
        let new_pid = status.dnsmasq_pid.unwrap();
        assert_ne!(new_pid, first_pid);
        assert!(
            !std::path::Path::new(&format!("/proc/{first_pid}/cmdline")).exists()
                || std::fs::read(format!("/proc/{first_pid}/cmdline"))
                    .unwrap()
                    .is_empty()
        );
        assert_eq!(
            nft::list_table(&table).await.unwrap().unwrap(),
            before,
            "no duplicate rules"
        );
        let v4: Vec<_> = ops
            .addresses(&bridge)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.addr().is_ipv4())
            .collect();
        assert_eq!(v4, vec![ipnet::IpNet::V4(gw)], "address not duplicated");
        // The restarted dnsmasq hands out the same addresses (lease file).
        assert_eq!(dhcp(&c1, "eth0", work.path()), ip1);
        assert_eq!(dhcp(&c2, "eth0", work.path()), ip2);

        // Deleting the device for good drops its reservation (SIGHUP).
        plans[0].remove(&ctx, true).await.unwrap();
        let hosts = std::fs::read_to_string(spec.state_dir.join("dnsmasq.hosts")).unwrap();
        assert!(!hosts.contains(mac1) && hosts.contains(mac2), "{hosts}");

        plans[1].remove(&ctx, true).await.unwrap();
        driver.delete(&spec).await.unwrap();
        assert!(ops.link(&bridge).await.unwrap().is_none(), "bridge gone");
        assert!(
            nft::list_table(&table).await.unwrap().is_none(),
            "table gone"
        );
        assert!(!spec.state_dir.exists(), "state dir gone");
        let comm = std::fs::read(format!("/proc/{new_pid}/cmdline")).unwrap_or_default();
        assert!(comm.is_empty(), "dnsmasq {new_pid} still running");
    }
    assert_no_leaks(&tag, &host_names);
}
