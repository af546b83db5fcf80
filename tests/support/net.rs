//! Networking helpers shared by the network test binaries: NIC and device
//! maps, instance and network creation through the API, DHCP in busybox
//! guests, a test-made "outside" network namespace, host links removed
//! however a test ends.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::Daemon;

pub type Devices = BTreeMap<String, BTreeMap<String, String>>;

pub fn nic(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut d: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    d.insert("type".into(), "nic".into());
    d
}

/// A root disk on pool `pool`, as the only device.
pub fn root_on(pool: &str) -> Devices {
    let disk = [("type", "disk"), ("path", "/"), ("pool", pool)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    devices(&[("root", disk)])
}

pub fn devices(list: &[(&str, BTreeMap<String, String>)]) -> Devices {
    list.iter()
        .map(|(n, d)| (n.to_string(), d.clone()))
        .collect()
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

pub fn master_of(link: &str) -> Option<String> {
    std::fs::read_link(format!("/sys/class/net/{link}/master"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
}

pub async fn create(
    d: &Daemon,
    fp: &str,
    name: &str,
    config: &[(&str, &str)],
    devs: Devices,
    profiles: Option<Vec<String>>,
) -> Result<(), kante_client::ClientError> {
    let mut post = crate::instance_post(fp, name, config, devs);
    post.put.profiles = profiles;
    d.client.create_instance(&post).await.map(|_| ())
}

pub async fn network_create(d: &Daemon, name: &str, config: Value) -> Result<(), u16> {
    d.client
        .post("/1.0/networks", &json!({"name": name, "config": config}))
        .await
        .map(|_| ())
        .map_err(|e| e.status().unwrap_or(0))
}

pub async fn network_config(d: &Daemon, name: &str) -> Value {
    d.client
        .get_json::<Value>(&format!("/1.0/networks/{name}"))
        .await
        .unwrap()["config"]
        .clone()
}

/// The global IPv4 address of `ifname` from the instance's state, once it has one.
pub async fn wait_ipv4(d: &Daemon, name: &str, ifname: &str, timeout: Duration) -> Option<String> {
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
pub const UDHCPC_SCRIPT: &str = "printf '#!/bin/sh\\n[ \"$1\" = bound ] && ip addr add $ip/$mask dev $interface\\nexit 0\\n' > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh";

pub async fn busybox_dhcp(d: &Daemon, name: &str, ifname: &str) -> String {
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
pub struct TestNetns {
    name: String,
    host_if: String,
}

impl TestNetns {
    pub fn new(name: &str, host_if: &str, host_ip: &str, ns_ip: &str) -> TestNetns {
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
    pub fn accept_one(&self, addr: SocketAddr) -> std::sync::mpsc::Receiver<SocketAddr> {
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
pub struct HostLinks(pub Vec<&'static str>);

impl Drop for HostLinks {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
    }
}

pub fn host_uses(prefix: &str) -> bool {
    sh("ip -o addr").contains(prefix)
}
