//! The two websockets of a migration (`control`, `fs`) and how they come to
//! be: *listened* for (the operation holds their secrets in its metadata
//! and the peer, or lxc relaying, connects to
//! `/1.0/operations/{id}/websocket?secret=…`) or *dialed* (`wss://` to the
//! peer's operation, its certificate pinned as the request gave it). Also
//! the messages on `control`, and the blocking reader and writer that carry
//! a volume stream as binary frames on `fs`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as TMsg;

use super::proto::{MigrationControl, MigrationHeader};
use crate::error::{EngineError, Result};
use crate::image_pull::{dial_tls, escape, TlsPeer};
use crate::operations::Op;
use crate::ws::{WsConn, WsMsg};

/// The channels Kante opens (no `criu`: no live migration).
pub(super) const CHANNELS: [&str; 2] = ["control", "fs"];
/// How long a listening side waits for its peer to connect.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a side waits for the peer's next control message or data frame.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of stream per binary frame on `fs`.
const FRAME: usize = 256 << 10;

/// A migration's connected websockets.
pub(super) struct Link {
    pub control: WsConn,
    pub fs: WsConn,
}

/// Where a side's websockets come from.
pub(super) enum Connect {
    /// The peer connects to this operation's sockets.
    Listen(BTreeMap<String, oneshot::Receiver<WsConn>>),
    /// This side connects to the peer's operation.
    Dial(Peer),
}

/// A peer operation to dial, checked when the request arrives.
pub(super) struct Peer {
    host: String,
    port: u16,
    authority: String,
    /// `/1.0/operations/<id>`.
    path: String,
    pin: String,
    secrets: BTreeMap<String, String>,
}

impl Peer {
    /// From a request's `operation` URL, `certificate` (PEM) and `secrets`:
    /// a 400 when one is unusable.
    pub(super) fn parse(
        operation: &str,
        certificate: &str,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Peer> {
        let bad = |m: String| EngineError::bad(m);
        let rest = operation.strip_prefix("https://").ok_or_else(|| {
            bad(format!(
                "Migration peer operation {operation:?} is not an https:// URL"
            ))
        })?;
        let (authority, path) = rest
            .split_once('/')
            .map(|(a, p)| (a.to_string(), format!("/{p}")))
            .ok_or_else(|| {
                bad(format!(
                    "Migration peer operation {operation:?} has no path"
                ))
            })?;
        if !path.starts_with("/1.0/operations/") || path.contains(['?', '#']) {
            return Err(bad(format!(
                "Migration peer operation {operation:?} is not /1.0/operations/<id>"
            )));
        }
        let (host, port) = crate::image_pull::split_authority(&authority, 8443)
            .ok_or_else(|| bad(format!("Bad migration peer address {authority:?}")))?;
        if certificate.trim().is_empty() {
            return Err(bad("The migration peer's certificate is missing".into()));
        }
        let der = kante_tls::parse_certificate(certificate.as_bytes())
            .map_err(|e| bad(format!("Bad migration peer certificate: {e}")))?;
        for c in CHANNELS {
            if secrets.get(c).is_none_or(|s| s.is_empty()) {
                return Err(bad(format!("The migration peer's {c:?} secret is missing")));
            }
        }
        Ok(Peer {
            host,
            port,
            authority,
            path,
            pin: kante_tls::fingerprint(&der),
            secrets: secrets.clone(),
        })
    }

    fn tls_peer(&self) -> TlsPeer<'_> {
        TlsPeer {
            what: "migration peer",
            host: &self.host,
            port: self.port,
            authority: &self.authority,
        }
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> EngineError {
        self.tls_peer().unreachable(e)
    }

    /// One websocket of the peer's operation, its server pinned.
    async fn dial_one(&self, channel: &str) -> Result<WsConn> {
        let pin = kante_tls::ServerPin {
            expected: Some(self.pin.clone()),
            ..Default::default()
        };
        let cfg = kante_tls::client_config(pin.clone(), None)
            .map_err(|e| EngineError::internal(format!("TLS client: {e}")))?;
        let secret = &self.secrets[channel];
        let url = format!(
            "wss://{}{}/websocket?secret={}",
            self.authority,
            self.path,
            escape(secret)
        );
        let connect = async {
            let tls = dial_tls(self.tls_peer(), cfg, &pin).await?;
            let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tls)
                .await
                .map_err(|e| self.unreachable(format!("{channel} websocket: {e}")))?;
            Ok::<_, EngineError>(ws)
        };
        let ws = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| self.unreachable("timed out"))??;
        Ok(bridge(ws))
    }
}

