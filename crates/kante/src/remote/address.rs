//! Remote addresses as users type them: `host`, `host:port`,
//! `https://host[:port]`, `[v6]:port`, a bare IPv6; port 8443 by default.

use anyhow::{bail, Result};

pub const DEFAULT_PORT: u16 = 8443;

/// A parsed HTTPS address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Address {
    pub fn parse(input: &str) -> Result<Address> {
        let s = input.trim();
        let rest = match s.split_once("://") {
            Some(("https", rest)) => rest,
            Some((scheme, _)) => {
                bail!("Unsupported address scheme {scheme:?} in {input:?} (use https://HOST:PORT)")
            }
            None => s,
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            bail!("Invalid address {input:?}: expected HOST[:PORT]");
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                bail!("Invalid address {input:?}: no closing ']'");
            };
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => bail!("Invalid address {input:?}"),
                },
            }
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address: no port can be told apart.
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            bail!("Invalid address {input:?}: no host");
        }
        if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
            bail!("Invalid address {input:?}: {host:?} is not an IPv6 address");
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => bail!("Invalid port {p:?} in {input:?}"),
            },
        };
        Ok(Address {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL kept in the configuration: `https://host:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> (String, u16) {
        let a = Address::parse(s).unwrap();
        (a.host, a.port)
    }

    #[test]
    fn address_forms() {
        assert_eq!(hp("host1"), ("host1".into(), 8443));
        assert_eq!(hp("host1:9443"), ("host1".into(), 9443));
        assert_eq!(hp("https://10.0.0.1"), ("10.0.0.1".into(), 8443));
        assert_eq!(hp("https://10.0.0.1:18443/"), ("10.0.0.1".into(), 18443));
        assert_eq!(hp("[2001:db8::1]:9000"), ("2001:db8::1".into(), 9000));
        assert_eq!(hp("[::1]"), ("::1".into(), 8443));
        assert_eq!(hp("2001:db8::1"), ("2001:db8::1".into(), 8443));
        assert_eq!(
            Address::parse("[2001:db8::1]:9000").unwrap().url(),
            "https://[2001:db8::1]:9000"
        );
        assert_eq!(Address::parse("h").unwrap().url(), "https://h:8443");
        for bad in [
            "",
            "http://h",
            "h:0",
            "h:99999",
            "h:x",
            "[::1",
            "[::1]x",
            "h/path",
            "[zz::q]:1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
