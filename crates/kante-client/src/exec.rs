//! `POST /1.0/instances/{name}/exec` and its websockets.
//!
//! Protocol (as LXD): the exec operation's metadata lists one secret per
//! channel (`0`,`1`,`2`,`control`, or `0`,`control` when interactive). Each is
//! a websocket at `/1.0/operations/{id}/websocket?secret=…` on its own
//! connection. Data travels as binary frames; a zero-length text frame is
//! end-of-stream. The exit code is `metadata.return` of the final operation.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use kante_api::exec::{exec_return, ExecControl, ExecPost};
use kante_api::operation::Operation;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::client::{url, Client};
use crate::error::{ClientError, Result};
use crate::operations::async_operation;
use crate::transport::Conn;

type Ws = WebSocketStream<Conn>;

/// What `exec_capture` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Local ends of a streamed exec. In interactive mode everything the pty
/// prints goes to `stdout` and `stderr` is unused.
pub struct ExecStreams {
    /// `None` sends end-of-file at once.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
    /// Control messages (resize, signals) to forward while the command runs.
    pub control: Option<UnboundedReceiver<ExecControl>>,
}

/// How long output may still trickle in after the operation ended. The
/// server sends its end-of-stream marker before finishing the operation,
/// but the marker crosses the websocket's own task while the operation's
/// end comes back on another connection: on a busy server (the suite's
/// 200-client load beside compiles) the marker came more than 2 s later,
/// and a good exec was reported as broken. The grace is only a guard
/// against a server that never ends its streams.
const DRAIN_GRACE: Duration = Duration::from_secs(15);
const STDIN_CHUNK: usize = 128 * 1024;

