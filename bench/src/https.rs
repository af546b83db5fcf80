//! The API over HTTPS, side by side with the unix socket and with LXD over
//! HTTPS: each target listens on a loopback port for the run and trusts a
//! client certificate made for it; then, interleaved round by round, a TLS
//! handshake alone, `GET /1.0` on a fresh connection (the client opens one
//! per request, so this is handshake plus request), an exec round trip and
//! `GET /1.0/instances?recursion=1` of 100 stopped instances, each over
//! HTTPS and over the socket. Last, image copies between the daemons (the
//! destination pulls a public image over HTTPS, as `lxc image copy` makes
//! it do) in MB/s: Kante to a second Kante, and Kante to and from LXD.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kante_client::kante_tls::{self, KeyPair, Role, ServerPin};
use kante_client::{Client, HttpsTarget};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::report::Results;
use crate::target::Target;
use crate::PREFIX;

pub struct Plan {
    pub rounds: usize,
    pub list: usize,
    pub busybox: std::path::PathBuf,
    pub image: std::path::PathBuf,
}

/// One target reached over HTTPS for the run; `restore` puts its
/// `core.https_address` back and removes the certificate trusted for it.
struct Remote {
    client: Client,
    port: u16,
    pin: String,
    pem: String,
    identity: KeyPair,
    old_address: String,
    trusted: String,
}

async fn open(t: &Target) -> Result<Remote> {
    let server: Value = t.client.get_json("/1.0").await?;
    let old_address = server["config"]["core.https_address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let port = kante_integration::free_port();
    t.client
        .patch(
            "/1.0",
            &json!({"config": {"core.https_address": format!("127.0.0.1:{port}")}}),
        )
        .await
        .with_context(|| format!("listening on {}", t.name))?;
    let identity = KeyPair::generate(Role::Client, &["kante-bench".to_string()])?;
    let der = identity.cert_der()?;
    t.client
        .post(
            "/1.0/certificates",
            &json!({"type": "client", "name": "kante-bench",
                    "certificate": kante_tls::encode_base64(&der)}),
        )
        .await
        .with_context(|| format!("trusting the bench on {}", t.name))?;
    // The listener's certificate, as GET /1.0 now shows it.
    let server: Value = t.client.get_json("/1.0").await?;
    let pem = server["environment"]["certificate"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cert = kante_tls::parse_certificate(pem.as_bytes())?;
    let pin = kante_tls::fingerprint(&cert);
    let client = Client::https(HttpsTarget {
        host: "127.0.0.1".into(),
        port,
        pin: ServerPin {
            expected: Some(pin.clone()),
            ..Default::default()
        },
        identity: Some(identity.clone()),
    })?;
    Ok(Remote {
        client,
        port,
        pin,
        pem,
        identity,
        old_address,
        trusted: kante_tls::fingerprint(&der),
    })
}

async fn close(t: &Target, r: &Remote) {
    let _ = t
        .client
        .delete(&format!("/1.0/certificates/{}", r.trusted))
        .await;
    let _ = t
        .client
        .patch(
            "/1.0",
            &json!({"config": {"core.https_address": r.old_address}}),
        )
        .await;
}

/// The `kanted` next to this binary.
fn kante_bin() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("binary dir")?.join("kanted"))
}

