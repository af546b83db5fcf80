//! A test-local TLS listener for axum (tokio-rustls with
//! `kante_tls::server_config`): it records the client certificate each
//! connection showed and gives it to handlers as `ConnectInfo<Peer>`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use kante_tls::KeyPair;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Fingerprints of the client certificates shown, one per connection
/// (`None`: none shown).
pub type Seen = Arc<Mutex<Vec<Option<String>>>>;

pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    seen: Seen,
}

fn peer_fingerprint(tls: &TlsStream<TcpStream>) -> Option<String> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| kante_tls::fingerprint(c))
}

impl TlsListener {
    /// Binds `127.0.0.1:0` (call within a tokio runtime); returns the
    /// listener and its port.
    pub async fn bind(server: &KeyPair, seen: Seen) -> (TlsListener, u16) {
        let acceptor = TlsAcceptor::from(Arc::new(kante_tls::server_config(server).unwrap()));
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        (
            TlsListener {
                tcp,
                acceptor,
                seen,
            },
            port,
        )
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A refused handshake (a client that distrusts us) is skipped.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                self.seen.lock().unwrap().push(peer_fingerprint(&tls));
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The client certificate of a request's connection.
#[derive(Debug, Clone)]
#[allow(dead_code)] // Not every test reads it.
pub struct Peer(pub Option<String>);

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Peer(peer_fingerprint(stream.io()))
    }
}
