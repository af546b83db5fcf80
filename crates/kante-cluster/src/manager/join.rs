//! Joining: `kante cluster add NAME` asks a member for a join token (a
//! secret kept in etcd under a lease of [`super::TOKEN_TTL`], so any
//! member can check it and it expires by itself); `kante cluster join
//! TOKEN` on the new host calls that member over HTTPS (its certificate
//! pinned by the token's fingerprint) at `POST /internal/cluster/accept`.
//! The member checks the name and the new host's instance names against
//! the cluster's, spends the token (a transaction: of two uses one wins),
//! records the new member, adds it to etcd as a voter while there are
//! fewer than [`super::MAX_VOTERS`] (then as a client only), and answers
//! with the CA, a certificate for it and etcd's endpoints. The new host
//! then starts its etcd (a voter) with the existing cluster, copies in
//! the shared records the cluster lacks and its instance names, and
//! switches its state. A refusal leaves the new host as it was.

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use kante_api::cluster::{ClusterAcceptPost, ClusterAcceptReply, ClusterJoinToken};
use kante_store::{ReservationKind, SharedState};

use super::enable::{copy_shared, put_json};
use super::{check_name, reachable_host, ClusterError, Manager, MemberConfig, Result};
use crate::membership::{RosterEntry, ROSTER};

const TOKENS: &str = "tokens/";

fn etcd_err(e: etcd_client::Error) -> ClusterError {
    ClusterError::Unavailable(format!("the cluster's store is unreachable: {e}"))
}

pub(super) async fn bounded_call<T>(
    call: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    let limit = crate::DEFAULT_TIMEOUT;
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r.map_err(etcd_err),
        Err(_) => Err(ClusterError::Unavailable(format!(
            "the cluster's store is unreachable: etcd did not answer within {limit:?}"
        ))),
    }
}

impl Manager {
    /// A join token for a new member `name` (`POST /1.0/cluster/members`).
    pub async fn token(&self, name: &str) -> Result<ClusterJoinToken> {
        check_name(name)?;
        let (config, etcd) = self.clustered()?;
        if self.roster(&etcd).iter().any(|m| m.name == name) {
            return Err(ClusterError::Conflict(format!(
                "A member named {name:?} is already in the cluster"
            )));
        }
        let secret = random_hex(32);
        let client = etcd.client();
        let lease = etcd
            .quorate(client.lease_client().grant(super::TOKEN_TTL, None))
            .await?;
        let key = format!("{}{TOKENS}{secret}", etcd.prefix());
        bounded_call(client.kv_client().put(
            key,
            name.as_bytes().to_vec(),
            Some(PutOptions::new().with_lease(lease.id())),
        ))
        .await?;
        let expires =
            std::time::SystemTime::now() + std::time::Duration::from_secs(super::TOKEN_TTL as u64);
        Ok(ClusterJoinToken {
            server_name: name.into(),
            secret,
            fingerprint: self.identity.fingerprint.clone(),
            addresses: vec![config.address],
            expires_at: kante_api::Timestamp::from(expires).to_rfc3339(),
        })
    }

