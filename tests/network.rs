//! Networking, checked from outside: managed bridges with real dnsmasq
//! (DHCP leases, DNS names) and nftables NAT, fixed MACs that keep their
//! lease across re-creation, named multi-NIC instances with hot-plug,
//! unmanaged Linux bridges and macvlan, refused bad input, and teardown
//! that leaves nothing behind. (Open vSwitch, `init --auto` and two hosts
//! on one uplink: `network_hosts.rs`.)

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use kante_integration::net::*;
use kante_integration::{nft_tables_of, processes_mentioning, run, Daemon, TestImage};
use serde_json::{json, Value};

#[test]
fn managed_bridge_gives_leases_dns_names_and_nat() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        network_create(
            &d,
            "ktnet0",
            json!({"ipv4.address": "auto", "ipv4.nat": "true", "ipv6.address": "none", "dns.domain": "ktest"}),
        )
        .await
        .unwrap();
        let cfg = network_config(&d, "ktnet0").await;
        let subnet = cfg["ipv4.address"].as_str().unwrap().to_string();
        assert!(subnet.ends_with("/24"), "auto subnet {subnet}");
        let gw = subnet.trim_end_matches("/24").to_string();
        let prefix = gw.rsplit_once('.').unwrap().0.to_string();
        // The auto subnet is one the host did not use before.
        let host_addrs = sh("ip -o -4 addr");
        let users = host_addrs
            .lines()
            .filter(|l| l.contains(&format!(" {prefix}.")))
            .count();
        assert_eq!(users, 1, "{host_addrs}");
        assert_eq!(master_of("ktnet0"), None, "ktnet0 is a bridge, not a port");
        assert!(std::path::Path::new("/sys/class/net/ktnet0/bridge").exists());

        let eth0 = devices(&[("eth0", nic(&[("network", "ktnet0")]))]);
        for n in ["n1", "n2"] {
            create(&d, &fp, n, &[], eth0.clone(), None).await.unwrap();
            d.client.start_instance(n).await.unwrap();
        }
        let mut addrs = BTreeMap::new();
        for n in ["n1", "n2"] {
            let state = d.wait_systemd(n, Duration::from_secs(60)).await;
            assert!(state == "running" || state == "degraded", "{n}: {state}");
            let a = wait_ipv4(&d, n, "eth0", Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("{n} got no DHCP lease"));
            assert!(
                a.starts_with(&format!("{prefix}.")),
                "{n}: {a} outside {subnet}"
            );
            addrs.insert(n, a);
        }
        assert_ne!(addrs["n1"], addrs["n2"]);

        // The leases the API lists are dnsmasq's, with the instances' names and MACs.
        let leases: Value = d
            .client
            .get_json("/1.0/networks/ktnet0/leases")
            .await
            .unwrap();
        for n in ["n1", "n2"] {
            let mac = d.client.instance(n).await.unwrap().config["volatile.eth0.hwaddr"].clone();
            assert!(mac.starts_with("00:16:3e:"), "{mac}");
            let l = leases
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["hwaddr"] == mac.as_str())
                .unwrap_or_else(|| panic!("no lease for {n} ({mac}) in {leases}"));
            assert_eq!(l["address"], addrs[n].as_str());
            assert_eq!(l["hostname"], n);
        }

        // DNS: n1 resolves n2 by name through the network's dnsmasq, and reaches it.
        let (code, out) = d.sh("n1", "ping -c1 -W3 n2.ktest").await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&addrs["n2"]), "{out}");

        // The host side: veth named in volatile and state, enslaved to the bridge.
        let host_name =
            d.client.instance("n1").await.unwrap().config["volatile.eth0.host_name"].clone();
        assert_eq!(master_of(&host_name).as_deref(), Some("ktnet0"));
        let st = d.client.instance_state("n1").await.unwrap();
        assert_eq!(st.network.unwrap()["eth0"].host_name, host_name);

        // NAT: a namespace outside reaches us from the host's address, not the instance's.
        assert!(
            !host_uses("198.51.100."),
            "198.51.100.0/24 is in use on this host"
        );
        let outside = TestNetns::new("ktnatns", "knatout", "198.51.100.1", "198.51.100.2");
        let peer = outside.accept_one("198.51.100.2:9000".parse().unwrap());
        let (code, out) = d
            .sh("n1", "bash -c 'echo hi > /dev/tcp/198.51.100.2/9000'")
            .await;
        assert_eq!(code, 0, "{out}");
        let peer = peer
            .recv_timeout(Duration::from_secs(10))
            .expect("no connection arrived");
        assert_eq!(peer.ip().to_string(), "198.51.100.1", "not masqueraded");
        drop(outside);

        // The CLI shows the address in `list` (the IPv4 column).
        let list = Command::new(kante_integration::bin("kante"))
            .args(["list", "-c", "n4"])
            .env("KANTE_DIR", &d.dir)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout).into_owned();
        assert!(list.contains(&format!("{} (eth0)", addrs["n1"])), "{list}");

        // In use: the network cannot go.
        let err = d.client.delete("/1.0/networks/ktnet0").await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");

        // Teardown: instance veths, then the bridge, dnsmasq and nft table.
        for n in ["n1", "n2"] {
            d.client.stop_instance(n, true, -1).await.unwrap();
            d.client.delete_instance(n).await.unwrap();
        }
        assert!(!link_exists(&host_name), "{host_name} left after delete");
        assert_eq!(nft_tables_of(&d.cgroup_prefix()).len(), 1);
        d.client.delete("/1.0/networks/ktnet0").await.unwrap();
        assert!(!link_exists("ktnet0"));
        assert!(nft_tables_of(&d.cgroup_prefix()).is_empty());
        let dir = d.dir.to_string_lossy().to_string();
        assert!(processes_mentioning(&dir)
            .iter()
            .all(|p| !p.contains("dnsmasq")));
        d.shutdown().await;
    });
}

