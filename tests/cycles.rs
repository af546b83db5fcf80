//! Create/start/exec/stop/delete cycles leave nothing behind: on the host
//! (mounts, links, cgroups, processes, nftables objects, dnsmasq entries)
//! and in the daemon (open fds, threads, memory), measured against a
//! baseline taken after a warm-up. The suite runs 200 cycles;
//! `KANTE_CYCLES` sets another count, and `kante-bench --only-soak` runs
//! the same accounting over 1000 with release binaries.

use std::time::Instant;

use kante_integration::net::{busybox_dhcp, devices, network_create, nic};
use kante_integration::{run, settled_usage, Daemon, TestImage, Usage, CYCLE_ALLOWANCE};
use serde_json::json;

const NET: &str = "ktcyc0";

async fn cycle(d: &Daemon, fp: &str, i: usize) {
    let name = format!("cyc{}", i % 3);
    let nics = devices(&[("eth0", nic(&[("network", NET), ("name", "eth0")]))]);
    kante_integration::net::create(d, fp, &name, &[], nics, None)
        .await
        .unwrap();
    d.client.start_instance(&name).await.unwrap();
    let out = d
        .client
        .exec_capture(&name, &["true"], &[], None)
        .await
        .unwrap();
    assert_eq!(out.code, 0);
    if i.is_multiple_of(10) {
        // A real lease now and then: dnsmasq's lease file must not keep
        // the entries of deleted instances.
        busybox_dhcp(d, &name, "eth0").await;
    }
    // A clean stop every tenth cycle, a forced one otherwise: busybox's
    // init pauses 2 s of its own in a clean shutdown (a second between
    // TERM and KILL to every process, another before halting), which at
    // every second cycle was 200 of this test's 280 s. `kante-bench
    // --only-soak` keeps half clean over its 1000 cycles.
    d.client
        .stop_instance(&name, i % 10 != 5, 10)
        .await
        .unwrap();
    d.client.delete_instance(&name).await.unwrap();
}

async fn settled(d: &Daemon, base: &Usage) -> (Usage, Vec<String>) {
    settled_usage(d.pid(), &d.dir, &d.cgroup_prefix(), base, CYCLE_ALLOWANCE).await
}

#[test]
fn two_hundred_cycles_leave_nothing_behind_and_grow_nothing() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        network_create(
            &d,
            NET,
            json!({"ipv4.address": "auto", "ipv4.nat": "true", "ipv6.address": "none"}),
        )
        .await
        .unwrap();
        let cycles: usize = std::env::var("KANTE_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        // Warm-up: the first cycles fill caches and start the pools.
        for i in 0..10 {
            cycle(&d, &fp, i).await;
        }
        let (base, _) = settled(&d, &Usage::default()).await;
        assert!(
            base.fds > 0 && base.threads > 0 && base.rss_kib > 0,
            "{base:?}"
        );
        let t0 = Instant::now();
        for i in 0..cycles {
            cycle(&d, &fp, i).await;
            if i % 50 == 49 {
                // Nothing accumulates while the daemon runs either (the
                // network's own table and dnsmasq are in the baseline).
                let (_, grown) = settled(&d, &base).await;
                assert!(grown.is_empty(), "after {} cycles: {grown:#?}", i + 1);
            }
        }
        eprintln!("{cycles} cycles in {:?}", t0.elapsed());
        let (now, grown) = settled(&d, &base).await;
        eprintln!("baseline {base:?}\nafter    {now:?}");
        assert!(grown.is_empty(), "after {cycles} cycles: {grown:#?}");
        assert!(
            d.client.instance_names().await.unwrap().is_empty(),
            "database rows left"
        );
        let containers = std::fs::read_dir(d.dir.join("storage-pools/default/containers"))
            .unwrap()
            .count();
        assert_eq!(containers, 0, "instance volumes left");
        let runtime_dirs = std::fs::read_dir(d.dir.join("logs")).unwrap().count();
        assert_eq!(runtime_dirs, 0, "runtime directories left");
        d.client
            .delete(&format!("/1.0/networks/{NET}"))
            .await
            .unwrap();
        d.shutdown().await;
    });
}
