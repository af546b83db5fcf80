//! Seed 000's goal itself: Docker, and Docker Swarm, inside a nesting-enabled
//! Debian guest on a managed bridge with NAT. The guest installs Debian's
//! `docker.io` through apt (its only traffic off the host: Debian's mirror,
//! resolved through the bridge's dnsmasq, which forwards to the host's
//! resolvers), then runs a container, publishes a port that the host reaches
//! on the guest's bridge address, and initialises a swarm.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kante_integration::{kante_ok, run, Daemon, TestImage};

async fn sh_ok(d: &Daemon, script: &str) -> String {
    let (code, out) = d.sh("dock", script).await;
    assert_eq!(code, 0, "{script}:\n{out}");
    out
}

/// A tiny image made in the guest from busybox-static: no registry needed.
const IMPORT_BUSYBOX: &str = "set -e; mkdir -p /tmp/bb/bin /tmp/bb/www
cp /bin/busybox /tmp/bb/bin/
for a in sh echo cat httpd hostname; do ln -sf busybox /tmp/bb/bin/$a; done
echo served-by-docker > /tmp/bb/www/index.html
tar -C /tmp/bb -c . | docker import - bb:local >/dev/null";

/// One plain HTTP GET of `/`; the whole response, head and body.
fn http_get(addr: &str) -> std::io::Result<String> {
    let addr = addr.parse().map_err(std::io::Error::other)?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn docker_and_swarm_run_inside_a_nesting_guest() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        kante_ok(
            &d,
            &[
                "network",
                "create",
                "ktdock0",
                "ipv4.address=10.250.77.1/24",
                "ipv4.nat=true",
                "ipv6.address=none",
            ],
        );
        let nic: kante_api::DevicesMap = serde_json::from_value(serde_json::json!({
            "eth0": {"type": "nic", "network": "ktdock0", "name": "eth0"}
        }))
        .unwrap();
        let config = [
            ("security.nesting", "true"),
            ("security.syscalls.intercept.mknod", "true"),
            ("security.syscalls.intercept.setxattr", "true"),
        ];
        d.create_with_devices(&fp, "dock", &config, nic).await;
        d.client.start_instance("dock").await.unwrap();
        let state = d.wait_systemd("dock", Duration::from_secs(120)).await;
        assert!(state == "running" || state == "degraded", "{state}");

        // Names outside the instance domain resolve through the bridge.
        let hosts = sh_ok(&d, "getent hosts deb.debian.org").await;
        assert!(hosts.contains("deb.debian.org"), "{hosts}");
        sh_ok(
            &d,
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/tmp/apt.log 2>&1 && \
             apt-get install -y -q --no-install-recommends docker.io busybox-static \
             >>/tmp/apt.log 2>&1 || { tail -20 /tmp/apt.log; exit 1; }",
        )
        .await;

        let info = sh_ok(&d, "docker info --format '{{.Driver}} {{.CgroupVersion}}'").await;
        assert_eq!(
            info.trim(),
            "overlay2 2",
            "storage driver and cgroup version"
        );
        sh_ok(&d, IMPORT_BUSYBOX).await;
        let out = sh_ok(
            &d,
            "docker run --rm bb:local /bin/sh -c 'echo hello from docker'",
        )
        .await;
        assert_eq!(out, "hello from docker\n");

        // A published port: host → guest:8080 → docker0 → the container.
        sh_ok(
            &d,
            "docker run -d --name web -p 8080:80 bb:local /bin/httpd -f -p 80 -h /www >/dev/null",
        )
        .await;
        let ip = d
            .client
            .instance_state("dock")
            .await
            .unwrap()
            .network
            .unwrap()["eth0"]
            .addresses
            .iter()
            .find(|a| a.family == "inet")
            .map(|a| a.address.clone())
            .expect("an IPv4 address on eth0");
        assert!(ip.starts_with("10.250.77."), "{ip}");
        let mut body = String::new();
        for _ in 0..50 {
            // Until httpd listens; the last error is what the assertion shows.
            body = http_get(&format!("{ip}:8080")).unwrap_or_else(|e| e.to_string());
            if body.contains("served-by-docker") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(body.contains("served-by-docker"), "{body}");

        let swarm = sh_ok(&d, &format!("docker swarm init --advertise-addr {ip}")).await;
        assert!(swarm.contains("Swarm initialized"), "{swarm}");
        let nodes = sh_ok(
            &d,
            "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'",
        )
        .await;
        assert_eq!(nodes.trim(), "dock Leader");

        d.shutdown().await;
    });
}
