//! `POST /1.0/instances/{name}/console`: the user's terminal attached to the
//! instance's console, as LXD does it. The operation has two websockets:
//! `0` carries the terminal's bytes both ways, `control` takes
//! `window-resize` (as exec's does). The session starts once `0` is
//! connected and ends when the client closes either socket (lxc's Ctrl+a q
//! closes `control`) or the instance stops; the console itself stays, and
//! so does its log, which the monitor keeps writing while anyone is
//! attached (see `kante_runtime::console`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kante_api::console::ConsolePost;
use kante_api::instance::InstanceStatus;
use kante_api::operation::OperationClass;
use kante_runtime::console::ConsoleSession;
use kante_runtime::RuntimeError;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::exec::{parse_control, write_all_fd, Control};
use crate::error::{EngineError, Result};
use crate::operations::{instance_resources, Op};
use crate::ws::{WsConn, WsMsg};
use crate::Engine;

/// How long the client gets to connect the data websocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest read of console output.
const CHUNK: usize = 16 * 1024;
/// Keys the console does not take within this are dropped (nothing reads
/// it and its input queue is full), so a detach is never stuck behind them.
const INPUT_TIMEOUT: Duration = Duration::from_secs(5);

impl Engine {
    /// Checks the request and makes the operation; the session runs in it.
    pub(crate) async fn instance_console(&self, name: &str, post: ConsolePost) -> Result<Arc<Op>> {
        match post.kind.as_str() {
            "" | "console" => {}
            "vga" => {
                return Err(EngineError::bad(
                    "VGA console is only supported by virtual machines",
                ))
            }
            other => return Err(EngineError::bad(format!("Unknown console type {other:?}"))),
        }
        self.instance_row(name).await?;
        match self.instance_status(name) {
            InstanceStatus::Running => {}
            InstanceStatus::Frozen => return Err(EngineError::bad("Instance is frozen")),
            _ => return Err(EngineError::bad("Instance is not running")),
        }
        let op = self.ops.create(
            OperationClass::Websocket,
            "Showing console",
            instance_resources(&[name], true),
        );
        let mut fds = serde_json::Map::new();
        let mut slots = BTreeMap::new();
        for n in ["0", "control"] {
            let (secret, rx) = op.add_socket();
            fds.insert(n.into(), Value::String(secret));
            slots.insert(n, rx);
        }
        op.set_metadata(json!({ "fds": fds }));
        let size = (post.width > 0 && post.height > 0)
            .then(|| (dimension(post.width), dimension(post.height)));
        let engine = self.arc();
        let name = name.to_string();
        self.ops.run(op.clone(), async move {
            let data = slots.remove("0").expect("a data slot");
            let control = slots.remove("control").expect("a control slot");
            engine.console_session(&name, size, data, control).await
        });
        Ok(op)
    }

    async fn console_session(
        &self,
        name: &str,
        size: Option<(u16, u16)>,
        data_rx: oneshot::Receiver<WsConn>,
        control_rx: oneshot::Receiver<WsConn>,
    ) -> Result<()> {
        let mut data = tokio::time::timeout(CONNECT_TIMEOUT, data_rx)
            .await
            .map_err(|_| EngineError::bad("Timed out waiting for websockets to connect"))?
            .map_err(|_| EngineError::internal("websocket slot dropped"))?;
        let running = self
            .running(name)
            .ok_or_else(|| EngineError::bad("Instance is not running"))?;
        let mut exited = running.exited.subscribe();
        let rt = self.runtime.clone();
        let session = tokio::task::spawn_blocking(move || {
            let guard = crate::lock(&running.container);
            match guard.as_ref() {
                Some(c) => rt.console(c),
                None => Err(RuntimeError::Start("Instance is not running".into())),
            }
        })
        .await
        .map_err(EngineError::from)??;
        let ConsoleSession { output, master } = session;
        if let Some((w, h)) = size {
            let _ = master.resize(w, h);
        }
        master.set_nonblocking();
        let master = crate::util::register_fd(master)?;
        output.set_nonblocking(true)?;
        let mut output = tokio::net::UnixStream::from_std(output)?;
        let mut control_rx = Some(control_rx);
        let mut control: Option<WsConn> = None;
        let mut buf = vec![0u8; CHUNK];
        loop {
            tokio::select! {
                r = output.read(&mut buf) => match r {
                    // The monitor closes the stream when init ends.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if data.outgoing.send(WsMsg::Binary(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                },
                msg = data.incoming.recv() => {
                    let keys = match msg {
                        Some(WsMsg::Binary(b)) => b,
                        Some(WsMsg::Text(t)) => t.into_bytes(),
                        None => break,
                    };
                    let _ = tokio::time::timeout(INPUT_TIMEOUT, write_all_fd(&master, &keys)).await;
                }
                c = async { control_rx.as_mut().expect("guarded").await }, if control_rx.is_some() => {
                    control_rx = None;
                    control = c.ok();
                }
                msg = async { control.as_mut().expect("guarded").incoming.recv().await }, if control.is_some() => match msg {
                    Some(WsMsg::Text(t)) => {
                        if let Control::Resize { width, height } = parse_control(&t, true) {
                            let _ = master.get_ref().resize(width, height);
                        }
                    }
                    Some(WsMsg::Binary(_)) => {}
                    // The client detached.
                    None => break,
                },
                _ = crate::util::wait_true(&mut exited) => break,
            }
        }
        // As LXD: a new line, then both sockets close (dropped here).
        let _ = data.outgoing.send(WsMsg::Binary(b"\n\r".to_vec())).await;
        Ok(())
    }
}

fn dimension(v: i64) -> u16 {
    v.clamp(1, u16::MAX as i64) as u16
}
