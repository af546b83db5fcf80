//! `POST /1.0/instances/{name}/exec`: a command in a running instance, its
//! streams carried over websockets the way lxc and pylxd expect.
//!
//! Order at the end (clients depend on it): the process exits, its output is
//! drained and each stream gets its empty text frame, `return` is set in the
//! operation metadata, the sockets close, then the operation succeeds.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use kante_api::exec::{ExecControl, ExecPost};
use kante_api::instance::InstanceStatus;
use kante_api::operation::OperationClass;
use kante_runtime::exec::{ExecError, ExecProcess, ExecSpec, ExecStdio};
use kante_runtime::process::{signal, ChildProcess};
use kante_runtime::pty::PtyMaster;
use kante_runtime::RuntimeError;
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::error::{EngineError, Result};
use crate::operations::{instance_resources, Op};
use crate::ws::{WsConn, WsMsg};
use crate::Engine;

/// How long clients get to connect the websockets (LXD: 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After the command exits, how long output from its leftover children is still forwarded.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Largest read from a command's pipe. Buffers are filled through
/// `read_buf`: an exec of `true` should not zero (and fault in) 128 KiB
/// per stream.
const CHUNK: usize = 128 * 1024;
/// A pty's line discipline hands out at most 4 KiB per read.
const PTY_CHUNK: usize = 16 * 1024;

impl Engine {
    pub(crate) async fn instance_exec(&self, name: &str, req: ExecPost) -> Result<Arc<Op>> {
        let row = self.instance_row(name).await?;
        match self.instance_status(name) {
            InstanceStatus::Running => {}
            InstanceStatus::Frozen => return Err(EngineError::bad("Instance is frozen")),
            _ => return Err(EngineError::bad("Instance is not running")),
        }
        if req.command.is_empty() {
            return Err(EngineError::bad("No command given"));
        }
        if req.user < 0 || req.group < 0 {
            return Err(EngineError::bad("Invalid user or group"));
        }
        let (econfig, _) = self.expanded(&row).await?;
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
        env.insert("LANG".into(), "C.UTF-8".into());
        if req.user == 0 {
            env.insert("HOME".into(), "/root".into());
            env.insert("USER".into(), "root".into());
        }
        for (k, v) in &econfig {
            if let Some(var) = k.strip_prefix("environment.") {
                env.insert(var.into(), v.clone());
            }
        }
        env.extend(req.environment.clone());
        let cwd = if !req.cwd.is_empty() {
            req.cwd.clone()
        } else if req.user == 0 {
            "/root".into()
        } else {
            "/".into()
        };
        let spec = ExecSpec {
            argv: req.command.clone(),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd,
            uid: req.user as u32,
            gid: req.group as u32,
            pty: req
                .interactive
                .then(|| (size_or(req.width, 80), size_or(req.height, 25))),
        };
        let class = if req.wait_for_websocket {
            OperationClass::Websocket
        } else {
            OperationClass::Task
        };
        let op = self.ops.create(
            class,
            "Executing command",
            instance_resources(&[name], true),
        );
        let engine = self.arc();
        let name = name.to_string();
        if req.wait_for_websocket {
            let mut names = vec!["0"];
            if !req.interactive {
                names.extend(["1", "2"]);
            }
            names.push("control");
            let mut fds = serde_json::Map::new();
            let mut slots = BTreeMap::new();
            for n in names {
                let (secret, rx) = op.add_socket();
                fds.insert(n.into(), Value::String(secret));
                slots.insert(n.to_string(), rx);
            }
            op.set_metadata(json!({ "fds": fds, "command": req.command, "environment": env, "interactive": req.interactive }));
            let op2 = op.clone();
            self.ops.run(op.clone(), async move {
                engine.exec_with_sockets(&op2, &name, spec, slots).await
            });
        } else {
            let op2 = op.clone();
            let record = req.record_output;
            self.ops.run(op.clone(), async move {
                engine.exec_detached(&op2, &name, spec, record).await
            });
        }
        Ok(op)
    }

