//! Proxy devices: a listener on the host forwarding each TCP connection or
//! UDP flow to an address inside the instance, implemented in the daemon
//! (one task per listener and one thread per device, no helper process).
//! This file parses and validates devices and starts them; the forwarding
//! itself, and its limits, are in `proxy_fwd`. With `nat=true` the kernel
//! forwards instead (`proxy_nat`: DNAT to the instance's static address).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::task::JoinHandle;

use kante_syntax::SyntaxError;

use super::proxy_fwd::{self, StreamListener, Target};
use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// `tcp:0.0.0.0:8080` or `udp:[::1]:53-55` or `tcp:127.0.0.1:80,443`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub proto: Proto,
    pub addr: IpAddr,
    pub ports: Vec<u16>,
}

pub fn parse_endpoint(s: &str) -> std::result::Result<Endpoint, SyntaxError> {
    let (proto, rest) = s
        .split_once(':')
        .ok_or_else(|| SyntaxError(format!("invalid address {s:?} (use tcp:ADDR:PORT)")))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "unix" => {
            return Err(SyntaxError(format!(
                "{s:?} is a unix socket, not an IP endpoint"
            )))
        }
        other => return Err(SyntaxError(format!("unknown protocol {other:?} in {s:?}"))),
    };
    let (addr, ports) = match rest.rsplit_once(':') {
        Some((a, p)) => (a.trim_start_matches('[').trim_end_matches(']'), p),
        None => return Err(SyntaxError(format!("missing port in {s:?}"))),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| SyntaxError(format!("invalid IP address {addr:?} in {s:?}")))?;
    let mut list = Vec::new();
    for part in ports.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u16, u16) = (
                    a.parse()
                        .map_err(|_| SyntaxError(format!("invalid port {a:?}")))?,
                    b.parse()
                        .map_err(|_| SyntaxError(format!("invalid port {b:?}")))?,
                );
                if a == 0 || a > b {
                    return Err(SyntaxError(format!("invalid port range {part:?}")));
                }
                list.extend(a..=b);
            }
            None => {
                let p: u16 = part
                    .parse()
                    .map_err(|_| SyntaxError(format!("invalid port {part:?}")))?;
                if p == 0 {
                    return Err(SyntaxError("port 0 is not allowed".into()));
                }
                list.push(p);
            }
        }
    }
    if list.len() > 1024 {
        return Err(SyntaxError("too many ports in one proxy device".into()));
    }
    Ok(Endpoint {
        proto,
        addr,
        ports: list,
    })
}

/// One side of a proxy device: IP ports, or a unix socket's path (on the
/// host for `listen`, inside the instance for `connect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Inet(Endpoint),
    Unix(PathBuf),
}

impl Side {
    /// The IP endpoint, if the side is one.
    pub fn inet(&self) -> Option<&Endpoint> {
        match self {
            Side::Inet(e) => Some(e),
            Side::Unix(_) => None,
        }
    }

    /// Whether the side carries a byte stream (TCP or unix), not datagrams.
    fn is_stream(&self) -> bool {
        !matches!(
            self,
            Side::Inet(Endpoint {
                proto: Proto::Udp,
                ..
            })
        )
    }
}

/// `unix:/absolute/path` (LXD's abstract `unix:@name` is refused), else
/// an IP endpoint ([`parse_endpoint`]).
pub fn parse_side(s: &str) -> std::result::Result<Side, SyntaxError> {
    let Some(path) = s.strip_prefix("unix:") else {
        return parse_endpoint(s).map(Side::Inet);
    };
    if path.starts_with('@') {
        return Err(SyntaxError(format!(
            "{s:?}: abstract unix sockets are not supported, use a path"
        )));
    }
    let p = PathBuf::from(path);
    if !p.is_absolute() || path.contains('\0') || p.components().any(|c| c.as_os_str() == "..") {
        return Err(SyntaxError(format!(
            "{s:?}: a unix socket needs an absolute path without \"..\""
        )));
    }
    Ok(Side::Unix(p))
}

/// A validated proxy device: listen on the host, connect in the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    pub listen: Side,
    pub connect: Side,
    /// A unix listener's mode, owner and group (LXD's `mode`, `uid`, `gid`).
    pub unix_mode: u32,
    pub unix_owner: (u32, u32),
    /// `nat=true`: forwarded by the kernel to `nat_target`, resolved from
    /// the instance's NICs when the device starts.
    pub nat: bool,
    pub nat_target: Option<super::proxy_nat::NatTarget>,
}

