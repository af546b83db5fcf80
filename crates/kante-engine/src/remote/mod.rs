//! Remote access: who calls ([`Caller`]: the unix socket, or an HTTPS
//! client and the fingerprint of the certificate it showed), whether it is
//! trusted (its fingerprint is in the certificates store, looked up on
//! every request, so a revoked certificate stops working at once), the
//! gate untrusted callers meet (only `GET /1.0` and `POST
//! /1.0/certificates`), the daemon's own certificate
//! (`$KANTE_DIR/server.crt`), and the [`Listeners`] hook through which
//! `core.https_address` is bound before it is committed.

pub(crate) mod certificates;
mod failures;
pub mod restricted;
pub mod sessions;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::error::{EngineError, Result};
use crate::{lock, Engine};

pub use failures::{FAILURE_LIMIT, FAILURE_WINDOW};

/// LXD's port when an address names none.
pub const DEFAULT_PORT: u16 = 8443;

/// Who sent a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The unix socket: root only, fully trusted.
    Local,
    /// An HTTPS client, with the certificate it showed (if any).
    Remote {
        address: SocketAddr,
        /// The TLS client certificate's DER.
        certificate: Option<Arc<[u8]>>,
        /// Its fingerprint (sha256 of the DER, hex).
        fingerprint: Option<String>,
    },
}

impl Caller {
    /// An HTTPS caller from its peer address and TLS client certificate.
    pub fn remote(address: SocketAddr, certificate: Option<Vec<u8>>) -> Caller {
        let fingerprint = certificate.as_deref().map(kante_tls::fingerprint);
        Caller::Remote {
            address,
            certificate: certificate.map(Arc::from),
            fingerprint,
        }
    }

    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            Caller::Local => None,
            Caller::Remote { fingerprint, .. } => fingerprint.as_deref(),
        }
    }
}

/// A caller and what the gate found it to be.
#[derive(Debug, Clone)]
pub struct Access {
    pub caller: Caller,
    pub trusted: bool,
}

impl Access {
    pub fn local() -> Access {
        Access {
            caller: Caller::Local,
            trusted: true,
        }
    }
}

/// The routes (method, path pattern) an untrusted caller may reach; every
/// other one is refused with 403 before its body is read. The engine
/// checks again per request ([`crate::front::Request::open_to_untrusted`]).
/// An operation's websocket is open as in LXD: its secret, handed only to
/// the trusted caller that started the operation, is the credential
/// (pylxd and ws4py connect exec's websockets without a client
/// certificate); an untrusted caller with a wrong secret or an unknown
/// operation gets 403 either way. The image reads are open so that this
/// daemon is an image server: an untrusted caller sees only the images
/// marked `public` and the aliases pointing at them, and a private one is
/// "not found" to it (404, never 403: no existence oracle).
pub const UNTRUSTED_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/1.0"),
    ("POST", "/1.0/certificates"),
    ("GET", "/1.0/operations/{id}/websocket"),
    ("GET", "/1.0/images"),
    ("GET", "/1.0/images/{fp}"),
    ("GET", "/1.0/images/{fp}/export"),
    ("GET", "/1.0/images/aliases"),
    ("GET", "/1.0/images/aliases/{*name}"),
    ("POST", "/internal/cluster/accept"),
    // The web view's static files (no data in them; the page shows its
    // login step until the API trusts it) and its login.
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/{*file}"),
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
];

/// Whether an untrusted caller may send `method` to `path` (a concrete
/// path, or a route pattern as the router's table lists it).
pub fn open_to_untrusted(method: &str, path: &str) -> bool {
    UNTRUSTED_ROUTES
        .iter()
        .any(|(m, p)| *m == method && path_matches(p, path))
}

/// `pattern`'s segments against `path`'s: equal, a `{name}` segment
/// standing for any one non-empty segment, or a last `{*name}` segment
/// standing for one or more (an alias name may hold slashes).
fn path_matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    if p.last().is_some_and(|l| l.starts_with("{*")) {
        if q.len() < p.len() || q[p.len() - 1..].iter().any(|s| s.is_empty()) {
            return false;
        }
        p.pop();
        q.truncate(p.len());
    }
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}') && !b.is_empty()))
}

