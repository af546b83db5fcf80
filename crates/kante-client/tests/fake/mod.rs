//! A small in-memory stand-in for kanted, serving LXD-shaped responses on a
//! temporary unix socket. Test code only; shared by the kante-client and
//! kante test suites (the latter includes this file by path).
#![allow(dead_code)]

mod exec;
mod images;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use kante_api::image::{Image, ImageAlias, ImageAliasRef};
use kante_api::instance::{Instance, InstancePut, InstanceState, InstanceStatePut, InstancesPost};
use kante_api::operation::{Operation, OperationClass};
use kante_api::{Envelope, StatusCode};
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio::sync::watch;

pub type Resp = Response<Full<Bytes>>;

#[derive(Debug, Clone)]
pub struct FakeFile {
    pub kind: &'static str,
    pub data: Vec<u8>,
    pub uid: i64,
    pub gid: i64,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct FakeInstance {
    pub put: InstancePut,
    pub status: StatusCode,
    pub etag_seq: u64,
}

pub struct OpEntry {
    pub op: Mutex<Operation>,
    pub done: watch::Sender<bool>,
}

#[derive(Default)]
pub struct State {
    pub instances: BTreeMap<String, FakeInstance>,
    pub images: BTreeMap<String, Image>,
    pub aliases: BTreeMap<String, ImageAlias>,
    pub files: BTreeMap<(String, String), FakeFile>,
    pub console: String,
    pub ops: HashMap<String, Arc<OpEntry>>,
    pub exec_jobs: HashMap<String, Arc<exec::ExecJob>>,
    /// Answers of the fake `systemctl is-system-running`, one per call; then "running".
    pub systemd_states: VecDeque<String>,
    /// Every request as `METHOD path?query`, plus selected headers.
    pub log: Vec<String>,
    pub headers: Vec<(String, BTreeMap<String, String>)>,
    pub bodies: Vec<(String, Vec<u8>)>,
    pub control_messages: Vec<Value>,
    pub exec_posts: Vec<Value>,
    next_id: u64,
}

pub struct FakeDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeDaemon {
    /// Starts on the current tokio runtime.
    pub async fn start() -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("unix.socket");
        let state = Arc::new(Mutex::new(State::default()));
        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(serve(listener, state.clone()));
        FakeDaemon {
            dir,
            socket,
            state,
            runtime: None,
        }
    }

    /// Starts on a runtime of its own (for tests that run the CLI binary).
    pub fn start_background() -> FakeDaemon {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut d = rt.block_on(FakeDaemon::start());
        d.runtime = Some(rt);
        d
    }

    pub fn client(&self) -> kante_client::Client {
        kante_client::Client::with_socket(&self.socket)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn add_image(&self, fingerprint: &str, alias: Option<&str>) {
        self.with(|s| s.insert_image(fingerprint, "test.tar.zst", 100_949_597, alias))
    }

    pub fn add_instance(&self, name: &str, status: StatusCode) {
        self.with(|s| {
            s.instances.insert(
                name.into(),
                FakeInstance {
                    put: InstancePut {
                        architecture: "x86_64".into(),
                        profiles: Some(vec!["default".into()]),
                        ..Default::default()
                    },
                    status,
                    etag_seq: 1,
                },
            );
        })
    }
}

async fn serve(listener: UnixListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let st = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(handle(st, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

pub fn envelope_resp(status: u16, env: &Envelope, extra: &[(&str, String)]) -> Resp {
    let mut b = Response::builder()
        .status(status)
        .header("Content-Type", "application/json");
    for (k, v) in extra {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(serde_json::to_vec(env).unwrap())))
        .unwrap()
}

pub fn sync(v: Value) -> Resp {
    envelope_resp(200, &Envelope::sync(v), &[])
}

pub fn error(code: u16, msg: &str) -> Resp {
    envelope_resp(code, &Envelope::error(code, msg), &[])
}

fn raw(data: Vec<u8>, headers: &[(&str, String)]) -> Resp {
    let mut b = Response::builder()
        .status(200)
        .header("Content-Type", "application/octet-stream");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(data))).unwrap()
}

impl State {
    pub fn insert_image(&mut self, fp: &str, filename: &str, size: i64, alias: Option<&str>) {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:15:48Z")
            .unwrap()
            .to_utc();
        let mut props = BTreeMap::new();
        props.insert(
            "description".to_string(),
            "Debian bookworm amd64".to_string(),
        );
        let img = Image {
            auto_update: false,
            properties: props,
            public: false,
            expires_at: kante_api::zero_time(),
            profiles: vec!["default".into()],
            aliases: alias
                .map(|a| ImageAliasRef {
                    name: a.into(),
                    description: String::new(),
                })
                .into_iter()
                .collect(),
            architecture: "x86_64".into(),
            cached: false,
            filename: filename.into(),
            fingerprint: fp.into(),
            size,
            kind: "container".into(),
            created_at: t,
            last_used_at: t,
            uploaded_at: t,
        };
        self.images.insert(fp.into(), img);
        if let Some(a) = alias {
            self.aliases.insert(
                a.into(),
                ImageAlias {
                    description: String::new(),
                    target: fp.into(),
                    name: a.into(),
                    kind: "container".into(),
                },
            );
        }
    }

