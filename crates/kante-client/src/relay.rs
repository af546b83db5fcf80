//! Relay of a migration through the client: the two servers cannot reach
//! each other, so both wait for a connection (the source's migration
//! operation and the target's `push` operation each hold one secret per
//! channel) and the client joins each channel of one to the same channel
//! of the other, frame for frame, in both directions, as lxc's
//! `--mode relay` does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::client::Client;
use crate::error::{ClientError, Result};

/// One end of the relay: a server, its operation and the secret of each
/// channel.
pub struct RelayEnd<'a> {
    pub client: &'a Client,
    pub operation: &'a str,
    pub secrets: &'a BTreeMap<String, String>,
}

/// Joins every channel both ends name until each side has closed it;
/// returns the bytes of data frames carried (both directions). A channel
/// one end has and the other lacks is an error before anything is joined.
pub async fn relay(a: RelayEnd<'_>, b: RelayEnd<'_>) -> Result<u64> {
    if a.secrets.keys().ne(b.secrets.keys()) {
        return Err(ClientError::Api {
            status: 400,
            message: format!(
                "the two ends of the relay have different channels ({:?} and {:?})",
                a.secrets.keys().collect::<Vec<_>>(),
                b.secrets.keys().collect::<Vec<_>>()
            ),
        });
    }
    let carried = Arc::new(AtomicU64::new(0));
    let mut pumps = Vec::new();
    for (channel, secret) in a.secrets {
        let wa = a.client.operation_websocket(a.operation, secret).await?;
        let wb = b
            .client
            .operation_websocket(b.operation, &b.secrets[channel])
            .await?;
        let (a_tx, a_rx) = wa.split();
        let (b_tx, b_rx) = wb.split();
        pumps.push(tokio::spawn(pump(a_rx, b_tx, carried.clone())));
        pumps.push(tokio::spawn(pump(b_rx, a_tx, carried.clone())));
    }
    for p in pumps {
        let _ = p.await;
    }
    Ok(carried.load(Ordering::Relaxed))
}

/// One direction of a channel: frames from `from` to `to` until `from`
/// closes (or fails), then `to` is closed, so the other server sees the
/// end too.
async fn pump<R, W>(mut from: R, mut to: W, carried: Arc<AtomicU64>)
where
    R: futures_util::Stream<Item = std::result::Result<Message, WsError>> + Unpin,
    W: futures_util::Sink<Message> + Unpin,
{
    while let Some(Ok(m)) = from.next().await {
        let close = matches!(m, Message::Close(_));
        carried.fetch_add(data_len(&m), Ordering::Relaxed);
        if to.send(m).await.is_err() || close {
            break;
        }
    }
    let _ = to.close().await;
}

fn data_len(m: &Message) -> u64 {
    match m {
        Message::Binary(b) => b.len() as u64,
        Message::Text(t) => t.len() as u64,
        _ => 0,
    }
}
