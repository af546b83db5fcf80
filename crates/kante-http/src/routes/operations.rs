//! `/1.0/operations`: listing, waiting, cancelling, and the websockets of
//! an operation (exec, console), bridged to the engine's channel pairs.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use futures_util::{SinkExt, StreamExt};
use kante_engine::front::Request;
use kante_engine::front::{WsConn, WsMsg};
use tokio::sync::mpsc;

use super::Params;
use crate::response::{answer, listing, ApiResult};
use crate::AppState;

pub async fn list(State(s): State<AppState>, headers: HeaderMap, q: Params) -> ApiResult {
    // A member asking another lists that member's own (the forwarding
    // middleware lets only members send the header).
    let all_members = !headers.contains_key(kante_engine::forward::FORWARDED_HEADER);
    listing(&s, Request::OperationList { all_members }, &q).await
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    answer(&s, Request::OperationGet { id }).await
}

pub async fn delete(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    answer(&s, Request::OperationCancel { id }).await
}

/// Always a 200 with the operation as it is when the wait ends.
pub async fn wait(State(s): State<AppState>, Path(id): Path<String>, q: Params) -> ApiResult {
    let timeout = q
        .get("timeout")
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|t| *t >= 0)
        .map(|t| Duration::from_secs(t as u64));
    answer(&s, Request::OperationWait { id, timeout }).await
}

/// tungstenite zeroes its whole read buffer on the first read (128 KiB by
/// default, page faults included): four of those were a tenth of an exec
/// round trip. Larger frames still grow the buffer.
pub(crate) const WS_READ_BUFFER: usize = 16 * 1024;

/// Connects one of an operation's websockets; the secret authorises it.
/// A websocket slot (see `wslimit`) is taken first: a claimed secret
/// cannot be given back.
pub async fn websocket(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Params,
    ws: WebSocketUpgrade,
) -> ApiResult {
    let secret = q.get("secret").cloned().unwrap_or_default();
    let ws_slot = s.ws.take()?;
    let slot = crate::gate::handle(&s, Request::OperationSocket { id, secret })
        .await?
        .into_socket()?;
    Ok(ws
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let _ws_slot = ws_slot;
            let (conn, pump) = bridge(socket);
            let _ = slot.send(conn);
            pump.await;
        })
        .into_response())
}

/// How long a finished websocket waits for the client's Close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Joins a real websocket to the engine's channel pair and returns the
/// future that pumps between them until either side ends.
pub fn bridge(socket: WebSocket) -> (WsConn, impl std::future::Future<Output = ()>) {
    let (in_tx, in_rx) = mpsc::channel::<WsMsg>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<WsMsg>(64);
    let conn = WsConn {
        incoming: in_rx,
        outgoing: out_tx,
    };
    let pump = async move {
        let (mut sink, mut stream) = socket.split();
        let reader = async move {
            while let Some(Ok(msg)) = stream.next().await {
                let m = match msg {
                    Message::Binary(b) => WsMsg::Binary(b.to_vec()),
                    Message::Text(t) => WsMsg::Text(t.to_string()),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if in_tx.send(m).await.is_err() {
                    break;
                }
            }
        };
        let writer = async move {
            while let Some(m) = out_rx.recv().await {
                let msg = match m {
                    WsMsg::Binary(b) => Message::Binary(b.into()),
                    WsMsg::Text(t) => Message::Text(t.into()),
                };
                if sink.send(msg).await.is_err() {
                    return;
                }
            }
            // The engine is done with this stream.
            let _ = sink.send(Message::Close(None)).await;
            let _ = sink.close().await;
        };
        // The connection lives until the engine closes its side; a client
        // closing only its reading half keeps the writer going.
        tokio::pin!(writer, reader);
        tokio::select! {
            _ = &mut writer => {
                // RFC 6455: after our Close, wait for the client's before
                // dropping the connection, or its Close reply hits a closed
                // socket (ws4py, under pylxd, logs a broken pipe). Briefly:
                // a client that never answers does not hold the task.
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader).await;
            }
            _ = &mut reader => { writer.await; }
        }
    };
    (conn, pump)
}
