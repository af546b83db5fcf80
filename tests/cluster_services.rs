//! Service discovery on a 3-host lab cluster: instance `web` on h3
//! (bridged onto the lab's uplink, an address of the uplink's subnet)
//! carries `service.web=8080` and serves HTTP there with busybox httpd.
//! From a guest on h1 (on h1's managed bridge, whose dnsmasq is its DNS):
//! `web.svc.kante` resolves to web's address (A, and SRV
//! `_web._tcp.svc.kante` with the port) and an HTTP request (nc) to the
//! address the name gave gets the page; `kante service list` on every host shows the record. The name
//! disappears within its TTL once the instance stops, comes back when it
//! starts, and disappears again within the heartbeat's TTL after h3's
//! kanted is killed (its records' freshness rests on its heartbeat).
//! A bad `service.` key is refused with one line.

use std::time::{Duration, Instant};

use kante_integration::cluster::{down_and_check, form, on, refused};
use kante_integration::lab::Lab;
use kante_integration::net::{devices, nic};
use kante_integration::{instance_post, run, TestImage};

/// `kante service list -f csv` on host i: (name, instance, address, port, proto, member).
fn services(lab: &Lab, i: u32) -> Vec<Vec<String>> {
    on(lab, i, &["service", "list", "-f", "csv"])
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Runs `script` in the guest `client` on h1 until `done` holds of its
/// (code, output), bounded; how long it took.
async fn until(
    lab: &Lab,
    script: &str,
    limit: Duration,
    done: impl Fn(i32, &str) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let (code, out) = lab.sh(1, "client", script).await;
        if done(code, &out) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{script:?} did not get there within {limit:?}: {code} {out}\nh3 log:\n{}",
            lab.log(3)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn a_service_on_h3_resolves_from_a_guest_on_h1_and_goes_with_it() {
    run(async {
        let mut lab = Lab::up(3);
        let fp1 = lab.import(1, TestImage::Busybox).await;
        let fp3 = lab.import(3, TestImage::Busybox).await;
        form(&lab);

        // web on h3, on the uplink with a fixed address.
        let base = lab.subnet.trim_end_matches(".0/24").to_string();
        let web_ip = format!("{base}.103");
        let uplink = devices(&[(
            "eth0",
            nic(&[("nictype", "bridged"), ("parent", "uplink0")]),
        )]);
        let c3 = lab.client(3);
        // Placed on h3 by name: a clustered create is scheduled otherwise.
        c3.create_instance_at(
            &instance_post(&fp3, "web", &[("service.web", "8080")], uplink),
            Some("h3"),
        )
        .await
        .unwrap_or_else(|e| panic!("creating web on h3: {e}\n{}", lab.log(3)));
        let e = refused(&lab, 3, &["config", "set", "web", "service.Bad_Name=80"]);
        assert!(e.contains("Invalid service name"), "{e}");
        let e = refused(&lab, 3, &["config", "set", "web", "service.x=70000"]);
        assert!(e.contains("Invalid port"), "{e}");
        let e = refused(&lab, 3, &["config", "set", "web", "service.x=80/sctp"]);
        assert!(e.contains("Invalid protocol"), "{e}");
        let serve = format!(
            "ip addr add {web_ip}/24 dev eth0 && mkdir -p /www && echo hello-from-h3 > /www/index.html && httpd -p 8080 -h /www"
        );
        let start_web = || async {
            on(&lab, 3, &["start", "web"]);
            let (code, out) = lab.sh(3, "web", &serve).await;
            assert_eq!(code, 0, "{out}");
        };
        start_web().await;

        // client on h1, on h1's managed bridge, its DNS the bridge's dnsmasq.
        let bridge = on(&lab, 1, &["network", "get", "kantebr0", "ipv4.address"]);
        let gw = bridge.trim().split('/').next().unwrap().to_string();
        let client_ip = format!("{}.50", gw.rsplit_once('.').unwrap().0);
        let managed = devices(&[(
            "eth0",
            nic(&[("nictype", "bridged"), ("parent", "kantebr0")]),
        )]);
        let c1 = lab.client(1);
        c1.create_instance_at(&instance_post(&fp1, "client", &[], managed), Some("h1"))
            .await
            .unwrap_or_else(|e| panic!("creating client on h1: {e}\n{}", lab.log(1)));
        c1.start_instance("client").await.unwrap();
        let (code, out) = lab
            .sh(
                1,
                "client",
                &format!(
                    "ip addr add {client_ip}/24 dev eth0 && ip route add default via {gw} && echo nameserver {gw} > /etc/resolv.conf"
                ),
            )
            .await;
        assert_eq!(code, 0, "{out}");

        // The name resolves from h1's guest, and the guest connects by it.
        let lookup = format!("nslookup web.svc.kante {gw}");
        let took = until(&lab, &lookup, Duration::from_secs(30), |code, out| {
            code == 0 && out.contains(&web_ip)
        })
        .await;
        eprintln!("web.svc.kante resolved on h1 after {took:?}");
        // The guest connects to the address the name gave (busybox's
        // static wget crashes here: an HTTP request through nc instead).
        let fetch = format!(
            "ip=$(nslookup web.svc.kante {gw} | awk '/^Address/ {{a=$NF}} END {{print a}}') && printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $ip 8080"
        );
        let (code, out) = lab.sh(1, "client", &fetch).await;
        assert!(code == 0 && out.contains("hello-from-h3"), "{code} {out}");
        let (code, out) = lab
            .sh(
                1,
                "client",
                &format!("nslookup -type=SRV _web._tcp.svc.kante {gw}"),
            )
            .await;
        assert!(code == 0 && out.contains("8080"), "{code} {out}");
        for i in 1..=3 {
            let s = services(&lab, i);
            assert!(
                s.iter()
                    .any(|r| r[..] == ["web", "web", web_ip.as_str(), "8080", "tcp", "h3"]),
                "h{i}: {s:?}"
            );
        }
        let api = lab.client(1).get("/1.0/services").await.unwrap();
        let listed = api
            .envelope
            .metadata
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(listed.len(), 1, "{:?}", api.envelope);
        assert_eq!(listed[0]["address"], web_ip.as_str());
        assert_eq!(listed[0]["member"], "h3");

        // Stopped: gone within its TTL (2 s publishing, 5 s DNS TTL).
        on(&lab, 3, &["stop", "web", "--force"]);
        let took = until(&lab, &lookup, Duration::from_secs(15), |_, out| {
            !out.contains(&web_ip)
        })
        .await;
        eprintln!("gone {took:?} after web stopped");
        assert!(services(&lab, 1).is_empty());

        // Started again: back; then h3's kanted killed: gone within the
        // heartbeat's TTL (10 s) and the DNS TTL.
        start_web().await;
        until(&lab, &lookup, Duration::from_secs(30), |code, out| {
            code == 0 && out.contains(&web_ip)
        })
        .await;
        let pid = lab.pid(3);
        // SAFETY: a kill of the lab's own daemon.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let took = until(&lab, &lookup, Duration::from_secs(25), |_, out| {
            !out.contains(&web_ip)
        })
        .await;
        eprintln!("gone {took:?} after h3's kanted was killed");
        assert!(services(&lab, 1).is_empty(), "{:?}", services(&lab, 1));

        down_and_check(&mut lab, Vec::new());
    });
}