impl ProxySpec {
    /// Each listen port goes to the matching connect port, or all to the
    /// one connect port (0 for a unix socket).
    pub(crate) fn target_port(&self, i: usize) -> u16 {
        match self.connect.inet() {
            Some(c) if c.ports.len() == 1 => c.ports[0],
            Some(c) => c.ports[i],
            None => 0,
        }
    }

    /// Both sides' IP endpoints (what `nat=true` needs).
    pub(crate) fn inet_pair(&self) -> Option<(&Endpoint, &Endpoint)> {
        Some((self.listen.inet()?, self.connect.inet()?))
    }
}

pub fn validate(name: &str, dev: &BTreeMap<String, String>) -> Result<ProxySpec> {
    let bad = |m: String| EngineError::bad(format!("Device {name:?}: {m}"));
    for k in dev.keys() {
        if !matches!(
            k.as_str(),
            "type" | "listen" | "connect" | "bind" | "nat" | "mode" | "uid" | "gid"
        ) {
            return Err(bad(format!("unknown proxy option {k:?}")));
        }
    }
    match dev.get("bind").map(String::as_str) {
        None | Some("host") | Some("") => {}
        Some("instance") | Some("container") => {
            return Err(bad("bind=instance is not supported yet".into()))
        }
        Some(other) => return Err(bad(format!("invalid bind {other:?}"))),
    }
    let listen = parse_side(dev.get("listen").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad(e.to_string()))?;
    let connect = parse_side(dev.get("connect").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad(e.to_string()))?;
    if listen.is_stream() != connect.is_stream() {
        return Err(bad(
            "udp goes to udp; tcp and unix sockets go to tcp or unix sockets".into(),
        ));
    }
    if let (Side::Inet(l), Side::Inet(c)) = (&listen, &connect) {
        if c.ports.len() != 1 && c.ports.len() != l.ports.len() {
            return Err(bad(
                "connect needs one port or as many ports as listen".into()
            ));
        }
    }
    let number = |k: &str, radix: u32, default: u32| -> Result<u32> {
        match dev.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(_) if !matches!(listen, Side::Unix(_)) => {
                Err(bad(format!("{k} is for a unix socket listener")))
            }
            Some(v) => u32::from_str_radix(v, radix).map_err(|_| bad(format!("invalid {k} {v:?}"))),
        }
    };
    let unix_mode = number("mode", 8, 0o644)?;
    if unix_mode > 0o777 {
        return Err(bad(format!("invalid mode {unix_mode:o}")));
    }
    let unix_owner = (number("uid", 10, 0)?, number("gid", 10, 0)?);
    let nat = crate::util::is_true(dev.get("nat"));
    if nat {
        let Some((l, c)) = listen.inet().zip(connect.inet()) else {
            return Err(bad("nat=true forwards tcp or udp, not unix sockets".into()));
        };
        let l = l.addr;
        if l.is_unspecified() || l.is_loopback() {
            return Err(bad(format!(
                "nat=true needs an address of a host interface to listen on, not {l}"
            )));
        }
        if l.is_ipv4() != c.addr.is_ipv4() {
            return Err(bad(
                "nat=true: listen and connect must be of one address family".into(),
            ));
        }
    }
    Ok(ProxySpec {
        listen,
        connect,
        unix_mode,
        unix_owner,
        nat,
        nat_target: None,
    })
}

/// Running listeners of one device; dropping it stops them. A `nat=true`
/// device has no listener but a table of forwards, which a drop leaves in
/// the kernel (the instance keeps being reachable while the daemon is
/// away) and [`close`](Self::close) removes, as it removes the socket
/// files of unix listeners.
pub struct ProxyHandle {
    tasks: Vec<JoinHandle<()>>,
    nat_table: Option<String>,
    unix_paths: Vec<PathBuf>,
}

impl ProxyHandle {
    /// The handle of a device the kernel forwards for, by `table`.
    pub(crate) fn nat(table: String) -> Self {
        ProxyHandle {
            tasks: Vec::new(),
            nat_table: Some(table),
            unix_paths: Vec::new(),
        }
    }