/// The daemon's HTTPS listeners, as the HTTP layer runs them. The engine
/// owns `core.https_address` and calls this to bind a new address before
/// it commits the value, so an address that cannot be bound changes
/// nothing.
#[async_trait::async_trait]
pub trait Listeners: Send + Sync {
    /// Binds `addr` and starts serving the API on it, beside whatever
    /// serves already; returns an id and the address bound (its port
    /// resolved when 0).
    fn bind(&self, addr: SocketAddr) -> std::io::Result<(u64, SocketAddr)>;
    /// Stops every listener but `keep`; returns once they are closed.
    async fn retain(&self, keep: Option<u64>);
}

/// `core.https_address` as a socket address: `[::]:8443`,
/// `127.0.0.1:18443`, `:8443` or `8443` (a port alone: every address),
/// an address alone (port 8443). Host names are not accepted.
pub fn parse_https_address(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    let any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let port = |p: &str| p.parse::<u16>().ok();
    let parsed = if let Some(p) = port(s) {
        Some(SocketAddr::new(any, p))
    } else if let Some(p) = s.strip_prefix(':') {
        port(p).map(|p| SocketAddr::new(any, p))
    } else if let Ok(sa) = s.parse::<SocketAddr>() {
        Some(sa)
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        Some(SocketAddr::new(ip, DEFAULT_PORT))
    } else if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| SocketAddr::new(IpAddr::V6(ip), DEFAULT_PORT))
    } else {
        None
    };
    parsed.ok_or_else(|| {
        EngineError::bad(format!(
            "Invalid core.https_address {s:?}: expected [ADDRESS][:PORT] with an IP address, as [::]:8443, 127.0.0.1:8443 or :8443"
        ))
    })
}

/// A token waiting for its client (see `certificates.rs`).
pub(crate) struct PendingToken {
    pub op: Arc<crate::Op>,
    pub name: String,
    pub kind: String,
    pub restricted: bool,
    pub projects: Vec<String>,
    pub expires_at: Option<kante_api::Timestamp>,
    /// Ends the token's operation as used.
    pub used: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The engine's remote-access state.
pub(crate) struct Remote {
    /// The daemon's certificate and key.
    pub identity: kante_tls::KeyPair,
    pub fingerprint: String,
    listeners: Mutex<Option<Arc<dyn Listeners>>>,
    /// The listener serving `core.https_address` now.
    bound: Mutex<Option<(u64, SocketAddr)>>,
    pub failures: failures::Failures,
    /// Fingerprints of certificates just removed from the trust store.
    revoked: broadcast::Sender<String>,
    /// Serialises server config changes (bind, then commit).
    pub config_lock: tokio::sync::Mutex<()>,
    pub tokens: Arc<Mutex<HashMap<String, PendingToken>>>,
    /// Live one-time secrets of private images (`image_secret.rs`).
    pub image_secrets: crate::image_secret::ImageSecrets,
}

/// The names the daemon's certificate carries: the host name first (lxc
/// checks it against the first DNS name), then the host's addresses.
fn identity_names() -> Vec<String> {
    let (_, host) = kante_runtime::host::kernel_names();
    // A DNS name first, whatever the host is called.
    let dns = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    let mut names = vec![if dns(&host) { host } else { "kante".into() }];
    names.extend(
        kante_network::ifaddrs::host_ip_addresses()
            .into_iter()
            .map(|ip| ip.to_string()),
    );
    names
}

impl Remote {
    /// Loads `dir/server.crt` and `server.key`, made on first start.
    pub fn open(dir: &std::path::Path) -> Result<Remote> {
        let identity =
            kante_tls::load_or_create(dir, "server", kante_tls::Role::Server, &identity_names())
                .map_err(|e| EngineError::internal(format!("server certificate: {e}")))?;
        let fingerprint = identity.fingerprint();
        Ok(Remote {
            identity,
            fingerprint,
            listeners: Mutex::new(None),
            bound: Mutex::new(None),
            failures: failures::Failures::default(),
            revoked: broadcast::channel(64).0,
            config_lock: tokio::sync::Mutex::new(()),
            tokens: Arc::new(Mutex::new(HashMap::new())),
            image_secrets: Default::default(),
        })
    }

