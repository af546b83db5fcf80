//! How a member reaches its cluster's etcd: endpoints, optional client
//! TLS, the cluster's name (its key prefix), this member, and how long a
//! write may wait for etcd before it fails.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use kante_store::{Result, StoreError};

/// Client TLS to etcd: the CA that signed etcd's certificate and,
/// where etcd asks for one, this client's certificate and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Everything [`crate::EtcdState::connect`] needs.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` or `http(s)://host:port`, one or more members of the
    /// etcd cluster.
    pub endpoints: Vec<String>,
    pub tls: Option<EtcdTls>,
    /// The cluster's name: its records live under `/kante/<cluster>/`.
    pub cluster: String,
    /// This member's name and the address the others reach it at.
    pub member: String,
    pub address: String,
    /// The longest a call to etcd may take (connecting included) before it
    /// fails as unreachable.
    pub timeout: Duration,
    /// Where the cache is kept on disk (`snapshot.rs`). With one, a member
    /// whose etcd is unreachable at connect starts from its last view
    /// (writes fail as unreachable until etcd answers); without, connect
    /// fails.
    pub snapshot: Option<PathBuf>,
}

/// The default bound on a call to etcd.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

impl EtcdConfig {
    /// Plain-text endpoints, the default timeout.
    pub fn new(endpoints: Vec<String>, cluster: &str, member: &str, address: &str) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            tls: None,
            cluster: cluster.into(),
            member: member.into(),
            address: address.into(),
            timeout: DEFAULT_TIMEOUT,
            snapshot: None,
        }
    }

    /// The key prefix of this cluster's records.
    pub fn prefix(&self) -> String {
        format!("/kante/{}/", self.cluster)
    }

    /// Refuses what would mix clusters' or members' keys: an empty name,
    /// or a cluster name with `/` (its prefix would lie inside another's).
    pub(crate) fn check(&self) -> Result<()> {
        if self.cluster.is_empty() || self.cluster.contains('/') {
            return Err(StoreError::Unavailable(format!(
                "invalid cluster name {:?}: it must be non-empty, without '/'",
                self.cluster
            )));
        }
        if self.member.is_empty() || self.endpoints.is_empty() {
            return Err(StoreError::Unavailable(
                "a member needs a name and at least one etcd endpoint".into(),
            ));
        }
        Ok(())
    }

    /// The endpoints as etcd-client takes them: with TLS, bare `host:port`
    /// ones become `https://host:port`.
    pub(crate) fn endpoint_urls(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|e| {
                if self.tls.is_some() && !e.contains("://") {
                    format!("https://{e}")
                } else {
                    e.clone()
                }
            })
            .collect()
    }

    /// The client's options: connect timeout, HTTP/2 keep-alive (so a
    /// dead link breaks the watch in seconds), calls only to an etcd
    /// member that has a leader (one cut off from its quorum cancels the
    /// watch rather than leave it silently stale) and TLS.
    pub(crate) fn options(&self) -> Result<ConnectOptions> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(2), self.timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &self.tls {
            let read = |p: &PathBuf| {
                std::fs::read(p)
                    .map_err(|e| StoreError::Unavailable(format!("reading {}: {e}", p.display())))
            };
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
            match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Unavailable(
                        "a client certificate needs its key and the other way round".into(),
                    ))
                }
            }
            options = options.with_tls(t);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_mix_keys_are_refused() {
        let ok = EtcdConfig::new(vec!["127.0.0.1:2379".into()], "lab", "h1", "");
        assert!(ok.check().is_ok());
        assert_eq!(ok.prefix(), "/kante/lab/");
        assert_eq!(ok.endpoint_urls(), ["127.0.0.1:2379"]);
        for (cluster, member, endpoints) in [
            ("lab/x", "h1", 1),
            ("", "h1", 1),
            ("lab", "", 1),
            ("lab", "h1", 0),
        ] {
            let mut c = ok.clone();
            c.cluster = cluster.into();
            c.member = member.into();
            c.endpoints.truncate(endpoints);
            assert!(
                matches!(c.check(), Err(StoreError::Unavailable(_))),
                "{cluster:?} {member:?}"
            );
        }
        let mut tls = ok.clone();
        tls.tls = Some(EtcdTls {
            ca: "/ca".into(),
            cert: None,
            key: None,
        });
        assert_eq!(tls.endpoint_urls(), ["https://127.0.0.1:2379"]);
    }
}
