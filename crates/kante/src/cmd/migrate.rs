//! `kante copy` and `kante move` between two servers, driven from the
//! client as lxc drives them: the source offers the instance in a
//! migration operation, the target creates it from that operation, and
//! the data goes straight between the two servers (`pull`: the target
//! connects to the source; `push`: the source connects to the target) or
//! through this client (`relay`). A move is a copy, then the deletion of
//! the source once the target has committed the instance; a move that
//! fails leaves the source as it was (started again if `--stateless`
//! stopped it).
//!
//! Everything the client can check is checked before any byte moves: the
//! name is free on the target, the pool, the profiles and the networks
//! the instance's devices name exist there, a running instance is only
//! moved with `--stateless`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kante_api::instance::Instance;
use kante_api::operation::Operation;
use kante_api::server::Server;
use kante_api::{ConfigMap, DevicesMap};
use kante_client::{path_segment, relay, Client, RelayEnd};
use serde_json::{json, Value};

use crate::cli::{Command, TransferMode};
use crate::remote::route::Cross;
use crate::remote::{connect, Config};

/// What the user asked, whichever verb.
pub struct Request {
    pub cross: Cross,
    pub is_move: bool,
    pub instance_only: bool,
    pub stateless: bool,
    pub mode: Option<TransferMode>,
    pub storage: Option<String>,
    pub config: Vec<String>,
    pub profiles: Vec<String>,
    pub no_profiles: bool,
    /// `-d DEVICE,KEY=VALUE` overrides.
    pub device: Vec<String>,
    pub ephemeral: bool,
    pub refresh: bool,
}

impl Request {
    /// The request of a `copy` or `move` command that [`Cross`] split off.
    pub fn new(cross: Cross, cmd: Command) -> Request {
        let mut r = Request {
            cross,
            is_move: false,
            instance_only: false,
            stateless: false,
            mode: None,
            storage: None,
            config: vec![],
            profiles: vec![],
            no_profiles: false,
            device: vec![],
            ephemeral: false,
            refresh: false,
        };
        match cmd {
            Command::Move(a) => {
                r.is_move = true;
                r.instance_only = a.instance_only;
                r.stateless = a.stateless;
                r.mode = a.mode;
                r.storage = a.storage;
                r.config = a.config;
                r.profiles = a.profiles;
                r.no_profiles = a.no_profiles;
                r.device = a.device;
            }
            Command::Copy(a) => {
                r.instance_only = a.instance_only;
                r.stateless = a.stateless;
                r.mode = a.mode;
                r.storage = a.storage;
                r.config = a.config;
                r.profiles = a.profiles;
                r.no_profiles = a.no_profiles;
                r.device = a.device;
                r.ephemeral = a.ephemeral;
                r.refresh = a.refresh;
            }
            _ => {}
        }
        r
    }
}

/// One server of the transfer: its client, name and the URL and
/// certificate the other server reaches it by.
pub(super) struct End {
    pub(super) remote: String,
    pub(super) client: Client,
    pub(super) certificate: String,
    /// `https://host:port`, if it listens on the network.
    pub(super) url: Option<String>,
}

impl End {
    pub(super) async fn open(cfg: &Config, remote: &str) -> Result<End> {
        let client = connect::client(cfg, remote)?;
        let server: Server = client
            .get_json("/1.0")
            .await
            .with_context(|| format!("Cannot reach {remote}"))?;
        let configured = cfg
            .remotes
            .get(remote)
            .map(|r| r.addr.clone())
            .filter(|a| a.starts_with("https://"));
        // The address the client uses is the one most likely to work for
        // the other server too; the local socket has none, so the
        // server's own listening addresses stand in.
        let url = configured.or_else(|| {
            server
                .environment
                .addresses
                .iter()
                .find(|a| !a.starts_with(':'))
                .map(|a| format!("https://{a}"))
        });
        Ok(End {
            remote: remote.to_string(),
            client,
            certificate: server.environment.certificate.clone(),
            url,
        })
    }