    pub fn new_op(
        &mut self,
        class: OperationClass,
        description: &str,
        instances: &[&str],
        metadata: Value,
    ) -> Arc<OpEntry> {
        self.next_id += 1;
        let id = format!("00000000-0000-0000-0000-{:012}", self.next_id);
        let mut resources = BTreeMap::new();
        if !instances.is_empty() {
            let urls: Vec<String> = instances
                .iter()
                .map(|n| format!("/1.0/instances/{n}"))
                .collect();
            resources.insert("instances".to_string(), urls.clone());
            resources.insert(
                "containers".to_string(),
                urls.iter()
                    .map(|u| u.replace("instances", "containers"))
                    .collect(),
            );
        }
        let now = kante_api::now();
        let op = Operation {
            id: id.clone(),
            class,
            description: description.into(),
            created_at: now,
            updated_at: now,
            status: "Running".into(),
            status_code: StatusCode::Running as u16,
            resources,
            metadata,
            may_cancel: false,
            err: String::new(),
            location: "none".into(),
        };
        let (tx, _) = watch::channel(false);
        let entry = Arc::new(OpEntry {
            op: Mutex::new(op),
            done: tx,
        });
        self.ops.insert(id, entry.clone());
        entry
    }
}

impl OpEntry {
    pub fn finish(&self, result: Result<(), String>) {
        {
            let mut op = self.op.lock().unwrap();
            match result {
                Ok(()) => {
                    op.status = "Success".into();
                    op.status_code = 200;
                }
                Err(e) => {
                    op.status = "Failure".into();
                    op.status_code = 400;
                    op.err = e;
                }
            }
        }
        self.done.send_replace(true);
    }

    pub fn snapshot(&self) -> Operation {
        self.op.lock().unwrap().clone()
    }