impl Client {
    /// Runs a command non-interactively and collects its output.
    /// `env` is added to the server's defaults; `stdin` is sent then closed.
    pub async fn exec_capture(
        &self,
        name: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput> {
        let post = ExecPost {
            command: argv.iter().map(|s| s.to_string()).collect(),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        };
        self.exec_capture_with(name, post, stdin).await
    }

    /// `exec_capture` with a full request (user, group, cwd…); `interactive`
    /// is forced off.
    pub async fn exec_capture_with(
        &self,
        name: &str,
        mut post: ExecPost,
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput> {
        post.interactive = false;
        let input = stdin.as_deref();
        let (code, stdout, stderr) = self
            .run_exec(name, post, input, Vec::new(), Vec::new(), None)
            .await?;
        Ok(ExecOutput {
            code,
            stdout,
            stderr,
        })
    }

    /// Runs a command with its streams connected to local ends and returns
    /// its exit code once all output has been written.
    pub async fn exec(&self, name: &str, post: ExecPost, streams: ExecStreams) -> Result<i32> {
        let ExecStreams {
            stdin,
            stdout,
            stderr,
            control,
        } = streams;
        let (code, _, _) = self
            .run_exec(name, post, stdin, stdout, stderr, control)
            .await?;
        Ok(code)
    }

    /// Starts an exec operation (`wait-for-websocket` is forced on) and returns it.
    pub async fn exec_start(&self, name: &str, mut post: ExecPost) -> Result<Operation> {
        post.wait_for_websocket = true;
        let resp = self
            .post(&format!("/1.0/instances/{}/exec", url::seg(name)), &post)
            .await?;
        async_operation(&resp)
    }

    /// Opens one of an exec operation's websockets.
    pub async fn operation_websocket(&self, op_id: &str, secret: &str) -> Result<Ws> {
        let stream = self.connect().await?;
        let target = self.ws_url(&format!(
            "/1.0/operations/{}/websocket?secret={}",
            url::seg(op_id),
            url::query(secret)
        ));
        match tokio_tungstenite::client_async_with_config(target, stream, Some(ws_config())).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().as_deref().unwrap_or_default();
                let message = serde_json::from_slice::<kante_api::Envelope>(body)
                    .map(|e| e.error)
                    .ok()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("websocket refused with HTTP {status}"));
                Err(ClientError::Api { status, message })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn run_exec<R, O, E>(
        &self,
        name: &str,
        post: ExecPost,
        stdin: Option<R>,
        stdout: O,
        stderr: E,
        control: Option<UnboundedReceiver<ExecControl>>,
    ) -> Result<(i32, O, E)>
    where
        R: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let interactive = post.interactive;
        let op = self.exec_start(name, post).await?;
        let fds = socket_secrets(&op)?;
        let secret = |fd: &str| {
            fds.get(fd).cloned().ok_or_else(|| {
                ClientError::Protocol(format!("exec operation has no secret for fd {fd}"))
            })
        };

        // lxc's order: control, then 0, 1, 2. The server starts the command
        // once the required sockets are there.
        let mut ctl = match fds.get("control") {
            Some(s) => Some(self.operation_websocket(&op.id, s).await?),
            None => None,
        };
        let ws0 = self.operation_websocket(&op.id, &secret("0")?).await?;

        let wait = self.wait_operation_raw(&op.id, None);
        let (code, stdout, stderr) = if interactive {
            let (sink, stream) = ws0.split();
            let outputs = async { pump_out(stream, stdout).await.map(|o| (o, stderr)) };
            drive(outputs, pump_in(sink, stdin), wait, ctl.as_mut(), control).await?
        } else {
            let (s1, s2) = (secret("1")?, secret("2")?);
            let (ws1, ws2) = tokio::try_join!(
                self.operation_websocket(&op.id, &s1),
                self.operation_websocket(&op.id, &s2)
            )?;
            let (sink, _unused) = ws0.split();
            // try_join: a local write error (EPIPE) stops at once; dropping the
            // sockets then makes the server kill the command.
            let outputs = async { tokio::try_join!(pump_out(ws1, stdout), pump_out(ws2, stderr)) };
            drive(outputs, pump_in(sink, stdin), wait, ctl.as_mut(), control).await?
        };
        if let Some(mut c) = ctl {
            // The command has ended; closing control now cannot kill it.
            let _ = tokio::time::timeout(Duration::from_millis(100), c.close(None)).await;
        }
        Ok((code, stdout, stderr))
    }
}

/// Runs the pumps until output is drained and the operation is final.
async fn drive<O, E, OutF, InF, WaitF>(
    outputs: OutF,
    input: InF,
    wait: WaitF,
    mut ctl: Option<&mut Ws>,
    mut control: Option<UnboundedReceiver<ExecControl>>,
) -> Result<(i32, O, E)>
where
    OutF: std::future::Future<Output = Result<(O, E)>>,
    InF: std::future::Future<Output = Result<()>>,
    WaitF: std::future::Future<Output = Result<Operation>>,
{
    tokio::pin!(outputs, input, wait);
    let mut outs: Option<(O, E)> = None;
    let mut final_op: Option<Operation> = None;
    let mut input_done = false;
    let grace = tokio::time::sleep(Duration::from_secs(365 * 86400));
    tokio::pin!(grace);
    let mut grace_armed = false;
    loop {
        if outs.is_some() && final_op.is_some() {
            break;
        }
        tokio::select! {
            r = &mut outputs, if outs.is_none() => outs = Some(r?),
            r = &mut wait, if final_op.is_none() => {
                final_op = Some(r?);
                grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                grace_armed = true;
            }
            // A stdin error (the command exited and the server hung up) only ends input.
            _ = &mut input, if !input_done => input_done = true,
            msg = recv_control(&mut control), if control.is_some() => match msg {
                Some(m) => {
                    if let Some(ws) = ctl.as_deref_mut() {
                        if let Ok(text) = serde_json::to_string(&m) {
                            let _ = ws.send(Message::text(text)).await;
                        }
                    }
                }
                None => control = None,
            },
            _ = &mut grace, if grace_armed && outs.is_none() => break,
        }
    }
    let op = final_op.expect("loop ends with the operation final");
    let code = match exec_return(&op.metadata) {
        Some(c) => c as i32,
        None => {
            let msg = if op.err.is_empty() {
                "exec operation ended without an exit code".into()
            } else {
                op.err
            };
            return Err(ClientError::Operation(msg));
        }
    };
    let Some((out, err)) = outs else {
        return Err(ClientError::Protocol("output streams did not end".into()));
    };
    Ok((code, out, err))
}

/// The websocket secrets of an exec or console operation (`fds` in its
/// metadata), by socket name.
pub(crate) fn socket_secrets(op: &Operation) -> Result<BTreeMap<String, String>> {
    Ok(op
        .metadata
        .get("fds")
        .cloned()
        .map(serde_json::from_value)
        .transpose()?
        .unwrap_or_default())
}

/// The next control message to send; pending forever without a channel.
pub(crate) async fn recv_control(
    rx: &mut Option<UnboundedReceiver<ExecControl>>,
) -> Option<ExecControl> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Local input to the websocket; a zero-length text frame marks EOF.
async fn pump_in<S, R>(mut sink: S, input: Option<R>) -> Result<()>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
    R: AsyncRead + Unpin,
{
    if let Some(mut input) = input {
        let mut buf = BytesMut::with_capacity(STDIN_CHUNK);
        loop {
            buf.reserve(STDIN_CHUNK);
            // Local read errors end input like EOF does.
            let n: usize = input.read_buf(&mut buf).await.unwrap_or_default();
            if n == 0 {
                break;
            }
            sink.send(Message::Binary(buf.split().freeze())).await?;
        }
    }
    sink.send(Message::Text("".into())).await?;
    Ok(())
}

/// Websocket output to a local writer, until the empty text frame or close.
async fn pump_out<S, W>(mut stream: S, mut out: W) -> Result<W>
where
    S: Stream<Item = std::result::Result<Message, tungstenite::Error>> + Unpin,
    W: AsyncWrite + Unpin,
{
    while let Some(msg) = stream.next().await {
        let data: Bytes = match msg {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Text(t)) if t.is_empty() => break,
            Ok(Message::Text(t)) => Bytes::copy_from_slice(t.as_bytes()),
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            // The server drops the connection after its end marker.
            Err(_) => break,
        };
        out.write_all(&data).await?;
        out.flush().await?;
    }
    Ok(out)
}

/// A 16 KiB first read buffer instead of tungstenite's 128 KiB, which it
/// zeroes (and faults in) per socket: four per exec. Larger frames still
/// grow it.
pub(crate) fn ws_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024)
}
