//! Proxy devices: host listeners forwarding TCP and UDP into an instance,
//! hot-plugged, refused when the address is taken, restored after a daemon
//! restart; and `nat=true` devices, forwarded by the kernel to a NIC's
//! static address (the client's address kept, no daemon on the path).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use kante_integration::net::{
    create, devices, host_uses, network_config, network_create, nic, sh, wait_ipv4, TestNetns,
};
use kante_integration::{free_port, nft_tables_of, run, Daemon, TestImage};
use serde_json::json;

fn tcp_echo(port: u16, msg: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(msg.as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn udp_echo(port: u16, msg: &str) -> std::io::Result<String> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.send_to(msg.as_bytes(), ("127.0.0.1", port))?;
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Retries while the server inside comes up.
fn eventually<T>(mut f: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() > deadline => panic!("gave up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

const ECHO_SERVERS: &str = r#"
import socket, threading
def answer(s, tag):
    while True:
        c, _ = s.accept()
        data = b""
        while True:
            d = c.recv(65536)
            if not d: break
            data += d
        c.sendall(tag + data); c.close()
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 7000)); s.listen(16)
    answer(s, b"tcp:")
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 7001))
    while True:
        d, a = u.recvfrom(65536); u.sendto(b"udp:" + d, a)
def unix():
    import os
    try: os.unlink("/run/echo.sock")
    except FileNotFoundError: pass
    s = socket.socket(socket.AF_UNIX); s.bind("/run/echo.sock"); s.listen(16)
    answer(s, b"unix:")
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=unix, daemon=True).start()
udp()
"#;

/// Removes devices from an instance (a PUT of the rest: PATCH only merges).
async fn unplug(d: &Daemon, name: &str, devices: &[&str]) {
    let mut inst = d.client.instance(name).await.unwrap();
    for k in devices {
        inst.devices.remove(*k);
    }
    let put = kante_api::instance::InstancePut {
        devices: inst.devices,
        config: inst.config,
        profiles: Some(inst.profiles),
        ..Default::default()
    };
    d.client.update_instance(name, &put, None).await.unwrap();
}

