//! How a `Client` reaches its daemon: the unix socket, or TCP with TLS
//! (a remote daemon, its certificate pinned by fingerprint and the
//! client's own certificate shown). Both give one byte stream, `Conn`, so
//! HTTP requests and websockets (events, exec) run alike over either.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kante_tls::rustls::pki_types::{CertificateDer, ServerName};
use kante_tls::{KeyPair, ServerPin};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{ClientError, Result};

/// Where an HTTPS client connects and whom it trusts.
#[derive(Debug, Clone)]
pub struct HttpsTarget {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The pinned server fingerprint (`pin.expected`); `None` accepts the
    /// first certificate shown and records it (first contact).
    pub pin: ServerPin,
    /// The client's own key pair, shown when the server asks.
    pub identity: Option<KeyPair>,
}

impl HttpsTarget {
    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Clone)]
pub(crate) struct Https {
    pub target: HttpsTarget,
    connector: TlsConnector,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Unix(PathBuf),
    Https(Arc<Https>),
}

/// How long a remote may take to accept a connection and finish the TLS
/// handshake (a host cut off would otherwise hold `connect` for TCP's
/// whole SYN retry time, about two minutes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// After this much silence on an established connection the peer is
/// probed (TCP keepalive, every [`PROBE_INTERVAL`], [`PROBES`] times) and
/// the connection fails if it never answers; data it never acknowledges
/// fails it after [`UNACKED_TIMEOUT`]. A request waiting on a long
/// operation stays open as long as the peer is there, but a peer that
/// vanished (killed host, cut link) ends it in under half a minute
/// instead of never (an idle wait) or a quarter of an hour (TCP's
/// retransmissions).
pub const IDLE_BEFORE_PROBE: Duration = Duration::from_secs(10);
/// See [`IDLE_BEFORE_PROBE`].
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`IDLE_BEFORE_PROBE`].
pub const PROBES: u32 = 3;
/// See [`IDLE_BEFORE_PROBE`].
pub const UNACKED_TIMEOUT: Duration = Duration::from_secs(30);

/// Sets the bounds of [`IDLE_BEFORE_PROBE`] on a connected socket (best
/// effort: a socket that refuses them keeps the kernel's defaults).
fn bound_silence(tcp: &TcpStream) {
    let sock = socket2::SockRef::from(tcp);
    let probe = socket2::TcpKeepalive::new()
        .with_time(IDLE_BEFORE_PROBE)
        .with_interval(PROBE_INTERVAL)
        .with_retries(PROBES);
    let _ = sock.set_tcp_keepalive(&probe);
    let _ = sock.set_tcp_user_timeout(Some(UNACKED_TIMEOUT));
}

impl Https {
    pub fn new(target: HttpsTarget) -> Result<Https> {
        let config = kante_tls::client_config(target.pin.clone(), target.identity.as_ref())
            .map_err(|e| ClientError::Protocol(format!("TLS setup: {e}")))?;
        Ok(Https {
            target,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Verified against the CA certificates of `bundle` (PEM) instead of
    /// a pin: a server with a public certificate.
    pub fn with_roots(target: HttpsTarget, bundle: &[u8]) -> Result<Https> {
        let config = kante_tls::ca_client_config(bundle)
            .map_err(|e| ClientError::Protocol(format!("TLS setup: {e}")))?;
        Ok(Https {
            target,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The certificate the server presented on the last handshake.
    pub fn presented(&self) -> Option<CertificateDer<'static>> {
        self.target.pin.seen.lock().ok()?.clone()
    }

    async fn connect(&self) -> Result<Conn> {
        let t = &self.target;
        let addr = t.authority();
        let silent = |what: &str| ClientError::ConnectRemote {
            addr: addr.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no {what} within {} s", CONNECT_TIMEOUT.as_secs()),
            ),
        };
        let connecting = TcpStream::connect((t.host.as_str(), t.port));
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| silent("connection"))?
            .map_err(|source| ClientError::ConnectRemote {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        bound_silence(&tcp);
        let name = match t.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(t.host.clone())
                .map_err(|e| ClientError::Protocol(format!("bad host name {}: {e}", t.host)))?,
        };
        let handshake = tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(name, tcp));
        match handshake.await.map_err(|_| silent("TLS handshake"))? {
            Ok(tls) => Ok(Conn::Tls(Box::new(tls))),
            Err(source) => {
                let presented = t.pin.seen_fingerprint();
                match (&t.pin.expected, presented) {
                    (Some(expected), Some(presented)) if *expected != presented => {
                        Err(ClientError::CertificateMismatch {
                            addr,
                            expected: expected.clone(),
                            presented,
                        })
                    }
                    _ => Err(ClientError::ConnectRemote { addr, source }),
                }
            }
        }
    }
}

impl Transport {
    pub async fn connect(&self) -> Result<Conn> {
        match self {
            Transport::Unix(path) => {
                UnixStream::connect(path)
                    .await
                    .map(Conn::Unix)
                    .map_err(|source| ClientError::Connect {
                        path: path.clone(),
                        source,
                    })
            }
            Transport::Https(h) => h.connect().await,
        }
    }

    /// The `Host` of requests and the authority of websocket URLs.
    pub fn host(&self) -> String {
        match self {
            Transport::Unix(_) => "unix.socket".to_string(),
            Transport::Https(h) => h.target.authority(),
        }
    }

    /// A websocket URL for `path` (which starts with `/`).
    pub fn ws_url(&self, path: &str) -> String {
        match self {
            Transport::Unix(_) => format!("ws://unix.socket{path}"),
            Transport::Https(h) => format!("wss://{}{path}", h.target.authority()),
        }
    }
}

/// One connection to the daemon.
pub enum Conn {
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Unix(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}
