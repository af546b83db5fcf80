//! `/1.0/certificates`: the trust store's verbs, and how a client gets in:
//! added by a trusted caller, by a one-time trust token (an operation of
//! class `token` whose metadata lxc turns into the token it prints), or by
//! `core.trust_password`. Failed secrets are counted per source address
//! (`failures.rs`) and logged.

use std::net::IpAddr;
use std::sync::Arc;

use kante_api::certificate::{Certificate, CertificateAddToken, CertificatePut, CertificatesPost};
use kante_api::operation::OperationClass;
use kante_store::CertificateRow;
use serde_json::json;

use super::{Access, Caller, PendingToken};
use crate::error::{EngineError, Result};
use crate::{lock, Engine, Op};

/// How long a trust token lives when `core.remote_token_expiry` is unset
/// (LXD's tokens then never expire; Kante's do, after a day).
pub const DEFAULT_TOKEN_EXPIRY: chrono::Duration = chrono::Duration::days(1);

fn view(row: CertificateRow) -> Certificate {
    Certificate {
        name: row.name,
        kind: row.kind,
        restricted: row.restricted,
        projects: row.projects,
        certificate: row.certificate,
        fingerprint: row.fingerprint,
    }
}

fn check_kind(kind: &str) -> Result<String> {
    match kind {
        "" | "client" => Ok("client".into()),
        "metrics" => Ok("metrics".into()),
        other => Err(EngineError::bad(format!(
            "Invalid certificate type {other:?}: expected client or metrics"
        ))),
    }
}