/// Pumps a client websocket into the engine's channel pair.
fn bridge<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> WsConn
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (in_tx, in_rx) = mpsc::channel::<WsMsg>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<WsMsg>(64);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let reader = async move {
            while let Some(Ok(msg)) = stream.next().await {
                let m = match msg {
                    TMsg::Binary(b) => WsMsg::Binary(b.to_vec()),
                    TMsg::Text(t) => WsMsg::Text(t.to_string()),
                    TMsg::Close(_) => break,
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
                    WsMsg::Binary(b) => TMsg::Binary(b.into()),
                    WsMsg::Text(t) => TMsg::Text(t.into()),
                };
                if sink.send(msg).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(TMsg::Close(None)).await;
            let _ = sink.close().await;
        };
        tokio::pin!(reader, writer);
        tokio::select! {
            _ = &mut writer => {
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
            }
            _ = &mut reader => { writer.await; }
        }
    });
    WsConn {
        incoming: in_rx,
        outgoing: out_tx,
    }
}

/// Registers the listening side's sockets on `op`: the metadata to show
/// (every value a string secret: lxc reads them as such) and the slots.
pub(super) fn listen(op: &Op) -> (serde_json::Value, Connect) {
    let mut meta = serde_json::Map::new();
    let mut slots = BTreeMap::new();
    for c in CHANNELS {
        let (secret, rx) = op.add_socket();
        meta.insert(c.into(), serde_json::Value::String(secret));
        slots.insert(c.to_string(), rx);
    }
    (serde_json::Value::Object(meta), Connect::Listen(slots))
}

impl Connect {
    /// The connected link: the peer connected (within
    /// [`CONNECT_TIMEOUT`], unless the operation is cancelled), or dialed.
    pub(super) async fn link(self, op: &Op) -> Result<Link> {
        match self {
            Connect::Dial(peer) => {
                let control = peer.dial_one("control").await?;
                let fs = peer.dial_one("fs").await?;
                Ok(Link { control, fs })
            }
            Connect::Listen(mut slots) => {
                let wait = async {
                    let mut take = |c: &str| slots.remove(c).expect("registered");
                    let control = take("control")
                        .await
                        .map_err(|_| EngineError::internal("websocket slot dropped"))?;
                    let fs = take("fs")
                        .await
                        .map_err(|_| EngineError::internal("websocket slot dropped"))?;
                    Ok::<_, EngineError>(Link { control, fs })
                };
                tokio::select! {
                    r = tokio::time::timeout(CONNECT_TIMEOUT, wait) => r.map_err(|_| {
                        EngineError::bad("Timed out waiting for the migration peer to connect")
                    })?,
                    _ = op.cancelled() => Err(EngineError::bad("Migration cancelled")),
                }
            }
        }
    }
}

/// A control message as one binary frame.
pub(super) async fn send_msg<M: Message>(conn: &WsConn, m: &M) -> Result<()> {
    conn.outgoing
        .send(WsMsg::Binary(m.encode_to_vec()))
        .await
        .map_err(|_| EngineError::bad("The migration peer went away"))
}

/// What arrived on `control`.
pub(super) enum Control {
    Header(MigrationHeader),
    Done(MigrationControl),
}

/// The next control message: a header with Kante's field (a Kante peer),
/// else a `MigrationControl`, else LXD's header (no Kante field).
pub(super) async fn recv_control(conn: &mut WsConn, op: &Op) -> Result<Control> {
    let msg = tokio::select! {
        m = tokio::time::timeout(STALL_TIMEOUT, conn.incoming.recv()) => m
            .map_err(|_| EngineError::bad("The migration peer stopped answering"))?,
        _ = op.cancelled() => return Err(EngineError::bad("Migration cancelled")),
    };
    let bytes = match msg {
        Some(WsMsg::Binary(b)) => b,
        Some(WsMsg::Text(_)) => {
            return Err(EngineError::bad(
                "The migration peer sent text on the control channel",
            ))
        }
        None => return Err(EngineError::bad("The migration peer went away")),
    };
    if let Ok(h) = MigrationHeader::decode(bytes.as_slice()) {
        if !h.kante_types.is_empty() {
            return Ok(Control::Header(h));
        }
    }
    if let Ok(c) = MigrationControl::decode(bytes.as_slice()) {
        if c.message.is_some() || bytes.len() <= 2 {
            return Ok(Control::Done(c));
        }
    }
    match MigrationHeader::decode(bytes.as_slice()) {
        Ok(h) => Ok(Control::Header(h)),
        Err(e) => Err(EngineError::bad(format!(
            "Bad message from the migration peer: {e}"
        ))),
    }
}

