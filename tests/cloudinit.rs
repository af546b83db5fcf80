//! cloud-init in a Debian guest, checked from outside: seed 000's
//! cloud-config (a user with groups and a password hash, the hostname) and
//! seed 002's static `user.network-config` take effect through the image's
//! NoCloud seed templates; changed user-data makes cloud-init run again;
//! cloud-init data that is not valid YAML is refused and changes nothing.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use kante_integration::{run, Daemon, TestImage};
use serde_json::json;

type Devices = BTreeMap<String, BTreeMap<String, String>>;

fn nic(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut d: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    d.insert("type".into(), "nic".into());
    d
}

fn host_uses(prefix: &str) -> bool {
    let out = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(prefix)
}

/// Seed 000's `cloud-init.cfg` (section 7) as `envsubst` fills it in, less
/// what would reach the internet, which these tests never do: the
/// `ssh_import_id` (keys from GitHub), the docker.com apt source and the
/// packages (docker-ce & co.), and with them package_update/upgrade/reboot
/// (an apt run against the mirrors from inside the guest). The `docker`
/// group stays: cloud-init creates groups that do not exist.
fn seed_000_user_data(hostname: &str, hash: &str) -> String {
    format!(
        "#cloud-config

hostname: \"{hostname}\"
users: 
  - name: multimico
    passwd: \"{hash}\"
    groups:
      - sudo
      - adm
      - plugdev
      - cdrom
      - docker
    lock_passwd: false
    shell: /bin/bash

network:
  version: 2
  ethernets:
    eth0:
      dhcp: yes
      
apt: 
  preserve_sources_list: true
"
    )
}

/// Seed 002's network config for the `if-demo` NIC, in a test subnet.
const SEED_002_NETWORK: &str = "version: 1
config:
- type: physical
  name: if-demo
  subnets:
  - type: static
    address: 10.213.77.160
    netmask: 255.255.255.0
    gateway: 10.213.77.1
    dns_nameservers: [10.213.77.1]
";

