//! `POST /1.0/instances/{name}/console` and its websockets: `0` carries the
//! terminal's bytes both ways, `control` takes `window-resize`. Closing
//! `control` detaches (what lxc does on Ctrl+a q); the server then sends a
//! last new line on `0`, closes both and ends the operation.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kante_api::console::ConsolePost;
use kante_api::exec::ExecControl;
use kante_api::operation::Operation;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{Receiver, UnboundedReceiver};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{url, Client};
use crate::error::{ClientError, Result};
use crate::exec::{recv_control, socket_secrets};
use crate::operations::{async_operation, operation_result};

/// How long the server gets to end the session after a detach.
const DETACH_GRACE: Duration = Duration::from_secs(5);

/// Local ends of an attached console.
pub struct ConsoleStreams {
    /// Keys to send; the channel's end detaches.
    pub input: Receiver<Vec<u8>>,
    /// Where the console's output goes.
    pub output: Box<dyn AsyncWrite + Send + Unpin>,
    /// Control messages (`window-resize`) to send while attached.
    pub control: Option<UnboundedReceiver<ExecControl>>,
}

/// How an attached console ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleEnd {
    /// The input ended (the user detached).
    Detached,
    /// The server closed the console (the instance stopped).
    Closed,
}

impl Client {
    /// Starts a console operation and returns it (its metadata has the secrets).
    pub async fn console_start(&self, name: &str, post: &ConsolePost) -> Result<Operation> {
        let resp = self
            .post(&format!("/1.0/instances/{}/console", url::seg(name)), post)
            .await?;
        async_operation(&resp)
    }

    /// Attaches to an instance's console until the input ends or the
    /// server closes it, then waits for the operation's result.
    pub async fn console(
        &self,
        name: &str,
        post: ConsolePost,
        streams: ConsoleStreams,
    ) -> Result<ConsoleEnd> {
        let ConsoleStreams {
            mut input,
            mut output,
            mut control,
        } = streams;
        let op = self.console_start(name, &post).await?;
        let fds = socket_secrets(&op)?;
        let secret = |fd: &str| {
            fds.get(fd).cloned().ok_or_else(|| {
                ClientError::Protocol(format!("console operation has no secret for {fd}"))
            })
        };
        // lxc's order: control first, then the data socket.
        let mut ctl = self
            .operation_websocket(&op.id, &secret("control")?)
            .await?;
        let ws0 = self.operation_websocket(&op.id, &secret("0")?).await?;
        let (mut sink, mut stream) = ws0.split();
        let end = loop {
            tokio::select! {
                keys = input.recv() => match keys {
                    Some(k) => {
                        if sink.send(Message::Binary(k.into())).await.is_err() {
                            break ConsoleEnd::Closed;
                        }
                    }
                    None => break ConsoleEnd::Detached,
                },
                msg = stream.next() => match msg {
                    Some(Ok(Message::Binary(b))) => write_out(&mut output, &b).await?,
                    Some(Ok(Message::Text(t))) => write_out(&mut output, t.as_bytes()).await?,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break ConsoleEnd::Closed,
                    Some(Ok(_)) => {}
                },
                m = recv_control(&mut control), if control.is_some() => match m {
                    Some(m) => {
                        if let Ok(text) = serde_json::to_string(&m) {
                            let _ = ctl.send(Message::text(text)).await;
                        }
                    }
                    None => control = None,
                },
            }
        };
        if end == ConsoleEnd::Detached {
            let _ = ctl.close(None).await;
            // The server's last words (a new line), until it closes.
            let drain = async {
                while let Some(Ok(msg)) = stream.next().await {
                    match msg {
                        Message::Binary(b) => write_out(&mut output, &b).await?,
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                Ok::<_, ClientError>(())
            };
            let _ = tokio::time::timeout(DETACH_GRACE, drain).await;
        }
        drop(ctl);
        operation_result(self.wait_operation_raw(&op.id, Some(DETACH_GRACE)).await?)?;
        Ok(end)
    }
}

async fn write_out(out: &mut (dyn AsyncWrite + Send + Unpin), data: &[u8]) -> Result<()> {
    out.write_all(data).await?;
    out.flush().await?;
    Ok(())
}