pub(super) fn pem(der: &[u8]) -> String {
    let b64 = kante_tls::encode_base64(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// What a secret turned out to be.
pub(super) enum Secret {
    /// A live token, claimed (taken out of the table), with its secret.
    Token(String, PendingToken),
    Password,
}

/// What a `POST /1.0/certificates` made.
pub(crate) enum Added {
    /// The certificate's location.
    Certificate(String),
    /// A trust token's operation.
    Token(Arc<Op>),
}

/// The record a certificate is added with.
struct Wanted {
    name: String,
    kind: String,
    restricted: bool,
    projects: Vec<String>,
}

impl Engine {
    pub(crate) async fn certificate_list(&self) -> Result<Vec<Certificate>> {
        Ok(self
            .shared
            .certificate_list()
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    /// The record a fingerprint, or a unique prefix of one, names.
    async fn certificate_row(&self, fp: &str) -> Result<CertificateRow> {
        let fp = fp.to_ascii_lowercase();
        if let Some(row) = self.shared.certificate_get(&fp).await? {
            return Ok(row);
        }
        let mut found: Vec<CertificateRow> = self
            .shared
            .certificate_list()
            .await?
            .into_iter()
            .filter(|r| !fp.is_empty() && r.fingerprint.starts_with(&fp))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(EngineError::NotFound("Certificate not found".into())),
            _ => Err(EngineError::bad(format!(
                "More than one certificate matches {fp:?}"
            ))),
        }
    }

    pub(crate) async fn certificate_get(&self, fp: &str) -> Result<Certificate> {
        Ok(view(self.certificate_row(fp).await?))
    }

    /// PUT (every field; absent ones become empty) or PATCH (the present ones).
    pub(crate) async fn certificate_update(
        &self,
        fp: &str,
        put: CertificatePut,
        merge: bool,
    ) -> Result<()> {
        let mut row = self.certificate_row(fp).await?;
        if let Some(c) = put.certificate.as_deref().filter(|c| !c.is_empty()) {
            let der = kante_tls::parse_certificate(c.as_bytes())
                .map_err(|e| EngineError::bad(format!("Invalid certificate: {e}")))?;
            if kante_tls::fingerprint(&der) != row.fingerprint {
                return Err(EngineError::bad(
                    "Changing a trusted certificate's certificate is not supported: add the new one and remove this one",
                ));
            }
        }
        if let Some(kind) = put.kind.as_deref().filter(|k| !k.is_empty()) {
            row.kind = check_kind(kind)?;
        }
        match (put.name, merge) {
            (Some(n), _) => row.name = n,
            (None, false) => row.name = String::new(),
            (None, true) => {}
        }
        match (put.restricted, merge) {
            (Some(r), _) => row.restricted = r,
            (None, false) => row.restricted = false,
            (None, true) => {}
        }
        match (put.projects, merge) {
            (Some(p), _) => row.projects = p,
            (None, false) => row.projects = vec![],
            (None, true) => {}
        }
        self.shared.certificate_update(&row).await?;
        Ok(())
    }

    /// Removes a certificate from the trust store; its holder's open
    /// streams end and its next request is refused.
    pub(crate) async fn certificate_delete(&self, fp: &str) -> Result<()> {
        let row = self.certificate_row(fp).await?;
        self.shared.certificate_delete(&row.fingerprint).await?;
        tracing::info!(fingerprint = %row.fingerprint, name = %row.name, "certificate removed from the trust store");
        self.announce_revoked(&row.fingerprint);
        Ok(())
    }

    /// `POST /1.0/certificates`: a token request (`token: true`), or a
    /// certificate to add.
    pub(crate) async fn certificate_create(
        &self,
        access: &Access,
        post: CertificatesPost,
    ) -> Result<Added> {
        if post.token {
            if !access.trusted {
                return Err(EngineError::Forbidden("not authorized".into()));
            }
            return Ok(Added::Token(self.certificate_token(post).await?));
        }
        let mut wanted = Wanted {
            name: post.name.clone(),
            kind: check_kind(&post.kind)?,
            restricted: post.restricted,
            projects: post.projects.clone(),
        };
        if access.trusted {
            return self.add_certificate(access, &post, wanted).await;
        }
        let ip = match &access.caller {
            Caller::Remote { address, .. } => address.ip(),
            Caller::Local => IpAddr::from([127, 0, 0, 1]),
        };
        let secret = if post.trust_token.is_empty() {
            post.password.as_str()
        } else {
            post.trust_token.as_str()
        };
        match self.check_secret(ip, secret).await? {
            Secret::Password => self.add_certificate(access, &post, wanted).await,
            Secret::Token(secret, mut token) => {
                // Claimed: out of the table while the certificate is
                // added, so a concurrent use finds nothing.
                if !token.name.is_empty() {
                    wanted.name = token.name.clone();
                }
                wanted.kind = token.kind.clone();
                wanted.restricted = token.restricted;
                wanted.projects = token.projects.clone();
                let added = self.add_certificate(access, &post, wanted).await;
                if added.is_ok() {
                    if let Some(tx) = token.used.take() {
                        let _ = tx.send(());
                    }
                } else {
                    // Not used after all (a bad certificate, say).
                    lock(&self.remote.tokens).insert(secret, token);
                }
                added
            }
        }
    }

    /// Stores the certificate of the body, else the caller's own.
    async fn add_certificate(
        &self,
        access: &Access,
        post: &CertificatesPost,
        wanted: Wanted,
    ) -> Result<Added> {
        let peer = match &access.caller {
            Caller::Remote {
                certificate: Some(der),
                ..
            } => Some(der.clone()),
            _ => None,
        };
        let der: Vec<u8> = if !post.certificate.is_empty() {
            kante_tls::parse_certificate(post.certificate.as_bytes())
                .map_err(|e| EngineError::bad(format!("Invalid certificate: {e}")))?
                .to_vec()
        } else if let Some(der) = peer {
            if access.trusted {
                return Err(EngineError::Conflict(
                    "Certificate already in trust store".into(),
                ));
            }
            der.to_vec()
        } else {
            return Err(EngineError::bad(
                "No certificate given and none shown on the connection",
            ));
        };
        let fingerprint = kante_tls::fingerprint(&der);
        let name = if wanted.name.is_empty() {
            kante_tls::common_name(&der).unwrap_or_else(|| match &access.caller {
                Caller::Remote { address, .. } => address.ip().to_string(),
                Caller::Local => "local".into(),
            })
        } else {
            wanted.name
        };
        let row = CertificateRow {
            fingerprint: fingerprint.clone(),
            kind: wanted.kind,
            name,
            certificate: pem(&der),
            restricted: wanted.restricted,
            description: String::new(),
            projects: wanted.projects,
        };
        match self.shared.certificate_create(&row).await {
            Err(kante_store::StoreError::Conflict(_)) => {
                return Err(EngineError::Conflict(
                    "Certificate already in trust store".into(),
                ))
            }
            other => other?,
        }
        tracing::info!(fingerprint = %fingerprint, name = %row.name, "certificate added to the trust store");
        Ok(Added::Certificate(format!(
            "/1.0/certificates/{fingerprint}"
        )))
    }

    /// Checks an untrusted caller's secret: a live token (the whole token
    /// or its secret) or the trust password. Wrong or expired secrets
    /// count against `ip`; past the limit nothing is checked.
    pub(super) async fn check_secret(&self, ip: IpAddr, secret: &str) -> Result<Secret> {
        let failures = &self.remote.failures;
        if failures.blocked(ip) {
            tracing::warn!(%ip, "trust attempt refused: too many failed attempts");
            return Err(EngineError::Forbidden(
                "Too many failed password or token attempts; try again later".into(),
            ));
        }
        let fail = |why: &str| {
            failures.record(ip);
            tracing::warn!(%ip, "failed trust attempt: {why}");
            EngineError::Forbidden(why.to_string())
        };
        if secret.is_empty() {
            return Err(fail("No trust password or token given"));
        }
        let token_secret = kante_tls::decode_base64(secret.as_bytes())
            .and_then(|b| serde_json::from_slice::<CertificateAddToken>(&b).ok())
            .map(|t| t.secret)
            .unwrap_or_else(|| secret.to_string());
        {
            let mut tokens = lock(&self.remote.tokens);
            if let Some(t) = tokens.remove(&token_secret) {
                if t.expires_at.is_some_and(|e| e <= kante_api::now()) {
                    drop(tokens);
                    let _ = t.op.cancel();
                    return Err(fail("Token has expired"));
                }
                return Ok(Secret::Token(token_secret, t));
            }
        }
        let stored = self.shared.config_all().await?;
        match stored.get("core.trust_password") {
            Some(hash) if kante_tls::verify_password(hash, secret) => Ok(Secret::Password),
            _ => Err(fail("Invalid trust password or token")),
        }
    }

    /// A one-time trust token: an operation of class `token` that runs
    /// until the token is used, revoked (`DELETE` of the operation) or
    /// expires, whose metadata carries what `lxc config trust add` prints.
    async fn certificate_token(&self, post: CertificatesPost) -> Result<Arc<Op>> {
        let addresses = self.remote.addresses();
        if addresses.is_empty() {
            return Err(EngineError::bad(
                "Can't issue token when server isn't listening on network",
            ));
        }
        let kind = check_kind(&post.kind)?;
        let config = self.shared.config_all().await?;
        let expiry = match config.get("core.remote_token_expiry") {
            Some(spec) => crate::units::parse_expiry(spec)?,
            None => Some(DEFAULT_TOKEN_EXPIRY),
        };
        let expires_at = expiry.map(|d| kante_api::now() + d);
        let secret = crate::util::random_hex(32);
        let op = self.ops.create(
            OperationClass::Token,
            "Executing operation",
            Default::default(),
        );
        let mut meta = json!({
            "request": {
                "name": post.name,
                "type": kind,
                "restricted": post.restricted,
                "projects": post.projects,
                "certificate": "",
                "token": true,
            },
            "secret": secret,
            "fingerprint": self.remote.fingerprint,
            "addresses": addresses,
        });
        if let Some(at) = expires_at {
            meta["expiresAt"] = json!(at);
        }
        op.set_metadata(meta);
        op.set_cancellable();
        let (used_tx, used_rx) = tokio::sync::oneshot::channel();
        lock(&self.remote.tokens).insert(
            secret.clone(),
            PendingToken {
                op: op.clone(),
                name: post.name,
                kind,
                restricted: post.restricted,
                projects: post.projects,
                expires_at,
                used: Some(used_tx),
            },
        );
        let tokens = self.remote.tokens.clone();
        let watched = op.clone();
        let lifetime = expiry.and_then(|d| d.to_std().ok());
        self.ops.run(op.clone(), async move {
            let expired = async {
                match lifetime {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let result = tokio::select! {
                Ok(()) = used_rx => Ok(()),
                _ = watched.cancelled() => Err(EngineError::bad("Token revoked")),
                _ = expired => Err(EngineError::bad("Token has expired")),
            };
            lock(&tokens).remove(&secret);
            result
        });
        Ok(op)
    }
}
