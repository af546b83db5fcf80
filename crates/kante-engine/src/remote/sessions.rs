//! Browser sessions of the web view (`/ui/`): a one-time login link
//! (`https://ADDR/ui/login#SECRET`, the secret of an ordinary trust
//! token, printed by `kante config trust add --ui NAME`) is exchanged once
//! for a session ([`Engine::ui_login`]). The session id is random (256
//! bits), travels only in an `HttpOnly; Secure; SameSite=Strict` cookie,
//! and is kept in the trust store as a record of type `ui` keyed by the
//! sha256 of the id (so the store never holds the id itself): `kante
//! config trust list` shows it, `kante config trust remove` revokes it,
//! and it expires ([`SESSION_LIFETIME`]). Its certificate is a throwaway
//! self-signed one (its key discarded at once) whose validity is the
//! session's, so `lxc config trust list` can read the record. A cookie
//! makes a request trusted only with the CSRF checks of
//! [`browser_request_allowed`].

use std::net::IpAddr;

use kante_store::CertificateRow;

use super::certificates::{pem, Secret};
use super::{Access, Caller};
use crate::error::{EngineError, Result};
use crate::{lock, Engine};

/// The cookie holding the session id.
pub const SESSION_COOKIE: &str = "kante_ui";
/// The header a browser's API request must carry with the cookie: a
/// cross-site page cannot set it without a CORS preflight, which kanted
/// never grants.
pub const UI_HEADER: &str = "x-kante-ui";
/// The trust store type of a session record.
pub const SESSION_KIND: &str = "ui";
/// How long a session lives from its login.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::days(7);
/// The prefix of a session record's description, before its expiry.
const EXPIRES: &str = "web view session, expires ";

/// A session id as the trust store keys it.
pub fn session_key(id: &str) -> String {
    kante_tls::fingerprint(id.as_bytes())
}

/// Whether a browser request carrying a session cookie may be treated as
/// its session's (CSRF): a websocket only when its `Origin` is the
/// listener's own, any other request only with the [`UI_HEADER`] (which
/// the page's `fetch` sets and a form or a cross-site script cannot). The
/// cookie's `SameSite=Strict` is the second, independent guard.
pub fn browser_request_allowed(websocket: bool, ui_header: bool, same_origin: bool) -> bool {
    if websocket {
        same_origin
    } else {
        ui_header
    }
}

/// A new session: its id (for the cookie) and lifetime in seconds.
pub struct Session {
    /// The session id (64 hex digits), for the cookie only.
    pub id: String,
    /// Its lifetime in seconds (the cookie's `Max-Age`).
    pub max_age: i64,
}

impl Engine {
    /// Exchanges a login link's token for a session: the token (a live
    /// trust token, its whole base64 form or its secret) is spent, and a
    /// `ui` record named as the token is stored. Wrong, spent or expired
    /// tokens count against the caller's address as any trust attempt;
    /// the trust password opens no session.
    pub(crate) async fn ui_login(&self, access: &Access, token: &str) -> Result<Session> {
        let ip = match &access.caller {
            Caller::Remote { address, .. } => address.ip(),
            Caller::Local => IpAddr::from([127, 0, 0, 1]),
        };
        let (secret, mut pending) = match self.check_secret(ip, token).await? {
            Secret::Token(secret, pending) => (secret, pending),
            Secret::Password => {
                return Err(EngineError::Forbidden(
                    "A login link needs a token from `kante config trust add --ui`".into(),
                ))
            }
        };
        if pending.kind != "client" {
            lock(&self.remote.tokens).insert(secret, pending);
            return Err(EngineError::Forbidden(
                "Only a client token opens a web view session".into(),
            ));
        }
        match self.store_session(&pending.name).await {
            Ok(session) => {
                if let Some(tx) = pending.used.take() {
                    let _ = tx.send(());
                }
                Ok(session)
            }
            Err(e) => {
                // Not spent after all.
                lock(&self.remote.tokens).insert(secret, pending);
                Err(e)
            }
        }
    }

    async fn store_session(&self, name: &str) -> Result<Session> {
        let id = crate::util::random_hex(32);
        let expires = kante_api::now() + SESSION_LIFETIME;
        let until = std::time::SystemTime::now() + SESSION_LIFETIME.to_std().unwrap_or_default();
        let cert = kante_tls::KeyPair::generate_until(
            kante_tls::Role::Client,
            &["kante-ui-session".to_string()],
            until,
        )
        .and_then(|k| k.cert_der())
        .map_err(|e| EngineError::internal(format!("session certificate: {e}")))?;
        let name = if name.is_empty() { "web view" } else { name };
        let row = CertificateRow {
            fingerprint: session_key(&id),
            kind: SESSION_KIND.into(),
            name: name.to_string(),
            certificate: pem(&cert),
            restricted: false,
            description: format!("{EXPIRES}{}", expires.to_rfc3339()),
            projects: vec![],
        };
        self.shared.certificate_create(&row).await?;
        tracing::info!(name = %row.name, fingerprint = %row.fingerprint, "web view session opened");
        Ok(Session {
            id,
            max_age: SESSION_LIFETIME.num_seconds(),
        })
    }

    /// Whether `id` names a live session; an expired one is removed.
    pub async fn trusts_session(&self, id: &str) -> bool {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        self.session_live(&session_key(id)).await
    }

    /// Whether the trust store key `key` is a live session's.
    async fn session_live(&self, key: &str) -> bool {
        let row = match self.shared.certificate_get(key).await {
            Ok(Some(row)) if row.kind == SESSION_KIND => row,
            Ok(_) => return false,
            Err(e) => {
                tracing::warn!("reading the trust store: {e}");
                return false;
            }
        };
        let live = row
            .description
            .strip_prefix(EXPIRES)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > kante_api::now());
        if !live {
            tracing::info!(name = %row.name, "web view session expired");
            if let Err(e) = self.shared.certificate_delete(key).await {
                tracing::warn!("removing an expired session: {e}");
            }
        }
        live
    }

    /// Ends the session `id` (the page's logout): its record goes, so
    /// every later request with it is refused. Its open connections are
    /// not cut here (the logout's own answer, with the cookie's removal,
    /// travels on one of them; the page leaves, closing its streams, and
    /// other tabs fall back to the login at their next request); `kante
    /// config trust remove` cuts them at once.
    pub(crate) async fn ui_logout(&self, id: &str) -> Result<()> {
        let key = session_key(id);
        match self.shared.certificate_get(&key).await? {
            Some(row) if row.kind == SESSION_KIND => {
                self.shared.certificate_delete(&key).await?;
                tracing::info!(name = %row.name, "web view session logged out");
                Ok(())
            }
            _ => Err(EngineError::NotFound("Session not found".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_needs_the_header_or_a_same_origin_websocket() {
        assert!(browser_request_allowed(false, true, false));
        assert!(!browser_request_allowed(false, false, true));
        assert!(browser_request_allowed(true, false, true));
        assert!(!browser_request_allowed(true, true, false));
    }

    #[test]
    fn sessions_are_keyed_by_their_hash() {
        let id = "ab".repeat(32);
        let key = session_key(&id);
        assert_eq!(key.len(), 64);
        assert_ne!(key, id);
    }
}
