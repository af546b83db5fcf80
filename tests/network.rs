//! Networking, checked from outside: managed bridges with real dnsmasq
//! (DHCP leases, DNS names) and nftables NAT, fixed MACs that keep their
//! lease across re-creation, named multi-NIC instances with hot-plug,
//! unmanaged Linux bridges, macvlan, Open vSwitch (userspace datapath),
//! refused bad input, and teardown that leaves nothing behind.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use kante_api::instance::{InstanceSource, InstancesPost};
use kante_integration::{nft_tables_of, processes_mentioning, run, Daemon, TestImage};
use serde_json::{json, Value};

type Devices = BTreeMap<String, BTreeMap<String, String>>;

fn nic(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut d: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    d.insert("type".into(), "nic".into());
    d
}

fn devices(list: &[(&str, BTreeMap<String, String>)]) -> Devices {
    list.iter()
        .map(|(n, d)| (n.to_string(), d.clone()))
        .collect()
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

fn master_of(link: &str) -> Option<String> {
    std::fs::read_link(format!("/sys/class/net/{link}/master"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
}

async fn create(
    d: &Daemon,
    fp: &str,
    name: &str,
    config: &[(&str, &str)],
    devs: Devices,
    profiles: Option<Vec<String>>,
) -> Result<(), kante_client::ClientError> {
    let mut post = InstancesPost {
        name: name.into(),
        ..Default::default()
    };
    post.source = InstanceSource {
        kind: "image".into(),
        fingerprint: fp.into(),
        ..Default::default()
    };
    post.put.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    post.put.devices = devs;
    post.put.profiles = profiles;
    d.client.create_instance(&post).await.map(|_| ())
}

async fn network_create(d: &Daemon, name: &str, config: Value) -> Result<(), u16> {
    d.client
        .post("/1.0/networks", &json!({"name": name, "config": config}))
        .await
        .map(|_| ())
        .map_err(|e| e.status().unwrap_or(0))
}

async fn network_config(d: &Daemon, name: &str) -> Value {
    d.client
        .get_json::<Value>(&format!("/1.0/networks/{name}"))
        .await
        .unwrap()["config"]
        .clone()
}

/// The global IPv4 address of `ifname` from the instance's state, once it has one.
async fn wait_ipv4(d: &Daemon, name: &str, ifname: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let st = d.client.instance_state(name).await.unwrap();
        let addr = st
            .network
            .as_ref()
            .and_then(|n| n.get(ifname))
            .and_then(|n| {
                n.addresses
                    .iter()
                    .find(|a| a.family == "inet" && a.scope == "global")
                    .map(|a| a.address.clone())
            });
        if addr.is_some() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// busybox's udhcpc configures nothing without a script: this one applies
/// the lease to the interface.
const UDHCPC_SCRIPT: &str = "printf '#!/bin/sh\\n[ \"$1\" = bound ] && ip addr add $ip/$mask dev $interface\\nexit 0\\n' > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh";

async fn busybox_dhcp(d: &Daemon, name: &str, ifname: &str) -> String {
    let (code, out) = d.sh(name, UDHCPC_SCRIPT).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = d
        .sh(
            name,
            &format!("udhcpc -i {ifname} -n -q -t 10 -T 1 -s /tmp/dhcp.sh 2>&1"),
        )
        .await;
    assert_eq!(code, 0, "udhcpc on {name}/{ifname}: {out}");
    wait_ipv4(d, name, ifname, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{name}/{ifname} has no address after udhcpc: {out}"))
}

/// A network namespace made by the test, reachable from the host over a
/// veth pair: the "outside world" for the NAT check.
struct TestNetns {
    name: String,
    host_if: String,
}

impl TestNetns {
    fn new(name: &str, host_if: &str, host_ip: &str, ns_ip: &str) -> TestNetns {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        sh(&format!(
            "ip netns add {name} && ip link add {host_if} type veth peer name eth0 netns {name} \
             && ip addr add {host_ip}/24 dev {host_if} && ip link set {host_if} up \
             && ip -n {name} addr add {ns_ip}/24 dev eth0 && ip -n {name} link set eth0 up \
             && ip -n {name} link set lo up"
        ));
        TestNetns {
            name: name.into(),
            host_if: host_if.into(),
        }
    }

    /// Accepts one TCP connection on `addr` inside the namespace; returns the peer.
    fn accept_one(&self, addr: SocketAddr) -> std::sync::mpsc::Receiver<SocketAddr> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            l.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok((mut s, peer)) = l.accept() {
                    let mut buf = String::new();
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.read_to_string(&mut buf);
                    let _ = tx.send(peer);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        ready_rx.recv().unwrap();
        rx
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Host interfaces a test makes itself, deleted however the test ends.
struct HostLinks(Vec<&'static str>);

impl Drop for HostLinks {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
    }
}

fn host_uses(prefix: &str) -> bool {
    sh("ip -o addr").contains(prefix)
}

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