    pub(super) fn operation_url(&self, id: &str) -> Result<String> {
        let url = self.url.as_ref().ok_or_else(|| {
            anyhow!(
                "{} does not listen on the network (core.https_address is unset)",
                self.remote
            )
        })?;
        Ok(format!("{url}/1.0/operations/{id}"))
    }
}

pub async fn run(cfg: &Config, req: Request) -> Result<i32> {
    let Request { cross, .. } = &req;
    let snapshot = super::split_snapshot(&cross.source)?;
    if snapshot.is_some() && req.is_move {
        bail!("A snapshot cannot be moved to another server; copy it (copy INSTANCE/SNAPSHOT REMOTE:NAME)");
    }
    if req.no_profiles && !req.profiles.is_empty() {
        bail!("--no-profiles cannot be used with --profile");
    }
    // A snapshot's copy is named after its instance unless named.
    let name = cross.destination.clone().unwrap_or_else(|| {
        snapshot
            .map(|(i, _)| i.to_string())
            .unwrap_or_else(|| cross.source.clone())
    });
    super::check_name(&name)?;
    let src = End::open(cfg, &cross.from).await?;
    let dst = End::open(cfg, &cross.to).await?;
    let inst = match snapshot {
        None => src.client.instance(&cross.source).await?,
        Some((i, s)) => snapshot_as_instance(src.client.snapshot(i, s).await?),
    };
    let running = inst.status == "Running";
    if running && !req.stateless {
        bail!(
            "Instance {} is running: stop it first, or use --stateless (it is stopped for the transfer and started again {})",
            cross.source,
            if req.is_move { "on the target" } else { "afterwards" }
        );
    }
    let body = target_body(&req, &name, &inst)?;
    preflight(&req, &dst, &name, &body).await?;

    if running {
        src.client
            .stop_instance(&cross.source, false, 60)
            .await
            .with_context(|| format!("Failed to stop {} before the transfer", cross.source))?;
    }
    let moved = transfer(&req, &src, &dst, &body).await;
    let outcome = match moved {
        Ok(()) => finish(&req, &src, &dst, &name, running).await,
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        // The source is complete: give it back its state.
        if running && src.client.instance(&cross.source).await.is_ok() {
            let _ = src.client.start_instance(&cross.source).await;
        }
        return Err(e);
    }
    Ok(0)
}

/// After the target committed: the source goes (a move); an instance
/// stopped for the transfer runs again (on the target after a move, the
/// source after a copy).
async fn finish(req: &Request, src: &End, dst: &End, name: &str, running: bool) -> Result<()> {
    if req.is_move {
        src.client
            .delete_instance(&req.cross.source)
            .await
            .with_context(|| {
                format!(
                    "The instance is on {} as {name}, but deleting it on {} failed",
                    dst.remote, src.remote
                )
            })?;
    }
    if running && req.is_move {
        dst.client
            .start_instance(name)
            .await
            .with_context(|| format!("The instance is on {}, but it did not start", dst.remote))?;
    } else if running {
        // A copy: the source runs again, the copy stays stopped, as lxc
        // leaves a copy.
        src.client
            .start_instance(&req.cross.source)
            .await
            .with_context(|| {
                format!(
                    "The copy is on {}, but the source did not start again",
                    dst.remote
                )
            })?;
    }
    Ok(())
}