/// A blocking writer whose bytes go out as binary frames of [`FRAME`] bytes.
pub(super) struct FrameWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl FrameWriter {
    pub(super) fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        FrameWriter {
            tx,
            buf: Vec::with_capacity(FRAME),
        }
    }

    fn push(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let frame = std::mem::replace(&mut self.buf, Vec::with_capacity(FRAME));
        self.tx.blocking_send(frame).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the migration was aborted")
        })
    }
}

impl Write for FrameWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(FRAME - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= FRAME {
            self.push()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.push()
    }
}

/// A blocking reader over the frames the receiving pump hands it; the end
/// of the channel is the end of the stream (a cut one, unless the trailer
/// came first).
pub(super) struct FrameReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl FrameReader {
    pub(super) fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        FrameReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for FrameReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.cur = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Shows the transfer in the operation's `fs_progress` (lxc prints every
/// `*_progress` key), as LXD: `c1: 120.00MB (60.00MB/s)`.
pub(super) struct Progress<'a> {
    op: &'a Op,
    name: String,
    bytes: u64,
    start: std::time::Instant,
    last: std::time::Instant,
}

impl<'a> Progress<'a> {
    pub(super) fn new(op: &'a Op, name: &str) -> Self {
        let now = std::time::Instant::now();
        Progress {
            op,
            name: name.to_string(),
            bytes: 0,
            start: now,
            last: now,
        }
    }

    pub(super) fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.last.elapsed() >= Duration::from_millis(500) {
            self.last = std::time::Instant::now();
            self.show();
        }
    }

    /// The final count, shown whatever the time since the last line.
    pub(super) fn finish(&mut self) {
        self.show();
    }

    fn show(&self) {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = (self.bytes as f64 / secs) as u64;
        self.op.set_metadata_key(
            "fs_progress",
            serde_json::Value::String(format!(
                "{}: {} ({}/s)",
                self.name,
                decimal_size(self.bytes),
                decimal_size(rate)
            )),
        );
    }
}

/// LXD's byte counts in progress lines: decimal units, two decimals.
fn decimal_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

/// The target's operation for receiving `name`: a task that dials the
/// peer (`dial`), or a websocket operation whose metadata holds the
/// secrets the peer connects with; cancellable either way.
pub(super) fn target_operation(
    ops: &crate::operations::Operations,
    name: &str,
    description: &str,
    dial: Option<Peer>,
) -> (std::sync::Arc<Op>, Connect) {
    use kante_api::operation::OperationClass;
    let class = match dial {
        Some(_) => OperationClass::Task,
        None => OperationClass::Websocket,
    };
    let op = ops.create(
        class,
        description,
        crate::operations::instance_resources(&[name], true),
    );
    let connect = match dial {
        Some(peer) => Connect::Dial(peer),
        None => {
            let (meta, c) = listen(&op);
            op.set_metadata(meta);
            c
        }
    };
    op.set_cancellable();
    (op, connect)
}

/// The error a peer's `MigrationControl{success: false}` stands for.
pub(super) fn peer_failed(c: &MigrationControl) -> EngineError {
    EngineError::bad(format!(
        "The migration peer failed: {}",
        c.message.as_deref().unwrap_or("no reason given")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_checked_before_anything_is_dialed() {
        let mut secrets = BTreeMap::new();
        secrets.insert("control".to_string(), "a".to_string());
        let e = Peer::parse("http://h/1.0/operations/x", "x", &secrets)
            .err()
            .unwrap();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = Peer::parse("https://h:1/1.0/images/x", "x", &secrets)
            .err()
            .unwrap();
        assert!(e.to_string().contains("operations"), "{e}");
        let e = Peer::parse("https://h:1/1.0/operations/x", "junk", &secrets)
            .err()
            .unwrap();
        assert!(e.to_string().contains("certificate"), "{e}");
    }

    #[test]
    fn sizes_read_as_lxd_prints_them() {
        assert_eq!(decimal_size(999), "999B");
        assert_eq!(decimal_size(120_000_000), "120.00MB");
        assert_eq!(decimal_size(1_500), "1.50kB");
    }
}