#[test]
fn fixed_mac_keeps_its_lease_and_restart_duplicates_nothing() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        network_create(
            &d,
            "ktnet1",
            json!({"ipv4.address": "auto", "ipv6.address": "none"}),
        )
        .await
        .unwrap();
        let eth0 = devices(&[("eth0", nic(&[("network", "ktnet1")]))]);
        let mac = "00:16:3e:4b:00:01";
        create(
            &d,
            &fp,
            "m1",
            &[("volatile.eth0.hwaddr", mac)],
            eth0.clone(),
            None,
        )
        .await
        .unwrap();
        d.client.start_instance("m1").await.unwrap();
        let first = wait_ipv4(&d, "m1", "eth0", Duration::from_secs(60))
            .await
            .expect("m1 lease");
        d.client.stop_instance("m1", true, -1).await.unwrap();
        d.client.delete_instance("m1").await.unwrap();

        // Seed 000: re-created with the same volatile.eth0.hwaddr, it gets its old address.
        create(&d, &fp, "m2", &[("volatile.eth0.hwaddr", mac)], eth0, None)
            .await
            .unwrap();
        d.client.start_instance("m2").await.unwrap();
        let (code, out) = d.sh("m2", "cat /sys/class/net/eth0/address").await;
        assert_eq!((code, out.trim()), (0, mac));
        let second = wait_ipv4(&d, "m2", "eth0", Duration::from_secs(60))
            .await
            .expect("m2 lease");
        assert_eq!(first, second);

        // A daemon restart restores the network without duplicating anything.
        let ruleset = |d: &Daemon| {
            nft_tables_of(&d.cgroup_prefix())
                .iter()
                .map(|t| sh(&format!("nft list {t}")))
                .collect::<Vec<_>>()
        };
        let before = ruleset(&d);
        d.restart().await;
        assert_eq!(ruleset(&d), before);
        let dir = d.dir.to_string_lossy().to_string();
        let dnsmasqs = processes_mentioning(&dir)
            .into_iter()
            .filter(|p| p.contains("dnsmasq"))
            .count();
        assert_eq!(
            dnsmasqs,
            1,
            "{}\n{}\n{:?}",
            d.log_text(),
            std::fs::read_to_string(d.dir.join("networks/ktnet1/dnsmasq.stderr"))
                .unwrap_or_default(),
            processes_mentioning("dnsmasq")
        );
        let (code, out) = d
            .sh(
                "m2",
                "ping -c1 -W3 $(ip route | awk '/default/ {print $3}')",
            )
            .await;
        assert_eq!(code, 0, "gateway unreachable after restart: {out}");
        d.shutdown().await;
    });
}

