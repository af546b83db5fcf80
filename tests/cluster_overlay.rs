//! Cluster overlay networks (issue 18) on a 3-host lab: standalone, an
//! overlay is refused. Clustered, `ov1` (made from h1) and `ov2` (from h2)
//! share the subnet 10.0.9.0/24 and get different VNIs; every member has
//! the VXLAN device (the VNI, port 4789, nolearning, its own underlay
//! address, on the bridge, MTU 1500 - 50) and one all-zero FDB entry per
//! other member. Guests on h1 and h3 on ov1 get DHCP addresses from their
//! member's slice, ping each other and, NATed by their own member, the
//! other hosts; ov2's guests (h1, h3) reach each other but not ov1's, and
//! on h1 each overlay's guest reaches its own gateway and egress though
//! both bridges hold the subnet. h2's kanted killed: its entries leave the others'
//! FDBs when its lease expires and come back when it restarts, which also
//! rebuilds its own FDB (emptied meanwhile) from the cached membership.
//! With every etcd frozen the control plane refuses writes and the guests
//! still ping. Bad input (a clashing gateway or VNI, a key of the
//! cluster's) is refused with nothing made; delete leaves no device,
//! dnsmasq state or nft table on any member and frees the VNI.

use std::time::{Duration, Instant};

use kante_integration::cluster::{
    await_state, down_and_check, etcd_pids, form, on, refused, restart_kanted,
};
use kante_integration::lab::Lab;
use kante_integration::overlay::{addr_of, launch, DHCP};
use kante_integration::{run, TestImage};