    /// Binds `addr` through the hook (none set: HTTPS is unavailable).
    fn bind(&self, addr: SocketAddr, text: &str) -> Result<(u64, SocketAddr)> {
        let hook = lock(&self.listeners).clone().ok_or_else(|| {
            EngineError::bad("This daemon cannot listen on the network (no HTTPS listener)")
        })?;
        hook.bind(addr)
            .map_err(|e| EngineError::bad(format!("Cannot listen on {text:?} ({addr}): {e}")))
    }

    async fn retain(&self, keep: Option<(u64, SocketAddr)>) {
        let hook = lock(&self.listeners).clone();
        if let Some(hook) = hook {
            hook.retain(keep.map(|k| k.0)).await;
        }
    }

    /// The addresses clients reach the listener at (`environment.addresses`).
    pub fn addresses(&self) -> Vec<String> {
        let Some((_, addr)) = *lock(&self.bound) else {
            return vec![];
        };
        if !addr.ip().is_unspecified() {
            return vec![addr.to_string()];
        }
        kante_network::ifaddrs::host_ip_addresses()
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .filter(|ip| addr.is_ipv6() || ip.is_ipv4())
            .map(|ip| SocketAddr::new(ip, addr.port()).to_string())
            .collect()
    }
}

impl Engine {
    /// The daemon's certificate and key (the HTTPS listener serves it).
    pub fn server_identity(&self) -> &kante_tls::KeyPair {
        &self.remote.identity
    }

    /// Hands the engine its HTTPS listeners and binds the stored
    /// `core.https_address`; a stored address that cannot be bound now is
    /// logged and left for a later `PUT /1.0`. Called once by the daemon.
    pub async fn set_listeners(&self, hook: Arc<dyn Listeners>) {
        let _guard = self.remote.config_lock.lock().await;
        *lock(&self.remote.listeners) = Some(hook);
        let stored = match self.shared.config_all().await {
            Ok(c) => c.get("core.https_address").cloned(),
            Err(e) => {
                tracing::warn!("reading the server config: {e}");
                None
            }
        };
        let Some(text) = stored else { return };
        match parse_https_address(&text).and_then(|a| self.remote.bind(a, &text)) {
            Ok(bound) => {
                tracing::info!(address = %bound.1, "listening on HTTPS");
                self.remote.retain(Some(bound)).await;
                *lock(&self.remote.bound) = Some(bound);
            }
            Err(e) => tracing::error!("core.https_address: {e}"),
        }
    }

    /// Makes `text` (or nothing) the HTTPS address: binds it, then calls
    /// `commit`; only when both succeed is the old listener stopped.
    pub(crate) async fn rebind_https<F, E>(
        &self,
        old: Option<&str>,
        new: Option<&str>,
        commit: F,
    ) -> Result<()>
    where
        F: std::future::Future<Output = std::result::Result<(), E>>,
        E: Into<EngineError>,
    {
        if old == new {
            return commit.await.map_err(Into::into);
        }
        let bound = match new {
            Some(text) => Some(self.remote.bind(parse_https_address(text)?, text)?),
            None => None,
        };
        if let Err(e) = commit.await {
            // The old listener goes on; the new one goes.
            let current = *lock(&self.remote.bound);
            self.remote.retain(current).await;
            return Err(e.into());
        }
        self.remote.retain(bound).await;
        *lock(&self.remote.bound) = bound;
        if let Some((_, a)) = bound {
            tracing::info!(address = %a, "listening on HTTPS");
        } else {
            tracing::info!("no longer listening on HTTPS");
        }
        Ok(())
    }

