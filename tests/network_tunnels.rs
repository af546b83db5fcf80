//! LXD's static tunnels on managed bridges (issue 18), between two hosts:
//! network namespaces each with its own kanted, linked only by a veth
//! "underlay" with one address per side. Two instances on the two hosts'
//! `ktun0` bridges cannot reach each other until `tunnel.*` keys as LXD
//! writes them link the bridges over VXLAN; then they ping, the bridge has
//! the tunnel MTU, and removing the keys removes the device. Bad keys, an
//! MTU too large for the encapsulation and a tunnel type this kernel lacks
//! are refused with nothing changed or made.

use std::process::Command;

use kante_integration::net::*;
use kante_integration::{run, Daemon, TestImage};
use serde_json::{json, Value};

const HOSTS: [&str; 2] = ["kttuna", "kttunb"];
const UNDERLAY: [&str; 2] = ["192.0.2.1", "192.0.2.2"];

struct Underlay;

impl Underlay {
    fn new() -> Underlay {
        Underlay::remove();
        sh(&format!(
            "ip netns add {a} && ip netns add {b} \
             && ip -n {a} link set lo up && ip -n {b} link set lo up \
             && ip link add kttv0 netns {a} type veth peer name kttv1 netns {b} \
             && ip -n {a} addr add {ua}/24 dev kttv0 && ip -n {a} link set kttv0 up \
             && ip -n {b} addr add {ub}/24 dev kttv1 && ip -n {b} link set kttv1 up",
            a = HOSTS[0],
            b = HOSTS[1],
            ua = UNDERLAY[0],
            ub = UNDERLAY[1]
        ));
        Underlay
    }

