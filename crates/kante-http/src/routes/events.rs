//! `/1.0/events`: the event stream as a websocket.

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::State;
use axum::response::IntoResponse;
use futures_util::{SinkExt, StreamExt};
use kante_engine::front::Request;

use super::Params;
use crate::response::ApiResult;
use crate::AppState;

/// `/1.0/events`: one JSON text frame per event, filtered by `?type=`.
pub async fn events(State(s): State<AppState>, q: Params, ws: WebSocketUpgrade) -> ApiResult {
    let types: Vec<String> = q
        .get("type")
        .map(|t| {
            t.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let slot = s.ws.take()?;
    let mut events = crate::gate::handle(&s, Request::Events { types })
        .await?
        .into_events()?;
    Ok(ws
        .read_buffer_size(super::operations::WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let (mut sink, mut stream) = socket.split();
            if sink.send(Message::Ping("keepalive".as_bytes().to_vec().into())).await.is_err() {
                return;
            }
            let mut ping = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(ev) => {
                            let text = serde_json::to_string(&ev).unwrap_or_default();
                            if sink.send(Message::Text(text.into())).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                    msg = stream.next() => match msg {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        _ => {}
                    },
                    _ = ping.tick() => {
                        if sink.send(Message::Ping("keepalive".as_bytes().to_vec().into())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .into_response())
}
