//! A remote's client: the unix socket for `local`, else HTTPS with the
//! remote's pinned certificate and this client's key pair.

use anyhow::{bail, Context, Result};
use kante_client::kante_tls::{self, KeyPair, Role, ServerPin};
use kante_client::{Client, HttpsTarget};

use super::address::Address;
use super::{Config, LOCAL};

/// This client's key pair (`client.crt`/`client.key` in the configuration
/// directory), made on first use.
pub fn identity(cfg: &Config) -> Result<KeyPair> {
    if cfg.dir.as_os_str().is_empty() {
        bail!("Neither KANTE_CONF nor HOME is set: no place for the client certificate");
    }
    std::fs::create_dir_all(&cfg.dir)
        .with_context(|| format!("Failed to create {}", cfg.dir.display()))?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "kante-client".into());
    kante_tls::load_or_create(&cfg.dir, "client", Role::Client, &[host])
        .context("Failed to load or make the client certificate")
}

/// The fingerprint pinned for remote `name`.
pub fn pinned(cfg: &Config, name: &str) -> Result<String> {
    let path = cfg.server_cert_path(name);
    let pem = std::fs::read(&path).with_context(|| {
        format!(
            "No certificate is pinned for remote {name} ({}); remove the remote and add it again",
            path.display()
        )
    })?;
    let der = kante_tls::parse_certificate(&pem)
        .with_context(|| format!("Invalid pinned certificate {}", path.display()))?;
    Ok(kante_tls::fingerprint(&der))
}

/// An HTTPS client for `addr`: pinned to `expected` (or first contact with
/// `None`), showing `identity`.
pub fn https(
    addr: &Address,
    expected: Option<String>,
    identity: Option<KeyPair>,
) -> Result<Client> {
    Ok(Client::https(HttpsTarget {
        host: addr.host.clone(),
        port: addr.port,
        pin: ServerPin {
            expected,
            ..Default::default()
        },
        identity,
    })?)
}

/// The client of remote `name`.
pub fn client(cfg: &Config, name: &str) -> Result<Client> {
    if name == LOCAL {
        return Ok(Client::local());
    }
    let remote = cfg
        .remotes
        .get(name)
        .with_context(|| format!("The remote \"{name}\" doesn't exist"))?;
    if remote.protocol == "simplestreams" {
        bail!("The remote {name} is a simplestreams image server: only image copies and launches can use it");
    }
    let addr = Address::parse(&remote.addr)?;
    https(&addr, Some(pinned(cfg, name)?), Some(identity(cfg)?))
}

/// PEM text of a DER certificate.
pub fn pem(der: &[u8]) -> String {
    let b64 = super::b64::encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_through_the_parser() {
        let pair = KeyPair::generate(Role::Server, &["s".into()]).unwrap();
        let der = pair.cert_der().unwrap();
        let back = kante_tls::parse_certificate(pem(&der).as_bytes()).unwrap();
        assert_eq!(kante_tls::fingerprint(&back), pair.fingerprint());
    }

    #[test]
    fn an_unpinned_remote_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_from(dir.path()).unwrap();
        let e = pinned(&cfg, "r").unwrap_err().to_string();
        assert!(e.contains("remove the remote and add it again"), "{e}");
    }
}
