//! Proxy devices: a listener on the host forwarding each TCP connection or
//! UDP flow to an address inside the instance, implemented in the daemon
//! (one task per listener and one thread per device, no helper process).
//! This file parses and validates devices and starts them; the forwarding
//! itself, and its limits, are in `proxy_fwd`. With `nat=true` the kernel
//! forwards instead (`proxy_nat`: DNAT to the instance's static address).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use kante_syntax::SyntaxError;

use super::proxy_fwd;
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
            return Err(SyntaxError(
                "unix sockets are not supported by proxy devices yet".into(),
            ))
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

/// A validated proxy device: listen on the host, connect in the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    pub listen: Endpoint,
    pub connect: Endpoint,
    /// `nat=true`: forwarded by the kernel to `nat_target`, resolved from
    /// the instance's NICs when the device starts.
    pub nat: bool,
    pub nat_target: Option<super::proxy_nat::NatTarget>,
}

impl ProxySpec {
    /// Each listen port goes to the matching connect port, or all to the one connect port.
    pub(crate) fn target_port(&self, i: usize) -> u16 {
        if self.connect.ports.len() == 1 {
            self.connect.ports[0]
        } else {
            self.connect.ports[i]
        }
    }
}

pub fn validate(name: &str, dev: &BTreeMap<String, String>) -> Result<ProxySpec> {
    let bad = |m: String| EngineError::bad(format!("Device {name:?}: {m}"));
    for k in dev.keys() {
        if !matches!(k.as_str(), "type" | "listen" | "connect" | "bind" | "nat") {
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
    let listen = parse_endpoint(dev.get("listen").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad(e.to_string()))?;
    let connect = parse_endpoint(dev.get("connect").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad(e.to_string()))?;
    if listen.proto != connect.proto {
        return Err(bad("listen and connect must use the same protocol".into()));
    }
    if connect.ports.len() != 1 && connect.ports.len() != listen.ports.len() {
        return Err(bad(
            "connect needs one port or as many ports as listen".into()
        ));
    }
    let nat = crate::util::is_true(dev.get("nat"));
    if nat {
        let l = listen.addr;
        if l.is_unspecified() || l.is_loopback() {
            return Err(bad(format!(
                "nat=true needs an address of a host interface to listen on, not {l}"
            )));
        }
        if l.is_ipv4() != connect.addr.is_ipv4() {
            return Err(bad(
                "nat=true: listen and connect must be of one address family".into(),
            ));
        }
    }
    Ok(ProxySpec {
        listen,
        connect,
        nat,
        nat_target: None,
    })
}

/// Running listeners of one device; dropping it stops them. A `nat=true`
/// device has no listener but a table of forwards, which a drop leaves in
/// the kernel (the instance keeps being reachable while the daemon is
/// away) and [`close`](Self::close) removes.
pub struct ProxyHandle {
    tasks: Vec<JoinHandle<()>>,
    nat_table: Option<String>,
}

impl ProxyHandle {
    /// The handle of a device the kernel forwards for, by `table`.
    pub(crate) fn nat(table: String) -> Self {
        ProxyHandle {
            tasks: Vec::new(),
            nat_table: Some(table),
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
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens the host listeners (so "address in use" is reported now), enters
/// the instance's network namespace on the device's thread and starts
/// forwarding (`proxy_fwd`: bounded connections, timeouts, back-off).
pub async fn start(spec: &ProxySpec, netns_pid: i32) -> Result<ProxyHandle> {
    enum Bound {
        Tcp(TcpListener),
        Udp(UdpSocket),
    }
    let mut bound = Vec::new();
    for (i, port) in spec.listen.ports.iter().enumerate() {
        let listen = SocketAddr::new(spec.listen.addr, *port);
        let target = SocketAddr::new(spec.connect.addr, spec.target_port(i));
        let b = match spec.listen.proto {
            Proto::Tcp => Bound::Tcp(
                TcpListener::bind(listen)
                    .await
                    .map_err(|e| listen_error(listen, e))?,
            ),
            Proto::Udp => Bound::Udp(
                UdpSocket::bind(listen)
                    .await
                    .map_err(|e| listen_error(listen, e))?,
            ),
        };
        bound.push((b, target));
    }
    let dev = proxy_fwd::Device::open(netns_pid)
        .await
        .map_err(EngineError::io_ctx(
            "proxy: entering the instance's network namespace",
        ))?;
    let tasks = bound
        .into_iter()
        .map(|(b, target)| match b {
            Bound::Tcp(l) => tokio::spawn(proxy_fwd::serve_tcp(l, target, dev.clone())),
            Bound::Udp(s) => tokio::spawn(proxy_fwd::serve_udp(Arc::new(s), target, dev.clone())),
        })
        .collect();
    Ok(ProxyHandle {
        tasks,
        nat_table: None,
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