    /// The 202 answer that starts it (status still Running, as LXD sends).
    pub fn accepted(&self, running: &Operation) -> Resp {
        let url = format!("/1.0/operations/{}", running.id);
        envelope_resp(
            202,
            &Envelope::async_op(url.clone(), serde_json::to_value(running).unwrap()),
            &[("Location", url)],
        )
    }
}

/// Creates an operation that has already finished with `result`, answered as 202.
fn done_op(
    st: &Arc<Mutex<State>>,
    description: &str,
    instances: &[&str],
    result: Result<(), String>,
) -> Resp {
    let entry =
        st.lock()
            .unwrap()
            .new_op(OperationClass::Task, description, instances, Value::Null);
    let running = entry.snapshot();
    entry.finish(result);
    entry.accepted(&running)
}

fn query_param(q: &str, key: &str) -> Option<String> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn etag_of(inst: &FakeInstance) -> String {
    format!("\"etag-{}\"", inst.etag_seq)
}

async fn handle(st: Arc<Mutex<State>>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let line = if query.is_empty() {
        format!("{method} {path}")
    } else {
        format!("{method} {path}?{query}")
    };
    {
        let mut s = st.lock().unwrap();
        s.log.push(line.clone());
        s.headers.push((line.clone(), headers.clone()));
    }
    if path.ends_with("/websocket") || path == "/1.0/events" {
        return exec::upgrade(st, req, &path, &query).await;
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    st.lock().unwrap().bodies.push((line.clone(), body.clone()));
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let recursion = query_param(&query, "recursion").unwrap_or_default();

    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["1.0"]) => sync(server_info()),
        (Method::GET, ["1.0", "instances"]) => {
            let s = st.lock().unwrap();
            let list: Vec<Value> = s
                .instances
                .iter()
                .map(|(n, i)| match recursion.as_str() {
                    "2" => instance_full_json(n, i),
                    "1" => serde_json::to_value(instance_json(n, i)).unwrap(),
                    _ => json!(format!("/1.0/instances/{n}")),
                })
                .collect();
            sync(Value::Array(list))
        }
        (Method::POST, ["1.0", "instances"]) => create_instance(&st, json),
        (_, ["1.0", "instances", name, rest @ ..]) => instance_routes(
            &st,
            method,
            &decode(name),
            rest,
            &query,
            &headers,
            json,
            body,
        ),
        (Method::GET, ["1.0", "operations", id]) => match st.lock().unwrap().ops.get(*id) {
            Some(e) => sync(serde_json::to_value(e.snapshot()).unwrap()),
            None => error(404, "Operation not found"),
        },
        (Method::GET, ["1.0", "operations", id, "wait"]) => {
            let entry = st.lock().unwrap().ops.get(*id).cloned();
            let Some(entry) = entry else {
                return error(404, "Operation not found");
            };
            let timeout: i64 = query_param(&query, "timeout")
                .and_then(|t| t.parse().ok())
                .unwrap_or(-1);
            let mut rx = entry.done.subscribe();
            let wait = rx.wait_for(|d| *d);
            if timeout < 0 {
                let _ = wait.await;
            } else {
                let _ = tokio::time::timeout(Duration::from_secs(timeout as u64), wait).await;
            }
            sync(serde_json::to_value(entry.snapshot()).unwrap())
        }
        (_, ["1.0", "images", ..]) => {
            images::image_routes(&st, method, &path, &query, &headers, body)
        }
        _ => error(404, "not found"),
    }
}

fn server_info() -> Value {
    json!({"config": {}, "api_extensions": ["instances"], "api_status": "stable", "api_version": "1.0",
        "auth": "trusted", "public": false, "auth_methods": ["tls"],
        "environment": {"addresses": [], "architectures": ["x86_64"], "certificate": "", "certificate_fingerprint": "",
            "driver": "kante", "driver_version": "0.1.0", "firewall": "nftables", "kernel": "Linux",
            "kernel_architecture": "x86_64", "kernel_features": {}, "kernel_version": "6.1.0", "lxc_features": {},
            "os_name": "Debian GNU/Linux", "os_version": "12", "project": "default", "server": "kante",
            "server_clustered": false, "server_event_mode": "full-mesh", "server_name": "fake", "server_pid": 1,
            "server_version": "9.9.9", "storage": "dir", "storage_version": "1", "storage_supported_drivers": []}})
}

