//! `/1.0/certificates`: the clients this server trusts, and how a client
//! asks to be added (LXD's `CertificatesPost`, with a trust token or
//! password).

use serde::{Deserialize, Serialize};

use crate::serde_util::{lenient_bool, null_default};

/// A trusted certificate as `GET /1.0/certificates/{fp}` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Certificate {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `client` or `metrics`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub restricted: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub projects: Vec<String>,
    /// PEM.
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: String,
    #[serde(default, deserialize_with = "null_default")]
    pub fingerprint: String,
}

/// `PUT`/`PATCH /1.0/certificates/{fp}`: what may change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CertificatePut {
    #[serde(default, deserialize_with = "null_default")]
    pub name: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub restricted: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    pub projects: Option<Vec<String>>,
    /// Accepted only when it is the same certificate.
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: Option<String>,
}

/// `POST /1.0/certificates`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CertificatesPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub restricted: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub projects: Vec<String>,
    /// Base64 DER or PEM; empty: the caller's own TLS certificate.
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: String,
    /// The trust password, or a whole trust token (what lxc 5.0 sends).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub password: String,
    /// A trust token, as newer clients send it.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub trust_token: String,
    /// Asks for a one-time trust token instead of adding a certificate.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub token: bool,
}

/// A trust token as `lxc remote add NAME TOKEN` reads it: base64 (standard,
/// padded) of this JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CertificateAddToken {
    pub client_name: String,
    pub fingerprint: String,
    pub addresses: Vec<String>,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<crate::Timestamp>,
}
