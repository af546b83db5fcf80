//! LXD's rsync transfer over the migration's `fs` websocket: one rsync
//! session per tree (each snapshot, then the volume), both directions of
//! rsync's own protocol carried as binary messages, and each side ending
//! its direction of a session with an empty text message (LXD's
//! "barrier"), after which the next session starts on the same socket.
//!
//! The processes are kante-storage's (`rsync::receiver`, `rsync::sender`:
//! the engine makes no syscalls); the sender's remote shell is joined to
//! two pipes of this process: the client's output reaches the socket, the
//! peer's bytes reach the client, and the end of the client's output is
//! the end of this side's direction.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Child;

use tokio::sync::mpsc;

use prost::Message;

use super::link::peer_failed;
use super::link::{Link, Progress, STALL_TIMEOUT};
use super::proto::MigrationControl;
use crate::error::{EngineError, Result};
use crate::operations::Op;
use crate::ws::WsMsg;

/// Bytes read from rsync per binary message.
const CHUNK: usize = 128 << 10;

/// Receives one tree into `dir` (LXD's `rsync.Recv`).
pub(super) async fn receive(
    link: &mut Link,
    op: &Op,
    progress: &mut Progress<'_>,
    dir: &Path,
    features: &[&str],
) -> Result<()> {
    let mut child = kante_storage::rsync::receiver(dir, features)
        .map_err(|e| EngineError::internal(format!("running rsync: {e}")))?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let r = session(link, op, progress, Box::new(stdout), Box::new(stdin), false).await;
    finish(child, r, "receive").await
}

/// Sends the tree at `dir` (LXD's `rsync.Send`).
pub(super) async fn send(
    link: &mut Link,
    op: &Op,
    progress: &mut Progress<'_>,
    dir: &Path,
    features: &[&str],
) -> Result<()> {
    let pipe = |what: &str| {
        std::io::pipe().map_err(|e| EngineError::internal(format!("{what} pipe: {e}")))
    };
    // to_peer: the shell writes the client's output, we read it.
    // from_peer: we write the peer's bytes, the shell hands them to the client.
    let (to_peer_r, to_peer_w) = pipe("outgoing")?;
    let (from_peer_r, from_peer_w) = pipe("incoming")?;
    let child = kante_storage::rsync::sender(dir, features, from_peer_r.into(), to_peer_w.into())
        .map_err(|e| EngineError::internal(format!("running rsync: {e}")))?;
    let r = session(
        link,
        op,
        progress,
        Box::new(to_peer_r),
        Box::new(from_peer_w),
        true,
    )
    .await;
    finish(child, r, "send").await
}

/// Waits for rsync; its failure (with its stderr) comes before the
/// relay's, which is usually its consequence.
async fn finish(mut child: Child, relayed: Result<()>, what: &str) -> Result<()> {
    if relayed.is_err() {
        let _ = child.kill();
    }
    let mut stderr = child.stderr.take();
    let waited = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut text);
        }
        (child.wait(), text)
    })
    .await
    .map_err(|e| EngineError::internal(format!("waiting for rsync: {e}")))?;
    relayed?;
    match waited {
        (Ok(st), _) if st.success() => Ok(()),
        (Ok(st), text) => Err(EngineError::bad(format!(
            "rsync {what} failed ({st}): {}",
            text.trim()
        ))),
        (Err(e), _) => Err(EngineError::internal(format!("waiting for rsync: {e}"))),
    }
}

/// Relays one session: what `from_rsync` yields goes out as binary
/// messages then a barrier; what comes in goes to `to_rsync` until the
/// peer's barrier, which closes it. Done when both directions are.
/// `count_out`: progress counts what this side sends (else what it gets).
/// The peer's failure on `control` ends it.
async fn session(
    link: &mut Link,
    op: &Op,
    progress: &mut Progress<'_>,
    mut from_rsync: Box<dyn Read + Send>,
    mut to_rsync: Box<dyn Write + Send>,
    count_out: bool,
) -> Result<()> {
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(4);
    let reader = tokio::task::spawn_blocking(move || loop {
        let mut buf = vec![0u8; CHUNK];
        match from_rsync.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                if out_tx.blocking_send(buf).is_err() {
                    return;
                }
            }
        }
    });
    let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(b) = in_rx.blocking_recv() {
            if to_rsync.write_all(&b).is_err() {
                // rsync is gone; its exit status tells why.
                while in_rx.blocking_recv().is_some() {}
                return;
            }
        }
    });
    let mut in_tx = Some(in_tx);
    let (mut out_done, mut in_done) = (false, false);
    let result = loop {
        if out_done && in_done {
            break Ok(());
        }
        // Once the peer is done, this side's rsync has little left to say:
        // one that says nothing more is stuck.
        let out_bound = if in_done {
            STALL_TIMEOUT
        } else {
            std::time::Duration::MAX
        };
        tokio::select! {
            chunk = tokio::time::timeout(out_bound, out_rx.recv()), if !out_done => match chunk {
                Err(_) => break Err(EngineError::bad("rsync did not finish after the migration peer had")),
                Ok(Some(b)) => {
                    if count_out {
                        progress.add(b.len());
                    }
                    if !send_within(&link.fs, WsMsg::Binary(b)).await {
                        break Err(EngineError::bad("The migration peer stopped reading"));
                    }
                }
                Ok(None) => {
                    out_done = true;
                    if !send_within(&link.fs, WsMsg::Text(String::new())).await {
                        break Err(EngineError::bad("The migration peer went away"));
                    }
                }
            },
            msg = tokio::time::timeout(STALL_TIMEOUT, link.fs.incoming.recv()), if !in_done => match msg {
                Ok(Some(WsMsg::Binary(b))) => {
                    if !count_out {
                        progress.add(b.len());
                    }
                    if let Some(t) = &in_tx {
                        let _ = t.send(b).await;
                    }
                }
                Ok(Some(WsMsg::Text(_))) => {
                    in_done = true;
                    in_tx = None;
                }
                Ok(None) => break Err(EngineError::bad("The migration peer closed the stream")),
                Err(_) => break Err(EngineError::bad("The migration peer stalled")),
            },
            msg = link.control.incoming.recv() => break Err(match msg {
                Some(WsMsg::Binary(b)) => match MigrationControl::decode(b.as_slice()) {
                    Ok(c) if !c.success => peer_failed(&c),
                    _ => EngineError::bad(
                        "Unexpected control message from the migration peer during the transfer",
                    ),
                },
                _ => EngineError::bad("The migration peer went away"),
            }),
            _ = op.cancelled() => break Err(EngineError::bad("Migration cancelled")),
        }
    };
    drop(in_tx);
    drop(out_rx);
    if result.is_ok() {
        let _ = writer.await;
        let _ = reader.await;
    }
    result
}

/// Sends on the socket within the stall bound.
async fn send_within(fs: &crate::ws::WsConn, msg: WsMsg) -> bool {
    matches!(
        tokio::time::timeout(STALL_TIMEOUT, fs.outgoing.send(msg)).await,
        Ok(Ok(()))
    )
}