/// The zero-MAC FDB destinations of `dev` on host i, sorted.
fn fdb(lab: &Lab, i: u32, dev: &str) -> Vec<String> {
    let out = lab.exec_ok(i, &["bridge", "fdb", "show", "dev", dev]);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("00:00:00:00:00:00 dst "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The other hosts' underlay addresses, sorted.
fn others(lab: &Lab, i: u32) -> Vec<String> {
    let mut v: Vec<String> = (1..=3)
        .filter(|j| *j != i)
        .map(|j| lab.address(j))
        .collect();
    v.sort();
    v
}

/// Waits until host i's FDB of `dev` is `want` (bounded).
fn await_fdb(lab: &Lab, i: u32, dev: &str, want: &[String], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = fdb(lab, i, dev);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "h{i}: FDB {got:?}, want {want:?} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Member slice k's DHCP addresses of 10.0.9.0/24 (.2-.254 in 8 slices).
fn slice(k: u32) -> std::ops::RangeInclusive<u32> {
    let start = 2 + 31 * k + k.min(5);
    start..=start + 30 + u32::from(k < 5)
}

#[test]
fn overlays_span_the_cluster_isolated_and_need_no_control_plane() {
    run(async {
        let mut lab = Lab::up(3);
        let fp1 = lab.import(1, TestImage::Busybox).await;
        let fp3 = lab.import(3, TestImage::Busybox).await;
        let create = ["network", "create", "ov1", "--type", "overlay"];
        let e = refused(
            &lab,
            1,
            &[&create[..], &["ipv4.address=10.0.9.1/24"]].concat(),
        );
        assert!(e.contains("not clustered"), "{e}");
        form(&lab);

        let e = refused(&lab, 1, &create);
        assert!(e.contains("needs ipv4.address"), "{e}");
        on(
            &lab,
            1,
            &[&create[..], &["ipv4.address=10.0.9.1/24", "ipv4.nat=true"]].concat(),
        );
        let ov2 = ["network", "create", "ov2", "--type", "overlay"];
        on(
            &lab,
            2,
            &[&ov2[..], &["ipv4.address=10.0.9.254/24", "ipv4.nat=true"]].concat(),
        );
        let vni = |n: &str| {
            on(&lab, 3, &["network", "get", n, "overlay.vni"])
                .trim()
                .to_string()
        };
        let (vni1, vni2) = (vni("ov1"), vni("ov2"));
        assert_ne!(vni1, vni2);
        let (dev1, dev2) = (format!("kov{vni1}"), format!("kov{vni2}"));
        // Clashes are refused before anything is made anywhere.
        let ov3 = ["network", "create", "ov3", "--type", "overlay"];
        let e = refused(&lab, 3, &[&ov3[..], &["ipv4.address=10.0.9.1/24"]].concat());
        assert!(e.contains("gateway address 10.0.9.1 is taken"), "{e}");
        let taken = format!("overlay.vni={vni1}");
        let e = refused(
            &lab,
            3,
            &[&ov3[..], &["ipv4.address=10.0.10.1/24", taken.as_str()]].concat(),
        );
        assert!(
            e.contains(&format!("VNI {vni1} is already used by overlay \"ov1\"")),
            "{e}"
        );
        let e = refused(
            &lab,
            3,
            &[&ov3[..], &["ipv4.address=10.0.10.1/24", "overlay.slice=1"]].concat(),
        );
        assert!(e.contains("worked out by the cluster"), "{e}");

        for i in 1..=3 {
            let links = lab.exec_ok(i, &["ip", "-o", "link"]);
            assert!(!links.contains("ov3"), "h{i}: {links}");
            let d = lab.exec_ok(i, &["ip", "-d", "-o", "link", "show", &dev1]);
            for want in [
                format!("vxlan id {vni1} "),
                format!("local {} ", lab.address(i)),
                "dstport 4789".into(),
                "nolearning".into(),
                "master ov1".into(),
                "mtu 1450".into(),
            ] {
                assert!(d.contains(&want), "h{i}: {want:?} not in {d}");
            }
            let br = lab.exec_ok(i, &["ip", "-o", "link", "show", "ov1"]);
            assert!(br.contains("mtu 1450"), "h{i}: {br}");
            assert_eq!(fdb(&lab, i, &dev1), others(&lab, i), "h{i}");
            assert_eq!(fdb(&lab, i, &dev2), others(&lab, i), "h{i}");
            let s = on(
                &lab,
                1,
                &[
                    "network",
                    "get",
                    "ov1",
                    "overlay.slice",
                    "--target",
                    &format!("h{i}"),
                ],
            );
            assert_eq!(s.trim(), (i - 1).to_string(), "h{i}'s slice");
        }

        // ov1: a1 on h1, a3 on h3, by DHCP from their members' slices.
        launch(&lab, 1, &fp1, "a1", "ov1").await;
        launch(&lab, 3, &fp3, "a3", "ov1").await;
        let mut ips = Vec::new();
        for (i, name) in [(1, "a1"), (3, "a3")] {
            let (code, out) = lab.sh(i, name, DHCP).await;
            assert_eq!(code, 0, "{out}");
            let ip = addr_of(&out);
            let last: u32 = ip.rsplit('.').next().unwrap().parse().unwrap();
            assert!(
                ip.starts_with("10.0.9.") && slice(i - 1).contains(&last),
                "h{i}: {ip}"
            );
            let (_, link) = lab.sh(i, name, "ip -o link show eth0").await;
            assert!(link.contains("mtu 1450"), "{link}");
            ips.push(ip);
        }
        let (code, out) = lab.sh(1, "a1", &format!("ping -c3 -W3 {}", ips[1])).await;
        assert_eq!(code, 0, "a1 cannot reach a3 over ov1: {out}");
        // Egress through the guest's own member, NATed to its uplink
        // address: the other host answers that address, not the overlay's
        // (whose gateway ARP never crosses the VXLAN).
        for (i, name, to) in [(1, "a1", 3), (3, "a3", 1)] {
            let (code, out) = lab
                .sh(i, name, &format!("ping -c2 -W3 {}", lab.address(to)))
                .await;
            assert_eq!(code, 0, "{name} cannot reach h{to}'s uplink address: {out}");
        }

        // ov2, same subnet: its guests reach each other, never ov1's.
        launch(&lab, 1, &fp1, "b1", "ov2").await;
        launch(&lab, 3, &fp3, "b3", "ov2").await;
        for (i, name, ip) in [(1, "b1", "10.0.9.200"), (3, "b3", "10.0.9.201")] {
            let set =
                format!("ip addr add {ip}/24 dev eth0 && ip route add default via 10.0.9.254");
            let (code, out) = lab.sh(i, name, &set).await;
            assert_eq!(code, 0, "{out}");
        }
        let (code, out) = lab.sh(1, "b1", "ping -c3 -W3 10.0.9.201").await;
        assert_eq!(code, 0, "b1 cannot reach b3 over ov2: {out}");
        // The host side keeps the two apart too: each guest reaches its
        // own gateway and egress, though both bridges hold 10.0.9.0/24.
        for (name, gw) in [("a1", "10.0.9.1"), ("b1", "10.0.9.254")] {
            let (code, out) = lab.sh(1, name, &format!("ping -c2 -W3 {gw}")).await;
            assert_eq!(code, 0, "{name} cannot reach its gateway {gw}: {out}");
        }
        let (code, out) = lab
            .sh(1, "b1", &format!("ping -c2 -W3 {}", lab.address(3)))
            .await;
        assert_eq!(
            code, 0,
            "b1 cannot reach h3's uplink address through ov2: {out}"
        );
        for ip in &ips {
            let (code, out) = lab.sh(1, "b1", &format!("ping -c2 -W2 {ip}")).await;
            assert_ne!(code, 0, "ov2's b1 reached ov1's {ip}: {out}");
        }

        // h2 gone: its entries leave the FDBs when its lease expires; back
        // with it, and its own FDB (emptied meanwhile) rebuilt at start.
        // SAFETY: a kill of the lab's own daemon.
        unsafe { libc::kill(lab.pid(2), libc::SIGKILL) };
        let h13: Vec<String> = [1, 3].iter().map(|j| lab.address(*j)).collect();
        for (i, other) in [(1, 3), (3, 1)] {
            let took = await_fdb(
                &lab,
                i,
                &dev1,
                &[lab.address(other)],
                Duration::from_secs(30),
            );
            eprintln!("h2 left h{i}'s FDB after {took:?}");
        }
        for a in &h13 {
            lab.exec_ok(
                2,
                &[
                    "bridge",
                    "fdb",
                    "del",
                    "00:00:00:00:00:00",
                    "dev",
                    &dev1,
                    "dst",
                    a,
                ],
            );
        }
        assert!(fdb(&lab, 2, &dev1).is_empty());
        let h2 = restart_kanted(&lab, 2);
        assert_eq!(fdb(&lab, 2, &dev1), others(&lab, 2), "h2 rebuilt its FDB");
        for i in [1, 3] {
            await_fdb(&lab, i, &dev1, &others(&lab, i), Duration::from_secs(30));
        }

        // Every etcd frozen: writes fail, the data path goes on.
        let frozen: Vec<i32> = (1..=3).flat_map(|i| etcd_pids(&lab, i)).collect();
        assert_eq!(frozen.len(), 3, "{frozen:?}");
        for pid in &frozen {
            // SAFETY: a signal to the lab's own etcd.
            assert_eq!(unsafe { libc::kill(*pid, libc::SIGSTOP) }, 0);
        }
        let e = refused(&lab, 1, &["profile", "create", "during"]);
        assert!(e.contains("unreachable"), "{e}");
        let (code, out) = lab.sh(3, "a3", &format!("ping -c3 -W3 {}", ips[0])).await;
        assert_eq!(code, 0, "a3 cannot reach a1 without etcd: {out}");
        assert_eq!(fdb(&lab, 1, &dev1), others(&lab, 1));
        for pid in &frozen {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::kill(*pid, libc::SIGCONT) }, 0);
        }
        for i in 1..=3 {
            for j in 1..=3 {
                await_state(&lab, i, &format!("h{j}"), "ONLINE", Duration::from_secs(60));
            }
        }

        // Delete: nothing left on any member, the VNI free again.
        for (i, name) in [(1, "a1"), (3, "a3"), (1, "b1"), (3, "b3")] {
            on(&lab, i, &["delete", name, "--force"]);
        }
        on(&lab, 3, &["network", "delete", "ov1"]);
        on(&lab, 1, &["network", "delete", "ov2"]);
        for i in 1..=3 {
            let links = lab.exec_ok(i, &["ip", "-o", "link"]);
            for gone in ["ov1", "ov2", dev1.as_str(), dev2.as_str()] {
                assert!(
                    !links.contains(&format!(": {gone}")),
                    "h{i}: {gone} left: {links}"
                );
            }
            let tables = lab.exec_ok(i, &["nft", "list", "tables"]);
            assert!(
                !tables.contains("_ov1") && !tables.contains("_ov2"),
                "h{i}: {tables}"
            );
            for n in ["ov1", "ov2"] {
                assert!(
                    !lab.state(i).join("networks").join(n).exists(),
                    "h{i}: {n}'s state"
                );
            }
        }
        on(
            &lab,
            2,
            &[&ov3[..], &["ipv4.address=10.0.10.1/24", taken.as_str()]].concat(),
        );
        assert_eq!(vni("ov3"), vni1);
        on(&lab, 2, &["network", "delete", "ov3"]);

        down_and_check(&mut lab, vec![h2]);
    });
}