#[test]
fn named_nics_static_address_and_hotplug() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        for n in ["ktmgmt", "ktpub", "ktsip"] {
            network_create(
                &d,
                n,
                json!({"ipv4.address": "auto", "ipv6.address": "none"}),
            )
            .await
            .unwrap();
        }
        let mgmt = network_config(&d, "ktmgmt").await["ipv4.address"]
            .as_str()
            .unwrap()
            .to_string();
        let prefix = mgmt.rsplit_once('.').unwrap().0.to_string();
        let fixed = format!("{prefix}.50");
        // Seed 002's sipproxy profile: one NIC per segment, named after it.
        d.client
            .post(
                "/1.0/profiles",
                &json!({"name": "sipproxy", "devices": {
                    "mgmt": {"type": "nic", "network": "ktmgmt", "name": "if-mgmt", "ipv4.address": fixed},
                    "public": {"type": "nic", "network": "ktpub", "name": "if-public"},
                    "sip": {"type": "nic", "network": "ktsip", "name": "if-sipcore", "mtu": "1400"}}}),
            )
            .await
            .unwrap();
        create(
            &d,
            &fp,
            "s1",
            &[],
            Devices::new(),
            Some(vec!["default".into(), "sipproxy".into()]),
        )
        .await
        .unwrap();
        d.client.start_instance("s1").await.unwrap();
        let inst = d.client.instance("s1").await.unwrap();
        for (dev, ifname, net) in [
            ("mgmt", "if-mgmt", "ktmgmt"),
            ("public", "if-public", "ktpub"),
            ("sip", "if-sipcore", "ktsip"),
        ] {
            let mac = &inst.config[&format!("volatile.{dev}.hwaddr")];
            let (code, out) = d.sh("s1", &format!("cat /sys/class/net/{ifname}/address /sys/class/net/{ifname}/operstate /sys/class/net/{ifname}/mtu")).await;
            assert_eq!(code, 0, "{ifname} missing: {out}");
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines[0], mac.as_str());
            assert_eq!(lines[1], "up");
            let host = &inst.config[&format!("volatile.{dev}.host_name")];
            assert_eq!(master_of(host).as_deref(), Some(net));
        }
        let (_, mtu) = d.sh("s1", "cat /sys/class/net/if-sipcore/mtu").await;
        assert_eq!(mtu.trim(), "1400");
        // The static reservation is what DHCP hands out.
        assert_eq!(busybox_dhcp(&d, "s1", "if-mgmt").await, fixed);
        let (code, out) = d.sh("s1", &format!("ping -c1 -W3 {prefix}.1")).await;
        assert_eq!(code, 0, "{out}");
        let leases: Value = d
            .client
            .get_json("/1.0/networks/ktmgmt/leases")
            .await
            .unwrap();
        let l = leases
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["address"] == fixed.as_str())
            .expect("lease listed");
        assert_eq!(l["type"], "static");

        // Hot-plug and hot-unplug on the running instance.
        d.client
            .patch_instance(
                "s1",
                &json!({"devices": {"extra": {"type": "nic", "network": "ktpub", "name": "if-x"}}}),
            )
            .await
            .unwrap();
        let host_x =
            d.client.instance("s1").await.unwrap().config["volatile.extra.host_name"].clone();
        assert_eq!(master_of(&host_x).as_deref(), Some("ktpub"));
        busybox_dhcp(&d, "s1", "if-x").await;
        let mut inst = d.client.instance("s1").await.unwrap();
        inst.devices.remove("extra");
        let put = kante_api::instance::InstancePut {
            config: inst.config.clone(),
            devices: inst.devices.clone(),
            profiles: Some(inst.profiles.clone()),
            ..Default::default()
        };
        d.client.update_instance("s1", &put, None).await.unwrap();
        let (code, _) = d.sh("s1", "test -e /sys/class/net/if-x").await;
        assert_ne!(code, 0, "if-x still in the instance");
        assert!(!link_exists(&host_x), "{host_x} left after hot-unplug");
        assert!(!d
            .client
            .instance("s1")
            .await
            .unwrap()
            .config
            .contains_key("volatile.extra.hwaddr"));

        // Stopping takes every host veth down; starting again keeps the MACs.
        let macs: Vec<String> = ["mgmt", "public", "sip"]
            .iter()
            .map(|dev| inst.config[&format!("volatile.{dev}.hwaddr")].clone())
            .collect();
        let hosts: Vec<String> = ["mgmt", "public", "sip"]
            .iter()
            .map(|dev| inst.config[&format!("volatile.{dev}.host_name")].clone())
            .collect();
        d.client.stop_instance("s1", true, -1).await.unwrap();
        for h in &hosts {
            assert!(!link_exists(h), "{h} left after stop");
        }
        d.client.start_instance("s1").await.unwrap();
        let again = d.client.instance("s1").await.unwrap();
        let macs2: Vec<String> = ["mgmt", "public", "sip"]
            .iter()
            .map(|dev| again.config[&format!("volatile.{dev}.hwaddr")].clone())
            .collect();
        assert_eq!(macs, macs2);
        d.client.stop_instance("s1", true, -1).await.unwrap();
        d.client.delete_instance("s1").await.unwrap();
        d.client.delete("/1.0/profiles/sipproxy").await.unwrap();
        for n in ["ktmgmt", "ktpub", "ktsip"] {
            d.client
                .delete(&format!("/1.0/networks/{n}"))
                .await
                .unwrap();
        }
        d.shutdown().await;
    });
}

