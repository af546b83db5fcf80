//! The HTTPS listeners of `core.https_address`: the engine binds and
//! drops them through [`HttpsListeners`] (its `Listeners` hook), so a
//! change takes effect without a restart and an address that cannot be
//! bound changes nothing. Each connection is a TLS handshake (the daemon's
//! certificate; a client certificate asked for, not required), then the
//! same router as the unix socket, each request tagged with its
//! [`Peer`](crate::gate::Peer). A connection whose certificate is removed
//! from the trust store is cut at once, with every websocket and event
//! stream on it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use kante_engine::remote::{Caller, Listeners};
use kante_engine::Engine;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::gate::Peer;
use crate::wslimit::WsSlots;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ... nor sent a request's headers (slow clients hold no fd for long).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once per listener; past it the listener stops
/// accepting and clients wait in the kernel's backlog, so a flood from
/// the network cannot take the daemon's fds.
pub const MAX_CONNECTIONS: usize = 512;

/// A running accept loop's stop and end.
type Running = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// The engine's `Listeners`: one accept loop per bound address.
pub struct HttpsListeners {
    engine: Weak<Engine>,
    ws: Arc<WsSlots>,
    acceptor: TlsAcceptor,
    /// Each running loop's stop (dropping it ends the loop) and its end
    /// (resolves once the loop dropped its listening socket).
    running: Mutex<HashMap<u64, Running>>,
    next: AtomicU64,
    runtime: tokio::runtime::Handle,
}

impl HttpsListeners {
    /// Listeners serving `engine`'s API with its certificate; websockets
    /// count against `ws` (shared with the unix socket). Call inside the
    /// tokio runtime the loops are to run on.
    pub fn new(engine: &Arc<Engine>, ws: Arc<WsSlots>) -> Result<Arc<Self>, kante_tls::CertError> {
        let tls = kante_tls::server_config(engine.server_identity())?;
        Ok(Arc::new(HttpsListeners {
            engine: Arc::downgrade(engine),
            ws,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            running: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::current(),
        }))
    }
}

/// Binds `addr`; the wildcard `[::]` falls back to `0.0.0.0` on a host
/// without IPv6.
fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind(addr) {
        Err(e)
            if addr.ip().is_unspecified()
                && addr.is_ipv6()
                && matches!(
                    e.kind(),
                    io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
                ) =>
        {
            std::net::TcpListener::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()))
        }
        other => other,
    }
}

#[async_trait::async_trait]
impl Listeners for HttpsListeners {
    fn bind(&self, addr: SocketAddr) -> io::Result<(u64, SocketAddr)> {
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| io::Error::other("the daemon is stopping"))?;
        let std = bind_tcp(addr)?;
        std.set_nonblocking(true)?;
        let local = std.local_addr()?;
        let listener = {
            let _rt = self.runtime.enter();
            tokio::net::TcpListener::from_std(std)?
        };
        let router = crate::router_shared(engine.clone(), self.ws.clone());
        let (stop, stopped) = oneshot::channel();
        let (closed, ended) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.running).insert(id, (stop, ended));
        self.runtime.spawn(accept_loop(
            listener,
            self.acceptor.clone(),
            router,
            Arc::downgrade(&engine),
            stopped,
            closed,
        ));
        Ok((id, local))
    }

    async fn retain(&self, keep: Option<u64>) {
        let gone: Vec<_> = {
            let mut running = lock(&self.running);
            let ids: Vec<u64> = running
                .keys()
                .filter(|id| Some(**id) != keep)
                .copied()
                .collect();
            ids.into_iter()
                .filter_map(|id| running.remove(&id))
                .collect()
        };
        for (stop, ended) in gone {
            drop(stop);
            // The port is free again when this returns (bounded: a loop
            // always ends at its next poll).
            let _ = tokio::time::timeout(Duration::from_secs(5), ended).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    engine: Weak<Engine>,
    mut stopped: oneshot::Receiver<()>,
    closed: oneshot::Sender<()>,
) {
    // Whichever way the loop ends, the socket is closed before `closed`
    // goes (locals drop in reverse order).
    let _closed = closed;
    let listener = listener;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = &mut stopped => return,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (tcp, addr) = tokio::select! {
            _ = &mut stopped => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of fds, say: back off rather than spin.
                    tracing::warn!("HTTPS accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Replies go out in more than one write (headers, body, TLS
        // records): with Nagle's algorithm each later one waits for the
        // client's delayed ACK, 40 ms a request.
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, engine) = (acceptor.clone(), router.clone(), engine.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            let caller = Caller::remote(addr, cert);
            let certificate: Revoked = match (caller.fingerprint(), engine.upgrade()) {
                (Some(fp), Some(e)) => Box::pin(e.revoked(fp.to_string())),
                _ => Box::pin(std::future::pending()),
            };
            let (session, named) = tokio::sync::watch::channel(None);
            let session = SessionWatch(Arc::new(session));
            let revoked: Revoked = Box::pin(async move {
                tokio::select! {
                    _ = certificate => {}
                    _ = session_revoked(engine, named) => {}
                }
            });
            let io = Revocable {
                inner: tls,
                revoked,
                dead: false,
            };
            let peer = Peer(caller);
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(session.clone());
                    router.clone().oneshot(req)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades()
                .await;
        });
    }
}

type Revoked = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The web view session a connection's requests were trusted by: the gate
/// names it ([`SessionWatch::name`]), and the connection is then cut, as
/// for a revoked certificate, once that session is removed from the trust
/// store or logged out (its event stream and shells end with it).
#[derive(Clone)]
pub struct SessionWatch(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl SessionWatch {
    /// Ties the connection to the session whose trust store key is `key`.
    pub fn name(&self, key: String) {
        self.0.send_if_modified(|k| {
            let new = k.as_deref() != Some(key.as_str());
            *k = Some(key);
            new
        });
    }
}

/// Resolves once the session the gate named for this connection is
/// revoked (never, if none is named).
async fn session_revoked(
    engine: Weak<Engine>,
    mut named: tokio::sync::watch::Receiver<Option<String>>,
) {
    loop {
        let key = named.borrow_and_update().clone();
        if let Some(key) = key {
            let Some(e) = engine.upgrade() else { break };
            let revoked = e.revoked(key);
            drop(e);
            return revoked.await;
        }
        if named.changed().await.is_err() {
            break;
        }
    }
    std::future::pending().await
}

/// A connection that fails every read and write once its client's
/// certificate is revoked: hyper drops it, and an upgraded websocket on it
/// ends at its next poll (its reader always waits on a read, so the
/// revocation wakes it).
struct Revocable<S> {
    inner: S,
    revoked: Revoked,
    dead: bool,
}

impl<S> Revocable<S> {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.dead && self.revoked.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        if self.dead {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "client certificate revoked",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Revocable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Revocable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