    fn remove() {
        for h in HOSTS {
            let _ = Command::new("ip")
                .args(["netns", "del", h])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        Underlay::remove();
    }
}

/// `ip -n HOST ARGS` output.
fn ip_in(host: &str, args: &str) -> String {
    sh(&format!("ip -n {host} {args}"))
}

async fn patch(d: &Daemon, net: &str, config: Value) -> Result<(), (u16, String)> {
    d.client
        .patch(
            &format!("/1.0/networks/{net}"),
            &json!({ "config": config }),
        )
        .await
        .map(|_| ())
        .map_err(|e| (e.status().unwrap_or(0), e.to_string()))
}

/// Each host's tunnel to the other, as LXD's keys say it.
fn tunnel_keys(me: usize) -> Value {
    json!({
        "tunnel.peer.protocol": "vxlan",
        "tunnel.peer.local": UNDERLAY[me],
        "tunnel.peer.remote": UNDERLAY[1 - me],
        "tunnel.peer.id": "4242",
        "tunnel.peer.port": "4789",
    })
}

#[test]
fn static_vxlan_tunnels_link_two_hosts_bridges() {
    run(async {
        let _underlay = Underlay::new();
        let mut daemons = Vec::new();
        for h in HOSTS {
            let ns = format!("/run/netns/{h}");
            daemons.push(Daemon::start_with_env(&[("KANTE_TEST_NETNS", &ns)]).await);
        }
        let devs = devices(&[("eth0", nic(&[("network", "ktun0")]))]);
        for (i, d) in daemons.iter().enumerate() {
            network_create(
                d,
                "ktun0",
                json!({"ipv4.address": "none", "ipv6.address": "none"}),
            )
            .await
            .unwrap();
            let fp = d.import(TestImage::Busybox).await;
            let name = format!("t{}", i + 1);
            create(d, &fp, &name, &[], devs.clone(), None)
                .await
                .unwrap();
            d.client.start_instance(&name).await.unwrap();
            let (code, out) = d
                .sh(&name, &format!("ip addr add 10.61.0.{}/24 dev eth0", i + 1))
                .await;
            assert_eq!(code, 0, "{out}");
        }
        // Only the underlay links the hosts: no way across yet.
        let (code, _) = daemons[0].sh("t1", "ping -c1 -W2 10.61.0.2").await;
        assert_ne!(code, 0, "the hosts' bridges met without a tunnel");

        for (i, d) in daemons.iter().enumerate() {
            patch(d, "ktun0", tunnel_keys(i)).await.unwrap();
        }
        let (code, out) = daemons[0].sh("t1", "ping -c3 -W3 10.61.0.2").await;
        assert_eq!(code, 0, "t1 cannot reach t2 through the tunnel: {out}");
        let (code, out) = daemons[1].sh("t2", "ping -c1 -W3 10.61.0.1").await;
        assert_eq!(code, 0, "{out}");
        // The device is LXD's BRIDGE-NAME, a VXLAN with the keys' values,
        // on the bridge; the bridge took the tunnel MTU.
        let dev = ip_in(HOSTS[0], "-d -o link show ktun0-peer");
        for want in [
            "vxlan id 4242",
            "remote 192.0.2.2",
            "local 192.0.2.1",
            "dstport 4789",
            "master ktun0",
        ] {
            assert!(dev.contains(want), "{want:?} not in {dev}");
        }
        assert!(
            ip_in(HOSTS[0], "-o link show ktun0").contains("mtu 1400"),
            "the bridge MTU is not the tunnel MTU"
        );

        // Bad input changes nothing: a bad address, an MTU the
        // encapsulation cannot fit, a tunnel type this kernel lacks.
        let before = network_config(&daemons[0], "ktun0").await;
        let (status, e) = patch(
            &daemons[0],
            "ktun0",
            json!({"tunnel.peer.remote": "not-an-ip"}),
        )
        .await
        .unwrap_err();
        assert_eq!(status, 400, "{e}");
        assert!(e.contains("tunnel.peer.remote"), "{e}");
        let (status, e) = patch(&daemons[0], "ktun0", json!({"bridge.mtu": "1500"}))
            .await
            .unwrap_err();
        assert_eq!(status, 400, "{e}");
        assert!(e.contains("at most 1400"), "{e}");
        assert_eq!(network_config(&daemons[0], "ktun0").await, before);
        let (code, out) = daemons[0].sh("t1", "ping -c1 -W3 10.61.0.2").await;
        assert_eq!(code, 0, "the tunnel broke after a refused change: {out}");
        let gre = daemons[0]
            .client
            .post(
                "/1.0/networks",
                &json!({"name": "ktun1", "config": {
                    "ipv4.address": "none", "ipv6.address": "none",
                    "tunnel.g.protocol": "gre",
                    "tunnel.g.local": UNDERLAY[0], "tunnel.g.remote": UNDERLAY[1]}}),
            )
            .await;
        match gre {
            Ok(_) => {
                // A kernel with gretap: the device is there; remove it.
                assert!(ip_in(HOSTS[0], "-d -o link show ktun1-g").contains("gretap"));
                daemons[0]
                    .client
                    .delete("/1.0/networks/ktun1")
                    .await
                    .unwrap();
            }
            Err(e) => {
                assert!(e.to_string().contains("tunnel g"), "{e}");
                let nets: Vec<String> = daemons[0].client.get_json("/1.0/networks").await.unwrap();
                assert!(!nets.iter().any(|n| n.ends_with("/ktun1")), "{nets:?}");
                assert!(!ip_in(HOSTS[0], "-o link show").contains("ktun1"));
            }
        }

        // Without the keys the device goes, and so does the path.
        for d in &daemons {
            patch(
                d,
                "ktun0",
                json!({"tunnel.peer.protocol": "", "tunnel.peer.local": "",
                       "tunnel.peer.remote": "", "tunnel.peer.id": "", "tunnel.peer.port": ""}),
            )
            .await
            .unwrap();
        }
        assert!(!ip_in(HOSTS[0], "-o link show").contains("ktun0-peer"));
        let (code, _) = daemons[0].sh("t1", "ping -c1 -W2 10.61.0.2").await;
        assert_ne!(code, 0, "the bridges still meet after the tunnel went");

        for (i, d) in daemons.into_iter().enumerate() {
            let name = format!("t{}", i + 1);
            d.client.stop_instance(&name, true, -1).await.unwrap();
            d.client.delete_instance(&name).await.unwrap();
            d.shutdown().await;
            let left = ip_in(HOSTS[i], "-o link show");
            assert!(!left.contains("ktun0"), "left in {}: {left}", HOSTS[i]);
        }
    });
}
