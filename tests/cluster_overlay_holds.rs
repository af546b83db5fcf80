//! Overlay address holds (issue 18) through evacuate/restore, a rename, a
//! NIC leaving the overlay and a delete while etcd is away, on one 3-host
//! lab with overlay ov1 (10.0.9.0/24), each step checked from outside (a
//! DHCP round in the guest, a ping from another member, a client's create
//! refused or accepted).
//!
//! * a1 on h1 leases an address; b3 on h3 has `ipv4.address=10.0.9.200`
//!   (held as well). Both carry one `placement.anti-affinity` tag, so
//!   `kante cluster evacuate h1` moves a1 to h2: there it leases the same
//!   address and b3 (a third member) pings it, while a NIC asking for it
//!   by `ipv4.address` is refused naming a1. `restore` brings it back to
//!   h1, same address, pinged again.
//! * Renamed r1 (stopped), the refusal names r1; moved to h2 and started,
//!   r1 leases the same address and b3 pings it.
//! * b3's NIC moved to overlay ov2 (10.0.8.200 there): a NIC asking for
//!   10.0.9.200 on ov1 is accepted within a bounded wait (the keeper gave
//!   the hold up), one asking for 10.0.8.200 on ov2 is refused; b3's NIC
//!   removed, that one is accepted too.
//! * Every member's etcd stopped (SIGSTOP), r1 deleted on h2 (it is gone
//!   from h2's list), and a NIC asking for its address is refused; etcd
//!   continued, such a NIC is first refused naming r1 (the hold outlived
//!   the delete), then accepted within a bounded wait (h2's keeper
//!   collected the orphaned hold).
//!
//! Everything is deleted at the end and the lab goes down leaving nothing.

use std::time::{Duration, Instant};

use kante_integration::cluster::{down_and_check, etcd_pids, form, listed, on};
use kante_integration::lab::Lab;
use kante_integration::net::{devices, nic};
use kante_integration::overlay::lease;
use kante_integration::{instance_post, run, TestImage};
use serde_json::json;

const STATIC: &str = "10.0.9.200";
const STATIC2: &str = "10.0.8.200";
const TAG: (&str, &str) = ("placement.anti-affinity", "ov-holds");

/// Creates `name` on host i with eth0 on ov1 (`ipv4.address` if `ip`)
/// and the anti-affinity tag, and starts it.
async fn launch(lab: &Lab, i: u32, fp: &str, name: &str, ip: Option<&str>) {
    let mut eth0 = vec![("network", "ov1")];
    eth0.extend(ip.map(|a| ("ipv4.address", a)));
    let devs = devices(&[("eth0", nic(&eth0))]);
    let c = lab.client(i);
    let at = format!("h{i}");
    c.create_instance_at(&instance_post(fp, name, &[TAG], devs), Some(at.as_str()))
        .await
        .unwrap_or_else(|e| panic!("creating {name} on h{i}: {e}\n{}", lab.log(i)));
    c.start_instance(name).await.unwrap();
}

/// A DHCP round in `name` on host i: its address.
async fn dhcp(lab: &Lab, i: u32, name: &str) -> String {
    lease(lab, i, name)
        .await
        .unwrap_or_else(|| panic!("{name} on h{i} got no lease"))
}

async fn ping(lab: &Lab, i: u32, from: &str, ip: &str) {
    let (code, out) = lab.sh(i, from, &format!("ping -c2 -W3 {ip}")).await;
    assert_eq!(code, 0, "{from} on h{i} cannot reach {ip}: {out}");
}

/// (state, member) of `name` as h1 lists it.
fn where_is(lab: &Lab, name: &str) -> (String, String) {
    let all = listed(lab, 1);
    all.iter()
        .find(|r| r.0 == name)
        .map(|r| (r.1.clone(), r.2.clone()))
        .unwrap_or_else(|| panic!("{name} not listed: {all:?}"))
}

