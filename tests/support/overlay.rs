//! Helpers of the cluster overlay tests (`cluster_overlay*.rs`) on a lab:
//! DHCP in a busybox guest, a VXLAN device's FDB destinations and a wait
//! for them, the addresses of a member's DHCP slice, a guest launched on
//! a host with its NIC on a network, the address `ip -o addr` shows
//! (if any), and a DHCP round's lease.

use std::time::{Duration, Instant};

use crate::instance_post;
use crate::lab::Lab;
use crate::net::{devices, nic};

/// busybox's udhcpc configures nothing without a hook (this one sets the
/// address and the default route the lease gives); prints eth0's IPv4
/// addresses after.
pub const DHCP: &str = "printf '#!/bin/sh\\n[ \"$1\" = bound ] && ip addr add $ip/$mask dev $interface && ip route add default via $router\\nexit 0\\n' \
                    > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh && udhcpc -i eth0 -n -q -t 10 -T 1 -s /tmp/dhcp.sh \
                    >/dev/null 2>&1; ip -4 -o addr show eth0";

/// The zero-MAC FDB destinations of `dev` on host i, sorted.
pub fn fdb(lab: &Lab, i: u32, dev: &str) -> Vec<String> {
    let out = lab.exec_ok(i, &["bridge", "fdb", "show", "dev", dev]);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("00:00:00:00:00:00 dst "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Waits until host i's FDB of `dev` is `want` (bounded).
pub fn await_fdb(lab: &Lab, i: u32, dev: &str, want: &[String], limit: Duration) -> Duration {
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
pub fn slice(k: u32) -> std::ops::RangeInclusive<u32> {
    let start = 2 + 31 * k + k.min(5);
    start..=start + 30 + u32::from(k < 5)
}

/// Creates guest `name` from image `fp` on host i, its eth0 on network
/// `net`, and starts it.
pub async fn launch(lab: &Lab, i: u32, fp: &str, name: &str, net: &str) {
    let devs = devices(&[("eth0", nic(&[("network", net)]))]);
    let c = lab.client(i);
    c.create_instance_at(
        &instance_post(fp, name, &[], devs),
        Some(format!("h{i}").as_str()),
    )
    .await
    .unwrap_or_else(|e| panic!("creating {name} on h{i}: {e}\n{}", lab.log(i)));
    c.start_instance(name).await.unwrap();
}

/// The IPv4 address `ip -o addr` printed, if any.
pub fn try_addr_of(out: &str) -> Option<String> {
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
}

/// The IPv4 address `ip -o addr` printed.
pub fn addr_of(out: &str) -> String {
    try_addr_of(out).unwrap_or_else(|| panic!("no address in {out:?}"))
}

/// A DHCP round ([`DHCP`]) in `name` on host i: the address it leased, if any.
pub async fn lease(lab: &Lab, i: u32, name: &str) -> Option<String> {
    let (code, out) = lab.sh(i, name, DHCP).await;
    assert_eq!(code, 0, "{name}: {out}");
    try_addr_of(&out)
}
