//! Service discovery (a Kante extension, `GET /1.0/services`): the
//! `service.NAME=PORT[/PROTO]` keys an instance may carry, and the records
//! the cluster keeps of them while the instance runs.

use serde::{Deserialize, Serialize};

/// The config key prefix of a published service.
pub const PREFIX: &str = "service.";

/// A service an instance publishes: `service.NAME=PORT[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceKey {
    /// A DNS label (lower-case letters, digits, `-`; 1 to 63).
    pub name: String,
    pub port: u16,
    /// `tcp` (the default) or `udp`.
    pub proto: String,
}

/// Whether `name` is a DNS label: 1 to 63 of `[a-z0-9-]`, no `-` at
/// either end.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses config key `key` (`service.NAME`) with `value` (`PORT[/PROTO]`);
/// the message names what is wrong.
pub fn parse_service(key: &str, value: &str) -> Result<ServiceKey, String> {
    let name = key
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("{key:?} is not a service key"))?;
    if !is_dns_label(name) {
        return Err(format!(
            "Invalid service name {name:?}: a DNS label (a-z, 0-9, '-', at most 63)"
        ));
    }
    let (port, proto) = match value.trim().split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (value.trim(), "tcp"),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("Invalid port {value:?} for {key}: PORT[/tcp|udp], 1-65535"))?;
    if proto != "tcp" && proto != "udp" {
        return Err(format!("Invalid protocol {proto:?} for {key}: tcp or udp"));
    }
    Ok(ServiceKey {
        name: name.to_string(),
        port,
        proto: proto.to_string(),
    })
}

/// One instance's publication of a service, as kept in the cluster
/// (`services/<name>/<instance>`) and listed by `GET /1.0/services`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Service {
    pub name: String,
    pub instance: String,
    /// The instance's first global address (IPv4 or IPv6).
    pub address: String,
    pub port: u16,
    pub proto: String,
    /// The member that runs the instance.
    pub member: String,
    /// The version of the member that wrote the record.
    #[serde(default)]
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_are_checked() {
        let ok = parse_service("service.web", "80").unwrap();
        assert_eq!(
            (ok.name.as_str(), ok.port, ok.proto.as_str()),
            ("web", 80, "tcp")
        );
        let ok = parse_service("service.dns-1", "53/udp").unwrap();
        assert_eq!((ok.port, ok.proto.as_str()), (53, "udp"));
        for (k, v) in [
            ("service.Web", "80"),
            ("service.-a", "80"),
            ("service.", "80"),
            ("service.a.b", "80"),
            ("service.web", "0"),
            ("service.web", "65536"),
            ("service.web", "80/sctp"),
            ("service.web", "http"),
        ] {
            assert!(parse_service(k, v).is_err(), "{k}={v}");
        }
    }
}