pub fn instance_json(name: &str, i: &FakeInstance) -> Instance {
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T13:15:04Z")
        .unwrap()
        .to_utc();
    let mut expanded_devices = i.put.devices.clone();
    expanded_devices.entry("root".into()).or_insert_with(|| {
        [("type", "disk"), ("path", "/"), ("pool", "default")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    Instance {
        architecture: i.put.architecture.clone(),
        config: i.put.config.clone(),
        devices: i.put.devices.clone(),
        ephemeral: i.put.ephemeral,
        profiles: i
            .put
            .profiles
            .clone()
            .unwrap_or_else(|| vec!["default".into()]),
        stateful: false,
        description: i.put.description.clone(),
        created_at: t,
        expanded_config: i.put.config.clone(),
        expanded_devices,
        name: name.into(),
        status: i.status.name().into(),
        status_code: i.status as u16,
        last_used_at: kante_api::zero_time(),
        location: "none".into(),
        kind: "container".into(),
        project: "default".into(),
    }
}

fn state_json(i: &FakeInstance) -> Value {
    if i.status != StatusCode::Running {
        return serde_json::to_value(InstanceState::stopped()).unwrap();
    }
    json!({"status": "Running", "status_code": 103, "disk": {}, "pid": 4242, "processes": 9,
        "cpu": {"usage": 2_603_124_737i64},
        "memory": {"usage": 28_008_448, "usage_peak": 68_200_000, "swap_usage": 0, "swap_usage_peak": 0},
        "network": {
            "eth0": {"addresses": [{"family": "inet", "address": "10.0.3.5", "netmask": "24", "scope": "global"},
                                   {"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"}],
                "counters": {"bytes_received": 736, "bytes_sent": 2130, "packets_received": 3, "packets_sent": 21},
                "hwaddr": "00:16:3e:ad:78:5a", "host_name": "veth1", "mtu": 1500, "state": "up", "type": "broadcast"},
            "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}],
                "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0, "packets_sent": 0},
                "hwaddr": "", "host_name": "", "mtu": 65536, "state": "up", "type": "loopback"}}})
}

fn instance_full_json(name: &str, i: &FakeInstance) -> Value {
    let mut v = serde_json::to_value(instance_json(name, i)).unwrap();
    v["state"] = state_json(i);
    v["snapshots"] = Value::Null;
    v["backups"] = Value::Null;
    v
}

fn create_instance(st: &Arc<Mutex<State>>, body: Value) -> Resp {
    let post: InstancesPost = match serde_json::from_value(body) {
        Ok(p) => p,
        Err(e) => return error(400, &e.to_string()),
    };
    let mut s = st.lock().unwrap();
    let name = if post.name.is_empty() {
        format!("auto-{}", s.instances.len() + 1)
    } else {
        post.name.clone()
    };
    if s.instances.contains_key(&name) {
        return error(409, "Instance already exists");
    }
    let fp = post.source.fingerprint.clone();
    let result = if post.source.kind == "image" && !s.images.contains_key(&fp) {
        Err("Image not found".to_string())
    } else {
        s.instances.insert(
            name.clone(),
            FakeInstance {
                put: post.put.clone(),
                status: StatusCode::Stopped,
                etag_seq: 1,
            },
        );
        Ok(())
    };
    drop(s);
    done_op(st, "Creating instance", &[&name], result)
}

#[allow(clippy::too_many_arguments)]
fn instance_routes(
    st: &Arc<Mutex<State>>,
    method: Method,
    name: &str,
    rest: &[&str],
    query: &str,
    headers: &BTreeMap<String, String>,
    json: Value,
    body: Vec<u8>,
) -> Resp {
    let mut s = st.lock().unwrap();
    let Some(inst) = s.instances.get(name).cloned() else {
        return error(404, "Instance not found");
    };
    match (method, rest) {
        (Method::GET, []) => {
            let v = if query_param(query, "recursion").as_deref() == Some("1") {
                instance_full_json(name, &inst)
            } else {
                serde_json::to_value(instance_json(name, &inst)).unwrap()
            };
            envelope_resp(200, &Envelope::sync(v), &[("ETag", etag_of(&inst))])
        }
        (Method::PUT, []) => {
            if let Some(m) = headers.get("if-match") {
                if *m != etag_of(&inst) {
                    return error(412, "ETag doesn't match");
                }
            }
            let put: InstancePut = serde_json::from_value(json).unwrap_or_default();
            let result = if put.config.get("limits.memory").map(String::as_str) == Some("bogus") {
                Err("Invalid config: Invalid value: bogus".to_string())
            } else {
                let e = s.instances.get_mut(name).unwrap();
                e.put = put;
                e.etag_seq += 1;
                Ok(())
            };
            drop(s);
            done_op(st, "Updating instance", &[name], result)
        }
        (Method::PATCH, []) => {
            let e = s.instances.get_mut(name).unwrap();
            if let Some(cfg) = json.get("config").and_then(Value::as_object) {
                for (k, v) in cfg {
                    e.put
                        .config
                        .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
            sync(json!({}))
        }
        (Method::DELETE, []) => {
            if inst.status == StatusCode::Running {
                return error(400, "Instance is running");
            }
            s.instances.remove(name);
            drop(s);
            done_op(st, "Deleting instance", &[name], Ok(()))
        }
        (Method::POST, []) => {
            let new = json
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let e = s.instances.remove(name).unwrap();
            s.instances.insert(new, e);
            drop(s);
            done_op(st, "Renaming instance", &[name], Ok(()))
        }
        (Method::GET, ["state"]) => sync(state_json(&inst)),
        (Method::PUT, ["state"]) => {
            let req: InstanceStatePut = serde_json::from_value(json).unwrap_or_default();
            let cur = inst.status;
            let (next, result) = match (req.action.as_str(), cur) {
                ("start", StatusCode::Running) => (cur, Err("The instance is already running")),
                ("start", _) => (StatusCode::Running, Ok(())),
                ("stop", StatusCode::Stopped) => (cur, Err("The instance is already stopped")),
                ("stop", _) => (StatusCode::Stopped, Ok(())),
                ("restart", _) => (StatusCode::Running, Ok(())),
                ("freeze", StatusCode::Running) => (StatusCode::Frozen, Ok(())),
                ("freeze", _) => (cur, Err("The instance isn't running")),
                ("unfreeze", StatusCode::Frozen) => (StatusCode::Running, Ok(())),
                ("unfreeze", _) => (cur, Err("The instance is not frozen")),
                _ => (cur, Err("Unknown action")),
            };
            if next == StatusCode::Stopped && inst.put.ephemeral {
                s.instances.remove(name);
            } else {
                s.instances.get_mut(name).unwrap().status = next;
            }
            drop(s);
            done_op(
                st,
                "Changing instance state",
                &[name],
                result.map_err(str::to_string),
            )
        }
        (Method::GET, ["console"]) => raw(s.console.clone().into_bytes(), &[]),
        (Method::DELETE, ["console"]) => {
            s.console.clear();
            sync(json!({}))
        }
        (Method::GET, ["logs", "lxc.log"]) => error(404, "not found"),
        (Method::POST, ["exec"]) => {
            if inst.status != StatusCode::Running {
                return error(400, "Instance is not running");
            }
            s.exec_posts.push(json.clone());
            exec::start(&mut s, name, json)
        }
        (m, ["files"]) => file_route(&mut s, m, name, query, headers, body),
        _ => error(404, "not found"),
    }
}

fn file_route(
    s: &mut State,
    m: Method,
    name: &str,
    query: &str,
    h: &BTreeMap<String, String>,
    body: Vec<u8>,
) -> Resp {
    let path = query_param(query, "path").unwrap_or_default();
    let key = (name.to_string(), path.clone());
    match m {
        Method::GET => {
            let Some(f) = s.files.get(&key).cloned() else {
                return error(404, "Not Found");
            };
            let hdrs = [
                ("X-LXD-uid", f.uid.to_string()),
                ("X-LXD-gid", f.gid.to_string()),
                ("X-LXD-mode", format!("{:04o}", f.mode)),
                ("X-LXD-type", f.kind.to_string()),
            ];
            if f.kind == "directory" {
                let prefix = format!("{}/", path.trim_end_matches('/'));
                let entries: Vec<String> = s
                    .files
                    .keys()
                    .filter(|(n, p)| {
                        n == name && p.starts_with(&prefix) && !p[prefix.len()..].contains('/')
                    })
                    .map(|(_, p)| p[prefix.len()..].to_string())
                    .collect();
                return envelope_resp(200, &Envelope::sync(json!(entries)), &hdrs);
            }
            raw(f.data, &hdrs)
        }
        Method::POST => {
            let kind = match h.get("x-lxd-type").map(String::as_str) {
                Some("directory") => "directory",
                Some("symlink") => "symlink",
                _ => "file",
            };
            let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            let mode = h
                .get("x-lxd-mode")
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .unwrap_or(0o644);
            let append = h.get("x-lxd-write").map(String::as_str) == Some("append");
            let entry = s.files.entry(key).or_insert(FakeFile {
                kind,
                data: vec![],
                uid: num("x-lxd-uid"),
                gid: num("x-lxd-gid"),
                mode,
            });
            if append {
                entry.data.extend_from_slice(&body);
            } else {
                entry.data = body;
            }
            sync(json!({}))
        }
        Method::DELETE => match s.files.remove(&key) {
            Some(_) => sync(json!({})),
            None => error(404, "Not Found"),
        },
        _ => error(405, "method not allowed"),
    }
}