    /// Forks the command inside the instance (off the async threads); the
    /// caller reaps the command, the helper is reaped here.
    async fn exec_spawn(
        &self,
        name: &str,
        spec: ExecSpec,
    ) -> std::result::Result<ExecProcess, ExecFailure> {
        let running = self
            .running(name)
            .ok_or(ExecFailure::Other(EngineError::bad(
                "Instance is not running",
            )))?;
        let rt = self.runtime.clone();
        let r = tokio::task::spawn_blocking(move || {
            let guard = crate::lock(&running.container);
            match guard.as_ref() {
                Some(c) => rt.exec(c, &spec),
                None => Err(RuntimeError::Start("Instance is not running".into())),
            }
        })
        .await
        .map_err(|e| ExecFailure::Other(e.into()))?;
        match r {
            Ok(mut p) => {
                // The helper has exited or is about to: reap it aside.
                if let Some(helper) = p.helper.take() {
                    tokio::spawn(wait_exit(Arc::new(helper)));
                }
                Ok(p)
            }
            Err(RuntimeError::Exec(e)) => match e.exit_status() {
                Some(code) => Err(ExecFailure::Status(code)),
                None => Err(ExecFailure::Other(match e {
                    ExecError::Invalid(m) => EngineError::BadRequest(m),
                    other => RuntimeError::Exec(other).into(),
                })),
            },
            Err(e) => Err(ExecFailure::Other(e.into())),
        }
    }

    async fn exec_with_sockets(
        &self,
        op: &Op,
        name: &str,
        spec: ExecSpec,
        mut slots: BTreeMap<String, oneshot::Receiver<WsConn>>,
    ) -> Result<()> {
        let interactive = spec.pty.is_some();
        let control_rx = slots.remove("control");
        // Start only once the required sockets are there; control is optional (pylxd never opens it).
        let mut conns = BTreeMap::new();
        let connect = async {
            for (n, rx) in slots {
                let c = rx
                    .await
                    .map_err(|_| EngineError::internal("websocket slot dropped"))?;
                conns.insert(n, c);
            }
            Ok::<_, EngineError>(())
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| EngineError::bad("Timed out waiting for websockets to connect"))??;

        let proc_ = match self.exec_spawn(name, spec).await {
            Ok(p) => p,
            Err(ExecFailure::Status(code)) => {
                // The command could not be run: close the streams like an empty run.
                for (_, c) in conns {
                    let _ = c.outgoing.send(WsMsg::Text(String::new())).await;
                }
                return finish_exec(op, code);
            }
            Err(ExecFailure::Other(e)) => return Err(e),
        };
        // Signals go through the command's pidfd: once it is reaped below,
        // a late control message cannot reach a process that reuses its pid.
        let process = Arc::new(proc_.process);
        let (exit_tx, exit_rx) = tokio::sync::watch::channel(false);

        // The pty master, shared by the stream task and resize handling.
        let mut master_fd: Option<Arc<AsyncFd<PtyMaster>>> = None;
        let mut stream_tasks = Vec::new();
        let mut stdin_task = None;
        match proc_.stdio {
            ExecStdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                if let Some(c0) = conns.remove("0") {
                    stdin_task = Some(tokio::spawn(pump_stdin(c0, stdin)));
                }
                for (n, fd) in [("1", stdout), ("2", stderr)] {
                    if let Some(c) = conns.remove(n) {
                        stream_tasks.push(tokio::spawn(pump_output(c, fd, exit_rx.clone())));
                    }
                }
            }
            ExecStdio::Pty { master } => {
                master.set_nonblocking();
                let afd = Arc::new(crate::util::register_fd(master)?);
                master_fd = Some(afd.clone());
                if let Some(c0) = conns.remove("0") {
                    stream_tasks.push(tokio::spawn(pump_pty(c0, afd, exit_rx.clone())));
                }
            }
        }
        let control_task = control_rx.map(|rx| {
            let m = master_fd.clone();
            let process = process.clone();
            let mut exited = exit_rx.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut conn)) = tokio::time::timeout(CONNECT_TIMEOUT, rx).await else { return };
                loop {
                    tokio::select! {
                        msg = conn.incoming.recv() => match msg {
                            Some(WsMsg::Text(t)) => handle_control(&t, &process, m.as_deref(), interactive),
                            Some(WsMsg::Binary(_)) => {}
                            None => {
                                // The client went away while the command runs: stop it, as LXD does.
                                if !*exited.borrow() {
                                    let _ = process.signal(signal::KILL);
                                }
                                return;
                            }
                        },
                        _ = crate::util::wait_true(&mut exited) => return,
                    }
                }
            })
        });

        let code = wait_exit(process).await;
        let _ = exit_tx.send_replace(true);
        for t in stream_tasks {
            let _ = t.await;
        }
        // The stdin socket stays open until the client closes it; we are done with it.
        if let Some(t) = stdin_task {
            t.abort();
        }
        if let Some(t) = control_task {
            t.abort();
        }
        finish_exec(op, code)
    }

    async fn exec_detached(&self, op: &Op, name: &str, spec: ExecSpec, record: bool) -> Result<()> {
        let proc_ = match self.exec_spawn(name, spec).await {
            Ok(p) => p,
            Err(ExecFailure::Status(code)) => return finish_exec(op, code),
            Err(ExecFailure::Other(e)) => return Err(e),
        };
        let ExecStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } = proc_.stdio
        else {
            return Err(EngineError::bad("An interactive command needs websockets"));
        };
        drop(stdin);
        let logs = self.paths.instance_logs(name);
        let id = op.id();
        let mut outputs = serde_json::Map::new();
        let mut tasks = Vec::new();
        for (n, fd, ext) in [("1", stdout, "stdout"), ("2", stderr, "stderr")] {
            let dest = record.then(|| logs.join(format!("exec_{id}.{ext}")));
            if record {
                outputs.insert(
                    n.into(),
                    Value::String(format!("/1.0/instances/{name}/logs/exec_{id}.{ext}")),
                );
            }
            tasks.push(tokio::spawn(async move {
                let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
                    return;
                };
                let mut file = match dest {
                    Some(p) => tokio::fs::File::create(p).await.ok(),
                    None => None,
                };
                let mut buf = Vec::with_capacity(CHUNK);
                while let Ok(n) = rx.read_buf(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Some(f) = file.as_mut() {
                        let _ = f.write_all(&buf).await;
                    }
                    buf.clear();
                }
                // tokio's File writes in the background: without a flush the
                // log could still be empty when the operation ends and the
                // client fetches it.
                if let Some(f) = file.as_mut() {
                    let _ = f.flush().await;
                }
            }));
        }
        let code = wait_exit(Arc::new(proc_.process)).await;
        for t in tasks {
            let _ = tokio::time::timeout(DRAIN_GRACE, t).await;
        }
        if record {
            op.set_metadata_key("output", Value::Object(outputs));
        }
        finish_exec(op, code)
    }
}