    /// Accepts a joining member (`POST /internal/cluster/accept`, open to
    /// untrusted callers: the secret is the credential).
    pub async fn accept(&self, post: ClusterAcceptPost) -> Result<ClusterAcceptReply> {
        let _serial = self.tasks.lock().await;
        let (config, etcd) = self.clustered()?;
        check_name(&post.server_name)?;
        let bad_token = || ClusterError::Forbidden("Invalid, expired or used join token".into());
        if post.secret.is_empty() || !post.secret.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad_token());
        }
        let client = etcd.client();
        let key = format!("{}{TOKENS}{}", etcd.prefix(), post.secret);
        let got = bounded_call(client.kv_client().get(key.as_bytes(), None)).await?;
        match got.kvs().first() {
            Some(kv) if kv.value() == post.server_name.as_bytes() => {}
            Some(_) => {
                return Err(ClusterError::Forbidden(format!(
                    "This join token is not for a member named {:?}",
                    post.server_name
                )))
            }
            None => return Err(bad_token()),
        }
        let roster = self.roster(&etcd);
        if roster.iter().any(|m| m.name == post.server_name) {
            return Err(ClusterError::Conflict(format!(
                "A member named {:?} is already in the cluster",
                post.server_name
            )));
        }
        let held = etcd.reservations(ReservationKind::InstanceName).await?;
        let mut clash: Vec<&str> = post
            .instances
            .iter()
            .filter(|n| held.contains_key(*n))
            .map(String::as_str)
            .collect();
        clash.sort();
        if !clash.is_empty() {
            return Err(ClusterError::Conflict(format!(
                "Instance names already used in the cluster: {} (rename them before joining)",
                clash.join(", ")
            )));
        }
        let host = reachable_host(&post.address).ok_or_else(|| {
            ClusterError::Bad(format!(
                "The joining member's address {:?} is not reachable (set its core.https_address)",
                post.address
            ))
        })?;
        // Spend the token: of two uses, one wins.
        let spent = bounded_call(
            client.kv_client().txn(
                Txn::new()
                    .when([Compare::value(
                        key.as_bytes(),
                        CompareOp::Equal,
                        post.server_name.as_bytes(),
                    )])
                    .and_then([TxnOp::delete(key.as_bytes(), None)]),
            ),
        )
        .await?;
        if !spent.succeeded() {
            return Err(bad_token());
        }
        let voters: Vec<&RosterEntry> = roster.iter().filter(|m| m.voter).collect();
        let voter = voters.len() < super::MAX_VOTERS;
        let url = |port: u16| format!("https://{}:{port}", crate::etcd_proc::url_host(&host));
        let entry = RosterEntry {
            name: post.server_name.clone(),
            address: post.address.clone(),
            voter,
            etcd_url: if voter {
                url(super::ETCD_CLIENT_PORT)
            } else {
                String::new()
            },
            architecture: post.architecture.clone(),
            certificate: post.certificate.clone(),
        };
        put_json(&etcd, &format!("{ROSTER}{}", entry.name), &entry).await?;
        let mut initial_cluster = String::new();
        if voter {
            // From here until the new member's etcd runs, a cluster of one
            // voter has no quorum: the new member starts its etcd next.
            let added = match self.member_add(&client, url(super::ETCD_PEER_PORT)).await {
                Ok(added) => added,
                Err(e) => {
                    let key = format!("{}{ROSTER}{}", etcd.prefix(), entry.name);
                    let _ = bounded_call(client.kv_client().delete(key, None)).await;
                    return Err(e);
                }
            };
            let members: Vec<String> = added
                .member_list()
                .iter()
                .filter_map(|m| {
                    let name = if m.name().is_empty() {
                        post.server_name.as_str()
                    } else {
                        m.name()
                    };
                    Some(format!("{name}={}", m.peer_urls().first()?))
                })
                .collect();
            initial_cluster = members.join(",");
        }
        let ca = self.ca()?;
        let cert =
            crate::ca::issue(&ca, &post.server_name, &host).map_err(ClusterError::Internal)?;
        let mut endpoints: Vec<String> = voters
            .iter()
            .map(|v| v.etcd_url.clone())
            .filter(|u| !u.is_empty())
            .collect();
        if voter {
            endpoints.insert(0, url(super::ETCD_CLIENT_PORT));
        }
        if !post.certificate.is_empty() {
            self.trust(&etcd, &post.server_name, &post.certificate)
                .await;
        }
        tracing::info!(member = %post.server_name, voter, "member accepted into the cluster");
        Ok(ClusterAcceptReply {
            cluster: config.cluster,
            ca: ca.cert,
            ca_key: ca.key,
            cert: cert.cert,
            key: cert.key,
            endpoints,
            voter,
            initial_cluster,
        })
    }

    /// Adds an etcd voter. etcd refuses while its last new member has not
    /// been connected for a few seconds ("unhealthy cluster"): retried
    /// for up to 30 s.
    async fn member_add(
        &self,
        client: &etcd_client::Client,
        peer_url: String,
    ) -> Result<etcd_client::MemberAddResponse> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let tried =
                bounded_call(client.cluster_client().member_add([peer_url.clone()], None)).await;
            match tried {
                Err(ClusterError::Unavailable(m))
                    if m.contains("unhealthy cluster") && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// Adds a member's server certificate to the trust store.
    async fn trust(&self, etcd: &crate::EtcdState, name: &str, pem: &str) {
        if let Err(e) = trust_certificate(etcd, name, pem).await {
            tracing::warn!(member = name, "trusting its certificate: {e}");
        }
    }

    /// Joins the cluster `token` (as `kante cluster add` printed it)
    /// names, this member reached at `https_address`.
    pub async fn join(&self, token: &str, name: &str, https_address: &str) -> Result<()> {
        let mut tasks = self.tasks.lock().await;
        if self.current().is_some() {
            return Err(ClusterError::Conflict(
                "This server is already clustered".into(),
            ));
        }
        let token = decode_token(token)?;
        if !name.is_empty() && name != token.server_name {
            return Err(ClusterError::Bad(format!(
                "This join token is for a member named {:?}, not {name:?}",
                token.server_name
            )));
        }
        let name = token.server_name.clone();
        check_name(&name)?;
        reachable_host(https_address).ok_or_else(|| {
            ClusterError::Bad(format!(
                "Set core.https_address to an address the other members can reach (it is {https_address:?})"
            ))
        })?;
        let mut instances = self.node.instance_names().await?;
        instances.sort();
        let post = ClusterAcceptPost {
            server_name: name.clone(),
            secret: token.secret.clone(),
            address: https_address.into(),
            certificate: self.identity.cert_pem.clone(),
            architecture: crate::membership::architecture(),
            instances,
        };
        // Once accepted as a voter, etcd counts this member in its quorum:
        // what would stop its etcd from starting is checked before.
        preflight(&reachable_host(https_address).unwrap_or_default())?;
        let reply = self.ask_accept(&token, &post).await?;
        let host = reachable_host(https_address).unwrap_or_default();
        let config = MemberConfig {
            cluster: reply.cluster.clone(),
            member: name.clone(),
            address: https_address.into(),
            host,
            voter: reply.voter,
            endpoints: reply.endpoints.clone(),
            initial_cluster: reply.initial_cluster.clone(),
            new_cluster: false,
        };
        let _ = std::fs::remove_dir_all(self.etcd_dir());
        let done = async {
            let ca = crate::ca::Pem {
                cert: reply.ca.clone(),
                key: reply.ca_key.clone(),
            };
            let me = crate::ca::Pem {
                cert: reply.cert.clone(),
                key: reply.key.clone(),
            };
            self.write_files(&config, &ca, &me)?;
            self.start_unswitched(&mut tasks, config.clone()).await?;
            let (_, etcd) = self.clustered()?;
            let local = self.switch.local().clone();
            copy_shared(local.as_ref(), etcd.as_ref(), &name).await?;
            self.switch
                .switch_to(etcd.clone() as Arc<dyn SharedState>, &name);
            Ok::<(), ClusterError>(())
        }
        .await;
        if let Err(e) = done {
            self.undo(&mut tasks).await;
            return Err(e);
        }
        tracing::info!(member = %name, voter = reply.voter, "joined the cluster");
        Ok(())
    }

    /// Sends the accept request to the first of the token's addresses that
    /// answers, pinned to the token's fingerprint.
    async fn ask_accept(
        &self,
        token: &ClusterJoinToken,
        post: &ClusterAcceptPost,
    ) -> Result<ClusterAcceptReply> {
        let mut last = String::from("the token names no address");
        for address in &token.addresses {
            let Some((host, port)) = split_address(address) else {
                last = format!("invalid address {address:?} in the token");
                continue;
            };
            let target = kante_client::HttpsTarget {
                host,
                port,
                pin: kante_tls::ServerPin {
                    expected: Some(token.fingerprint.clone()),
                    seen: Default::default(),
                },
                identity: Some(kante_tls::KeyPair {
                    cert_pem: self.identity.cert_pem.clone(),
                    key_pem: self.identity.key_pem.clone(),
                }),
            };
            let client = kante_client::Client::https(target)
                .map_err(|e| ClusterError::Internal(e.to_string()))?;
            let call = client.post("/internal/cluster/accept", post);
            match tokio::time::timeout(std::time::Duration::from_secs(60), call).await {
                Ok(Ok(resp)) => {
                    return resp
                        .into_metadata()
                        .map_err(|e| ClusterError::Internal(format!("the member's answer: {e}")))
                }
                Ok(Err(kante_client::ClientError::Api {
                    status, message, ..
                })) => {
                    let m = format!("The cluster refused to add this member: {message}");
                    return Err(match status {
                        403 => ClusterError::Forbidden(m),
                        404 => ClusterError::NotFound(m),
                        409 => ClusterError::Conflict(m),
                        503 => ClusterError::Unavailable(m),
                        _ => ClusterError::Bad(m),
                    });
                }
                Ok(Err(e)) => last = format!("{address}: {e}"),
                Err(_) => last = format!("{address}: no answer within 60s"),
            }
        }
        Err(ClusterError::Unavailable(format!(
            "Could not reach the cluster: {last}"
        )))
    }

    /// The roster, from the cache.
    pub(super) fn roster(&self, etcd: &crate::EtcdState) -> Vec<RosterEntry> {
        etcd.cached_dir(ROSTER)
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }
}

