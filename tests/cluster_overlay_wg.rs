//! Encrypted cluster overlays (issue 18, `security.encryption=wireguard`)
//! on a 3-host lab: an unknown encryption is refused with nothing made;
//! `ov1` (encrypted, from h1) gets on every member a `kwg<VNI>` served by
//! a supervised wireguard-go (MTU 1500 − 80, key file 0600) and a VXLAN
//! whose `local` is the member's inner address (bridge MTU 1500 − 130);
//! `network show` lists the members with their endpoints, public keys and
//! handshakes. Guests on h1 and h3 ping and reach TCP each other; while
//! `tcpdump` captures the lab's uplink, a marker sent over `ov1` does not
//! appear in the capture (WireGuard UDP on the overlay's port does), the
//! same marker sent over the plain overlay `ovp` does. A killed
//! wireguard-go is restarted by the keeper and the guests talk again.
//! Delete leaves no wireguard-go, `kwg` link, key or published key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kante_integration::cluster::{down_and_check, form, on, refused};
use kante_integration::lab::Lab;
use kante_integration::net::{devices, nic};
use kante_integration::{instance_post, run, TestImage};

async fn launch(lab: &Lab, i: u32, fp: &str, name: &str, net: &str, ip: &str, gw: &str) {
    let devs = devices(&[("eth0", nic(&[("network", net)]))]);
    let c = lab.client(i);
    c.create_instance_at(
        &instance_post(fp, name, &[], devs),
        Some(format!("h{i}").as_str()),
    )
    .await
    .unwrap_or_else(|e| panic!("creating {name} on h{i}: {e}\n{}", lab.log(i)));
    c.start_instance(name).await.unwrap();
    let set = format!("ip addr add {ip}/24 dev eth0 && ip route add default via {gw}");
    let (code, out) = lab.sh(i, name, &set).await;
    assert_eq!(code, 0, "{name}: {out}");
}

