//! Networking figures on a managed bridge per daemon (same API, each
//! daemon's own dnsmasq): time from start to the first DHCP lease, start
//! with 1 vs 3 NICs, and a proxy device's throughput and latency against a
//! direct connection to the guest.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::report::Results;
use crate::target::Target;
use crate::PREFIX;

pub async fn dhcp_lease(runs: usize, targets: &[Target], r: &mut Results) -> Result<()> {
    // Three networks per daemon (LXD refuses two NICs of one instance on the
    // same network: its DNS name would be taken twice). Fixed private
    // subnets, no NAT: nothing leaves the host.
    let nets: Vec<[String; 3]> = (0..targets.len())
        .map(|k| ["a", "b", "c"].map(|x| format!("kbench{k}{x}")))
        .collect();
    for (k, t) in targets.iter().enumerate() {
        for (j, net) in nets[k].iter().enumerate() {
            let body = json!({"name": net, "type": "bridge", "config": {
                "ipv4.address": format!("10.{}.{}.1/24", 250 + j, 10 + k),
                "ipv4.nat": "false", "ipv6.address": "none"}});
            t.client
                .post("/1.0/networks", &body)
                .await
                .with_context(|| format!("creating network {net} on {}", t.name))?;
        }
    }
    let result = measure(runs, targets, &nets, r).await;
    for (k, t) in targets.iter().enumerate() {
        t.clean(PREFIX).await;
        for net in &nets[k] {
            if let Err(e) = t.client.delete(&format!("/1.0/networks/{net}")).await {
                eprintln!("deleting network {net} on {}: {e}", t.name);
            }
        }
    }
    result
}

