//! The fake daemon's exec: websocket upgrades and a few scripted commands.
//!
//! Commands: `cat` (stdin to stdout), `echo ARGS`, `fail` (out/err, exit 3),
//! `true`, `false`, `systemctl` (answers from `State::systemd_states`),
//! `wait-signal` (exits 128+N on a forwarded signal), `big N` (N bytes),
//! `tty` (interactive: prints "H W" and a resize if one comes within 50 ms),
//! `tty-echo` (the same, then echoes input until EOF or ^D). Anything else: 127.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kante_api::operation::OperationClass;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{error, query_param, OpEntry, Resp, State};

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

pub struct ExecJob {
    pub op: Arc<OpEntry>,
    pub command: Vec<String>,
    pub interactive: bool,
    pub width: i64,
    pub height: i64,
    pub secrets: BTreeMap<String, String>,
    sockets: Mutex<HashMap<String, Ws>>,
    started: Mutex<bool>,
}

pub fn start(s: &mut State, name: &str, post: Value) -> Resp {
    let command: Vec<String> = post["command"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let interactive = post["interactive"].as_bool().unwrap_or(false);
    let fds: Vec<&str> = if interactive {
        vec!["0", "control"]
    } else {
        vec!["0", "1", "2", "control"]
    };
    let secrets: BTreeMap<String, String> = fds
        .iter()
        .enumerate()
        .map(|(i, fd)| (fd.to_string(), format!("secret{}{}", s.exec_jobs.len(), i)))
        .collect();
    let meta =
        json!({"command": command, "environment": {}, "fds": secrets, "interactive": interactive});
    let entry = s.new_op(
        OperationClass::Websocket,
        "Executing command",
        &[name],
        meta,
    );
    let running = entry.snapshot();
    let job = Arc::new(ExecJob {
        op: entry.clone(),
        command,
        interactive,
        width: post["width"].as_i64().unwrap_or(0),
        height: post["height"].as_i64().unwrap_or(0),
        secrets,
        sockets: Mutex::new(HashMap::new()),
        started: Mutex::new(false),
    });
    s.exec_jobs.insert(running.id.clone(), job);
    entry.accepted(&running)
}

pub async fn upgrade(
    st: Arc<Mutex<State>>,
    req: Request<Incoming>,
    path: &str,
    query: &str,
) -> Resp {
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return error(400, "websocket upgrade expected");
    };
    let target = if path == "/1.0/events" {
        None
    } else {
        let id = path.split('/').nth(3).unwrap_or_default().to_string();
        let Some(job) = st.lock().unwrap().exec_jobs.get(&id).cloned() else {
            return error(404, "Operation not found");
        };
        let secret = query_param(query, "secret").unwrap_or_default();
        let Some(fd) = job
            .secrets
            .iter()
            .find(|(_, s)| **s == secret)
            .map(|(fd, _)| fd.clone())
        else {
            return error(403, "Wrong secret");
        };
        Some((job, fd))
    };
    tokio::spawn(async move {
        let Ok(up) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
        match target {
            None => events(ws).await,
            Some((job, fd)) => attach(st, job, fd, ws).await,
        }
    });
    Response::builder()
        .status(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", key)
        .body(Default::default())
        .unwrap()
}

async fn events(mut ws: Ws) {
    let ev = json!({"type": "lifecycle", "timestamp": "2026-11-22T13:15:09Z",
        "metadata": {"action": "instance-started", "source": "/1.0/instances/c1"}, "location": "none", "project": "default"});
    let _ = ws.send(Message::text(ev.to_string())).await;
    while let Some(Ok(m)) = ws.next().await {
        if m.is_close() {
            break;
        }
    }
}

async fn attach(st: Arc<Mutex<State>>, job: Arc<ExecJob>, fd: String, ws: Ws) {
    let ready = {
        let mut socks = job.sockets.lock().unwrap();
        socks.insert(fd, ws);
        let required: &[&str] = if job.interactive {
            &["0"]
        } else {
            &["0", "1", "2"]
        };
        let mut started = job.started.lock().unwrap();
        let ok = !*started && required.iter().all(|f| socks.contains_key(*f));
        if ok {
            *started = true;
        }
        ok.then(|| std::mem::take(&mut *socks))
    };
    if let Some(socks) = ready {
        run(st, job, socks).await;
    }
}

async fn send_all(ws: &mut Ws, data: &[u8]) {
    for chunk in data.chunks(64 * 1024) {
        let _ = ws.send(Message::binary(chunk.to_vec())).await;
    }
    let _ = ws.send(Message::text("")).await;
}

/// Reads binary frames until the empty text frame (EOF) or close.
async fn read_input(ws: &mut Ws) -> Vec<u8> {
    let mut input = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Binary(b) => input.extend_from_slice(&b),
            Message::Text(t) if t.is_empty() => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    input
}

async fn run(st: Arc<Mutex<State>>, job: Arc<ExecJob>, mut socks: HashMap<String, Ws>) {
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel::<i64>();
    let (resize_tx, mut resize_rx) = mpsc::unbounded_channel::<(String, String)>();
    // A control socket connected after the start is dropped, as in LXD.
    if let Some(mut ctl) = job
        .sockets
        .lock()
        .unwrap()
        .remove("control")
        .or_else(|| socks.remove("control"))
    {
        let st = st.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = ctl.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    st.lock().unwrap().control_messages.push(v.clone());
                    match v["command"].as_str() {
                        Some("signal") => {
                            let _ = sig_tx.send(v["signal"].as_i64().unwrap_or(0));
                        }
                        Some("window-resize") => {
                            let w = v["args"]["width"].as_str().unwrap_or_default().to_string();
                            let h = v["args"]["height"].as_str().unwrap_or_default().to_string();
                            let _ = resize_tx.send((w, h));
                        }
                        _ => {}
                    }
                }
            }
        });
    }
    let mut ws0 = socks.remove("0").expect("stdin socket");
    let cmd: Vec<&str> = job.command.iter().map(String::as_str).collect();
    let code: i64;
    if job.interactive {
        let mut out = format!("{} {}\r\n", job.height, job.width).into_bytes();
        if let Ok((w, h)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), resize_rx.recv())
                .await
                .map(|r| r.unwrap_or_default())
        {
            out.extend_from_slice(format!("resized {h} {w}\r\n").as_bytes());
        }
        // `tty-echo` then echoes input like a shell on a pty: until EOF or a
        // ^D byte. Plain `tty` exits at once, whatever the local stdin does.
        let mut input = Vec::new();
        while cmd.first() == Some(&"tty-echo") {
            let Some(Ok(m)) = ws0.next().await else { break };
            match m {
                Message::Binary(b) => {
                    let end = b.iter().position(|&c| c == 4);
                    input.extend_from_slice(&b[..end.unwrap_or(b.len())]);
                    if end.is_some() {
                        break;
                    }
                }
                Message::Text(t) if t.is_empty() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        out.extend_from_slice(&input);
        send_all(&mut ws0, &out).await;
        code = 0;
    } else {
        let mut ws1 = socks.remove("1").expect("stdout socket");
        let mut ws2 = socks.remove("2").expect("stderr socket");
        let input_task = tokio::spawn(async move {
            let input = read_input(&mut ws0).await;
            (input, ws0)
        });
        let (out, err, c): (Vec<u8>, Vec<u8>, i64) = match cmd.first().copied().unwrap_or_default()
        {
            "cat" => (input_task.await.unwrap().0, vec![], 0),
            "echo" => (format!("{}\n", cmd[1..].join(" ")).into_bytes(), vec![], 0),
            "fail" => (b"out\n".to_vec(), b"err\n".to_vec(), 3),
            "true" => (vec![], vec![], 0),
            "false" => (vec![], vec![], 1),
            "systemctl" => {
                let s = st
                    .lock()
                    .unwrap()
                    .systemd_states
                    .pop_front()
                    .unwrap_or_else(|| "running".into());
                let c = if s == "running" { 0 } else { 1 };
                (format!("{s}\n").into_bytes(), vec![], c)
            }
            "wait-signal" => {
                let sig = sig_rx.recv().await.unwrap_or(9);
                (vec![], vec![], 128 + sig)
            }
            "big" => (vec![b'x'; cmd[1].parse().unwrap_or(0)], vec![], 0),
            _ => (
                vec![],
                format!("exec: {}: not found\n", cmd.join(" ")).into_bytes(),
                127,
            ),
        };
        send_all(&mut ws1, &out).await;
        send_all(&mut ws2, &err).await;
        code = c;
    }
    job.op.op.lock().unwrap().metadata["return"] = json!(code);
    let result = if code == 127 {
        Err("Command not found".to_string())
    } else {
        Ok(())
    };
    job.op.finish(result);
}