    /// Whether `caller` is trusted: the unix socket always; an HTTPS
    /// client when its certificate's fingerprint is in the trust store as
    /// a `client` certificate, asked anew on every request.
    pub async fn trusts(&self, caller: &Caller) -> bool {
        let fp = match caller {
            Caller::Local => return true,
            Caller::Remote {
                fingerprint: Some(fp),
                ..
            } => fp,
            Caller::Remote { .. } => return false,
        };
        match self.shared.certificate_get(fp).await {
            Ok(Some(row)) => row.kind == "client",
            Ok(None) => false,
            Err(e) => {
                tracing::warn!("reading the trust store: {e}");
                false
            }
        }
    }

    /// The projects `caller`'s certificate is restricted to when it is a
    /// restricted client certificate (`restricted.rs`); `None` for the
    /// unix socket and every other caller. Asked on every request, as
    /// trust is, so an edit of the record applies to the next request.
    pub async fn restriction(&self, caller: &Caller) -> Option<Vec<String>> {
        let Caller::Remote {
            fingerprint: Some(fp),
            ..
        } = caller
        else {
            return None;
        };
        match self.shared.certificate_get(fp).await {
            Ok(Some(row)) if row.kind == "client" && row.restricted => Some(row.projects),
            _ => None,
        }
    }

    /// Resolves once the certificate `fingerprint` is removed from the
    /// trust store: open streams of its holder end then.
    pub fn revoked(&self, fingerprint: String) -> impl std::future::Future<Output = ()> + Send {
        let mut rx = self.remote.revoked.subscribe();
        let me = self.me.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(fp) if fp == fingerprint => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: ask the store whether the record
                        // (a certificate, or a web view session's) is
                        // still there.
                        let Some(engine) = me.upgrade() else { return };
                        if !matches!(
                            engine.shared.certificate_get(&fingerprint).await,
                            Ok(Some(_))
                        ) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        }
    }

    pub(crate) fn announce_revoked(&self, fingerprint: &str) {
        let _ = self.remote.revoked.send(fingerprint.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_addresses_parse_in_lxd_forms() {
        let p = |s: &str| parse_https_address(s).map(|a| a.to_string());
        assert_eq!(p("[::]:8443").unwrap(), "[::]:8443");
        assert_eq!(p("127.0.0.1:18443").unwrap(), "127.0.0.1:18443");
        assert_eq!(p(":9443").unwrap(), "[::]:9443");
        assert_eq!(p("9443").unwrap(), "[::]:9443");
        assert_eq!(p("192.0.2.1").unwrap(), "192.0.2.1:8443");
        assert_eq!(p("[2001:db8::1]").unwrap(), "[2001:db8::1]:8443");
        for bad in ["", "host:8443", "1.2.3.4:99999", "[::1", ":x", "1.2.3.4:"] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_the_open_routes_are_open_to_untrusted_callers() {
        assert!(open_to_untrusted("GET", "/1.0"));
        assert!(open_to_untrusted("POST", "/1.0/certificates"));
        assert!(!open_to_untrusted("GET", "/1.0/certificates"));
        assert!(!open_to_untrusted("PUT", "/1.0"));
        assert!(!open_to_untrusted("GET", "/1.0/instances"));
        // The image server's reads, and nothing that changes an image.
        assert!(open_to_untrusted("GET", "/1.0/images"));
        assert!(open_to_untrusted("GET", "/1.0/images/abc123/export"));
        assert!(open_to_untrusted("GET", "/1.0/images/aliases/debian/12"));
        assert!(!open_to_untrusted("GET", "/1.0/images/aliases/"));
        assert!(!open_to_untrusted("DELETE", "/1.0/images/abc123"));
        assert!(!open_to_untrusted("POST", "/1.0/images"));
        assert!(!open_to_untrusted("POST", "/1.0/images/abc123/secret"));
        assert!(!open_to_untrusted("GET", "/1.0/images/abc123/export/x"));
        // The web view's files and its login, not its logout.
        assert!(open_to_untrusted("GET", "/ui/"));
        assert!(open_to_untrusted("GET", "/ui/vendor/xterm.js"));
        assert!(open_to_untrusted("POST", "/ui/login"));
        assert!(!open_to_untrusted("POST", "/ui/logout"));
        assert!(!open_to_untrusted("POST", "/ui/app.js"));
    }
}
