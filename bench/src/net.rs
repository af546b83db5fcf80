//! Time to first DHCP lease: a managed bridge on each daemon (same API, the
//! daemon's own dnsmasq), an instance with one NIC on it, and the time from
//! the start request until the instance's state shows an IPv4 address.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::report::Results;
use crate::target::Target;
use crate::PREFIX;

pub async fn dhcp_lease(runs: usize, targets: &[Target], r: &mut Results) -> Result<()> {
    let nets: Vec<String> = (0..targets.len()).map(|k| format!("kbench{k}")).collect();
    for (k, t) in targets.iter().enumerate() {
        // Fixed private subnets, one per daemon; no NAT: nothing leaves the host.
        let body = json!({"name": nets[k], "type": "bridge", "config": {
            "ipv4.address": format!("10.250.{}.1/24", 10 + k),
            "ipv4.nat": "false", "ipv6.address": "none"}});
        t.client
            .post("/1.0/networks", &body)
            .await
            .with_context(|| format!("creating network {} on {}", nets[k], t.name))?;
    }
    let result = measure(runs, targets, &nets, r).await;
    for (k, t) in targets.iter().enumerate() {
        t.clean(PREFIX).await;
        if let Err(e) = t.client.delete(&format!("/1.0/networks/{}", nets[k])).await {
            eprintln!("deleting network {} on {}: {e}", nets[k], t.name);
        }
    }
    result
}

async fn measure(runs: usize, targets: &[Target], nets: &[String], r: &mut Results) -> Result<()> {
    for i in 0..runs {
        let order: Vec<usize> = if i % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for &k in &order {
            let t = &targets[k];
            let name = format!("{PREFIX}n{i}");
            let nic = [
                ("type", "nic"),
                ("network", nets[k].as_str()),
                ("name", "eth0"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            t.create_with(&name, [("eth0".to_string(), nic)].into_iter().collect())
                .await?;
            let t0 = Instant::now();
            t.client.start_instance(&name).await?;
            wait_ipv4(t, &name, Duration::from_secs(120)).await?;
            r.add(
                "start → first DHCP lease",
                &t.name,
                "s",
                t0.elapsed().as_secs_f64(),
            );
            t.client.stop_instance(&name, true, -1).await?;
            t.client.delete_instance(&name).await?;
        }
    }
    Ok(())
}

async fn wait_ipv4(t: &Target, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let st = t.client.instance_state(name).await?;
        let has = st
            .network
            .as_ref()
            .and_then(|n| n.get("eth0"))
            .is_some_and(|n| {
                n.addresses
                    .iter()
                    .any(|a| a.family == "inet" && a.scope == "global")
            });
        if has {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} on {} got no lease within {timeout:?}", t.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