/// Sends `msg` over the unix socket at `path`, half-closes, reads the answer.
fn unix_echo(path: &std::path::Path, msg: &str) -> std::io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(msg.as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn proxy_devices_forward_tcp_and_udp() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        d.launch(&fp, "web", &[]).await;
        d.client
            .file_push_bytes(
                "web",
                "/root/echo.py",
                ECHO_SERVERS.as_bytes().to_vec(),
                &Default::default(),
            )
            .await
            .unwrap();
        let start_servers = || async {
            let post = kante_api::exec::ExecPost {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "nohup python3 /root/echo.py >/dev/null 2>&1 &".into(),
                ],
                ..Default::default()
            };
            d.client.exec_capture_with("web", post, None).await.unwrap();
        };
        start_servers().await;

        let (tp, up) = (free_port(), free_port());
        let dev = |listen: String, connect: &str| -> std::collections::BTreeMap<String, String> {
            [
                ("type", "proxy"),
                ("listen", listen.as_str()),
                ("connect", connect),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        // PATCH merges devices by name, as LXD does.
        let mut patch = kante_api::instance::InstancePut::default();
        patch.devices.insert(
            "t".into(),
            dev(format!("tcp:127.0.0.1:{tp}"), "tcp:127.0.0.1:7000"),
        );
        patch.devices.insert(
            "u".into(),
            dev(format!("udp:127.0.0.1:{up}"), "udp:127.0.0.1:7001"),
        );
        d.client.patch_instance("web", &patch).await.unwrap();

        assert_eq!(eventually(|| tcp_echo(tp, "hello")), "tcp:hello");
        assert_eq!(eventually(|| udp_echo(up, "ping")), "udp:ping");
        // Many connections in a row, and a large payload.
        for i in 0..20 {
            assert_eq!(tcp_echo(tp, &format!("n{i}")).unwrap(), format!("tcp:n{i}"));
        }
        let big = "x".repeat(1 << 20);
        assert_eq!(tcp_echo(tp, &big).unwrap().len(), big.len() + 4);

        // Unix sockets, both ways: a socket on the host (its mode and
        // owner as asked) to TCP in the guest, and TCP on the host to a
        // socket in the guest; bytes spliced, a half-close carried.
        let sockdir = tempfile::Builder::new().prefix("kt-px").tempdir().unwrap();
        let host_sock = sockdir.path().join("web.sock");
        let xp = free_port();
        let mut unix = kante_api::instance::InstancePut::default();
        unix.devices.insert(
            "hu".into(),
            [
                ("type", "proxy"),
                ("listen", &format!("unix:{}", host_sock.display())),
                ("connect", "tcp:127.0.0.1:7000"),
                ("mode", "0660"),
                ("uid", "1234"),
                ("gid", "5678"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        unix.devices.insert(
            "gu".into(),
            dev(format!("tcp:127.0.0.1:{xp}"), "unix:/run/echo.sock"),
        );
        // A guest's symlink out of its root leads nowhere on the host.
        let (code, out) = d
            .sh(
                "web",
                &format!("ln -sf {} /run/evil.sock", host_sock.display()),
            )
            .await;
        assert_eq!(code, 0, "{out}");
        let ep = free_port();
        unix.devices.insert(
            "evil".into(),
            dev(format!("tcp:127.0.0.1:{ep}"), "unix:/run/evil.sock"),
        );
        d.client.patch_instance("web", &unix).await.unwrap();
        assert_eq!(
            eventually(|| unix_echo(&host_sock, "over unix")),
            "tcp:over unix"
        );
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let m = std::fs::metadata(&host_sock).unwrap();
            assert_eq!(
                (m.permissions().mode() & 0o777, m.uid(), m.gid()),
                (0o660, 1234, 5678)
            );
        }
        assert_eq!(eventually(|| tcp_echo(xp, "to unix")), "unix:to unix");
        assert_eq!(tcp_echo(xp, &big).unwrap().len(), big.len() + 5);
        assert_eq!(
            tcp_echo(ep, "escape").unwrap_or_default(),
            "",
            "reached the host's socket"
        );
        // Refused: abstract sockets, a relative path, udp to a socket, and
        // a listener where a file is that is no socket.
        let not_a_socket = sockdir.path().join("file");
        std::fs::write(&not_a_socket, "keep").unwrap();
        for (listen, connect) in [
            ("unix:@kt".to_string(), "tcp:127.0.0.1:7000"),
            ("unix:rel.sock".to_string(), "tcp:127.0.0.1:7000"),
            (
                format!("udp:127.0.0.1:{}", free_port()),
                "unix:/run/echo.sock",
            ),
            (
                format!("unix:{}", not_a_socket.display()),
                "tcp:127.0.0.1:7000",
            ),
        ] {
            let mut bad = kante_api::instance::InstancePut::default();
            bad.devices
                .insert("bad".into(), dev(listen.clone(), connect));
            let e = d.client.patch_instance("web", &bad).await.unwrap_err();
            assert_eq!(e.status(), Some(400), "{listen}: {e}");
        }
        assert_eq!(std::fs::read_to_string(&not_a_socket).unwrap(), "keep");
        // Unplugged: the host's socket file goes with its listener.
        unplug(&d, "web", &["hu", "gu", "evil"]).await;
        assert!(!host_sock.exists(), "the socket file outlived its device");
        assert!(TcpStream::connect(("127.0.0.1", xp)).is_err());

        // A second device on a taken address is refused, and nothing changes.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut bad = kante_api::instance::InstancePut::default();
        bad.devices.insert(
            "busy".into(),
            dev(format!("tcp:127.0.0.1:{port}"), "tcp:127.0.0.1:7000"),
        );
        let e = d.client.patch_instance("web", &bad).await.unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        assert!(!d
            .client
            .instance("web")
            .await
            .unwrap()
            .devices
            .contains_key("busy"));
        drop(taken);

        // The daemon restarts: the listeners come back for the running instance.
        d.restart().await;
        assert_eq!(eventually(|| tcp_echo(tp, "again")), "tcp:again");
        assert_eq!(eventually(|| udp_echo(up, "again")), "udp:again");

        // Hot-unplug closes the listener.
        unplug(&d, "web", &["t"]).await;
        assert!(
            TcpStream::connect(("127.0.0.1", tp)).is_err(),
            "listener still open after unplug"
        );
        // Stopping the instance closes the rest.
        d.client.stop_instance("web", true, -1).await.unwrap();
        assert!(udp_echo(up, "gone").is_err());
        // The host-side UDP listener itself is closed: its port is free
        // (a timeout above would also come from the backend being gone).
        let freed = eventually(|| UdpSocket::bind(("127.0.0.1", up)));
        drop(freed);
        d.shutdown().await;
    });
}

/// Answers each TCP connection (7000) and UDP datagram (7001) with the
/// address it came from, as the guest sees it.
const PEER_SERVERS: &str = r#"
import socket, threading
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7000)); s.listen(16)
    while True:
        c, a = s.accept(); c.sendall(a[0].encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 7001))
    while True:
        d, a = u.recvfrom(2048); u.sendto(a[0].encode(), a)