#[test]
fn bad_network_input_is_refused_and_nothing_is_left() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        network_create(
            &d,
            "ktbad0",
            json!({"ipv4.address": "10.213.7.1/24", "ipv6.address": "none"}),
        )
        .await
        .unwrap();
        let cases = [
            (
                "ktbad1",
                json!({"ipv4.address": "10.213.7.1/24"}),
                400,
                "overlapping subnet",
            ),
            (
                "ktbad1",
                json!({"ipv4.address": "10.213.8.1/33"}),
                400,
                "invalid prefix",
            ),
            (
                "ktbad1",
                json!({"ipv4.address": "banana"}),
                400,
                "not an address",
            ),
            ("ktbad1", json!({"ipv4.nat": "maybe"}), 400, "not a bool"),
            ("ktbad1", json!({"no.such.key": "1"}), 400, "unknown key"),
            ("kt/bad", json!({}), 400, "bad name"),
            ("lo", json!({}), 409, "host interface exists"),
            ("ktbad0", json!({}), 409, "network exists"),
        ];
        for (name, cfg, status, what) in cases {
            assert_eq!(network_create(&d, name, cfg).await, Err(status), "{what}");
        }
        assert!(!link_exists("ktbad1"));
        let names: Vec<String> = d
            .client
            .get_json::<Vec<String>>("/1.0/networks")
            .await
            .unwrap();
        assert!(!names.iter().any(|n| n.ends_with("/ktbad1")), "{names:?}");

        let bad_nics = [
            (
                devices(&[("eth0", nic(&[("network", "ktnope")]))]),
                "missing network",
            ),
            (
                devices(&[("eth0", nic(&[("nictype", "bridged"), ("parent", "ktnobr")]))]),
                "missing parent",
            ),
            (
                devices(&[(
                    "eth0",
                    nic(&[("nictype", "p2p-magic"), ("parent", "ktbad0")]),
                )]),
                "unknown nictype",
            ),
            (
                devices(&[(
                    "eth0",
                    nic(&[("network", "ktbad0"), ("hwaddr", "01:00:5e:00:00:01")]),
                )]),
                "multicast MAC",
            ),
            (
                devices(&[(
                    "eth0",
                    nic(&[("network", "ktbad0"), ("hwaddr", "00:16:3e:zz:00:01")]),
                )]),
                "malformed MAC",
            ),
            (
                devices(&[
                    ("a", nic(&[("network", "ktbad0"), ("name", "eth0")])),
                    ("b", nic(&[("network", "ktbad0"), ("name", "eth0")])),
                ]),
                "duplicate NIC name",
            ),
            (
                devices(&[(
                    "eth0",
                    nic(&[("network", "ktbad0"), ("ipv4.address", "10.99.99.9")]),
                )]),
                "static address outside the subnet",
            ),
            (
                devices(&[(
                    "eth0",
                    nic(&[("network", "ktbad0"), ("name", "this-name-is-too-long")]),
                )]),
                "interface name too long",
            ),
        ];
        for (devs, what) in bad_nics {
            let err = create(&d, &fp, "bad1", &[], devs, None).await.unwrap_err();
            assert_eq!(err.status(), Some(400), "{what}: {err}");
            assert!(
                d.client.instance("bad1").await.is_err(),
                "{what}: instance left behind"
            );
        }

        // A refused hot-plug leaves the running instance and its config as they were.
        create(
            &d,
            &fp,
            "ok1",
            &[],
            devices(&[("eth0", nic(&[("network", "ktbad0")]))]),
            None,
        )
        .await
        .unwrap();
        d.client.start_instance("ok1").await.unwrap();
        let before = d.client.instance("ok1").await.unwrap();
        let err = d
            .client
            .patch_instance(
                "ok1",
                &json!({"devices": {"eth1": {"type": "nic", "network": "ktbad0", "name": "eth0"}}}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
        let after = d.client.instance("ok1").await.unwrap();
        assert_eq!(before.devices, after.devices);
        let (_, links) = d.sh("ok1", "ls /sys/class/net").await;
        assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
        d.client.stop_instance("ok1", true, -1).await.unwrap();
        d.client.delete_instance("ok1").await.unwrap();
        d.client.delete("/1.0/networks/ktbad0").await.unwrap();
        d.shutdown().await;
    });
}