/// Creates probe `p` on h3 (never evacuated here) with a NIC on `net`
/// asking for `ip`: Ok (and `p` deleted again) or the error text (and
/// nothing made).
async fn probe(lab: &Lab, fp: &str, net: &str, ip: &str) -> Result<(), String> {
    let devs = devices(&[("eth0", nic(&[("network", net), ("ipv4.address", ip)]))]);
    let c = lab.client(3);
    match c
        .create_instance_at(&instance_post(fp, "p", &[], devs), Some("h3"))
        .await
    {
        Ok(_) => {
            c.delete_instance("p").await.unwrap();
            Ok(())
        }
        Err(e) => {
            assert!(c.instance("p").await.is_err(), "p was made: {e}");
            Err(e.to_string())
        }
    }
}

fn held_by(net: &str, ip: &str, who: &str) -> String {
    format!("Address {ip} on overlay {net:?} is held by instance {who:?}")
}

/// A probe for `ip` on ov1 is refused, naming holder `who`.
async fn refused(lab: &Lab, fp: &str, ip: &str, who: &str) {
    let e = probe(lab, fp, "ov1", ip)
        .await
        .expect_err("a NIC asking for a held address was accepted");
    assert!(e.contains(&held_by("ov1", ip, who)), "{e}");
}

/// Probes for `ip` on `net` until one is refused naming `who` (bounded).
async fn await_held(lab: &Lab, fp: &str, net: &str, ip: &str, who: &str) {
    let start = Instant::now();
    loop {
        match probe(lab, fp, net, ip).await {
            Err(e) if e.contains(&held_by(net, ip, who)) => return,
            Err(e) => panic!("{e}"),
            Ok(()) => assert!(
                start.elapsed() < Duration::from_secs(20),
                "{ip} on {net} not held for {who}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Probes for `ip` on `net` until one is accepted (bounded); refusals
/// meanwhile must name `who` (or the store being away, `unreachable`).
/// How long it took, and how many refusals named `who`.
async fn await_free(
    lab: &Lab,
    fp: &str,
    (net, ip): (&str, &str),
    who: &str,
    limit: Duration,
) -> (Duration, u32) {
    let start = Instant::now();
    let mut named = 0;
    loop {
        match probe(lab, fp, net, ip).await {
            Ok(()) => return (start.elapsed(), named),
            Err(e) if e.contains(&held_by(net, ip, who)) => named += 1,
            Err(e) => assert!(e.contains("unreachable"), "{e}"),
        }
        assert!(
            start.elapsed() < limit,
            "{ip} still held by {who} after {limit:?}\nh2: {}\nh3: {}",
            lab.log(2),
            lab.log(3)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends `sig` to every etcd of the lab.
fn signal_etcds(lab: &Lab, sig: i32) {
    for i in 1..=lab.hosts {
        for pid in etcd_pids(lab, i) {
            // SAFETY: a signal to the lab's own etcd.
            assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        }
    }
}

#[test]
fn overlay_holds_through_evacuate_rename_nic_removal_and_an_etcd_outage() {
    run(async {
        let started = Instant::now();
        let mut lab = Lab::up(3);
        let fp = lab.import(1, TestImage::Busybox).await;
        lab.import(3, TestImage::Busybox).await;
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
            ],
        );
        launch(&lab, 1, &fp, "a1", None).await;
        launch(&lab, 3, &fp, "b3", Some(STATIC)).await;
        let a_ip = dhcp(&lab, 1, "a1").await;
        assert_eq!(dhcp(&lab, 3, "b3").await, STATIC);
        ping(&lab, 3, "b3", &a_ip).await;

        // ---- evacuate h1: a1 to h2 (h3 holds the tag), same address ----
        let out = on(&lab, 2, &["cluster", "evacuate", "h1"]);
        assert!(out.contains("evacuated"), "{out}");
        assert_eq!(
            where_is(&lab, "a1"),
            ("RUNNING".to_string(), "h2".to_string())
        );
        assert_eq!(dhcp(&lab, 2, "a1").await, a_ip, "a1 on h2");
        ping(&lab, 3, "b3", &a_ip).await;
        ping(&lab, 2, "a1", STATIC).await;
        refused(&lab, &fp, &a_ip, "a1").await;
        refused(&lab, &fp, STATIC, "b3").await;

        // ---- restore h1: back, same address ----
        let out = on(&lab, 3, &["cluster", "restore", "h1"]);
        assert!(out.contains("restored"), "{out}");
        assert_eq!(
            where_is(&lab, "a1"),
            ("RUNNING".to_string(), "h1".to_string())
        );
        assert_eq!(dhcp(&lab, 1, "a1").await, a_ip, "a1 back on h1");
        ping(&lab, 3, "b3", &a_ip).await;

        // ---- renamed r1: the hold follows, and r1 keeps it on h2 ----
        on(&lab, 1, &["stop", "a1", "--force"]);
        on(&lab, 1, &["move", "a1", "r1"]);
        refused(&lab, &fp, &a_ip, "r1").await;
        on(&lab, 1, &["move", "r1", "--target", "h2"]);
        assert_eq!(
            where_is(&lab, "r1"),
            ("STOPPED".to_string(), "h2".to_string())
        );
        on(&lab, 2, &["start", "r1"]);
        assert_eq!(dhcp(&lab, 2, "r1").await, a_ip, "r1 on h2");
        ping(&lab, 3, "b3", &a_ip).await;
        refused(&lab, &fp, &a_ip, "r1").await;

        // ---- b3's NIC to ov2, then removed: each time its hold goes ----
        on(
            &lab,
            1,
            &[
                "network",
                "create",
                "ov2",
                "--type",
                "overlay",
                "ipv4.address=10.0.8.1/24",
            ],
        );
        let eth0 = json!({"type": "nic", "network": "ov2", "ipv4.address": STATIC2});
        lab.client(3)
            .patch_instance("b3", &json!({"devices": {"eth0": eth0}}))
            .await
            .unwrap();
        let limit = Duration::from_secs(20);
        let (took, _) = await_free(&lab, &fp, ("ov1", STATIC), "b3", limit).await;
        eprintln!("b3's ov1 address free {took:?} after its NIC went to ov2");
        await_held(&lab, &fp, "ov2", STATIC2, "b3").await;
        on(&lab, 3, &["config", "device", "remove", "b3", "eth0"]);
        let (took, _) = await_free(&lab, &fp, ("ov2", STATIC2), "b3", limit).await;
        eprintln!("b3's ov2 address free {took:?} after its NIC went");

        // ---- r1 deleted while etcd is away: collected once it is back ----
        signal_etcds(&lab, libc::SIGSTOP);
        on(&lab, 2, &["delete", "r1", "--force"]);
        let here = listed(&lab, 2);
        assert!(
            !here.iter().any(|r| r.0 == "r1"),
            "r1 still on h2: {here:?}"
        );
        // Meanwhile nobody gets its address (h3 answers from its last
        // view of the holds).
        let e = probe(&lab, &fp, "ov1", &a_ip)
            .await
            .expect_err("accepted while etcd is away");
        eprintln!("while etcd is away: {e}");
        signal_etcds(&lab, libc::SIGCONT);
        // The hold outlived the delete (refused naming r1, which is gone),
        // and then goes by itself.
        let limit = Duration::from_secs(60);
        let (took, named) = await_free(&lab, &fp, ("ov1", &a_ip), "r1", limit).await;
        eprintln!("r1's address free {took:?} after etcd came back ({named} refusals before)");
        assert!(
            named > 0,
            "the hold went with the delete: nothing to collect"
        );

        on(&lab, 1, &["delete", "b3", "--force"]);
        on(&lab, 1, &["network", "delete", "ov1"]);
        on(&lab, 1, &["network", "delete", "ov2"]);
        down_and_check(&mut lab, vec![]);
        eprintln!("whole test: {:?}", started.elapsed());
    });
}
