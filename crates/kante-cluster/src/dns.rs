//! The service names over DNS: a small UDP responder on a loopback port of
//! the host that every managed network's dnsmasq forwards `svc.<domain>`
//! to (`server=/svc.<domain>/127.0.0.1#PORT`), so guests that use their
//! network's DNS find the cluster's services. It answers, from the live
//! records ([`crate::Manager::services`]):
//!
//! * `NAME.svc.<domain>`: A and AAAA, every live instance's address;
//! * `INSTANCE.NAME.svc.<domain>`: that instance's address;
//! * `_NAME._tcp.svc.<domain>` (or `_udp`): SRV, one per instance, its
//!   target `INSTANCE.NAME.svc.<domain>` with the address as additional
//!   record.
//!
//! Anything else under `svc.<domain>` is NXDOMAIN; other names are
//! refused. Records have a short TTL ([`TTL`]), as they come and go with
//! instances. Wire format by `simple-dns`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use kante_api::service::Service;
use simple_dns::rdata::{RData, A, AAAA, SRV};
use simple_dns::{Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Seconds a resolver may keep an answer.
pub const TTL: u32 = 5;

/// The default cluster DNS domain (`NAME.svc.kante`).
pub const DEFAULT_DOMAIN: &str = "kante";

/// The live services, asked at every query.
pub type Lookup = Arc<dyn Fn() -> Vec<Service> + Send + Sync>;

/// The running responder; stops when dropped.
pub struct Responder {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Responder {
    /// Binds `127.0.0.1:0` and answers for `svc.<domain>` from `lookup`.
    pub async fn start(domain: &str, lookup: Lookup) -> std::io::Result<Responder> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let zone = format!("svc.{}", domain.trim_end_matches('.').to_ascii_lowercase());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let services = lookup();
                if let Some(reply) = answer(&buf[..n], &zone, &services) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Ok(Responder { addr, task })
    }

    /// Where it listens (dnsmasq's `server=` target).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What a query name asks for under `zone` (`svc.<domain>`).
#[derive(Debug, PartialEq, Eq)]
enum Asked<'a> {
    /// `NAME.zone`
    All(&'a str),
    /// `INSTANCE.NAME.zone`
    One(&'a str, &'a str),
    /// `_NAME._PROTO.zone`
    Srv(&'a str, &'a str),
    /// Under the zone but nothing of the above.
    Unknown,
}

fn asked<'a>(qname: &'a str, zone: &str) -> Option<Asked<'a>> {
    let q = qname.trim_end_matches('.');
    if q.len() <= zone.len() || !q.is_char_boundary(q.len() - zone.len()) {
        return q.eq_ignore_ascii_case(zone).then_some(Asked::Unknown);
    }
    let (head, tail) = q.split_at(q.len() - zone.len());
    if !tail.eq_ignore_ascii_case(zone) || !head.ends_with('.') {
        return None;
    }
    let labels: Vec<&str> = head.trim_end_matches('.').split('.').collect();
    Some(match labels.as_slice() {
        [name] => Asked::All(name),
        [service, proto] if service.starts_with('_') && proto.starts_with('_') => {
            Asked::Srv(&service[1..], &proto[1..])
        }
        [instance, name] => Asked::One(instance, name),
        _ => Asked::Unknown,
    })
}