#[test]
fn host_bridge_and_macvlan_parents() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        // Seed 002's br-demo: a bridge the host already has; we only plug in.
        // No dummy driver in this kernel: one end of a veth pair is the macvlan parent.
        let links = HostLinks(vec!["knbrdemo", "knmvpar"]);
        sh("ip link add knbrdemo type bridge && ip link set knbrdemo up && ip link add knmvpar type veth peer name knmvpeer && ip link set knmvpar up");
        let devs = devices(&[
            (
                "eth0",
                nic(&[("nictype", "bridged"), ("parent", "knbrdemo")]),
            ),
            (
                "mv",
                nic(&[
                    ("nictype", "macvlan"),
                    ("parent", "knmvpar"),
                    ("name", "mv0"),
                    ("mode", "bridge"),
                ]),
            ),
        ]);
        create(&d, &fp, "h1", &[], devs, None).await.unwrap();
        d.client.start_instance("h1").await.unwrap();
        let host = d.client.instance("h1").await.unwrap().config["volatile.eth0.host_name"].clone();
        assert_eq!(master_of(&host).as_deref(), Some("knbrdemo"));
        // busybox's ip has no -d: look from the host into the instance's netns.
        let pid = d.init_pid("h1").await;
        let out = sh(&format!("nsenter -t {pid} -n ip -d link show mv0"));
        assert!(out.contains("macvlan mode bridge"), "{out}");
        // Unmanaged: no dnsmasq or nftables of ours for it.
        assert!(nft_tables_of(&d.cgroup_prefix()).is_empty());
        let nets: Value = d
            .client
            .get_json("/1.0/networks?recursion=1")
            .await
            .unwrap();
        let demo = nets
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "knbrdemo")
            .expect("host bridge listed");
        assert_eq!(demo["managed"], false);
        assert_eq!(demo["used_by"], json!(["/1.0/instances/h1"]));
        d.client.stop_instance("h1", true, -1).await.unwrap();
        assert!(!link_exists(&host));
        d.client.delete_instance("h1").await.unwrap();
        drop(links);
        d.shutdown().await;
    });
}