/// Pings `to` from `name` on host i until it answers (bounded).
async fn await_ping(lab: &Lab, i: u32, name: &str, to: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let (code, out) = lab.sh(i, name, &format!("ping -c1 -W1 {to}")).await;
        if code == 0 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{name} on h{i} cannot reach {to}: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `marker` over TCP from `from` (host i) to `to` (host j, at `ip`)
/// and checks it arrived.
async fn send_marker(
    lab: &Lab,
    (i, from): (u32, &str),
    (j, to): (u32, &str),
    ip: &str,
    marker: &str,
) {
    let listen = "rm -f /tmp/got; (sleep 20 | nc -l -p 7000 > /tmp/got 2>/dev/null) >/dev/null 2>&1 & echo started";
    let (code, out) = lab.sh(j, to, listen).await;
    assert_eq!(code, 0, "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, _) = lab
            .sh(i, from, &format!("echo {marker} | nc -w 2 {ip} 7000"))
            .await;
        let (_, got) = lab.sh(j, to, "cat /tmp/got").await;
        if code == 0 && got.contains(marker) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{marker} did not reach {to}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `tcpdump` on h1's port of the lab's uplink (everything h1 sends or
/// receives on it).
fn capture(lab: &Lab, file: &std::path::Path) -> Child {
    let up = format!("k{}-h1", lab.name);
    let c = Command::new("tcpdump")
        .args([
            "-i",
            &up,
            "-Z",
            "root",
            "--immediate-mode",
            "-U",
            "-s",
            "0",
            "-w",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(file.with_extension("err")).unwrap())
        .spawn()
        .expect("tcpdump (Debian package tcpdump)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(file).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "tcpdump did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

fn stop(mut c: Child) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let _ = c.wait();
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Packets of the capture matching the filter `f`.
fn packets(file: &std::path::Path, f: &str) -> usize {
    let o = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(file)
        .arg(f)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).lines().count()
}

/// Processes whose command line holds `word` (wireguard-go of a device).
fn wireguard_gos(word: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"wireguard-go"))
            && args.contains(&word.as_bytes())
        {
            v.push(pid);
        }
    }
    v
}

#[test]
fn encrypted_overlay_carries_no_plaintext_on_the_uplink() {
    run(async {
        let mut lab = Lab::up(3);
        let fp1 = lab.import(1, TestImage::Busybox).await;
        let fp3 = lab.import(3, TestImage::Busybox).await;
        form(&lab);
        let create = ["network", "create", "ov1", "--type", "overlay"];
        let e = refused(
            &lab,
            1,
            &[
                &create[..],
                &["ipv4.address=10.0.9.1/24", "security.encryption=ipsec"],
            ]
            .concat(),
        );
        assert!(e.contains("security.encryption \"ipsec\""), "{e}");
        for i in 1..=3 {
            let links = lab.exec_ok(i, &["ip", "-o", "link"]);
            assert!(
                !links.contains(": ov1") && !links.contains("kwg"),
                "h{i}: {links}"
            );
        }
        on(
            &lab,
            1,
            &[
                &create[..],
                &["ipv4.address=10.0.9.1/24", "security.encryption=wireguard"],
            ]
            .concat(),
        );
        on(
            &lab,
            2,
            &[
                "network",
                "create",
                "ovp",
                "--type",
                "overlay",
                "ipv4.address=10.0.8.1/24",
            ],
        );
        let vni: u32 = on(&lab, 3, &["network", "get", "ov1", "overlay.vni"])
            .trim()
            .parse()
            .unwrap();
        let (kwg, kov) = (format!("kwg{vni}"), format!("kov{vni}"));
        let block = vni % 16384;
        let port = 40000 + block;
        let inner = |i: u32| {
            let base = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)) + (block << 8) + i;
            std::net::Ipv4Addr::from(base).to_string()
        };
        for i in 1..=3 {
            let w = lab.exec_ok(i, &["ip", "-o", "addr", "show", &kwg]);
            assert!(w.contains(&format!("inet {}/24", inner(i))), "h{i}: {w}");
            let l = lab.exec_ok(i, &["ip", "-o", "link", "show", &kwg]);
            assert!(l.contains("mtu 1420"), "h{i}: {l}");
            let d = lab.exec_ok(i, &["ip", "-d", "-o", "link", "show", &kov]);
            for want in [
                format!("local {} ", inner(i)),
                "mtu 1370".into(),
                "master ov1".into(),
            ] {
                assert!(d.contains(&want), "h{i}: {want:?} not in {d}");
            }
            let key = lab.state(i).join("networks/ov1/wg.key");
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&key).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "h{i}: {}", key.display());
        }
        assert_eq!(wireguard_gos(&kwg).len(), 3);

        // network show: every member, its endpoint and key, handshakes.
        let start = Instant::now();
        loop {
            let show = on(&lab, 1, &["network", "show", "ov1"]);
            let ok = (1..=3).all(|i| show.contains(&format!("underlay: {}", lab.address(i))))
                && show.matches("public_key:").count() == 3
                && show.matches("handshake_age:").count() == 2
                && show.contains(&format!("port: {port}"))
                && show.contains("encryption: wireguard");
            if ok {
                eprintln!("{show}");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{show}");
            std::thread::sleep(Duration::from_millis(500));
        }
        let info = on(&lab, 3, &["network", "info", "ov1"]);
        assert!(info.contains("1370"), "{info}");

        launch(&lab, 1, &fp1, "a1", "ov1", "10.0.9.11", "10.0.9.1").await;
        launch(&lab, 3, &fp3, "a3", "ov1", "10.0.9.13", "10.0.9.1").await;
        launch(&lab, 1, &fp1, "b1", "ovp", "10.0.8.11", "10.0.8.1").await;
        launch(&lab, 3, &fp3, "b3", "ovp", "10.0.8.13", "10.0.8.1").await;
        await_ping(&lab, 1, "a1", "10.0.9.13", Duration::from_secs(20)).await;
        await_ping(&lab, 1, "b1", "10.0.8.13", Duration::from_secs(20)).await;
        let (code, out) = lab.sh(3, "a3", "ping -c3 -W3 10.0.9.11").await;
        assert_eq!(code, 0, "a3 cannot reach a1 over the encrypted ov1: {out}");

        let tmp = tempfile::tempdir().unwrap();
        let pcap = tmp.path().join("uplink.pcap");
        let tcpdump = capture(&lab, &pcap);
        let secret = "kante-secret-marker-7d1f";
        let plain = "kante-plain-marker-93ab";
        send_marker(&lab, (1, "a1"), (3, "a3"), "10.0.9.13", secret).await;
        send_marker(&lab, (1, "b1"), (3, "b3"), "10.0.8.13", plain).await;
        std::thread::sleep(Duration::from_millis(1500));
        stop(tcpdump);
        let bytes = std::fs::read(&pcap).unwrap();
        assert!(
            contains(&bytes, plain),
            "the capture missed the plain overlay's marker ({} bytes; tcpdump: {})",
            bytes.len(),
            std::fs::read_to_string(pcap.with_extension("err")).unwrap_or_default()
        );
        assert!(
            !contains(&bytes, secret),
            "the encrypted overlay's marker is in clear on the uplink"
        );
        let wg = packets(&pcap, &format!("udp port {port}"));
        assert!(wg > 0, "no WireGuard UDP on port {port}");
        let vxlan_in_clear = packets(&pcap, &format!("udp port 4789 and host {}", lab.address(1)));
        assert!(
            vxlan_in_clear > 0,
            "the plain overlay's VXLAN was not captured"
        );
        eprintln!("{wg} WireGuard packets on port {port}, {vxlan_in_clear} plain VXLAN");

        let keys = |show: &str| -> Vec<String> {
            show.lines()
                .filter_map(|l| l.trim().strip_prefix("public_key: "))
                .map(str::to_string)
                .collect()
        };
        let old_keys = keys(&on(&lab, 2, &["network", "show", "ov1"]));
        assert_eq!(old_keys.len(), 3, "{old_keys:?}");

        // A dead wireguard-go is restarted by the keeper.
        let before = wireguard_gos(&kwg);
        let pid3 = std::fs::read_to_string(lab.state(3).join("networks/ov1/wireguard-go.pid"))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap();
        assert!(before.contains(&(pid3 as u32)));
        // SAFETY: a kill of h3's own wireguard-go.
        unsafe { libc::kill(pid3, libc::SIGKILL) };
        await_ping(&lab, 1, "a1", "10.0.9.13", Duration::from_secs(30)).await;
        let after = wireguard_gos(&kwg);
        assert_eq!(after.len(), 3, "{after:?}");
        assert!(!after.contains(&(pid3 as u32)));

        for (i, name) in [(1, "a1"), (3, "a3"), (1, "b1"), (3, "b3")] {
            on(&lab, i, &["delete", name, "--force"]);
        }
        on(&lab, 2, &["network", "delete", "ov1"]);
        on(&lab, 2, &["network", "delete", "ovp"]);
        assert!(wireguard_gos(&kwg).is_empty(), "wireguard-go left");
        for i in 1..=3 {
            let links = lab.exec_ok(i, &["ip", "-o", "link"]);
            assert!(
                !links.contains("kwg") && !links.contains(&kov),
                "h{i}: {links}"
            );
            assert!(
                !lab.state(i).join("networks/ov1").exists(),
                "h{i}: ov1's state"
            );
        }
        // Made again, the overlay has new keys (the old ones went with it).
        on(
            &lab,
            3,
            &[
                &create[..],
                &["ipv4.address=10.0.9.1/24", "security.encryption=wireguard"],
            ]
            .concat(),
        );
        let start = Instant::now();
        loop {
            let show = on(&lab, 3, &["network", "show", "ov1"]);
            let new = keys(&show);
            if new.len() == 3 {
                assert!(
                    new.iter().all(|k| !old_keys.contains(k)),
                    "{new:?} {old_keys:?}"
                );
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{show}");
            std::thread::sleep(Duration::from_millis(500));
        }
        on(&lab, 3, &["network", "delete", "ov1"]);
        assert!(wireguard_gos(&kwg).is_empty(), "wireguard-go left");

        down_and_check(&mut lab, vec![]);
    });
}