/// The reply to DNS query `query`, or `None` for what is not a query.
pub fn answer(query: &[u8], zone: &str, services: &[Service]) -> Option<Vec<u8>> {
    let q = Packet::parse(query).ok()?;
    if q.has_flags(PacketFlag::RESPONSE) {
        return None;
    }
    let mut reply = Packet::new_reply(q.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    let Some(question) = q.questions.first() else {
        *reply.rcode_mut() = RCODE::FormatError;
        return reply.build_bytes_vec().ok();
    };
    let qname = question.qname.to_string();
    reply.questions.push(Question::new(
        question.qname.clone(),
        question.qtype,
        question.qclass,
        false,
    ));
    let Some(what) = asked(&qname, zone) else {
        *reply.rcode_mut() = RCODE::Refused;
        return reply.build_bytes_vec().ok();
    };
    let name = |s: &str| s.to_ascii_lowercase();
    let matching: Vec<&Service> = match &what {
        Asked::All(n) => services.iter().filter(|s| s.name == name(n)).collect(),
        Asked::One(i, n) => services
            .iter()
            .filter(|s| s.name == name(n) && s.instance.eq_ignore_ascii_case(i))
            .collect(),
        Asked::Srv(n, proto) => services
            .iter()
            .filter(|s| s.name == name(n) && s.proto == name(proto))
            .collect(),
        Asked::Unknown => Vec::new(),
    };
    if matching.is_empty() {
        *reply.rcode_mut() = RCODE::NameError;
        return reply.build_bytes_vec().ok();
    }
    let owner = question.qname.clone();
    let wants = |t: TYPE| matches!(question.qtype, QTYPE::ANY) || question.qtype == QTYPE::TYPE(t);
    // Targets of SRV records: owned strings that the packet borrows.
    let targets: Vec<String> = matching
        .iter()
        .map(|s| format!("{}.{}.{zone}", s.instance.to_ascii_lowercase(), s.name))
        .collect();
    for (s, target) in matching.iter().zip(&targets) {
        let Ok(ip) = s.address.parse::<IpAddr>() else {
            continue;
        };
        match what {
            Asked::Srv(..) => {
                if wants(TYPE::SRV) {
                    let Ok(t) = Name::new(target) else { continue };
                    reply.answers.push(ResourceRecord::new(
                        owner.clone(),
                        CLASS::IN,
                        TTL,
                        RData::SRV(SRV {
                            priority: 0,
                            weight: 0,
                            port: s.port,
                            target: t.clone(),
                        }),
                    ));
                    reply.additional_records.push(ResourceRecord::new(
                        t,
                        CLASS::IN,
                        TTL,
                        address(ip),
                    ));
                }
            }
            _ => {
                let t = if ip.is_ipv4() { TYPE::A } else { TYPE::AAAA };
                if wants(t) {
                    reply.answers.push(ResourceRecord::new(
                        owner.clone(),
                        CLASS::IN,
                        TTL,
                        address(ip),
                    ));
                }
            }
        }
    }
    reply.build_bytes_vec().ok()
}

fn address(ip: IpAddr) -> RData<'static> {
    match ip {
        IpAddr::V4(v4) => RData::A(A {
            address: u32::from(v4),
        }),
        IpAddr::V6(v6) => RData::AAAA(AAAA {
            address: u128::from(v6),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, instance: &str, address: &str, port: u16) -> Service {
        Service {
            name: name.into(),
            instance: instance.into(),
            address: address.into(),
            port,
            proto: "tcp".into(),
            member: "h3".into(),
            version: String::new(),
        }
    }

    fn ask(name: &str, qtype: TYPE) -> Vec<u8> {
        let mut q = Packet::new_query(7);
        q.set_flags(PacketFlag::RECURSION_DESIRED);
        q.questions.push(Question::new(
            Name::new(name).unwrap(),
            QTYPE::TYPE(qtype),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        q.build_bytes_vec().unwrap()
    }

    #[test]
    fn names_under_the_zone_are_answered() {
        let all = [
            svc("web", "w1", "10.0.0.5", 80),
            svc("web", "w2", "fd00::6", 80),
            svc("db", "d1", "10.0.0.7", 5432),
        ];
        let zone = "svc.kante";
        let r = answer(&ask("web.svc.kante", TYPE::A), zone, &all).unwrap();
        let p = Packet::parse(&r).unwrap();
        assert_eq!(p.rcode(), RCODE::NoError);
        assert_eq!(p.id(), 7);
        assert_eq!(p.answers.len(), 1);
        assert!(
            matches!(&p.answers[0].rdata, RData::A(a) if a.address == u32::from(std::net::Ipv4Addr::new(10, 0, 0, 5)))
        );

        let r = answer(&ask("WEB.svc.kante.", TYPE::AAAA), zone, &all).unwrap();
        let p = Packet::parse(&r).unwrap();
        assert_eq!(p.answers.len(), 1);
        assert!(matches!(&p.answers[0].rdata, RData::AAAA(_)));

        let r = answer(&ask("_db._tcp.svc.kante", TYPE::SRV), zone, &all).unwrap();
        let p = Packet::parse(&r).unwrap();
        assert_eq!(p.answers.len(), 1);
        match &p.answers[0].rdata {
            RData::SRV(s) => {
                assert_eq!(s.port, 5432);
                assert_eq!(s.target.to_string(), "d1.db.svc.kante");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.additional_records.len(), 1);

        let r = answer(&ask("w1.web.svc.kante", TYPE::A), zone, &all).unwrap();
        assert_eq!(Packet::parse(&r).unwrap().answers.len(), 1);

        let r = answer(&ask("nope.svc.kante", TYPE::A), zone, &all).unwrap();
        assert_eq!(Packet::parse(&r).unwrap().rcode(), RCODE::NameError);
        let r = answer(&ask("example.org", TYPE::A), zone, &all).unwrap();
        assert_eq!(Packet::parse(&r).unwrap().rcode(), RCODE::Refused);
        assert!(answer(b"\x00\x01garbage", zone, &all).is_none());
    }
}