    /// The forward table of a `nat=true` device.
    pub(crate) fn nat_table(&self) -> Option<&str> {
        self.nat_table.as_deref()
    }

    /// Stops the listeners (or removes the forwards) and returns once their
    /// sockets are closed (a drop only asks the tasks to end).
    pub async fn close(mut self) {
        if let Some(t) = self.nat_table.take() {
            if let Err(e) = kante_network::forward::remove(&t).await {
                tracing::warn!(table = %t, "removing a proxy device's forwards: {e}");
            }
        }
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        for p in std::mem::take(&mut self.unix_paths) {
            remove_socket_file(&p);
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Removes the socket file at `p`, if a socket is still what is there.
fn remove_socket_file(p: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
        if let Err(e) = std::fs::remove_file(p) {
            tracing::warn!(path = %p.display(), "removing a proxy's socket: {e}");
        }
    }
}

/// Listens on the unix socket `path` on the host: a socket file nobody
/// listens on any more (left by a daemon that died) is replaced, anything
/// else there is refused; the socket gets `mode` and `owner`.
fn bind_unix(path: &Path, mode: u32, owner: (u32, u32)) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(EngineError::bad(format!(
                    "Listen address {shown} is already in use"
                )));
            }
            std::fs::remove_file(path).map_err(EngineError::io_ctx(format!(
                "removing the stale socket {shown}"
            )))?;
        }
        Ok(_) => {
            return Err(EngineError::bad(format!(
                "Cannot listen on {shown}: it exists and is not a socket"
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(EngineError::bad(format!("Cannot listen on {shown}: {e}"))),
    }
    let l = UnixListener::bind(path)
        .map_err(|e| EngineError::bad(format!("Cannot listen on {shown}: {e}")))?;
    let set = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)));
    if let Err(e) = set {
        drop(l);
        remove_socket_file(path);
        return Err(EngineError::bad(format!("Cannot listen on {shown}: {e}")));
    }
    Ok(l)
}

/// Opens the host listeners (so "address in use" is reported now), enters
/// the instance's network namespace on the device's thread and starts
/// forwarding (`proxy_fwd`: bounded connections, timeouts, back-off).
pub async fn start(spec: &ProxySpec, netns_pid: i32) -> Result<ProxyHandle> {
    enum Bound {
        Stream(StreamListener, Target),
        Udp(UdpSocket, SocketAddr),
    }
    let target = |i: usize| match &spec.connect {
        Side::Inet(c) => Target::Inet(SocketAddr::new(c.addr, spec.target_port(i))),
        Side::Unix(p) => Target::Unix(p.clone()),
    };
    let mut bound = Vec::new();
    let mut unix_paths = Vec::new();
    match &spec.listen {
        Side::Inet(l) => {
            for (i, port) in l.ports.iter().enumerate() {
                let listen = SocketAddr::new(l.addr, *port);
                bound.push(match (l.proto, target(i)) {
                    (Proto::Udp, Target::Inet(t)) => Bound::Udp(
                        UdpSocket::bind(listen)
                            .await
                            .map_err(|e| listen_error(listen, e))?,
                        t,
                    ),
                    (_, t) => Bound::Stream(
                        StreamListener::Tcp(
                            TcpListener::bind(listen)
                                .await
                                .map_err(|e| listen_error(listen, e))?,
                        ),
                        t,
                    ),
                });
            }
        }
        Side::Unix(path) => {
            let l = bind_unix(path, spec.unix_mode, spec.unix_owner)?;
            unix_paths.push(path.clone());
            bound.push(Bound::Stream(StreamListener::Unix(l), target(0)));
        }
    }
    let dev = match proxy_fwd::Device::open(netns_pid).await {
        Ok(d) => d,
        Err(e) => {
            drop(bound);
            unix_paths.iter().for_each(|p| remove_socket_file(p));
            return Err(EngineError::io_ctx(
                "proxy: entering the instance's network namespace",
            )(e));
        }
    };
    let tasks = bound
        .into_iter()
        .map(|b| match b {
            Bound::Stream(l, t) => tokio::spawn(proxy_fwd::serve_stream(l, t, dev.clone())),
            Bound::Udp(s, t) => tokio::spawn(proxy_fwd::serve_udp(Arc::new(s), t, dev.clone())),
        })
        .collect();
    Ok(ProxyHandle {
        tasks,
        nat_table: None,
        unix_paths,
    })
}