threading.Thread(target=tcp, daemon=True).start()
udp()
"#;

/// `python3 -c ASK tcp|udp HOST PORT` prints what the server answered.
const ASK: &str = r#"
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "tcp":
    c = socket.create_connection((host, port), timeout=3); print(c.recv(100).decode())
else:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(1)
    for _ in range(3):
        u.sendto(b"x", (host, port))
        try:
            print(u.recvfrom(100)[0].decode()); break
        except socket.timeout:
            pass
"#;

/// Asks from inside the test's namespace `ns`; the answer, or "" on failure.
fn ask_from_ns(ns: &str, proto: &str, host: &str, port: u16) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", ASK, proto, host])
        .arg(port.to_string())
        .output()
        .expect("run python3 in the namespace");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Retries `f` until it answers (the server inside may be starting).
fn answer(mut f: impl FnMut() -> String) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = f();
        if !a.is_empty() || std::time::Instant::now() > deadline {
            return a;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn start_peer_servers(d: &Daemon) {
    let (code, out) = d
        .sh(
            "nx",
            "setsid -f python3 /root/peer.py </dev/null >/dev/null 2>&1",
        )
        .await;
    assert_eq!(code, 0, "{out}");
}

/// This daemon's `nat=true` forward tables in the kernel.
fn forward_tables(d: &Daemon) -> Vec<String> {
    nft_tables_of(&d.cgroup_prefix())
        .into_iter()
        .filter(|t| t.contains("_kante_px_"))
        .collect()
}

#[test]
fn nat_proxy_forwards_in_the_kernel() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Debian).await;
        network_create(
            &d,
            "ktpx",
            json!({"ipv4.address": "auto", "ipv6.address": "none"}),
        )
        .await
        .unwrap();
        let gw = network_config(&d, "ktpx").await["ipv4.address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/24")
            .to_string();
        let guest = format!("{}.50", gw.rsplit_once('.').unwrap().0);
        let eth0 = devices(&[(
            "eth0",
            nic(&[("network", "ktpx"), ("ipv4.address", &guest)]),
        )]);
        create(&d, &fp, "nx", &[], eth0, None).await.unwrap();
        d.client.start_instance("nx").await.unwrap();
        d.wait_systemd("nx", Duration::from_secs(60)).await;
        let got = wait_ipv4(&d, "nx", "eth0", Duration::from_secs(30)).await;
        assert_eq!(got.as_deref(), Some(guest.as_str()), "the static address");
        for (path, text) in [("/root/peer.py", PEER_SERVERS), ("/root/ask.py", ASK)] {
            d.client
                .file_push_bytes("nx", path, text.as_bytes().to_vec(), &Default::default())
                .await
                .unwrap();
        }
        start_peer_servers(&d).await;

        // "The outside": a namespace behind its own link to the host.
        assert!(!host_uses("203.0.113."), "203.0.113.0/24 is in use here");
        let outside = TestNetns::new("ktpxns", "kpxout", "203.0.113.1", "203.0.113.2");
        let proxy = |proto: &str, port: u16, target: &str, nat: &str| {
            json!({"type": "proxy", "nat": nat,
                   "listen": format!("{proto}:203.0.113.1:{port}"),
                   "connect": format!("{proto}:{target}")})
        };

        // Refused, and nothing is left: a wildcard listen address, one that
        // is not the host's, a target that is no NIC's static address.
        for (dev, why) in [
            (
                json!({"type": "proxy", "nat": "true", "listen": "tcp:0.0.0.0:8080", "connect": "tcp:0.0.0.0:7000"}),
                "host interface",
            ),
            (
                json!({"type": "proxy", "nat": "true", "listen": "tcp:192.0.2.77:8080", "connect": "tcp:0.0.0.0:7000"}),
                "not an address of this host",
            ),
            (
                proxy("tcp", 8080, "10.255.255.9:7000", "true"),
                "not the static ipv4.address",
            ),
        ] {
            let e = d
                .client
                .patch_instance("nx", &json!({"devices": {"bad": dev}}))
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(400), "{e}");
            assert!(e.to_string().contains(why), "{e}");
            assert!(!d
                .client
                .instance("nx")
                .await
                .unwrap()
                .devices
                .contains_key("bad"));
            assert!(forward_tables(&d).is_empty());
        }

        d.client
            .patch_instance(
                "nx",
                &json!({"devices": {
                    "web": proxy("tcp", 8080, "0.0.0.0:7000", "true"),
                    "dns": proxy("udp", 5353, &format!("{guest}:7001"), "true"),
                }}),
            )
            .await
            .unwrap();
        assert_eq!(forward_tables(&d).len(), 2);
        // The guest sees the client's own address: no hop through kanted,
        // which listens on neither port.
        let ask = |proto: &'static str, port: u16| {
            answer(|| ask_from_ns("ktpxns", proto, "203.0.113.1", port))
        };
        assert_eq!(ask("tcp", 8080), "203.0.113.2");
        assert_eq!(ask("udp", 5353), "203.0.113.2");
        assert_eq!(
            sh("ss -Hltnu '( sport = :8080 or sport = :5353 )'").trim(),
            ""
        );
        // The instance reaches its own forward (hairpin), seen from the
        // bridge's address.
        let (code, out) = d
            .sh("nx", "python3 /root/ask.py tcp 203.0.113.1 8080")
            .await;
        assert_eq!((code, out.trim()), (0, gw.as_str()), "hairpin");

        // The daemon is killed: the kernel keeps forwarding; a new daemon
        // puts the same tables back, not a second set.
        d.kill9();
        assert_eq!(ask("tcp", 8080), "203.0.113.2", "forwarded with no daemon");
        d.start_again().await;
        assert_eq!(forward_tables(&d).len(), 2);
        assert_eq!(ask("udp", 5353), "203.0.113.2");

        // Unplugged: its forward goes at once, the other stays.
        unplug(&d, "nx", &["dns"]).await;
        assert_eq!(forward_tables(&d).len(), 1);
        assert_eq!(ask_from_ns("ktpxns", "udp", "203.0.113.1", 5353), "");

        // Stopped and started: the forward goes and comes back.
        d.client.stop_instance("nx", true, -1).await.unwrap();
        assert!(forward_tables(&d).is_empty());
        d.client.start_instance("nx").await.unwrap();
        assert_eq!(forward_tables(&d).len(), 1);
        d.wait_systemd("nx", Duration::from_secs(60)).await;
        start_peer_servers(&d).await;
        assert_eq!(ask("tcp", 8080), "203.0.113.2");

        // The instance dies while the daemon is away: the next daemon
        // removes the forward that no running instance holds (and, told
        // not to, does not start the instance again).
        d.client
            .patch_instance("nx", &json!({"config": {"boot.autostart": "false"}}))
            .await
            .unwrap();
        let pid = d.client.instance_state("nx").await.unwrap().pid;
        d.kill9();
        sh(&format!("kill -9 {pid}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "pid {pid} outlived kill -9"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d.start_again().await;
        assert!(forward_tables(&d).is_empty(), "{:?}", forward_tables(&d));
        assert_eq!(d.client.instance("nx").await.unwrap().status, "Stopped");
        assert_eq!(ask_from_ns("ktpxns", "tcp", "203.0.113.1", 8080), "");

        // A stopped instance without a static address on a managed
        // bridge is refused the device at once, not at its next start.
        let e = d
            .client
            .patch_instance(
                "nx",
                &json!({"devices": {
                    "eth0": {"type": "nic", "network": "ktpx"},
                    "web2": proxy("tcp", 8081, "0.0.0.0:7000", "true"),
                }}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains("static ipv4.address"), "{e}");
        assert!(!d
            .client
            .instance("nx")
            .await
            .unwrap()
            .devices
            .contains_key("web2"));

        d.client.delete_instance("nx").await.unwrap();
        d.client.delete("/1.0/networks/ktpx").await.unwrap();
        drop(outside);
        d.shutdown().await;
    });
}