/// TCP connect and the TLS handshake, no request.
async fn handshake(r: &Remote) -> Result<Duration> {
    let pin = ServerPin {
        expected: Some(r.pin.clone()),
        ..Default::default()
    };
    let cfg = kante_tls::client_config(pin, Some(&r.identity))?;
    let connector = TlsConnector::from(Arc::new(cfg));
    let t0 = Instant::now();
    let tcp = TcpStream::connect(("127.0.0.1", r.port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = connector.connect(name, tcp).await?;
    let took = t0.elapsed();
    drop(tls);
    Ok(took)
}

pub async fn run(targets: &mut [Target], plan: &Plan, r: &mut Results) -> Result<()> {
    let mut remotes = Vec::new();
    for t in targets.iter() {
        remotes.push(open(t).await?);
    }
    let result = measure(targets, &remotes, plan, r).await;
    let copies = match &result {
        Ok(()) => copies(targets, &remotes, plan, r).await,
        Err(_) => Ok(()),
    };
    for (t, rem) in targets.iter().zip(&remotes) {
        close(t, rem).await;
        t.clean(PREFIX).await;
    }
    result.and(copies)
}

async fn measure(
    targets: &mut [Target],
    remotes: &[Remote],
    plan: &Plan,
    r: &mut Results,
) -> Result<()> {
    let name = format!("{PREFIX}tls");
    for t in targets.iter() {
        t.create(&name).await?;
        t.client.start_instance(&name).await?;
        t.wait_ready(&name, Duration::from_secs(120)).await?;
    }
    for i in 0..plan.rounds {
        for (t, rem) in targets.iter().zip(remotes) {
            r.add(
                "TLS handshake (TCP connect + TLS)",
                &t.name,
                "s",
                handshake(rem).await?.as_secs_f64(),
            );
            for (via, c) in [("HTTPS", &rem.client), ("unix socket", &t.client)] {
                let t0 = Instant::now();
                let _: Value = c.get_json("/1.0").await?;
                r.add(
                    &format!("GET /1.0, new connection, {via}"),
                    &t.name,
                    "s",
                    t0.elapsed().as_secs_f64(),
                );
                let t1 = Instant::now();
                let o = c.exec_capture(&name, &["true"], &[], None).await?;
                anyhow::ensure!(o.code == 0, "exec true failed on {} ({via})", t.name);
                r.add(
                    &format!("exec `true` round trip, {via}"),
                    &t.name,
                    "s",
                    t1.elapsed().as_secs_f64(),
                );
            }
            if i == 0 {
                eprintln!("https: {} answers over HTTPS", t.name);
            }
        }
    }
    // The list with many stopped instances.
    if plan.list > 0 && plan.busybox.exists() {
        for t in targets.iter_mut() {
            let debian = t.fingerprint.clone();
            t.import(&plan.busybox).await?;
            for k in 0..plan.list {
                t.create_bare(&format!("{PREFIX}h{k}")).await?;
            }
            t.fingerprint = debian;
        }
        for _ in 0..plan.rounds.min(10) {
            for (t, rem) in targets.iter().zip(remotes) {
                for (via, c) in [("HTTPS", &rem.client), ("unix socket", &t.client)] {
                    let t0 = Instant::now();
                    let body = c.get_body("/1.0/instances?recursion=1").await?;
                    anyhow::ensure!(body.len() > plan.list * 100, "{}: short list", t.name);
                    r.add(
                        &format!(
                            "GET /1.0/instances?recursion=1 ({} stopped), {via}",
                            plan.list
                        ),
                        &t.name,
                        "s",
                        t0.elapsed().as_secs_f64(),
                    );
                }
            }
        }
    }
    for t in targets.iter() {
        t.clean(PREFIX).await;
    }
    Ok(())
}

/// Image copies: the destination pulls the source's (public) Debian image
/// over HTTPS; the rate is the image's size over the operation's time.
async fn copies(
    targets: &[Target],
    remotes: &[Remote],
    plan: &Plan,
    r: &mut Results,
) -> Result<()> {
    let size = std::fs::metadata(&plan.image)?.len() as f64;
    let kante = targets.iter().position(|t| t.name == "kante");
    let lxd = targets.iter().position(|t| t.name == "lxd");
    // A second Kante, the destination of Kante → Kante.
    let peer_dir = std::path::PathBuf::from("/var/tmp/kante-bench-peer");
    let peer = Target::kante_from(&kante_bin()?, &peer_dir, "kante").await?;
    let mut pairs: Vec<(&Target, &Remote, &Target, String)> = Vec::new();
    if let Some(k) = kante {
        pairs.push((&targets[k], &remotes[k], &peer, "Kante → Kante".into()));
        if let Some(l) = lxd {
            pairs.push((&targets[k], &remotes[k], &targets[l], "Kante → LXD".into()));
            pairs.push((&targets[l], &remotes[l], &targets[k], "LXD → Kante".into()));
        }
    }
    let mut out = Ok(());
    for _ in 0..3 {
        for (src, rem, dst, label) in &pairs {
            match copy_once(src, rem, dst).await {
                // The column is the destination's: it runs the pull.
                Ok(took) => r.add(
                    &format!("image copy {label} (Debian image, MB/s)"),
                    &dst.name,
                    "MB/s",
                    size / 1e6 / took.as_secs_f64(),
                ),
                Err(e) => {
                    eprintln!("image copy {label}: {e:#}");
                    out = Err(e);
                }
            }
        }
    }
    peer.shutdown(PREFIX).await;
    out
}

async fn copy_once(src: &Target, rem: &Remote, dst: &Target) -> Result<Duration> {
    let fp = &src.fingerprint;
    src.client
        .patch(&format!("/1.0/images/{fp}"), &json!({"public": true}))
        .await?;
    // The destination must not have it, or there is nothing to pull.
    let _ = dst.client.delete_image(fp).await;
    let req = json!({"source": {
        "type": "image", "mode": "pull", "protocol": "lxd",
        "server": format!("https://127.0.0.1:{}", rem.port),
        "certificate": rem.pem, "fingerprint": fp}});
    let t0 = Instant::now();
    let resp = dst.client.post("/1.0/images", &req).await?;
    let Some(id) = resp.operation_id() else {
        bail!("{} answered the pull without an operation", dst.name);
    };
    dst.client.wait_operation(&id, None).await?;
    let took = t0.elapsed();
    dst.client
        .image(fp)
        .await
        .with_context(|| format!("{} has no image after the copy", dst.name))?;
    Ok(took)
}