async fn measure(
    runs: usize,
    targets: &[Target],
    nets: &[[String; 3]],
    r: &mut Results,
) -> Result<()> {
    for i in 0..runs {
        let order: Vec<usize> = if i % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for &k in &order {
            let t = &targets[k];
            let name = format!("{PREFIX}n{i}");
            // A static address (reserved in DHCP, as a proxy device with
            // nat=true needs on both daemons): the first lease is this one.
            let mut one = nics(&nets[k][..1]);
            let fixed = format!("10.250.{}.{}", 10 + k, 100 + i % 100);
            one.get_mut("eth0")
                .expect("eth0")
                .insert("ipv4.address".into(), fixed);
            t.create_with(&name, one).await?;
            let t0 = Instant::now();
            t.client.start_instance(&name).await?;
            let addr = wait_ipv4(t, &name, Duration::from_secs(120)).await?;
            r.add(
                "start → first DHCP lease",
                &t.name,
                "s",
                t0.elapsed().as_secs_f64(),
            );
            t.wait_ready(&name, Duration::from_secs(120)).await?;
            r.add(
                "start → running, 1 NIC",
                &t.name,
                "s",
                t0.elapsed().as_secs_f64(),
            );
            // A failure here is reported and the other figures still print.
            if let Err(e) = proxy(t, &name, &addr, 20000 + 10 * k as u16, r).await {
                eprintln!("proxy device on {}: {e:#}", t.name);
            }
            t.client.stop_instance(&name, true, -1).await?;
            t.client.delete_instance(&name).await?;

            let name = format!("{PREFIX}n{i}x3");
            t.create_with(&name, nics(&nets[k])).await?;
            let t0 = Instant::now();
            t.client.start_instance(&name).await?;
            t.wait_ready(&name, Duration::from_secs(120)).await?;
            r.add(
                "start → running, 3 NICs",
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

/// One NIC `eth<n>` on each of `networks`.
fn nics(networks: &[String]) -> kante_api::DevicesMap {
    networks
        .iter()
        .enumerate()
        .map(|(n, network)| {
            let name = format!("eth{n}");
            let dev = [
                ("type", "nic"),
                ("network", network.as_str()),
                ("name", &name),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            (name, dev)
        })
        .collect()
}

/// A sink (7000: reads 64 MiB, answers "ok"; no half-close, which LXD's
/// proxy does not forward) and an echo (7001) server in
/// the guest, for throughput and latency through a proxy device and directly.
const SERVER: &str = r#"import socket, threading
def sink(c):
    left = 64 << 20
    while left > 0:
        d = c.recv(1 << 20)
        if not d: return
        left -= len(d)
    c.sendall(b"ok"); c.close()
def echo(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
def serve(port, f):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept(); threading.Thread(target=f, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(7000, sink), daemon=True).start()
serve(7001, echo)
"#;

/// Detached, and with no descriptor of the exec session kept open: LXD's
/// exec waits until every holder of its pipes is gone.
const DETACH: &str = "setsid -f python3 /root/kbench-srv.py </dev/null >/dev/null 2>&1";

const BULK: usize = 64 << 20;
const ROUND_TRIPS: usize = 200;

async fn proxy(t: &Target, name: &str, guest: &str, port: u16, r: &mut Results) -> Result<()> {
    t.client
        .file_push_bytes(
            name,
            "/root/kbench-srv.py",
            SERVER.as_bytes().to_vec(),
            &Default::default(),
        )
        .await?;
    let o = t
        .client
        .exec_capture(name, &["sh", "-c", DETACH], &[], None)
        .await?;
    anyhow::ensure!(o.code == 0, "starting the test server: {}", o.stderr_str());
    let dev = |listen: u16, connect: u16| json!({"type": "proxy", "listen": format!("tcp:127.0.0.1:{listen}"), "connect": format!("tcp:127.0.0.1:{connect}")});
    // nat=true: the kernel forwards from the bridge's address (the host's
    // own) to the guest's static one; the client is on the host.
    let gw = format!("{}.1", guest.rsplit_once('.').map_or(guest, |(p, _)| p));
    let nat = |listen: u16, connect: u16| json!({"type": "proxy", "nat": "true", "listen": format!("tcp:{gw}:{listen}"), "connect": format!("tcp:{guest}:{connect}")});
    t.client
        .patch_instance(
            name,
            &json!({"devices": {"kbsink": dev(port, 7000), "kbecho": dev(port + 1, 7001),
                                "kbnsink": nat(port + 2, 7000), "kbnecho": nat(port + 3, 7001)}}),
        )
        .await?;
    let via_proxy = format!("127.0.0.1:{port}");
    let direct = format!("{guest}:7000");
    wait_listening(&direct).await?;
    for (label, sink, echo) in [
        (
            "proxy device",
            via_proxy.clone(),
            format!("127.0.0.1:{}", port + 1),
        ),
        (
            "proxy device, nat=true",
            format!("{gw}:{}", port + 2),
            format!("{gw}:{}", port + 3),
        ),
        ("direct", direct.clone(), format!("{guest}:7001")),
    ] {
        let secs = bulk(&sink).await.with_context(|| format!("bulk {label}"))?;
        r.add(&format!("64 MiB host → guest, {label}"), &t.name, "s", secs);
        for rtt in round_trips(&echo)
            .await
            .with_context(|| format!("round trips {label}"))?
        {
            r.add(&format!("64 B round trip, {label}"), &t.name, "s", rtt);
        }
    }
    Ok(())
}

async fn wait_listening(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn bulk(addr: &str) -> Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chunk = vec![0x5au8; 1 << 20];
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    for _ in 0..BULK / chunk.len() {
        s.write_all(&chunk).await?;
    }
    let mut ack = [0u8; 2];
    s.read_exact(&mut ack).await?;
    anyhow::ensure!(&ack == b"ok", "the sink did not confirm ({ack:?})");
    Ok(t0.elapsed().as_secs_f64())
}

async fn round_trips(addr: &str) -> Result<Vec<f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let mut out = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t0 = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut buf).await?;
        out.push(t0.elapsed().as_secs_f64());
    }
    Ok(out)
}

async fn wait_ipv4(t: &Target, name: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let st = t.client.instance_state(name).await?;
        let addr = st
            .network
            .as_ref()
            .and_then(|n| n.get("eth0"))
            .and_then(|n| {
                n.addresses
                    .iter()
                    .find(|a| a.family == "inet" && a.scope == "global")
                    .map(|a| a.address.clone())
            });
        if let Some(a) = addr {
            return Ok(a);
        }
        if Instant::now() > deadline {
            bail!("{name} on {} got no lease within {timeout:?}", t.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
