//! The volume stream's pump between a blocking reader or writer of
//! kante-storage and the `fs` websocket: frames out (the source, watching
//! `control` for the sink's abort, then its verdict) and frames in (the
//! sink, watching for the source's abort), each bounded by the link's
//! stall timeout so a cut link fails the transfer instead of hanging it.

use kante_storage::stream::SendReport;
use tokio::sync::mpsc;

use super::link::{self, peer_failed, Control, FrameReader, FrameWriter, Link, Progress};
use crate::error::{EngineError, Result};
use crate::operations::Op;
use crate::ws::WsMsg;

/// Writes a volume stream with `write` on a blocking thread and pumps its
/// frames out on `fs`, watching `control` for the sink's abort; then waits
/// for the sink's verdict.
pub(super) async fn stream_out(
    op: &Op,
    name: &str,
    link: &mut Link,
    write: impl FnOnce(&mut FrameWriter) -> kante_storage::Result<SendReport> + Send + 'static,
) -> Result<()> {
    // The stream: a blocking writer on a thread, frames pumped out here,
    // the control channel watched for the sink's abort.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut w = FrameWriter::new(tx);
        let report = write(&mut w)?;
        std::io::Write::flush(&mut w)?;
        Ok::<_, EngineError>(report)
    });
    let mut progress = Progress::new(op, name);
    let mut aborted: Option<EngineError> = None;
    // The target's success may overtake the end of the writer thread:
    // it has then checked the whole stream.
    let mut verdict = false;
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(b) => {
                    progress.add(b.len());
                    // A target that stops reading (a cut link holds the
                    // socket full) fails the send after the stall bound;
                    // a cancel is heard meanwhile.
                    let send = tokio::time::timeout(
                        link::STALL_TIMEOUT,
                        link.fs.outgoing.send(WsMsg::Binary(b)),
                    );
                    let sent = tokio::select! {
                        r = send => r,
                        _ = op.cancelled() => {
                            aborted = Some(EngineError::bad("Migration cancelled"));
                            break;
                        }
                    };
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            aborted = Some(EngineError::bad("The migration target went away"));
                            break;
                        }
                        Err(_) => {
                            aborted = Some(EngineError::bad(
                                "The migration target stopped reading",
                            ));
                            break;
                        }
                    }
                }
                None => break,
            },
            c = link::recv_control(&mut link.control, op) => {
                match c {
                    Ok(Control::Done(c)) if c.success => verdict = true,
                    Ok(Control::Done(c)) => aborted = Some(peer_failed(&c)),
                    Ok(_) => aborted = Some(EngineError::bad(
                        "The migration target answered before the end of the stream",
                    )),
                    Err(e) => aborted = Some(e),
                }
                break;
            }
        }
    }
    drop(rx);
    // The final count, however quick the transfer was.
    progress.finish();
    let sent = writer.await?;
    if let Some(e) = aborted {
        return Err(e);
    }
    if verdict {
        return Ok(());
    }
    let report = sent?;
    tracing::info!(
        instance = name,
        bytes = report.bytes,
        "migration stream sent ({})",
        report.migration_type
    );
    match link::recv_control(&mut link.control, op).await? {
        Control::Done(c) if c.success => Ok(()),
        Control::Done(c) => Err(peer_failed(&c)),
        Control::Header(_) => Err(EngineError::bad(
            "The migration target sent a header instead of its verdict",
        )),
    }
}

/// Feeds the frames arriving on `fs` to `receive`, run on a blocking
/// thread, watching `control` for the source's abort (whose reason is the
/// error then); a stall or a closed stream ends the receiver's input.
pub(super) async fn stream_in<T: Send + 'static>(
    op: &Op,
    name: &str,
    link: &mut Link,
    receive: impl FnOnce(&mut FrameReader) -> kante_storage::Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    let mut tx = Some(tx);
    let mut reader = tokio::task::spawn_blocking(move || {
        let mut r = FrameReader::new(rx);
        receive(&mut r)
    });
    // Frames in, the control channel watched for the source's abort.
    let mut progress = Progress::new(op, name);
    let mut aborted: Option<EngineError> = None;
    let received = loop {
        tokio::select! {
            done = &mut reader => break done,
            frame = tokio::time::timeout(link::STALL_TIMEOUT, link.fs.incoming.recv()),
                if aborted.is_none() => match frame {
                Ok(Some(WsMsg::Binary(b))) => {
                    progress.add(b.len());
                    // A receiver that is done (or failed) drops its end.
                    if let Some(t) = &tx {
                        let _ = t.send(b).await;
                    }
                }
                Ok(Some(WsMsg::Text(_))) => {}
                Ok(None) => aborted = Some(EngineError::bad("The migration source closed the stream")),
                Err(_) => aborted = Some(EngineError::bad("The migration source stalled")),
            },
            c = link::recv_control(&mut link.control, op), if aborted.is_none() => {
                aborted = Some(match c {
                    Ok(Control::Done(c)) if !c.success => peer_failed(&c),
                    Ok(_) => EngineError::bad("Unexpected control message from the migration source"),
                    Err(e) => e,
                });
            }
        }
        if aborted.is_some() {
            // Ends the reader's input: a stream cut short fails it.
            tx = None;
        }
    };
    drop(tx);
    progress.finish();
    match (received?, aborted) {
        (Ok(r), _) => Ok(r),
        (Err(_), Some(why)) => Err(why),
        (Err(e), None) => Err(e.into()),
    }
}