/// Whether this host can run its etcd member: the binary is there and
/// its ports are free on `host`.
pub(super) fn preflight(host: &str) -> Result<()> {
    let bin = std::env::var_os("KANTE_ETCD")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/etcd"));
    if !bin.exists() {
        return Err(ClusterError::Bad(format!(
            "{} is missing: a member runs etcd (Debian's etcd-server)",
            bin.display()
        )));
    }
    for port in [super::ETCD_CLIENT_PORT, super::ETCD_PEER_PORT] {
        let addr = format!("{}:{port}", crate::etcd_proc::url_host(host));
        if let Err(e) = std::net::TcpListener::bind(&addr) {
            return Err(ClusterError::Bad(format!(
                "etcd's port {addr} is not free on this host: {e}"
            )));
        }
    }
    Ok(())
}

/// A token as `kante cluster add` (or `lxc cluster add`) printed it.
pub fn decode_token(token: &str) -> Result<ClusterJoinToken> {
    let bad = || ClusterError::Bad("Invalid join token: it does not decode".into());
    let bytes = kante_tls::decode_base64(token.trim().as_bytes()).ok_or_else(bad)?;
    let t: ClusterJoinToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.secret.is_empty() || t.fingerprint.is_empty() || t.addresses.is_empty() {
        return Err(bad());
    }
    Ok(t)
}

