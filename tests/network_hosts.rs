//! Networking across bridges and hosts, checked from outside: Open vSwitch
//! (userspace datapath) carrying TCP, `init --auto` setting up a default
//! network once, and two hosts (network namespaces, each with its own
//! kanted) whose instances meet on a shared uplink bridge.

use std::process::Command;
use std::time::{Duration, Instant};

use kante_integration::net::*;
use kante_integration::{run, Daemon, TestImage};
use serde_json::{json, Value};

#[test]
fn open_vswitch_userspace_datapath_carries_tcp() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let mut ovs = kante_network::PrivateOvs::start(tmp.path())
            .expect("start ovsdb-server and ovs-vswitchd");
        let db = ovs.ovs().db.unwrap();
        let db_s = db.to_string_lossy().to_string();
        let d = Daemon::start_with_env(&[("KANTE_OVS_DB", &db_s)]).await;
        let fp = d.import(TestImage::Busybox).await;
        let vsctl = |args: &str| sh(&format!("ovs-vsctl --timeout=10 --db=unix:{db_s} {args}"));
        // Seed 000's ovs0, made by the user; this kernel has only the netdev datapath.
        vsctl("add-br knovs0 -- set bridge knovs0 datapath_type=netdev");
        let devs = devices(&[("eth0", nic(&[("nictype", "bridged"), ("parent", "knovs0")]))]);
        for (n, ip) in [("o1", "10.231.0.1"), ("o2", "10.231.0.2")] {
            create(&d, &fp, n, &[], devs.clone(), None).await.unwrap();
            d.client.start_instance(n).await.unwrap();
            let (code, out) = d.sh(n, &format!("ip addr add {ip}/24 dev eth0")).await;
            assert_eq!(code, 0, "{out}");
            // Offload off on the instance side, or TCP stalls on the netdev datapath.
            let pid = d.init_pid(n).await;
            let on = kante_network::ovs::tx_offload_in_netns(
                &kante_network::NetnsRef::Pid(pid as u32),
                "eth0",
            )
            .unwrap();
            assert!(!on, "{n}: tx checksum offload still on");
        }
        let ports = vsctl("list-ports knovs0");
        for n in ["o1", "o2"] {
            let host =
                d.client.instance(n).await.unwrap().config["volatile.eth0.host_name"].clone();
            assert!(ports.lines().any(|p| p == host), "{host} not in {ports}");
        }

        // 256 KiB over TCP from o1 to o2 through the userspace switch. The
        // receiver's stdin stays open: busybox nc closes the socket at stdin EOF.
        let (code, out) = d
            .sh(
                "o2",
                "(sleep 30 | nc -l -p 7000 > /tmp/got 2>/dev/null) >/dev/null 2>&1 & echo started",
            )
            .await;
        assert_eq!(code, 0, "{out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (code, out) = d.sh("o1", "head -c 262144 /dev/urandom > /tmp/sent && nc -w 5 10.231.0.2 7000 < /tmp/sent && md5sum < /tmp/sent").await;
        assert_eq!(code, 0, "{out}");
        let sent = out.split_whitespace().next().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, got) = d.sh("o2", "md5sum < /tmp/got").await;
            if got.split_whitespace().next() == Some(sent.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "o2 received a different stream: {got}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // The host reaches a server in o2 through the bridge's internal port.
        sh("ip addr add 10.231.0.254/24 dev knovs0 && ip link set knovs0 up");
        let (code, out) = d.sh("o2",
            "(sleep 30 | nc -l -p 7001 > /tmp/from-host 2>/dev/null) >/dev/null 2>&1 & echo started",
        )
        .await;
        assert_eq!(code, 0, "{out}");
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut conn = None;
        for _ in 0..50 {
            match std::net::TcpStream::connect_timeout(
                &"10.231.0.2:7001".parse().unwrap(),
                Duration::from_secs(2),
            ) {
                Ok(c) => {
                    conn = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let mut conn = conn.expect("host could not connect to o2 over OVS");
        conn.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        std::io::Write::write_all(&mut conn, &payload).expect("TCP stalled host → o2");
        drop(conn);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, size) = d.sh("o2", "wc -c < /tmp/from-host").await;
            if size.trim() == "200000" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "o2 got {size} of 200000 bytes from the host"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // bridge.driver=openvswitch: a managed network on an OVS bridge, with DHCP.
        network_create(
            &d,
            "ktovsnet",
            json!({"bridge.driver": "openvswitch", "ipv4.address": "auto", "ipv6.address": "none"}),
        )
        .await
        .unwrap();
        assert!(vsctl("list-br").lines().any(|b| b == "ktovsnet"));
        d.client
            .patch_instance("o1", &json!({"devices": {"mgmt": {"type": "nic", "network": "ktovsnet", "name": "eth1"}}}))
            .await
            .unwrap();
        let lease = busybox_dhcp(&d, "o1", "eth1").await;
        let subnet = network_config(&d, "ktovsnet").await["ipv4.address"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            lease.starts_with(subnet.rsplit_once('.').unwrap().0),
            "{lease} not in {subnet}"
        );

        for n in ["o1", "o2"] {
            d.client.stop_instance(n, true, -1).await.unwrap();
            d.client.delete_instance(n).await.unwrap();
        }
        assert_eq!(
            vsctl("list-ports knovs0").trim(),
            "",
            "ports left on knovs0"
        );
        d.client.delete("/1.0/networks/ktovsnet").await.unwrap();
        assert!(!vsctl("list-br").lines().any(|b| b == "ktovsnet"));
        vsctl("del-br knovs0");
        d.shutdown().await;
        // Its two daemons, noted before the stop (which forgets them), are gone.
        let pids = ovs.pids();
        assert_eq!(pids.len(), 2, "ovsdb-server and ovs-vswitchd were running");
        ovs.stop();
        for p in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{p}")).exists(),
                "Open vSwitch process {p} outlived stop()"
            );
        }
    });
}

