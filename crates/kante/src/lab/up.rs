//! `kante lab up`: checks that nothing of the lab is there and its ranges
//! are free, then makes the uplink, each host's namespace, veth and
//! bridge, starts each host's kanted, gives it an HTTPS address and a
//! managed bridge, and links every host with every other and the caller
//! by trust tokens. Each thing is recorded before it is made; a failure
//! undoes everything through `down`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kante_api::operation::Operation;
use kante_client::Client;

use super::names::{self, HOST_BRIDGE, HOST_PORT, HOST_UPLINK};
use super::record::{Item, Record};
use super::sys::{self, ip};
use super::{client_dir, host_client, state_dir, Spec};
use crate::remote::token::Token;

/// How long a new kanted has to answer.
const READY: Duration = Duration::from_secs(30);

pub async fn up(spec: &Spec) -> Result<()> {
    let conf = crate::remote::conf_dir()?;
    preflight(spec, &conf)?;
    std::fs::create_dir_all(&spec.dir)
        .with_context(|| format!("Failed to create {}", spec.dir.display()))?;
    let mut rec = Record::new(
        &spec.name,
        &spec.dir,
        spec.hosts,
        spec.plan.uplink.to_string(),
        spec.plan.bridges.to_string(),
    );
    let made = match rec.save() {
        Ok(()) => build(spec, &conf, &mut rec).await,
        Err(e) => Err(e),
    };
    if let Err(e) = made {
        if let Err(undo) = super::down::remove(&rec).await {
            eprintln!(
                "Warning: undoing the lab left something: {}",
                crate::one_line(&undo)
            );
        }
        return Err(e);
    }
    println!(
        "Lab {} is up: {} hosts on {} (this machine is {}); remotes {}",
        spec.name,
        spec.hosts,
        spec.plan.uplink,
        spec.plan.caller(),
        (1..=spec.hosts)
            .map(|i| names::caller_remote(&spec.name, i))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Refuses a lab that exists (in part) or ranges in use; makes nothing.
fn preflight(spec: &Spec, conf: &Path) -> Result<()> {
    let n = &spec.name;
    if spec.dir.join(super::record::FILE).exists() {
        bail!(
            "A lab named {n} exists already ({}); `kante lab down --name {n}` removes it",
            spec.dir.display()
        );
    }
    if std::fs::read_dir(&spec.dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "The lab directory {} exists and is not empty",
            spec.dir.display()
        );
    }
    let mut links = vec![names::uplink_bridge(n)];
    links.extend((1..=spec.hosts).map(|i| names::root_port(n, i)));
    if let Some(l) = links.iter().find(|l| sys::link_exists(l)) {
        bail!("A lab named {n} exists already: the link {l} is there (`kante lab down --name {n}` removes it)");
    }
    if let Some(ns) = (1..=names::MAX_HOSTS)
        .map(|i| names::netns(n, i))
        .find(|ns| sys::netns_exists(ns))
    {
        bail!("A lab named {n} exists already: the network namespace {ns} is there (`kante lab down --name {n}` removes it)");
    }
    for (what, net) in [
        ("subnet", spec.plan.uplink),
        ("bridge range", spec.plan.bridges),
    ] {
        let used = sys::in_use(&net)?;
        if !used.is_empty() {
            bail!(
                "The {what} {net} is in use on this machine: {}",
                used.join(", ")
            );
        }
    }
    let cfg = crate::remote::Config::load_from(conf)?;
    if let Some(r) = (1..=spec.hosts)
        .map(|i| names::caller_remote(n, i))
        .find(|r| cfg.has(r))
    {
        bail!(
            "The remote {r} exists already in {}: remove it or pick another --name",
            conf.display()
        );
    }
    Ok(())
}

async fn build(spec: &Spec, conf: &Path, rec: &mut Record) -> Result<()> {
    let n = &spec.name;
    let plan = &spec.plan;
    let prefix = plan.uplink.prefix;
    let up = names::uplink_bridge(n);
    rec.add(Item::Link { name: up.clone() })?;
    ip(&["link", "add", &up, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/{prefix}", plan.caller()),
        "dev",
        &up,
    ])?;
    ip(&["link", "set", &up, "up"])?;
    for i in 1..=spec.hosts {
        let ns = names::netns(n, i);
        let port = names::root_port(n, i);
        rec.add(Item::Netns { name: ns.clone() })?;
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        rec.add(Item::Link { name: port.clone() })?;
        ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", HOST_PORT, "netns", &ns,
        ])?;
        ip(&["link", "set", &port, "master", &up, "up"])?;
        ip(&["-n", &ns, "link", "add", HOST_UPLINK, "type", "bridge"])?;
        ip(&[
            "-n",
            &ns,
            "link",
            "set",
            HOST_PORT,
            "master",
            HOST_UPLINK,
            "up",
        ])?;
        let addr = format!("{}/{prefix}", plan.host(i));
        ip(&["-n", &ns, "addr", "add", &addr, "dev", HOST_UPLINK])?;
        ip(&["-n", &ns, "link", "set", HOST_UPLINK, "up"])?;
    }
    let mut children = Vec::new();
    for i in 1..=spec.hosts {
        children.push(start_daemon(spec, rec, i)?);
    }
    for (i, child) in (1..=spec.hosts).zip(children.iter_mut()) {
        wait_ready(
            &host_client(&spec.dir, i),
            child,
            &spec.dir.join(names::host(i)),
        )
        .await?;
    }
    for i in 1..=spec.hosts {
        configure(spec, i).await?;
    }
    link(spec, conf, rec).await
}