/// `host:port` (IPv6 in brackets) split.
fn split_address(address: &str) -> Option<(String, u16)> {
    let sa: std::net::SocketAddr = address.parse().ok()?;
    Some((sa.ip().to_string(), sa.port()))
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Adds member `name`'s server certificate `pem` to the shared trust
/// store unless it is there.
async fn trust_certificate(
    etcd: &crate::EtcdState,
    name: &str,
    pem: &str,
) -> std::result::Result<(), String> {
    let der = kante_tls::parse_certificate(pem.as_bytes())
        .map_err(|e| format!("its certificate does not parse: {e}"))?;
    let fingerprint = kante_tls::fingerprint(&der);
    if etcd
        .certificate_get(&fingerprint)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let row = kante_store::CertificateRow {
        fingerprint,
        kind: "client".into(),
        name: format!("cluster member {name}"),
        certificate: pem.into(),
        restricted: false,
        description: String::new(),
        projects: Vec::new(),
    };
    match etcd.certificate_create(&row).await {
        Ok(()) | Err(kante_store::StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// This member's own server certificate into the trust store, retried
/// (every 2 s, for a minute) while etcd does not answer.
pub(super) async fn trust_self(etcd: std::sync::Arc<crate::EtcdState>, name: String, pem: String) {
    for _ in 0..30 {
        match trust_certificate(&etcd, &name, &pem).await {
            Ok(()) => return,
            Err(e) => tracing::debug!(member = %name, "trusting this member's certificate: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    tracing::warn!(member = %name, "this member's certificate could not be put in the trust store");
}
