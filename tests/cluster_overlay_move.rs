//! A container moved between cluster members keeps its overlay address
//! (issue 18) on a 3-host lab: ov1's DHCP ranges are cut small
//! (10.0.9.2-10.0.9.25: three addresses per member's slice, h1 .2-.4,
//! h2 .5-.7, h3 .8-.10). a1 on h1 and b2 on h2 lease from their slices;
//! `kante move a1 --target h3` and a1 leases its old address from h3
//! (outside h3's slice) with its MAC, and b2 reaches it there. Meanwhile
//! nobody else gets it: a NIC asking for it (`ipv4.address`) is refused,
//! as is one outside the subnet, with nothing made; on h1, where it came
//! from, three new guests find only two addresses left. Moved back to h1
//! it leases the same address again; deleted, its address is free, and
//! the guest left without one leases it. Everything deleted at the end,
//! nothing is left on any member.

use std::time::{Duration, Instant};

use kante_integration::cluster::{down_and_check, form, on};
use kante_integration::lab::Lab;
use kante_integration::net::{devices, nic};
use kante_integration::overlay::{launch, lease};
use kante_integration::{instance_post, run, TestImage};

/// Host i's slice of ov1's ranges (three addresses each).
fn slice(i: u32) -> std::ops::RangeInclusive<u32> {
    let start = 2 + 3 * (i - 1);
    start..=start + 2
}

fn last(ip: &str) -> u32 {
    ip.rsplit('.').next().unwrap().parse().unwrap()
}

async fn mac(lab: &Lab, i: u32, name: &str) -> String {
    let (code, out) = lab.sh(i, name, "cat /sys/class/net/eth0/address").await;
    assert_eq!(code, 0, "{out}");
    out.trim().to_string()
}

async fn location(lab: &Lab, name: &str) -> String {
    lab.client(1).instance(name).await.unwrap().location
}

async fn ping(lab: &Lab, i: u32, from: &str, ip: &str) {
    let (code, out) = lab.sh(i, from, &format!("ping -c3 -W3 {ip}")).await;
    assert_eq!(code, 0, "{from} on h{i} cannot reach {ip}: {out}");
}

/// Stopped, moved to `to` by the CLI (from host i), started there.
async fn move_to(lab: &Lab, i: u32, name: &str, to: u32) {
    on(lab, i, &["stop", name, "--force"]);
    on(lab, i, &["move", name, "--target", &format!("h{to}")]);
    assert_eq!(location(lab, name).await, format!("h{to}"));
    on(lab, i, &["start", name]);
}

#[test]
fn a_moved_container_keeps_its_overlay_address_and_nobody_else_gets_it() {
    run(async {
        let mut lab = Lab::up(3);
        let fp1 = lab.import(1, TestImage::Busybox).await;
        let fp2 = lab.import(2, TestImage::Busybox).await;
        form(&lab);
        on(
            &lab,
            1,
            &[
                "network",
                "create",
                "ov1",
                "--type",
                "overlay",
                "ipv4.address=10.0.9.1/24",
                "ipv4.dhcp.ranges=10.0.9.2-10.0.9.25",
            ],
        );
        launch(&lab, 1, &fp1, "a1", "ov1").await;
        launch(&lab, 2, &fp2, "b2", "ov1").await;
        let a_ip = lease(&lab, 1, "a1").await.expect("a1 got no lease on h1");
        assert!(slice(1).contains(&last(&a_ip)), "a1: {a_ip}");
        let b_ip = lease(&lab, 2, "b2").await.expect("b2 got no lease on h2");
        assert!(slice(2).contains(&last(&b_ip)), "b2: {b_ip}");
        let a_mac = mac(&lab, 1, "a1").await;
        ping(&lab, 2, "b2", &a_ip).await;

        // To h3: the same MAC leases the same address there (h3's slice
        // is .8-.10), and b2 reaches it over the overlay.
        move_to(&lab, 1, "a1", 3).await;
        assert_eq!(mac(&lab, 3, "a1").await, a_mac);
        assert_eq!(lease(&lab, 3, "a1").await.as_deref(), Some(a_ip.as_str()));
        ping(&lab, 2, "b2", &a_ip).await;
        ping(&lab, 3, "a1", &b_ip).await;

        // Asking for the held address, or one outside the subnet: a 400,
        // nothing made.
        for (ip, why) in [
            (
                a_ip.as_str(),
                format!("Address {a_ip} on overlay \"ov1\" is held by instance \"a1\""),
            ),
            ("10.0.10.5", "outside 10.0.9.0/24".to_string()),
        ] {
            let devs = devices(&[("eth0", nic(&[("network", "ov1"), ("ipv4.address", ip)]))]);
            let e = lab
                .client(1)
                .create_instance_at(&instance_post(&fp1, "c1", &[], devs), Some("h1"))
                .await
                .expect_err("a NIC asking for a held address was accepted")
                .to_string();
            assert!(e.contains(&why), "{e}");
            assert!(lab.client(1).instance("c1").await.is_err(), "c1 was made");
        }

        // h1, where a1 came from: three new guests, two addresses left.
        let mut got = Vec::new();
        for n in ["n1", "n2", "n3"] {
            launch(&lab, 1, &fp1, n, "ov1").await;
            got.push(lease(&lab, 1, n).await);
        }
        let leased: Vec<&String> = got.iter().flatten().collect();
        assert_eq!(leased.len(), 2, "h1 handed out {got:?}");
        for ip in &leased {
            assert!(slice(1).contains(&last(ip)) && **ip != a_ip, "{got:?}");
        }
        assert_eq!(got[2], None, "n3 got an address: {got:?}");

        // Back to h1: the same address again.
        move_to(&lab, 3, "a1", 1).await;
        assert_eq!(lease(&lab, 1, "a1").await.as_deref(), Some(a_ip.as_str()));
        ping(&lab, 2, "b2", &a_ip).await;

        // Deleted: its address is free again, and n3 leases it.
        on(&lab, 2, &["delete", "a1", "--force"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(ip) = lease(&lab, 1, "n3").await {
                assert_eq!(ip, a_ip);
                break;
            }
            assert!(Instant::now() < deadline, "a1's address stayed held");
        }

        // Everything goes; nothing left on any member.
        for n in ["n1", "n2", "n3", "b2"] {
            on(&lab, 1, &["delete", n, "--force"]);
        }
        on(&lab, 3, &["network", "delete", "ov1"]);
        for i in 1..=3 {
            let links = lab.exec_ok(i, &["ip", "-o", "link"]);
            assert!(!links.contains(": ov1"), "h{i}: ov1 left: {links}");
            let tables = lab.exec_ok(i, &["nft", "list", "tables"]);
            assert!(!tables.contains("_ov1"), "h{i}: {tables}");
            assert!(
                !lab.state(i).join("networks").join("ov1").exists(),
                "h{i}: ov1's state"
            );
        }
        down_and_check(&mut lab, vec![]);
    });
}