/// Starts host `i`'s kanted in its namespace, in a session of its own,
/// logging to `h<i>/kanted.log`; records its pid (`h<i>/kanted.pid` too).
fn start_daemon(spec: &Spec, rec: &mut Record, i: u32) -> Result<Child> {
    let hdir = spec.host_dir(i);
    let state = state_dir(&spec.dir, i);
    std::fs::create_dir_all(&hdir)
        .with_context(|| format!("Failed to create {}", hdir.display()))?;
    rec.add(Item::Daemon {
        host: i,
        state: state.clone(),
        pid: None,
        start_time: None,
    })?;
    let log_path = hdir.join("kanted.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("Failed to open {}", log_path.display()))?;
    let ns = std::fs::File::open(sys::netns_path(&names::netns(&spec.name, i)))
        .context("Failed to open the host's network namespace")?;
    let mut cmd = Command::new(&spec.kanted);
    cmd.env("KANTE_DIR", &state)
        .env("RUST_LOG", "info")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only setns(2) and setsid(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use std::os::fd::AsFd;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("Failed to start {}", spec.kanted.display()))?;
    let pid = child.id() as i32;
    rec.set_pid(i, pid, sys::start_time(pid))?;
    std::fs::write(hdir.join("kanted.pid"), format!("{pid}\n"))?;
    Ok(child)
}

async fn wait_ready(c: &Client, child: &mut Child, hdir: &Path) -> Result<()> {
    let deadline = Instant::now() + READY;
    loop {
        if super::answers(c, Duration::from_secs(2)).await {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "kanted of {} exited during start-up ({status}); see {}",
                hdir.display(),
                hdir.join("kanted.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "kanted of {} did not answer within {}s; see {}",
                hdir.display(),
                READY.as_secs(),
                hdir.join("kanted.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Host `i`'s HTTPS address and managed bridge.
async fn configure(spec: &Spec, i: u32) -> Result<()> {
    let c = host_client(&spec.dir, i);
    let https = format!("{}:8443", spec.plan.host(i));
    c.patch(
        "/1.0",
        &serde_json::json!({ "config": { "core.https_address": https } }),
    )
    .await
    .with_context(|| format!("Failed to set core.https_address on {}", names::host(i)))?;
    c.post(
        "/1.0/networks",
        &serde_json::json!({
            "name": HOST_BRIDGE,
            "type": "bridge",
            "config": {
                "ipv4.address": spec.plan.host_bridge(i),
                "ipv4.nat": "true",
                "ipv6.address": "none",
            },
        }),
    )
    .await
    .with_context(|| format!("Failed to make {HOST_BRIDGE} on {}", names::host(i)))?;
    Ok(())
}

/// Every host trusts the caller and every other host: a token of the host
/// spent by `kante remote add NAME TOKEN` in the client's configuration.
async fn link(spec: &Spec, conf: &Path, rec: &mut Record) -> Result<()> {
    for j in 1..=spec.hosts {
        let server = host_client(&spec.dir, j);
        let name = names::caller_remote(&spec.name, j);
        rec.add(Item::Remote {
            conf: conf.to_path_buf(),
            name: name.clone(),
        })?;
        let t = token(&server, &format!("{}-caller", spec.name)).await?;
        remote_add(conf, &name, &t)?;
        for k in (1..=spec.hosts).filter(|k| *k != j) {
            let t = token(&server, &format!("{}-{}", spec.name, names::host(k))).await?;
            remote_add(&client_dir(&spec.dir, k), &names::host(j), &t)?;
        }
    }
    Ok(())
}

/// A one-time trust token of the host for a client called `name`.
async fn token(c: &Client, name: &str) -> Result<String> {
    let resp = c
        .post(
            "/1.0/certificates",
            &serde_json::json!({ "name": name, "type": "client", "token": true }),
        )
        .await
        .context("Failed to make a trust token")?;
    let op: Operation = resp
        .metadata()
        .context("The host did not answer with a token operation")?;
    Ok(Token::from_operation(name, &op.metadata)?.encode())
}

/// `kante remote add NAME TOKEN` with `KANTE_CONF=conf`: the path a user takes.
fn remote_add(conf: &Path, name: &str, token: &str) -> Result<()> {
    let exe = std::env::current_exe().context("Failed to find this kante")?;
    let o = Command::new(exe)
        .args(["remote", "add", name, token])
        .env("KANTE_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .context("Failed to run kante remote add")?;
    if !o.status.success() {
        bail!(
            "kante remote add {name} (KANTE_CONF={}): {}",
            conf.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}