enum ExecFailure {
    /// The command could not start; a shell would report this status.
    Status(i32),
    Other(EngineError),
}

impl From<i32> for ExecFailure {
    fn from(code: i32) -> Self {
        ExecFailure::Status(code)
    }
}

fn size_or(v: i64, default: u16) -> u16 {
    if v <= 0 || v > u16::MAX as i64 {
        default
    } else {
        v as u16
    }
}

/// Sets `return` first, then finishes: 127 and 126 fail as LXD reports them.
fn finish_exec(op: &Op, code: i32) -> Result<()> {
    op.set_metadata_key("return", json!(code));
    match code {
        127 => Err(EngineError::bad("Command not found")),
        126 => Err(EngineError::bad("Command not executable")),
        _ => Ok(()),
    }
}

/// Reaps our child once it exits: its exit code, or 128+N for signal N.
async fn wait_exit(process: Arc<ChildProcess>) -> i32 {
    // The pidfd turns readable at exit: reap without a blocking thread.
    if let Ok(afd) = crate::util::register_fd(process.clone()) {
        if afd.readable().await.is_ok() {
            if let Ok(Some(exit)) = process.try_wait() {
                return exit.shell_code();
            }
        }
    }
    tokio::task::spawn_blocking(move || process.wait())
        .await
        .ok()
        .and_then(|r| r.ok())
        .map_or(255, |exit| exit.shell_code())
}

/// What a message on exec's control websocket asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Send signal N (1..=64) to the command.
    Signal(i32),
    /// Resize the pty to width × height.
    Resize { width: u16, height: u16 },
    /// Nothing we act on (unknown, malformed, or a resize without a pty).
    Ignore,
}