/// The create request for the target, without its `source` part: the
/// source's own config and devices (a move keeps the volatile keys, so
/// the MAC addresses stay; a copy gets its own), then the flags.
fn target_body(req: &Request, name: &str, inst: &Instance) -> Result<Value> {
    let mut config: ConfigMap = inst
        .config
        .iter()
        .filter(|(k, _)| req.is_move || !k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for kv in &req.config {
        let (k, v) = super::parse_kv(kv)?;
        config.insert(k, v);
    }
    let mut profiles = inst.profiles.clone();
    if req.no_profiles {
        profiles.clear();
    }
    for p in &req.profiles {
        if !profiles.contains(p) {
            profiles.push(p.clone());
        }
    }
    let mut devices: DevicesMap = inst.devices.clone();
    if let Some(pool) = &req.storage {
        // The root disk goes to the pool asked for, whether the instance
        // has its own or gets it from a profile.
        let root = root_device(&inst.expanded_devices);
        let (dev, mut entry) = match root {
            Some((n, d)) => (n, d),
            None => (
                "root".to_string(),
                [("type", "disk"), ("path", "/")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        };
        entry.insert("pool".into(), pool.clone());
        devices.insert(dev, entry);
    }
    super::override_devices(&mut devices, &inst.expanded_devices, &req.device)?;
    Ok(json!({
        "name": name,
        "type": "container",
        "architecture": inst.architecture,
        "config": config,
        "devices": devices,
        "profiles": profiles,
        "ephemeral": req.ephemeral || inst.ephemeral,
        "description": inst.description,
    }))
}

/// A snapshot seen as the stopped instance its copy starts from.
fn snapshot_as_instance(s: kante_api::instance::InstanceSnapshot) -> Instance {
    Instance {
        architecture: s.architecture,
        config: s.config,
        devices: s.devices,
        ephemeral: s.ephemeral,
        profiles: s.profiles,
        stateful: false,
        description: String::new(),
        created_at: s.created_at,
        expanded_config: s.expanded_config,
        expanded_devices: s.expanded_devices,
        name: s.name,
        status: "Stopped".into(),
        status_code: 102,
        last_used_at: s.last_used_at,
        location: String::new(),
        kind: "container".into(),
        project: String::new(),
    }
}

fn root_device(devices: &DevicesMap) -> Option<(String, BTreeMap<String, String>)> {
    devices
        .iter()
        .find(|(_, d)| {
            d.get("type").map(String::as_str) == Some("disk")
                && d.get("path").map(String::as_str) == Some("/")
        })
        .map(|(n, d)| {
            (
                n.clone(),
                d.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            )
        })
}

/// What the target must have before any byte moves.
async fn preflight(req: &Request, dst: &End, name: &str, body: &Value) -> Result<()> {
    let to = &dst.remote;
    match dst.client.instance(name).await {
        // A refresh updates the copy the target has.
        Ok(i) if req.refresh => {
            if i.status != "Stopped" {
                bail!("Instance {name} is running on {to}: stop it before refreshing it");
            }
        }
        Ok(_) => bail!("Instance {name} already exists on {to}"),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e).context(format!("Cannot check {name} on {to}")),
    }
    let exists = |path: String| async move {
        match dst.client.get(&path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(anyhow::Error::new(e)),
        }
    };
    for p in body["profiles"].as_array().into_iter().flatten() {
        let p = p.as_str().unwrap_or_default();
        if !exists(format!("/1.0/profiles/{}", path_segment(p))).await? {
            bail!("Profile {p} doesn't exist on {to}");
        }
    }
    for (dev, d) in body["devices"].as_object().into_iter().flatten() {
        let get = |k: &str| d.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        if let Some(pool) = get("pool").filter(|_| get("type") == Some("disk")) {
            if !exists(format!("/1.0/storage-pools/{}", path_segment(pool))).await? {
                bail!("Storage pool {pool} (device {dev}) doesn't exist on {to}");
            }
        }
        if get("type") == Some("nic") {
            for key in ["network", "parent"] {
                if let Some(net) = get(key) {
                    if !exists(format!("/1.0/networks/{}", path_segment(net))).await? {
                        bail!("Network {net} (device {dev}, {key}) doesn't exist on {to}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// The channel secrets an operation offers (`control`, `fs`, `criu`).
pub(super) fn secrets(op: &Operation) -> BTreeMap<String, String> {
    op.metadata
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| matches!(k.as_str(), "control" | "fs" | "criu"))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The mode to try first: the target pulls when the source listens on
/// the network, else the source pushes; relay when neither listens.
pub(super) fn first_mode(asked: Option<TransferMode>, src: &End, dst: &End) -> TransferMode {
    match asked {
        Some(m) => m,
        None if src.url.is_some() => TransferMode::Pull,
        None if dst.url.is_some() => TransferMode::Push,
        None => TransferMode::Relay,
    }
}

async fn transfer(req: &Request, src: &End, dst: &End, body: &Value) -> Result<()> {
    let mode = first_mode(req.mode, src, dst);
    match attempt(req, src, dst, body, mode).await {
        Err(Failure::Unreached(e)) if req.mode.is_none() && mode != TransferMode::Relay => {
            // The servers could not reach each other: the client can
            // reach both, so it carries the data itself.
            eprintln!("{e}; relaying through this client instead");
            attempt(req, src, dst, body, TransferMode::Relay)
                .await
                .map_err(Failure::into_error)
        }
        r => r.map_err(Failure::into_error),
    }
}

/// Why an attempt failed: before the servers met (another mode may work),
/// or anything else.
pub(super) enum Failure {
    Unreached(anyhow::Error),
    Other(anyhow::Error),
}

impl Failure {
    pub(super) fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Unreached(e) | Failure::Other(e) => e,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Other(e.into())
    }
}

/// An operation error that says the peer was never reached.
fn unreached(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    ["connect", "unreachable", "no route", "timed out", "refused"]
        .iter()
        .any(|w| m.contains(w))
}

async fn start_source(req: &Request, src: &End, target: Option<Value>) -> Result<Operation> {
    let mut post = json!({
        "name": req.cross.source,
        "migration": true,
        "live": false,
        "instance_only": req.instance_only,
        "container_only": req.instance_only,
        "allow_inconsistent": false,
    });
    if let Some(t) = target {
        post["target"] = t;
    }
    // An instance, or one of its snapshots (`c1/s0`).
    let path = match req.cross.source.split_once('/') {
        Some((i, s)) => format!(
            "/1.0/instances/{}/snapshots/{}",
            path_segment(i),
            path_segment(s)
        ),
        None => format!("/1.0/instances/{}", path_segment(&req.cross.source)),
    };
    let resp = src
        .client
        .post(&path, &post)
        .await
        .with_context(|| format!("{} refused to send {}", src.remote, req.cross.source))?;
    Ok(resp.metadata()?)
}

async fn start_target(dst: &End, body: &Value, source: Value) -> Result<Operation> {
    let mut post = body.clone();
    post["source"] = source;
    let resp = dst
        .client
        .post("/1.0/instances", &post)
        .await
        .with_context(|| format!("{} refused to receive the instance", dst.remote))?;
    Ok(resp.metadata()?)
}

fn migration_source(req: &Request, mode: &str) -> Value {
    json!({
        "type": "migration",
        "mode": mode,
        "live": false,
        "instance_only": req.instance_only,
        "container_only": req.instance_only,
        "refresh": req.refresh,
    })
}

async fn attempt(
    req: &Request,
    src: &End,
    dst: &End,
    body: &Value,
    mode: TransferMode,
) -> std::result::Result<(), Failure> {
    // Start both operations: the one that waits first, then the other
    // with what it needs to reach the first.
    let (sop, top) = match mode {
        TransferMode::Pull => {
            let sop = start_source(req, src, None).await?;
            let mut source = migration_source(req, "pull");
            source["operation"] = json!(src.operation_url(&sop.id)?);
            source["certificate"] = json!(src.certificate);
            source["secrets"] = json!(secrets(&sop));
            let top = or_cancel(src, &sop.id, start_target(dst, body, source).await).await?;
            (sop, top)
        }
        TransferMode::Push => {
            let top = start_target(dst, body, migration_source(req, "push")).await?;
            let target = json!({
                "operation": dst.operation_url(&top.id)?,
                "certificate": dst.certificate,
                "secrets": secrets(&top),
            });
            let sop = or_cancel(dst, &top.id, start_source(req, src, Some(target)).await).await?;
            (sop, top)
        }
        TransferMode::Relay => {
            let sop = start_source(req, src, None).await?;
            let push = migration_source(req, "push");
            let top = or_cancel(src, &sop.id, start_target(dst, body, push).await).await?;
            (sop, top)
        }
    };
    follow(mode, src, &sop, dst, &top, "the instance").await
}

/// The second operation of a transfer; if it could not start, the first
/// (already waiting for its peer) is cancelled.
pub(super) async fn or_cancel(
    first: &End,
    id: &str,
    second: Result<Operation>,
) -> std::result::Result<Operation, Failure> {
    match second {
        Ok(op) => Ok(op),
        Err(e) => {
            cancel(first, id).await;
            Err(e.into())
        }
    }
}
/// Once both ends' operations exist: carries the stream through this
/// client for a relay, watches both operations to their end, and cancels
/// both when either fails (instance and volume transfers alike; `what`
/// names the one moving in the progress line).
pub(super) async fn follow(
    mode: TransferMode,
    src: &End,
    sop: &Operation,
    dst: &End,
    top: &Operation,
    what: &str,
) -> Result<(), Failure> {
    let r = if mode == TransferMode::Relay {
        let (ss, ts) = (secrets(sop), secrets(top));
        let carry = relay(
            RelayEnd {
                client: &src.client,
                operation: &sop.id,
                secrets: &ss,
            },
            RelayEnd {
                client: &dst.client,
                operation: &top.id,
                secrets: &ts,
            },
        );
        let (carried, watched) = tokio::join!(carry, watch(dst, &top.id, src, &sop.id, what));
        watched.and(carried.map(|_| ()).map_err(|e| Failure::Other(e.into())))
    } else {
        watch(dst, &top.id, src, &sop.id, what).await
    };
    if r.is_err() {
        cancel(src, &sop.id).await;
        cancel(dst, &top.id).await;
    }
    r
}

/// Waits for both operations, showing the transfer's progress of `what`;
/// the target's result decides.
pub(super) async fn watch(
    dst: &End,
    top: &str,
    src: &End,
    sop: &str,
    what: &str,
) -> std::result::Result<(), Failure> {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template(&format!("Transferring {what}: {{spinner}} {{msg}}"))
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    let show = |pb: ProgressBar| {
        move |op: &Operation| {
            if let Some(line) = progress_line(&op.metadata) {
                pb.set_message(line);
            }
        }
    };
    let target = dst.client.wait_operation_progress(top, show(pb.clone()));
    let source = src.client.wait_operation_progress(sop, show(pb.clone()));
    tokio::pin!(target, source);
    // The target's result decides; once it has one, the source gets a
    // short while to end too (it is cancelled by the caller on failure),
    // never the time a cut link would hold it.
    let mut s = None;
    let t = loop {
        tokio::select! {
            t = &mut target => break t,
            r = &mut source, if s.is_none() => s = Some(r),
        }
    };
    let s = match s {
        Some(s) => s,
        None => tokio::time::timeout(SOURCE_GRACE, &mut source)
            .await
            .unwrap_or_else(|_| Err(kante_client::ClientError::Timeout(sop.to_string()))),
    };
    pb.finish_and_clear();
    match (t, s) {
        (Ok(_), _) => Ok(()),
        (Err(e), s) => {
            let msg = e.to_string();
            let also = s
                .err()
                .map(|s| format!(" (the source: {s})"))
                .unwrap_or_default();
            let err = anyhow!("{}: {msg}{also}", dst.remote);
            if unreached(&msg) {
                Err(Failure::Unreached(err))
            } else {
                Err(Failure::Other(err))
            }
        }
    }
}

/// How long the source may take to end once the target has its result.
const SOURCE_GRACE: Duration = Duration::from_secs(30);

/// The first `*_progress` entry of an operation's metadata.
fn progress_line(meta: &Value) -> Option<String> {
    meta.as_object()?
        .iter()
        .find(|(k, v)| k.ends_with("_progress") && v.is_string())
        .and_then(|(_, v)| v.as_str().map(str::to_string))
}

/// Cancels an operation, best effort and bounded (its server may be the
/// one that cannot be reached).
pub(super) async fn cancel(end: &End, id: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(10), end.client.cancel_operation(id)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> Instance {
        let mut i: Instance = serde_json::from_value(json!({
            "architecture": "x86_64",
            "config": {"limits.memory": "256MiB", "volatile.eth0.hwaddr": "00:16:3e:00:00:01"},
            "devices": {"eth0": {"type": "nic", "network": "br0"}},
            "expanded_devices": {
                "eth0": {"type": "nic", "network": "br0"},
                "root": {"type": "disk", "path": "/", "pool": "default"}
            },
            "profiles": ["default"],
            "name": "c1",
            "status": "Stopped",
            "ephemeral": false,
            "stateful": false,
            "description": "",
            "created_at": "2026-12-05T00:00:00Z",
            "last_used_at": "2026-12-05T00:00:00Z",
            "expanded_config": {},
            "status_code": 102,
            "location": "none",
            "type": "container",
            "project": "default",
        }))
        .unwrap();
        i.description = "web".into();
        i
    }

    fn req(is_move: bool) -> Request {
        Request {
            cross: Cross {
                from: "local".into(),
                to: "h2".into(),
                source: "c1".into(),
                destination: None,
            },
            is_move,
            instance_only: false,
            stateless: false,
            mode: None,
            storage: None,
            config: vec![],
            profiles: vec![],
            no_profiles: false,
            device: vec![],
            ephemeral: false,
            refresh: false,
        }
    }

    #[test]
    fn a_move_keeps_the_mac_and_a_copy_gets_its_own() {
        let b = target_body(&req(true), "c1", &inst()).unwrap();
        assert_eq!(b["config"]["volatile.eth0.hwaddr"], "00:16:3e:00:00:01");
        assert_eq!(b["name"], "c1");
        assert_eq!(b["description"], "web");
        let b = target_body(&req(false), "c2", &inst()).unwrap();
        assert!(b["config"].get("volatile.eth0.hwaddr").is_none());
        assert_eq!(b["config"]["limits.memory"], "256MiB");
    }

    #[test]
    fn the_target_pool_replaces_the_profile_root_disk() {
        let mut r = req(true);
        r.storage = Some("fast".into());
        r.config = vec!["user.x=1".into()];
        r.profiles = vec!["extra".into()];
        let b = target_body(&r, "c1", &inst()).unwrap();
        assert_eq!(b["devices"]["root"]["pool"], "fast");
        assert_eq!(b["devices"]["root"]["path"], "/");
        assert_eq!(b["devices"]["eth0"]["network"], "br0");
        assert_eq!(b["config"]["user.x"], "1");
        assert_eq!(b["profiles"], json!(["default", "extra"]));
    }

    #[test]
    fn secrets_and_progress_come_from_the_metadata() {
        let op: Operation = serde_json::from_value(json!({
            "id": "x", "class": "websocket", "description": "Migrating instance",
            "created_at": "2026-12-05T00:00:00Z", "updated_at": "2026-12-05T00:00:00Z",
            "status": "Running", "status_code": 103, "resources": {}, "may_cancel": false,
            "err": "", "location": "none",
            "metadata": {"control": "a", "fs": "b", "fs_progress": "c1: 10MB (5MB/s)", "n": 1}
        }))
        .unwrap();
        let s = secrets(&op);
        assert_eq!(s.len(), 2);
        assert_eq!(s["control"], "a");
        assert_eq!(progress_line(&op.metadata).unwrap(), "c1: 10MB (5MB/s)");
        assert!(unreached(
            "dial tcp 10.0.0.2:8443: connect: connection refused"
        ));
        assert!(!unreached("Storage pool full"));
    }
}