#[test]
fn init_auto_sets_up_a_default_network_once() {
    run(async {
        let d = Daemon::start().await;
        let kante = |args: &[&str]| {
            let out = Command::new(kante_integration::bin("kante"))
                .args(args)
                .env("KANTE_DIR", &d.dir)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let host_before = sh("ip -o -4 addr");
        let (code, out) = kante(&["init", "--auto", "--network-name", "ktauto0"]);
        assert_eq!(code, 0, "{out}");
        let cfg = network_config(&d, "ktauto0").await;
        let v4 = cfg["ipv4.address"].as_str().unwrap().to_string();
        let net = v4.rsplit_once('.').unwrap().0.to_string();
        assert!(
            !host_before.lines().any(|l| l.contains(&format!(" {net}."))),
            "{v4} collides with a host address:\n{host_before}"
        );
        assert_eq!(cfg["ipv4.nat"], "true");
        let profile: Value = d.client.get_json("/1.0/profiles/default").await.unwrap();
        assert_eq!(profile["devices"]["eth0"]["network"], "ktauto0");
        // Again: nothing changes.
        let (code, out) = kante(&["init", "--auto", "--network-name", "ktauto0"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("already"), "{out}");
        assert_eq!(network_config(&d, "ktauto0").await, cfg);
        let nets: Vec<String> = d.client.get_json("/1.0/networks").await.unwrap();
        assert_eq!(
            nets.iter()
                .filter(|n| n.starts_with("/1.0/networks/ktauto"))
                .count(),
            1
        );
        // A host interface is not taken over.
        let (code, out) = kante(&["init", "--auto", "--network-name", "lo"]);
        assert_ne!(code, 0);
        assert_eq!(out.trim().lines().count(), 1, "one-line error: {out}");
        // An instance launched with the default profile is on it.
        let fp = d.import(TestImage::Busybox).await;
        create(&d, &fp, "a1", &[], Devices::new(), None)
            .await
            .unwrap();
        d.client.start_instance("a1").await.unwrap();
        let host = d.client.instance("a1").await.unwrap().config["volatile.eth0.host_name"].clone();
        assert_eq!(master_of(&host).as_deref(), Some("ktauto0"));
        d.client.stop_instance("a1", true, -1).await.unwrap();
        d.client.delete_instance("a1").await.unwrap();
        let mut p: Value = d.client.get_json("/1.0/profiles/default").await.unwrap();
        p["devices"].as_object_mut().unwrap().remove("eth0");
        d.client.put("/1.0/profiles/default", &p).await.unwrap();
        d.shutdown().await;
    });
}

/// Seed 002's topology: two hosts, each with its own `br-demo` bridge,
/// joined by a shared uplink. Each "host" is a network namespace with its
/// own kanted; containers on the two hosts reach each other at layer 2.
#[test]
fn two_hosts_share_an_uplink_bridge() {
    run(async {
        let hosts = ["knhosta", "knhostb"];
        struct Cleanup;
        impl Drop for Cleanup {
            fn drop(&mut self) {
                for c in [
                    "ip netns del knhosta",
                    "ip netns del knhostb",
                    "ip link del knuplink",
                    "ip link del knupa",
                    "ip link del knupb",
                ] {
                    let mut it = c.split_whitespace();
                    let _ = Command::new(it.next().unwrap()).args(it).status();
                }
            }
        }
        let _cleanup = Cleanup;
        sh("ip link add knuplink type bridge && ip link set knuplink up");
        for (h, up) in hosts.iter().zip(["knupa", "knupb"]) {
            sh(&format!(
                "ip netns add {h} && ip -n {h} link set lo up \
                 && ip -n {h} link add br-demo type bridge && ip -n {h} link set br-demo up \
                 && ip link add {up} type veth peer name uplink netns {h} \
                 && ip link set {up} master knuplink up \
                 && ip -n {h} link set uplink master br-demo up"
            ));
        }
        let mut daemons = Vec::new();
        for h in hosts {
            let ns = format!("/run/netns/{h}");
            daemons.push(Daemon::start_with_env(&[("KANTE_TEST_NETNS", &ns)]).await);
        }
        let devs = devices(&[(
            "eth0",
            nic(&[("nictype", "bridged"), ("parent", "br-demo")]),
        )]);
        for (i, d) in daemons.iter().enumerate() {
            let fp = d.import(TestImage::Busybox).await;
            let name = format!("sip{}", i + 1);
            create(d, &fp, &name, &[], devs.clone(), None)
                .await
                .unwrap();
            d.client.start_instance(&name).await.unwrap();
            let (code, out) = d
                .sh(&name, &format!("ip addr add 10.50.0.{}/24 dev eth0", i + 1))
                .await;
            assert_eq!(code, 0, "{out}");
            // The veth is in that host's namespace, on its br-demo, not in ours.
            let host =
                d.client.instance(&name).await.unwrap().config["volatile.eth0.host_name"].clone();
            assert!(!link_exists(&host), "{host} made in the wrong namespace");
            let master = sh(&format!("ip -n {} -o link show {host}", hosts[i]));
            assert!(master.contains("master br-demo"), "{master}");
        }
        let (code, out) = daemons[0].sh("sip1", "ping -c2 -W3 10.50.0.2").await;
        assert_eq!(code, 0, "sip1 cannot reach sip2 across the uplink: {out}");
        let (code, out) = daemons[1].sh("sip2", "ping -c1 -W3 10.50.0.1").await;
        assert_eq!(code, 0, "{out}");
        for (i, d) in daemons.into_iter().enumerate() {
            let name = format!("sip{}", i + 1);
            d.client.stop_instance(&name, true, -1).await.unwrap();
            d.client.delete_instance(&name).await.unwrap();
            let left = sh(&format!("ip -n {} -o link show type veth", hosts[i]));
            assert_eq!(
                left.lines().count(),
                1,
                "only the uplink veth may remain:\n{left}"
            );
            d.shutdown().await;
        }
    });
}