fn listen_error(addr: SocketAddr, e: std::io::Error) -> EngineError {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        EngineError::bad(format!("Listen address {addr} is already in use"))
    } else {
        EngineError::bad(format!("Cannot listen on {addr}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn endpoints_parse_like_lxd() {
        let e = parse_endpoint("tcp:0.0.0.0:8080").unwrap();
        assert_eq!((e.proto, e.ports.clone()), (Proto::Tcp, vec![8080]));
        let e = parse_endpoint("udp:[::1]:53-55").unwrap();
        assert_eq!(e.ports, vec![53, 54, 55]);
        assert_eq!(
            parse_endpoint("tcp:127.0.0.1:80,443").unwrap().ports,
            vec![80, 443]
        );
        for bad in [
            "tcp:1.2.3.4",
            "sctp:1.2.3.4:1",
            "tcp:nohost:80",
            "tcp:1.2.3.4:0",
            "tcp:1.2.3.4:9-3",
            "tcp:1.2.3.4:x",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn devices_are_validated() {
        assert!(validate(
            "web",
            &dev(&[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:8080"),
                ("connect", "tcp:127.0.0.1:80")
            ])
        )
        .is_ok());
        assert!(validate(
            "x",
            &dev(&[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:8080"),
                ("connect", "udp:127.0.0.1:80")
            ])
        )
        .is_err());
        assert!(validate(
            "x",
            &dev(&[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:80-81"),
                ("connect", "tcp:127.0.0.1:1-3")
            ])
        )
        .is_err());
        assert!(validate(
            "x",
            &dev(&[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:80"),
                ("connect", "tcp:127.0.0.1:80"),
                ("nat", "true")
            ])
        )
        .is_err());
        for listen in ["tcp:127.0.0.1:80", "tcp:[::]:80"] {
            assert!(validate(
                "x",
                &dev(&[
                    ("type", "proxy"),
                    ("listen", listen),
                    ("connect", "tcp:0.0.0.0:80"),
                    ("nat", "true")
                ])
            )
            .is_err());
        }
        let nat = validate(
            "x",
            &dev(&[
                ("type", "proxy"),
                ("listen", "udp:192.0.2.1:53,54"),
                ("connect", "udp:0.0.0.0:5353"),
                ("nat", "true"),
            ]),
        )
        .unwrap();
        assert!(nat.nat && nat.nat_target.is_none());
        // Unix sockets: paths, stream to stream, mode/uid/gid on a unix listener only.
        let u = validate(
            "u",
            &dev(&[
                ("type", "proxy"),
                ("listen", "unix:/run/kante/x.sock"),
                ("connect", "tcp:127.0.0.1:80"),
                ("mode", "0600"),
                ("uid", "1000"),
            ]),
        )
        .unwrap();
        assert_eq!(u.listen, Side::Unix("/run/kante/x.sock".into()));
        assert_eq!((u.unix_mode, u.unix_owner), (0o600, (1000, 0)));
        for (listen, connect, extra) in [
            ("unix:@abstract", "tcp:127.0.0.1:80", ("", "")),
            ("unix:x.sock", "tcp:127.0.0.1:80", ("", "")),
            ("unix:/a/../b.sock", "tcp:127.0.0.1:80", ("", "")),
            ("udp:127.0.0.1:53", "unix:/run/x.sock", ("", "")),
            ("unix:/run/x.sock", "udp:127.0.0.1:53", ("", "")),
            ("tcp:127.0.0.1:80", "unix:/run/x.sock", ("mode", "0600")),
            ("unix:/run/x.sock", "tcp:127.0.0.1:80", ("mode", "999")),
            ("unix:/run/x.sock", "tcp:127.0.0.1:80", ("nat", "true")),
        ] {
            let mut d = dev(&[("type", "proxy"), ("listen", listen), ("connect", connect)]);
            if !extra.0.is_empty() {
                d.insert(extra.0.into(), extra.1.into());
            }
            assert!(validate("x", &d).is_err(), "{listen} {connect} {extra:?}");
        }
        assert!(validate(
            "x",
            &dev(&[
                ("type", "proxy"),
                ("listen", "tcp:0.0.0.0:80"),
                ("connect", "tcp:127.0.0.1:80"),
                ("bogus", "1")
            ])
        )
        .is_err());
    }
}
