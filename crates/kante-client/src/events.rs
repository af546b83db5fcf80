//! The `/1.0/events` websocket: one JSON text message per event.

use futures_util::StreamExt;
use kante_api::event::Event;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::{url, Client};
use crate::error::Result;
use crate::transport::Conn;

/// A live event stream; read it with `next`.
pub struct EventStream {
    ws: WebSocketStream<Conn>,
}

impl EventStream {
    /// The next event, or `None` once the server closed the stream.
    /// Messages that are not events are skipped.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        while let Some(msg) = self.ws.next().await {
            match msg {
                Ok(Message::Text(t)) => match serde_json::from_str::<Event>(&t) {
                    Ok(ev) => return Some(Ok(ev)),
                    Err(_) => continue,
                },
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => return Some(Err(e.into())),
            }
        }
        None
    }
}

impl Client {
    /// Subscribes to events; `types` is e.g. `"operation,lifecycle"`, empty for all.
    pub async fn events(&self, types: &str) -> Result<EventStream> {
        let stream = self.connect().await?;
        let mut target = self.ws_url("/1.0/events");
        if !types.is_empty() {
            target.push_str("?type=");
            target.push_str(&url::query(types));
        }
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            target,
            stream,
            Some(crate::exec::ws_config()),
        )
        .await?;
        Ok(EventStream { ws })
    }
}
