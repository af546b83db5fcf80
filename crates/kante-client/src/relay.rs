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
use tokio_tungstenite::tungstenite::Message;

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
        let (mut a_tx, mut a_rx) = wa.split();
        let (mut b_tx, mut b_rx) = wb.split();
        let c1 = carried.clone();
        let c2 = carried.clone();
        // Each direction ends at its reader's close (or error), and then
        // closes its writer, so the other server sees the end too.
        pumps.push(tokio::spawn(async move {
            while let Some(Ok(m)) = a_rx.next().await {
                let close = matches!(m, Message::Close(_));
                c1.fetch_add(data_len(&m), Ordering::Relaxed);
                if b_tx.send(m).await.is_err() || close {
                    break;
                }
            }
            let _ = b_tx.close().await;
        }));
        pumps.push(tokio::spawn(async move {
            while let Some(Ok(m)) = b_rx.next().await {
                let close = matches!(m, Message::Close(_));
                c2.fetch_add(data_len(&m), Ordering::Relaxed);
                if a_tx.send(m).await.is_err() || close {
                    break;
                }
            }
            let _ = a_tx.close().await;
        }));
    }
    for p in pumps {
        let _ = p.await;
    }
    Ok(carried.load(Ordering::Relaxed))
}

fn data_len(m: &Message) -> u64 {
    match m {
        Message::Binary(b) => b.len() as u64,
        Message::Text(t) => t.len() as u64,
        _ => 0,
    }
}
