//! Guests on a cluster overlay (issue 18): launched on a chosen member,
//! addressed by DHCP from inside (busybox's udhcpc), their address read.

use crate::instance_post;
use crate::lab::Lab;
use crate::net::{devices, nic};

/// busybox's udhcpc configures nothing without a hook (this one sets the
/// address and the default route the lease gives); prints eth0's IPv4
/// addresses after.
pub const DHCP: &str = "printf '#!/bin/sh\\n[ \"$1\" = bound ] && ip addr add $ip/$mask dev $interface && ip route add default via $router\\nexit 0\\n' \
                    > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh && udhcpc -i eth0 -n -q -t 10 -T 1 -s /tmp/dhcp.sh \
                    >/dev/null 2>&1; ip -4 -o addr show eth0";

/// Creates `name` from image `fp` on host i with eth0 on network `net`,
/// and starts it.
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