#[test]
fn cloud_init_user_hostname_static_network_and_bad_yaml() {
    run(async {
        assert!(
            !host_uses("10.213.77."),
            "10.213.77.0/24 is in use on this host"
        );
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        // eth0 of ci-user gets DHCP from here (the image's default network config).
        d.client
            .post(
                "/1.0/networks",
                &json!({"name": "ktci0", "config": {"ipv4.address": "auto", "ipv6.address": "none"}}),
            )
            .await
            .unwrap();
        // Seed 002's br-demo: no DHCP, the guest's address is static.
        d.client
            .post(
                "/1.0/networks",
                &json!({"name": "ktcidemo", "config": {
                    "ipv4.address": "10.213.77.1/24", "ipv4.dhcp": "false",
                    "ipv4.nat": "false", "ipv6.address": "none"}}),
            )
            .await
            .unwrap();

        let hash = Command::new("sh")
            .args(["-c", "echo -n f00b4rista | openssl passwd -6 -stdin"])
            .output()
            .unwrap();
        let hash = String::from_utf8(hash.stdout).unwrap().trim().to_string();
        assert!(hash.starts_with("$6$"), "{hash}");
        let user_data = seed_000_user_data("docker1", &hash);
        let eth0: Devices = [("eth0".to_string(), nic(&[("network", "ktci0")]))].into();
        d.create_with_devices(&fp, "ci-user", &[("user.user-data", &user_data)], eth0)
            .await;
        let demo: Devices = [(
            "if-demo".to_string(),
            nic(&[("network", "ktcidemo"), ("name", "if-demo")]),
        )]
        .into();
        d.create_with_devices(
            &fp,
            "ci-net",
            &[("user.network-config", SEED_002_NETWORK)],
            demo,
        )
        .await;
        let t0 = Instant::now();
        for n in ["ci-user", "ci-net"] {
            d.client.start_instance(n).await.unwrap();
        }
        for n in ["ci-user", "ci-net"] {
            let state = d.wait_systemd(n, Duration::from_secs(120)).await;
            let status = d.cloud_init_done(n).await;
            assert!(status.contains("status: done"), "{n}: {status}");
            assert!(state == "running", "{n}: systemd {state}");
        }
        eprintln!("both booted, cloud-init done: {:?}", t0.elapsed());

        // (a) Seed 000: the user, its groups, shell and password hash; the hostname.
        let (code, out) = d.sh("ci-user", "getent passwd multimico").await;
        assert_eq!(code, 0, "{out}");
        assert!(out.trim_end().ends_with(":/bin/bash"), "{out}");
        let (_, out) = d.sh("ci-user", "id -nG multimico").await;
        let groups: Vec<&str> = out.split_whitespace().collect();
        for g in ["sudo", "adm", "plugdev", "cdrom", "docker"] {
            assert!(groups.contains(&g), "multimico lacks {g}: {out}");
        }
        let (_, out) = d.sh("ci-user", "grep '^multimico:' /etc/shadow").await;
        assert_eq!(out.trim().split(':').nth(1), Some(hash.as_str()), "{out}");
        let (_, out) = d.sh("ci-user", "hostname").await;
        assert_eq!(out.trim(), "docker1");
        // The seed itself: the daemon's instance-id, the default DHCP config on eth0.
        let cfg = d.client.instance("ci-user").await.unwrap().config;
        let id = cfg["volatile.cloud-init.instance-id"].clone();
        let (_, out) = d.sh("ci-user", "cloud-init query instance_id").await;
        assert_eq!(out.trim(), id);
        let (_, out) = d
            .sh(
                "ci-user",
                "cat /var/lib/cloud/seed/nocloud-net/network-config",
            )
            .await;
        assert!(
            out.contains("name: eth0") && out.contains("type: dhcp"),
            "{out}"
        );
        let (_, out) = d.sh("ci-user", "ip -4 -o addr show dev eth0").await;
        assert!(out.contains("inet "), "no DHCP lease on eth0: {out}");

        // (b) Seed 002: exactly the static address on if-demo, reachable from the bridge.
        let (_, out) = d.sh("ci-net", "ip -4 -o addr show dev if-demo").await;
        let addrs: Vec<&str> = out
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet")?;
                words.next()
            })
            .collect();
        assert_eq!(addrs, ["10.213.77.160/24"], "{out}");
        let (_, out) = d.sh("ci-net", "ip route show default").await;
        assert!(out.contains("via 10.213.77.1 dev if-demo"), "{out}");
        let (_, out) = d.sh("ci-net", "resolvectl dns if-demo").await;
        assert!(out.contains("10.213.77.1"), "{out}");
        let ping = Command::new("ping")
            .args(["-c1", "-W3", "-I", "ktcidemo", "10.213.77.160"])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "{}",
            String::from_utf8_lossy(&ping.stdout)
        );

        // (c) Not valid YAML: 400 with the reason, and the config stays as it was.
        let before = d.client.instance("ci-net").await.unwrap().config;
        for (key, value) in [
            ("user.user-data", "#cloud-config\nusers: [unclosed\n"),
            ("cloud-init.user-data", "#cloud-config\nusers: {\n"),
            ("user.network-config", "version: 1\nconfig: [\n"),
            ("cloud-init.network-config", "just a string"),
            ("user.meta-data", "a: {b\n"),
            ("cloud-init.vendor-data", "hello: world\n"),
        ] {
            let err = d
                .client
                .patch_instance("ci-net", &json!({"config": {key: value}}))
                .await
                .unwrap_err();
            assert_eq!(err.status(), Some(400), "{key}: {err}");
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        assert_eq!(d.client.instance("ci-net").await.unwrap().config, before);
        // A script is user-data as it is.
        d.client
            .patch_instance(
                "ci-net",
                &json!({"config": {"user.user-data": "#!/bin/sh\necho {not yaml\n"}}),
            )
            .await
            .unwrap();

        // New user-data: a new instance-id, and cloud-init runs again at the next start.
        d.client
            .patch_instance("ci-user", &json!({"config": {"limits.processes": "2000"}}))
            .await
            .unwrap();
        let cfg = d.client.instance("ci-user").await.unwrap().config;
        assert_eq!(cfg["volatile.cloud-init.instance-id"], id, "unrelated key");
        let more = user_data.replace(
            "users: \n",
            "users: \n  - name: second\n    shell: /bin/sh\n",
        );
        d.client
            .patch_instance("ci-user", &json!({"config": {"user.user-data": more}}))
            .await
            .unwrap();
        let cfg = d.client.instance("ci-user").await.unwrap().config;
        let id2 = cfg["volatile.cloud-init.instance-id"].clone();
        assert_ne!(id2, id);
        d.client
            .restart_instance("ci-user", false, 30)
            .await
            .unwrap();
        d.wait_systemd("ci-user", Duration::from_secs(120)).await;
        let status = d.cloud_init_done("ci-user").await;
        assert!(status.contains("status: done"), "{status}");
        let (_, out) = d.sh("ci-user", "cloud-init query instance_id").await;
        assert_eq!(out.trim(), id2);
        let (code, out) = d.sh("ci-user", "getent passwd second").await;
        assert_eq!(code, 0, "cloud-init did not run again: {out}");

        d.shutdown().await;
    });
}