/// Reads a control message (client bytes): LXD's `signal` and
/// `window-resize`; anything else is ignored.
pub fn parse_control(text: &str, interactive: bool) -> Control {
    let Ok(msg) = serde_json::from_str::<ExecControl>(text) else {
        return Control::Ignore;
    };
    match msg.command.as_str() {
        "signal" if msg.signal > 0 && msg.signal < 65 => Control::Signal(msg.signal as i32),
        "window-resize" if interactive => {
            let args = msg.args.unwrap_or_default();
            let width = args.get("width").and_then(|v| v.parse().ok()).unwrap_or(80);
            let height = args
                .get("height")
                .and_then(|v| v.parse().ok())
                .unwrap_or(25);
            Control::Resize { width, height }
        }
        _ => Control::Ignore,
    }
}

fn handle_control(
    text: &str,
    process: &ChildProcess,
    master: Option<&AsyncFd<PtyMaster>>,
    interactive: bool,
) {
    match parse_control(text, interactive) {
        Control::Signal(sig) => {
            // Through the pidfd: an error once the command is reaped.
            let _ = process.signal(sig);
        }
        Control::Resize { width, height } => {
            if let Some(m) = master {
                // The kernel signals SIGWINCH.
                let _ = m.get_ref().resize(width, height);
            }
        }
        Control::Ignore => {}
    }
}

async fn pump_stdin(mut conn: WsConn, fd: OwnedFd) {
    let Ok(mut tx) = tokio::net::unix::pipe::Sender::from_owned_fd(fd) else {
        return;
    };
    while let Some(msg) = conn.incoming.recv().await {
        match msg {
            WsMsg::Binary(b) => {
                if tx.write_all(&b).await.is_err() {
                    break;
                }
            }
            // An empty text frame is the client's end of input.
            WsMsg::Text(t) if t.is_empty() => break,
            WsMsg::Text(t) => {
                if tx.write_all(t.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping tx closes the command's stdin; the socket itself stays open
    // until the session ends (the task is aborted then, dropping it).
    drop(tx);
    while conn.incoming.recv().await.is_some() {}
}

async fn pump_output(conn: WsConn, fd: OwnedFd, mut exited: tokio::sync::watch::Receiver<bool>) {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = Vec::with_capacity(CHUNK);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        buf.clear();
        let read = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.read_buf(&mut buf))
                    .await
                    .unwrap_or(Ok(0)),
                None => rx.read_buf(&mut buf).await,
            }
        };
        tokio::select! {
            r = read => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if conn.outgoing.send(WsMsg::Binary(buf.to_vec())).await.is_err() {
                        break;
                    }
                }
            },
            _ = crate::util::wait_true(&mut exited), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
        }
    }
    let _ = conn.outgoing.send(WsMsg::Text(String::new())).await;
}

async fn pump_pty(
    mut conn: WsConn,
    master: Arc<AsyncFd<PtyMaster>>,
    mut exited: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; PTY_CHUNK];
    let mut input_open = true;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            g = master.readable() => {
                let Ok(mut guard) = g else { break };
                match guard.try_io(|m| std::io::Read::read(&mut m.get_ref(), &mut buf)) {
                    Ok(Ok(0)) | Ok(Err(_)) => break, // EIO: every slave is closed
                    Ok(Ok(n)) => {
                        if conn.outgoing.send(WsMsg::Binary(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                    Err(_would_block) => {}
                }
            }
            msg = conn.incoming.recv(), if input_open => match msg {
                Some(WsMsg::Binary(b)) => { let _ = write_all_fd(&master, &b).await; }
                Some(WsMsg::Text(t)) if !t.is_empty() => { let _ = write_all_fd(&master, t.as_bytes()).await; }
                Some(WsMsg::Text(_)) | None => input_open = false,
            },
            _ = crate::util::wait_true(&mut exited), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = sleep => break,
        }
    }
    let _ = conn.outgoing.send(WsMsg::Text(String::new())).await;
}

/// Writes all of `data` to a non-blocking pty master.
pub(crate) async fn write_all_fd(fd: &AsyncFd<PtyMaster>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|m| std::io::Write::write(&mut m.get_ref(), data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}
