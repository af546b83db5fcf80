//! A request body handed, as it arrives, from the request handler to an
//! import reading it on a blocking thread (`spawn_blocking`), through a
//! small bounded channel: the body is read once and never spooled.
//!
//! The handler runs [`Feed::pump`] until the body's end, so the reply goes
//! out only once the whole body has been read, as before (and as LXD
//! does). If the reader stops early (the import failed), the rest of the
//! body is read and dropped, so the client still gets the reply. The
//! reader sees the body's end as EOF, a client's broken body as an error,
//! and a handler gone mid-body (the connection dropped) as an error too,
//! never as a short but complete body.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::upload::ByteStream;

/// Chunks in flight between the handler and the reader.
const DEPTH: usize = 16;

/// How the body ended, as the handler saw it.
#[derive(Default)]
enum End {
    /// Not yet (or the handler went away).
    #[default]
    Open,
    Complete,
    Failed(String),
}

/// The handler's end of the channel.
pub(crate) struct Feed {
    tx: mpsc::Sender<Bytes>,
    end: Arc<Mutex<End>>,
}

/// The import's end: a blocking [`Read`] of the body. Read it only on a
/// blocking thread.
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
    end: Arc<Mutex<End>>,
}

/// A new channel for one body.
pub(crate) fn channel() -> (Feed, BodyReader) {
    let (tx, rx) = mpsc::channel(DEPTH);
    let end = Arc::new(Mutex::new(End::Open));
    let reader = BodyReader {
        rx,
        current: Bytes::new(),
        end: end.clone(),
    };
    (Feed { tx, end }, reader)
}

fn set(end: &Mutex<End>, to: End) {
    *end.lock().unwrap_or_else(|p| p.into_inner()) = to;
}

impl Feed {
    /// Reads `body` to its end into the channel. Returns the client's
    /// error if the body broke (the reader gets it too).
    pub(crate) async fn pump(self, mut body: ByteStream) -> io::Result<()> {
        let Feed { tx, end } = self;
        let mut tx = Some(tx);
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) if b.is_empty() => {}
                Ok(b) => {
                    if let Some(t) = &tx {
                        if t.send(b).await.is_err() {
                            // The reader stopped: drop the rest.
                            tx = None;
                        }
                    }
                }
                Err(e) => {
                    set(&end, End::Failed(e.to_string()));
                    return Err(e);
                }
            }
        }
        set(&end, End::Complete);
        Ok(())
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => {
                    let end = self.end.lock().unwrap_or_else(|p| p.into_inner());
                    return match &*end {
                        End::Complete => Ok(0),
                        End::Failed(e) => Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("reading the upload: {e}"),
                        )),
                        End::Open => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the upload stopped before its end",
                        )),
                    };
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Reads `body` to its end and drops it (a request refused before its
/// body was wanted still gets its reply after the whole body).
pub(crate) async fn drain(mut body: ByteStream) {
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(items: Vec<io::Result<&'static [u8]>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(
            items.into_iter().map(|r| r.map(Bytes::from_static)),
        ))
    }

    fn read_all(mut r: BodyReader) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out)
    }

    #[tokio::test]
    async fn a_body_arrives_whole_then_ends() {
        let (feed, reader) = channel();
        let read = tokio::task::spawn_blocking(move || read_all(reader));
        let items = vec![Ok(&b"ab"[..]), Ok(&b""[..]), Ok(&b"cde"[..])];
        feed.pump(body(items)).await.unwrap();
        assert_eq!(read.await.unwrap().unwrap(), b"abcde");
    }

    #[tokio::test]
    async fn a_broken_body_is_an_error_on_both_ends() {
        let (feed, reader) = channel();
        let read = tokio::task::spawn_blocking(move || read_all(reader));
        let items = vec![
            Ok(&b"ab"[..]),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
        ];
        assert!(feed.pump(body(items)).await.is_err());
        let e = read.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        assert!(e.to_string().contains("reset"), "{e}");
    }

    #[tokio::test]
    async fn a_handler_gone_mid_body_is_no_end() {
        let (feed, reader) = channel();
        drop(feed);
        let e = tokio::task::spawn_blocking(move || read_all(reader))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_reader_gone_early_leaves_the_body_drained() {
        let (feed, reader) = channel();
        drop(reader);
        let items = (0..100).map(|_| Ok(&b"x"[..])).collect();
        // Not stuck on the full channel: the rest is read and dropped.
        feed.pump(body(items)).await.unwrap();
    }
}
