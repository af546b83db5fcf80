//! Overlay figures (issue 18) on a 2-host lab cluster: TCP throughput
//! (iperf3, 5 s) and ping round trips (20 echoes 0.2 s apart) between two
//! busybox containers, one per host, over three paths: the shared uplink
//! directly (a NIC bridged to each host's `uplink0`, addresses of the
//! lab's subnet), a plain overlay (VXLAN) and an encrypted one
//! (`security.encryption=wireguard`: VXLAN inside userspace
//! wireguard-go). The containers have no iperf3: the host's binary runs
//! in each container's network namespace (`nsenter --net`), so the path
//! measured is the container's. Kante only (LXD's `tunnel.*` bridges are
//! not set up on this lab).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kante_integration::cluster::{form, on};
use kante_integration::lab::Lab;

use crate::report::Results;

pub struct Plan {
    /// Measurements per path.
    pub runs: usize,
    pub busybox: std::path::PathBuf,
}

/// The address of host i's container on a path.
type AddressOf = Box<dyn Fn(u32) -> String>;

/// The paths: (name in the table, NIC, address of host i's container).
fn paths(lab: &Lab) -> Vec<(&'static str, &'static str, AddressOf)> {
    let base = lab.subnet.trim_end_matches(".0/24").to_string();
    vec![
        (
            "uplink (bridged directly)",
            "eth0",
            Box::new(move |i| format!("{base}.{}", 100 + i)),
        ),
        (
            "overlay (VXLAN)",
            "eth1",
            Box::new(|i| format!("10.0.8.{}", 10 + i)),
        ),
        (
            "encrypted overlay (VXLAN in WireGuard)",
            "eth2",
            Box::new(|i| format!("10.0.9.{}", 10 + i)),
        ),
    ]
}

fn nsenter(pid: i64, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--target={pid}")).arg("--net").arg("--");
    c.args(args);
    c
}

fn output(mut c: Command, what: &str) -> Result<String> {
    let o = c.output().with_context(|| what.to_string())?;
    if !o.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Mbit/s received by the server of an `iperf3 -J` client run.
fn throughput(json: &str) -> Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3's JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e6)
        .context("no end.sum_received in iperf3's JSON")
}

/// The average of ping's `rtt min/avg/max/mdev = …` line, in seconds.
fn rtt(out: &str) -> Result<f64> {
    let line = out
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .context("no rtt line in ping's output")?;
    let nums = line.split('=').nth(1).context("rtt line")?;
    let avg: f64 = nums
        .trim()
        .split('/')
        .nth(1)
        .and_then(|a| a.parse().ok())
        .context("rtt average")?;
    Ok(avg / 1e3)
}

fn server(pid: i64) -> Result<Child> {
    nsenter(pid, &["iperf3", "-s", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 -s (Debian package iperf3)")
}

pub async fn run(plan: &Plan, r: &mut Results) -> Result<()> {
    let mut lab = Lab::up(2);
    let result = measure(&lab, plan, r).await;
    let o = lab.down();
    result?;
    if !o.status.success() {
        bail!("lab down: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

async fn measure(lab: &Lab, plan: &Plan, r: &mut Results) -> Result<()> {
    let mut fp = String::new();
    for i in 1..=2 {
        fp = lab
            .client(i)
            .upload_image(&plan.busybox, &Default::default(), |_, _| {})
            .await
            .with_context(|| format!("importing busybox into h{i}"))?;
    }
    form(lab);
    let ov = ["network", "create", "--type", "overlay"];
    on(
        lab,
        1,
        &[&ov[..], &["ovp", "ipv4.address=10.0.8.1/24"]].concat(),
    );
    let wg = [
        "ovw",
        "ipv4.address=10.0.9.1/24",
        "security.encryption=wireguard",
    ];
    on(lab, 1, &[&ov[..], &wg[..]].concat());
    let paths = paths(lab);
    let mut pids = Vec::new();
    for i in 1..=2u32 {
        let nic = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            let mut m: std::collections::BTreeMap<String, String> = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.insert("type".into(), "nic".into());
            m
        };
        let mut devs = std::collections::BTreeMap::new();
        devs.insert(
            "eth0".to_string(),
            nic(&[("nictype", "bridged"), ("parent", "uplink0")]),
        );
        devs.insert("eth1".to_string(), nic(&[("network", "ovp")]));
        devs.insert("eth2".to_string(), nic(&[("network", "ovw")]));
        let name = format!("ov{i}");
        let c = lab.client(i);
        let post = kante_integration::instance_post(&fp, &name, &[], devs);
        c.create_instance_at(&post, Some(&format!("h{i}")))
            .await
            .with_context(|| format!("creating {name}"))?;
        c.start_instance(&name).await?;
        for (_, dev, addr) in &paths {
            let set = format!(
                "ip addr add {}/24 dev {dev} && ip link set {dev} up",
                addr(i)
            );
            let (code, out) = lab.sh(i, &name, &set).await;
            if code != 0 {
                bail!("{name}: {set}: {out}");
            }
        }
        pids.push(c.instance_state(&name).await?.pid);
    }
    // Every path answers before anything is timed (the encrypted one
    // needs its keys published and a handshake).
    for (what, _, addr) in &paths {
        let to = addr(2);
        let t0 = Instant::now();
        while !nsenter(pids[0], &["ping", "-c1", "-W1", &to])
            .stdout(Stdio::null())
            .status()?
            .success()
        {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("{what}: {to} does not answer");
            }
        }
    }
    let mut srv = server(pids[1])?;
    std::thread::sleep(Duration::from_millis(500));
    let result = (|| -> Result<()> {
        for _ in 0..plan.runs {
            for (what, _, addr) in &paths {
                let to = addr(2);
                let json = output(
                    nsenter(
                        pids[0],
                        &["iperf3", "-c", &to, "-p", "5201", "-t", "5", "-J"],
                    ),
                    "iperf3 -c",
                )?;
                r.add(
                    &format!("TCP throughput (Mbit/s), {what}"),
                    "kante",
                    "Mbit/s",
                    throughput(&json)?,
                );
                let out = output(
                    nsenter(pids[0], &["ping", "-c", "20", "-i", "0.2", "-q", &to]),
                    "ping",
                )?;
                r.add(
                    &format!("ping round trip, {what}"),
                    "kante",
                    "s",
                    rtt(&out)?,
                );
            }
        }
        Ok(())
    })();
    let _ = srv.kill();
    let _ = srv.wait();
    result?;
    for i in 1..=2 {
        on(lab, i, &["delete", &format!("ov{i}"), "--force"]);
    }
    on(lab, 1, &["network", "delete", "ovw"]);
    on(lab, 1, &["network", "delete", "ovp"]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_read() {
        let j = r#"{"end":{"sum_received":{"bits_per_second":1.5e9}}}"#;
        assert_eq!(throughput(j).unwrap(), 1500.0);
        let p = "20 packets transmitted, 20 received, 0% packet loss, time 3800ms\n\
                 rtt min/avg/max/mdev = 0.050/0.120/0.300/0.010 ms\n";
        assert!((rtt(p).unwrap() - 0.000120).abs() < 1e-12);
    }
}
