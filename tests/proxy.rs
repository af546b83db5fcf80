//! Proxy devices: host listeners forwarding TCP and UDP into an instance,
//! hot-plugged, refused when the address is taken, restored after a daemon restart.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use kante_integration::{free_port, run, Daemon, TestImage};

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
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 7000)); s.listen(16)
    while True:
        c, _ = s.accept()
        data = b""
        while True:
            d = c.recv(65536)
            if not d: break
            data += d
        c.sendall(b"tcp:" + data); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 7001))
    while True:
        d, a = u.recvfrom(65536); u.sendto(b"udp:" + d, a)
threading.Thread(target=tcp, daemon=True).start()
udp()
"#;

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
        let mut inst = d.client.instance("web").await.unwrap();
        inst.devices.remove("t");
        let put = kante_api::instance::InstancePut {
            devices: inst.devices,
            config: inst.config,
            profiles: Some(inst.profiles),
            ..Default::default()
        };
        d.client.update_instance("web", &put, None).await.unwrap();
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