/// `lxc network rename`, as Debian's lxc sends it: refused while a profile
/// uses the network and onto a name that exists (the network untouched);
/// then the bridge, its address and its dnsmasq live under the new name
/// and nothing is left under the old one.
#[test]
fn an_unused_network_is_renamed_with_lxc() {
    use kante_integration::lxc::{conf, lxc_fails, lxc_ok};
    run(async {
        let d = Daemon::start().await;
        let c = conf(&d, "admin");
        let v4 = json!({"ipv4.address": "10.213.9.1/24", "ipv6.address": "none"});
        network_create(&d, "ktren0", v4).await.unwrap();
        let other = json!({"ipv4.address": "10.213.10.1/24", "ipv6.address": "none"});
        network_create(&d, "ktren2", other).await.unwrap();
        lxc_ok(&d, &c, "profile create ktrenp");
        lxc_ok(&d, &c, "profile device add ktrenp eth0 nic network=ktren0");

        let err = lxc_fails(&d, &c, "network rename ktren0 ktren1");
        assert!(err.contains("in use by /1.0/profiles/ktrenp"), "{err}");
        lxc_ok(&d, &c, "profile delete ktrenp");
        let err = lxc_fails(&d, &c, "network rename ktren0 ktren2");
        assert!(err.contains("already exists"), "{err}");
        let err = lxc_fails(&d, &c, "network rename ktnone ktren1");
        assert!(err.contains("not found"), "{err}");
        assert!(link_exists("ktren0") && !link_exists("ktren1"));
        assert!(
            !processes_mentioning("ktren0").is_empty(),
            "dnsmasq of ktren0"
        );

        lxc_ok(&d, &c, "network rename ktren0 ktren1");
        assert!(!link_exists("ktren0"), "the old bridge is gone");
        assert!(link_exists("ktren1"), "the bridge has the new name");
        let addr = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", "ktren1"])
            .output()
            .unwrap();
        let addr = String::from_utf8_lossy(&addr.stdout);
        assert!(addr.contains("10.213.9.1/24"), "{addr}");
        assert!(processes_mentioning("ktren0").is_empty(), "no old dnsmasq");
        assert!(
            !processes_mentioning("ktren1").is_empty(),
            "dnsmasq of ktren1"
        );
        let shown = lxc_ok(&d, &c, "network get ktren1 ipv4.address");
        assert_eq!(shown.trim(), "10.213.9.1/24");
        let err = lxc_fails(&d, &c, "network show ktren0");
        assert!(err.contains("not found"), "{err}");
        let tables = nft_tables_of(&d.cgroup_prefix());
        assert_eq!(
            tables.len(),
            2,
            "one table per network, none left over: {tables:?}"
        );
        assert!(tables.iter().any(|t| t.ends_with("ktren1")), "{tables:?}");
        assert!(!tables.iter().any(|t| t.ends_with("ktren0")), "{tables:?}");

        lxc_ok(&d, &c, "network delete ktren1");
        lxc_ok(&d, &c, "network delete ktren2");
        assert!(processes_mentioning("ktren1").is_empty());
        d.shutdown().await;
    });
}
