//! A cluster member that joins after an overlay was created gets the
//! overlay (issue 18: "entries added when a member joins", "`network=ov1`
//! works on any member"). On a 3-host lab, h1 and h2 form a cluster and
//! make `ov1`; a guest on h1 takes a DHCP address from h1's slice. Then
//! h3 joins: it makes the overlay itself (its bridge, its VXLAN device
//! with the VNI and its own underlay address, an FDB entry for h1 and
//! h2), h1 and h2 add h3 to their FDBs, the record gives h3 the next
//! free slice, and `network show` lists h3 with its tunnel endpoint. A
//! guest on h3 takes an address from h3's slice (not h1's) and pings the
//! guest on h1 over the overlay. The delete (asked of the late member)
//! leaves no device on any member.

use std::time::{Duration, Instant};

use kante_integration::cluster::{await_state, down_and_check, on, token};
use kante_integration::lab::Lab;
use kante_integration::overlay::{addr_of, await_fdb, launch, slice, DHCP};
use kante_integration::{run, TestImage};

/// Host i's VXLAN device `dev` as `ip -d -o link` shows it, once it is
/// there (bounded).
fn await_link(lab: &Lab, i: u32, dev: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let o = lab.exec(i, &["ip", "-d", "-o", "link", "show", dev]);
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(
            start.elapsed() < limit,
            "h{i}: no {dev} within {limit:?}\n{}",
            lab.log(i)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The underlay addresses of the hosts in `hosts` but i, sorted.
fn others(lab: &Lab, i: u32, hosts: &[u32]) -> Vec<String> {
    let mut v: Vec<String> = hosts
        .iter()
        .filter(|j| **j != i)
        .map(|j| lab.address(*j))
        .collect();
    v.sort();
    v
}

/// The last octet of the address guest `name` on host i takes by DHCP.
async fn dhcp(lab: &Lab, i: u32, name: &str) -> (String, u32) {
    let (code, out) = lab.sh(i, name, DHCP).await;
    assert_eq!(code, 0, "{out}");
    let ip = addr_of(&out);
    assert!(ip.starts_with("10.0.9."), "h{i}: {ip}");
    let last = ip.rsplit('.').next().unwrap().parse().unwrap();
    (ip, last)
}

#[test]
fn a_member_that_joins_later_gets_the_overlay() {
    run(async {
        let mut lab = Lab::up(3);
        let fp1 = lab.import(1, TestImage::Busybox).await;
        let fp3 = lab.import(3, TestImage::Busybox).await;
        on(&lab, 1, &["cluster", "enable", "h1"]);
        let t = token(&lab, 1, "h2");
        on(&lab, 2, &["cluster", "join", &t]);
        await_state(&lab, 2, "h1", "ONLINE", Duration::from_secs(30));
        await_state(&lab, 1, "h2", "ONLINE", Duration::from_secs(30));
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
            ],
        );
        let vni = on(&lab, 2, &["network", "get", "ov1", "overlay.vni"]);
        let dev = format!("kov{}", vni.trim());
        launch(&lab, 1, &fp1, "a1", "ov1").await;
        let (ip1, last1) = dhcp(&lab, 1, "a1").await;
        assert!(slice(0).contains(&last1), "h1: {ip1}");

        // h3 joins: it makes the overlay, the others add it.
        let t = token(&lab, 1, "h3");
        on(&lab, 3, &["cluster", "join", &t]);
        for i in 1..=3 {
            for j in 1..=3 {
                await_state(&lab, i, &format!("h{j}"), "ONLINE", Duration::from_secs(30));
            }
        }
        let d = await_link(&lab, 3, &dev, Duration::from_secs(30));
        for want in [
            format!("vxlan id {} ", vni.trim()),
            format!("local {} ", lab.address(3)),
            "master ov1".into(),
            "mtu 1450".into(),
        ] {
            assert!(d.contains(&want), "h3: {want:?} not in {d}");
        }
        let all = [1, 2, 3];
        for i in all {
            let took = await_fdb(
                &lab,
                i,
                &dev,
                &others(&lab, i, &all),
                Duration::from_secs(30),
            );
            eprintln!("h{i}'s FDB complete {took:?} after the join settled");
        }
        let s = on(
            &lab,
            2,
            &["network", "get", "ov1", "overlay.slice", "--target", "h3"],
        );
        assert_eq!(s.trim(), "2", "h3's slice");
        let show = on(&lab, 1, &["network", "show", "ov1"]);
        assert!(
            show.contains("- h3")
                && show.contains("name: h3")
                && show.contains(&format!("underlay: {}", lab.address(3))),
            "{show}"
        );

        // A guest on h3: an address from h3's slice, and h1's guest in reach.
        launch(&lab, 3, &fp3, "a3", "ov1").await;
        let (ip3, last3) = dhcp(&lab, 3, "a3").await;
        assert!(slice(2).contains(&last3), "h3: {ip3}");
        let (code, out) = lab.sh(3, "a3", &format!("ping -c3 -W3 {ip1}")).await;
        assert_eq!(code, 0, "a3 cannot reach a1 over ov1: {out}");

        // Delete, asked of the late member: gone from every member.
        for (i, name) in [(1, "a1"), (3, "a3")] {
            on(&lab, i, &["delete", name, "--force"]);
        }
        on(&lab, 3, &["network", "delete", "ov1"]);
        for i in all {
            let links = lab.exec_ok(i, &["ip", "-o", "link"]);
            for gone in ["ov1", dev.as_str()] {
                assert!(
                    !links.contains(&format!(": {gone}")),
                    "h{i}: {gone} left: {links}"
                );
            }
        }
        down_and_check(&mut lab, vec![]);
    });
}
